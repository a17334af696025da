"""LSTE memory layout on CPU: the module's channels-last path against the same block on the default layout.

``videopanda.model.lste.LSTE`` runs channels-last (``torch.channels_last_3d``) on CPU because torch's depthwise
Conv3d backward is slow on the default layout there. This prints forward+backward time of one LSTE in training mode
(loss = sum of squares, gradients for the input and every parameter) for:

* **default layout**: ``tests/model/reference_stab.reference_lste``, the block in functional ops on contiguous
  (channels-first) tensors, which is what the module ran before;
* **module (channels-last)**: ``LSTE.forward`` as shipped.

at the tiny config's size (a training micro-batch of 8 videos of 8 frames: 16 chunks of 4 frames, 8x8 patches,
C=128) and at the paper's (one video of 8 frames at 448 px: 2 chunks, 32x32 patches, C=1024). Times are the
minimum over ``--repeats`` runs; the last column is the largest difference of the outputs (same weights, same
input). Measured on 2 cores (torch 2.13): tiny 44.7 against 23.4 ms (1.9x faster), paper 1.05 against 1.41 s
(0.75x: channels-last is slower there, a size that trains on GPUs, which keep the default layout).

    python benchmarks/lste_layout.py [--threads N] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: videopanda/ and tests/ (for the default-layout reference)

from tests.model.reference_stab import reference_lste  # noqa: E402
from videopanda.model.lste import LSTE  # noqa: E402

# name, (B*K, C, T, gh, gw), bottleneck width
SIZES = [
    ("tiny (8 videos x 8 frames, 112 px)", (16, 128, 4, 8, 8), 85),
    ("paper (1 video x 8 frames, 448 px)", (2, 1024, 4, 32, 32), 682),
]


def time_fwd_bwd(fn, x: torch.Tensor, repeats: int) -> float:
    """Minimum wall time in ms of forward + backward of ``fn(x)``."""
    fn(x).square().sum().backward()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).square().sum().backward()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats (the minimum is reported)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"LSTE forward+backward on CPU, {torch.get_num_threads()} threads, fp32, torch {torch.__version__}\n")
    print("| size | default layout ms | module (channels-last) ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|")
    for name, shape, reduced in SIZES:
        lste = LSTE(shape[1], reduced).train()
        x = torch.randn(shape, requires_grad=True)
        default = time_fwd_bwd(lambda v, m=lste: reference_lste(m, v, training=True), x, args.repeats)
        module = time_fwd_bwd(lste, x, args.repeats)
        with torch.no_grad():
            diff = (lste(x) - reference_lste(lste, x, training=True)).abs().max().item()
        print(f"| {name} | {default:.1f} | {module:.1f} | {default / module:.2f}x | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
