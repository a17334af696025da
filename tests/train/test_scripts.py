"""The stage launchers read the environment the way the reference's scripts do (checked with DRY_RUN=1)."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from tests.train.conftest import REPO

SCRIPTS = REPO / "scripts" / "train"


def _dry_run(stage: str, *args: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NNODES", "MASTER_PORT", "DATA_ROOT", "RUN_ROOT")}
    full = base | {"DRY_RUN": "1", "GPUS_PER_NODE": "1", "PYTHON": "python"} | env
    proc = subprocess.run(["bash", str(SCRIPTS / f"{stage}.sh"), *args], env=full, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def test_defaults_launch_one_node_from_the_previous_stage():
    cmd = _dry_run("pretrain")
    assert cmd[:3] == ["python", "-m", "torch.distributed.run"]
    launcher = dict(zip(cmd[3:13:2], cmd[4:14:2], strict=True))
    assert launcher == {
        "--nnodes": "1",
        "--node_rank": "0",
        "--nproc_per_node": "1",
        "--master_addr": "127.0.0.1",
        "--master_port": "29500",
    }
    assert cmd[13:16] == ["-m", "videopanda.train", "configs/train/pretrain.yaml"]
    assert cmd[16:] == [
        "data.root=data",
        "distill.teacher_path=checkpoints/LanguageBind_Video_merge",
        "output_dir=runs/pretrain",
        "model.init_from=runs/prealign",
    ]


def test_environment_and_arguments_reach_the_command():
    cmd = _dry_run(
        "prealign",
        "3",
        "node7",
        "optim.batch_size=4",
        NNODES="16",
        GPUS_PER_NODE="4",
        MASTER_PORT="1234",
        DATA_ROOT="/datasets/vp",
        CKPT_ROOT="/ckpt",
        RUN_ROOT="/runs",
    )
    text = " ".join(cmd)
    for part in (
        "--nnodes 16",
        "--node_rank 3",
        "--nproc_per_node 4",
        "--master_addr node7",
        "--master_port 1234",
        "configs/train/prealign.yaml",
        "data.root=/datasets/vp",
        "distill.teacher_path=/ckpt/LanguageBind_Video_merge",
        "output_dir=/runs/prealign",
        "model.init_from=/ckpt/EVE-7B-Pretrain-v1.0",
        "model.tokenizer=/ckpt/EVE-7B-Pretrain-v1.0",
    ):
        assert part in text, part
    assert cmd[-1] == "optim.batch_size=4"  # overrides come last, so they win
    assert _dry_run("finetune", INIT_FROM="/x/pretrain_step900")[-1] == "model.init_from=/x/pretrain_step900"


def test_unknown_stage_is_an_error():
    proc = subprocess.run(["bash", str(SCRIPTS / "common.sh"), "warmup"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown stage 'warmup'" in proc.stderr


@pytest.mark.parametrize("name", ["prealign.sh", "pretrain.sh", "finetune.sh", "common.sh", "slurm_all_stages.sbatch"])
def test_scripts_parse(name):
    assert subprocess.run(["bash", "-n", str(SCRIPTS / name)]).returncode == 0


def test_the_slurm_chain_gives_init_from_to_prealign_only(tmp_path):
    """Stub scontrol/srun: each stage's dry-run command shows where it starts from."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho node0\n")
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nshift\nSLURM_NODEID=0 "$@"\n')  # drop --kill-on-bad-exit
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("NNODES", "MASTER_PORT", "DATA_ROOT", "RUN_ROOT")}
    env = base | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DRY_RUN": "1", "GPUS_PER_NODE": "1",
                  "PYTHON": "python", "SLURM_JOB_NODELIST": "node0", "SLURM_SUBMIT_DIR": str(REPO),
                  "RUN_ROOT": str(tmp_path / "runs"), "INIT_FROM": "/ckpt/custom_eve"}  # fmt: skip
    proc = subprocess.run(["bash", str(SCRIPTS / "slurm_all_stages.sbatch")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    starts = [part for part in shlex.split(proc.stdout) if part.startswith("model.init_from=")]
    runs = tmp_path / "runs"
    assert starts == ["model.init_from=/ckpt/custom_eve", f"model.init_from={runs}/prealign",
                      f"model.init_from={runs}/pretrain"]  # fmt: skip
