"""The same entry point as separate CPU processes: one process and two under torchrun (gloo), with and without
DeepSpeed. Two-process runs must end with identical replicas on both ranks; ZeRO-3 saves a consolidated 16-bit model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import REPO, loop_overrides
from videopanda.model import load_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(nproc: int, overrides: list[str], extensions: str) -> subprocess.CompletedProcess:
    """``python -m videopanda.train`` alone (nproc 1) or under ``torchrun --nproc_per_node nproc``."""
    entry = ["-m", "videopanda.train", "configs/train/tiny_finetune.yaml", *overrides]
    if nproc > 1:
        port = str(_free_port())
        entry = [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            port,
            *entry,
        ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
    env |= {"OMP_NUM_THREADS": "1", "TORCH_EXTENSIONS_DIR": extensions}
    return subprocess.run([sys.executable, *entry], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("deepspeed", ["", "configs/deepspeed/zero2.json"], ids=["ddp", "zero2"])
def test_two_process_run_ends_with_identical_weights_on_both_ranks(
    synth_dir, tmp_path, deepspeed, torch_extensions_dir
):
    out = tmp_path / "run"
    overrides = loop_overrides(
        synth_dir,
        out,
        "optim.max_steps=3",
        "optim.batch_size=2",
        "checkpoint.every_steps=0",
        "distributed.verify_sync=true",
        f"distributed.deepspeed={deepspeed}",
        *(["optim.optimizer=adamw"] if deepspeed else []),  # the tiny configs' Muon does not run under ZeRO
    )
    proc = _launch(2, overrides, torch_extensions_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 rank(s)" in proc.stderr and ("DeepSpeed" in proc.stderr) == bool(deepspeed)
    sums = [json.loads((out / f"rank{r}_param_sums.json").read_text()) for r in (0, 1)]
    assert sums[0].keys() == sums[1].keys() and len(sums[0]) > 50
    assert sums[0] == sums[1]  # every parameter and buffer, bit for bit
    assert "12 samples per rank per epoch" in proc.stderr  # each rank its own half of the 24 samples
    saved = load_model(out).state_dict()
    assert float(saved["lm_head.weight"].double().sum()) == pytest.approx(sums[0]["model.lm_head.weight"])


@pytest.mark.slow
def test_one_process_deepspeed_zero2_without_a_launcher(synth_dir, tmp_path, torch_extensions_dir):
    out = tmp_path / "run"
    overrides = loop_overrides(
        synth_dir,
        out,
        "optim.max_steps=2",
        "optim.batch_size=2",
        "checkpoint.every_steps=1",
        "distributed.deepspeed=configs/deepspeed/zero2.json",
        "optim.optimizer=adamw",
    )
    proc = _launch(1, overrides, torch_extensions_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "1 rank(s), DeepSpeed configs/deepspeed/zero2.json" in proc.stderr
    assert (out / "checkpoint-1" / "train_state.json").is_file() and (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_zero3_saves_a_consolidated_16_bit_model(synth_dir, tmp_path, torch_extensions_dir):
    out = tmp_path / "run"
    overrides = loop_overrides(
        synth_dir,
        out,
        "optim.max_steps=2",
        "optim.batch_size=2",
        "checkpoint.every_steps=0",
        "distributed.deepspeed=configs/deepspeed/zero3.json",
        "optim.optimizer=adamw",
        "distributed.mixed_precision=bf16",
        "distributed.gradient_checkpointing=true",
    )
    proc = _launch(1, overrides, torch_extensions_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = load_file(out / "model.safetensors")
    floats = {k: v for k, v in saved.items() if v.is_floating_point()}
    assert {v.dtype for v in floats.values()} == {torch.bfloat16}  # gathered from the partitions, in 16 bit
    model = load_model(out)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in saved.items()}
    assert all(v.numel() > 0 for v in saved.values())
