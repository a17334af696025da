"""Two CPU processes under torchrun (gloo): DDP and DeepSpeed ZeRO-2 finish with identical replicas."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.train.conftest import REPO, loop_overrides


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("deepspeed", ["", "configs/deepspeed/zero2.json"], ids=["ddp", "zero2"])
def test_two_process_run_ends_with_identical_weights_on_both_ranks(synth_dir, tmp_path, deepspeed):
    out = tmp_path / "run"
    overrides = loop_overrides(
        synth_dir,
        out,
        "model.config=configs/model/tiny.yaml",
        "model.init_from=",
        "optim.max_steps=3",
        "optim.batch_size=2",
        "checkpoint.every_steps=0",
        "distributed.verify_sync=true",
        f"distributed.deepspeed={deepspeed}",
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=os.environ.get(
        "TORCH_EXTENSIONS_DIR", str(tmp_path / "torch_extensions")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "videopanda.train", "configs/train/tiny_finetune.yaml", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sums = [json.loads((out / f"rank{r}_param_sums.json").read_text()) for r in (0, 1)]
    assert sums[0].keys() == sums[1].keys() and len(sums[0]) > 50
    for key in sums[0]:
        assert sums[0][key] == sums[1][key], key
    assert (out / "model.safetensors").is_file()
    assert "2 rank(s)" in proc.stderr
