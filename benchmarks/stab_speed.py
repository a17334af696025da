"""STAB speed benchmark: the encoder-free STAB against a ViT-L/14 encoder and against a per-frame loop, on CPU.

For one video of 8 frames, at batch 1 and batch 8 (videos):

* **STAB + projector (batched)**: ``VideoTokenizer`` + ``mlp2x_gelu`` projector at the paper's size (C=1024,
  448 px, patch 14, chunks of 4, LLM width 4096), square frames (2184 tokens per video);
* **STAB + projector (literal per-frame)**: the same weights through ``tests/model/reference_stab.py``, a literal
  transcription of the reference's loop over chunks and frames (reference.md §1.4), projector applied per frame as
  the reference does;
* **ViT-L/14 (224 px)**: the encoder-based alternative (Video-LLaVA / Video-ChatGPT style), a
  ``transformers.CLIPVisionModel`` built from config (hidden 1024, 24 layers, 16 heads, patch 14, image 224,
  random weights), applied to the 8 frames of each video; encoder only, all 24 layers.

Columns: parameters, forward GFLOPs (matmuls and convolutions, counted by ``torch.utils.flop_counter``), forward
time and forward+backward time (loss = mean of the outputs; gradients for every parameter). Everything runs in
fp32 in eval mode (dropout off, BatchNorm on running statistics: the literal loop supports nothing else), so the
three do the same work they would at inference. The first (FLOP-counting) pass of each model is the warm-up.

Times are the minimum over ``--repeats`` runs (3 at batch 1, ``--repeats-large`` 1 at batch 8): other processes
on a shared machine only ever add time. Run time on 2 idle cores, dominated by ViT-L/14 (1.2 TFLOPs per video):
``--full`` (everything) 11 min; ``--quick`` (batch 1 only) and the default (+ batch 8 forward of all three and
forward+backward of the batched STAB) are subsets of it. The ViT's batch-8 backward runs as 8 accumulated
micro-batches of one video: its activations for 64 frames at once need ~24 GB.

    python benchmarks/stab_speed.py [--quick | --full] [--threads N] [--repeats N]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: videopanda/ and tests/ (for the literal per-frame STAB)

from transformers import CLIPVisionConfig, CLIPVisionModel  # noqa: E402

from tests.model.reference_stab import reference_stab_forward  # noqa: E402
from videopanda.config import load_config  # noqa: E402
from videopanda.model import ModelConfig, VideoTokenizer  # noqa: E402
from videopanda.model.projector import build_projector  # noqa: E402

FRAMES = 8
STAB_PX, VIT_PX = 448, 224


@dataclass
class Row:
    model: str
    batch: int
    params: int
    gflops: float
    fwd_ms: float | None
    fwd_bwd_ms: float | None
    note: str = ""


class Candidate:
    """A model under test: builds its input for a batch of videos and runs forward returning one tensor."""

    def __init__(self, name: str, modules: list[nn.Module], make_input: Callable[[int], torch.Tensor], fn):
        self.name, self.modules, self.make_input, self.fn = name, modules, make_input, fn

    @property
    def params(self) -> int:
        return sum(p.numel() for m in self.modules for p in m.parameters())

    def zero_grad(self) -> None:
        for m in self.modules:
            m.zero_grad(set_to_none=True)


def build_candidates(model_config: Path) -> list[Candidate]:
    cfg = load_config(ModelConfig, model_config)
    stab = VideoTokenizer(cfg.video_tokenizer).eval()
    projector = build_projector(cfg.projector, cfg.video_tokenizer.width, cfg.llm["hidden_size"]).eval()

    def videos(batch: int) -> torch.Tensor:
        x = torch.randn(batch, FRAMES, 4, STAB_PX, STAB_PX)  # (B, F, 4, H, W)
        x[:, :, 3] = 1.0  # square frames: no letterbox, 273 tokens per frame
        return x

    literal = inspect.unwrap(reference_stab_forward)  # without its no_grad decorator, so backward works

    vit = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            patch_size=14,
            image_size=VIT_PX,
        )
    ).eval()

    def frames224(batch: int) -> torch.Tensor:
        return torch.randn(batch * FRAMES, 3, VIT_PX, VIT_PX)  # (B*F, 3, 224, 224)

    return [
        Candidate("STAB + projector (batched)", [stab, projector], videos, lambda x: projector(stab(x).tokens)),
        Candidate(
            "STAB + projector (literal per-frame)",
            [stab, projector],
            videos,
            lambda x: torch.cat([projector(t) for t in literal(stab, x)]),
        ),
        Candidate("ViT-L/14 encoder (224 px)", [vit], frames224, lambda x: vit(pixel_values=x).last_hidden_state),
    ]


def count_gflops(c: Candidate, x: torch.Tensor) -> float:
    """Forward GFLOPs. Parameters are frozen meanwhile: no autograd graph is kept (ViT-L/14 on 64 frames would need
    ~24 GB for it), and FlopCounterMode's module tracker, which fails on views of parameters under ``no_grad``, has
    no gradients to hook."""
    params = [p for m in c.modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as counter:
            c.fn(x)
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    return counter.get_total_flops() / 1e9


def time_forward(c: Candidate, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            c.fn(x)
        times.append(time.perf_counter() - start)
    return min(times) * 1000  # the least disturbed run: other processes only ever add time


def time_forward_backward(c: Candidate, x: torch.Tensor, repeats: int, micro_batches: int = 1) -> float:
    times = []
    for _ in range(repeats):
        c.zero_grad()
        start = time.perf_counter()
        for part in x.chunk(micro_batches):  # gradient accumulation when micro_batches > 1
            (c.fn(part).float().mean() / micro_batches).backward()
        times.append(time.perf_counter() - start)
    c.zero_grad()
    return min(times) * 1000  # the least disturbed run: other processes only ever add time


def run(args: argparse.Namespace) -> list[Row]:
    torch.manual_seed(0)
    candidates = build_candidates(args.model_config)
    batches = [1] if args.quick else [1, 8]
    rows = []
    for batch in batches:
        repeats = args.repeats if batch == 1 else args.repeats_large
        for i, c in enumerate(candidates):
            x = c.make_input(batch)
            # ViT-L/14 activations for 64 frames with autograd need ~24 GB: backward goes one video at a time there.
            micro = batch if c.name.startswith("ViT") else 1
            print(f"  {c.name}, batch {batch}: counting FLOPs (warm-up) ...", file=sys.stderr, flush=True)
            gflops = count_gflops(c, x)
            print("    forward ...", file=sys.stderr, flush=True)
            fwd = time_forward(c, x, repeats)
            fwd_bwd, note = None, ""
            if batch == 1 or args.full or i == 0:
                note = f"fwd+bwd as {micro} accumulated micro-batches of 1 video" if micro > 1 else ""
                print("    forward+backward ...", file=sys.stderr, flush=True)
                fwd_bwd = time_forward_backward(c, x, repeats, micro)
            rows.append(Row(c.name, batch, c.params, gflops, fwd, fwd_bwd, note))
            print(f"    {rows[-1]}", file=sys.stderr, flush=True)
            del x
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a / b:.2f}x"


def table(rows: list[Row]) -> str:
    lines = [
        "| model | videos | params (M) | GFLOPs fwd | fwd ms | fwd+bwd ms | fwd vs STAB | fwd+bwd vs STAB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r.batch: r for r in rows if r.model.endswith("(batched)")}
    for r in rows:
        b = base[r.batch]
        lines.append(
            f"| {r.model} | {r.batch} | {r.params / 1e6:.2f} | {r.gflops:,.1f} | {_fmt(r.fwd_ms, ',.0f')} | "
            f"{_fmt(r.fwd_bwd_ms, ',.0f')} | {_ratio(r.fwd_ms, b.fwd_ms)} | {_ratio(r.fwd_bwd_ms, b.fwd_bwd_ms)} |"
        )
    notes = sorted({f"{r.model}, {r.batch} videos: {r.note}" for r in rows if r.note})
    return "\n".join(lines + [""] + [f"* {n}" for n in notes])


def ratios(rows: list[Row]) -> str:
    out = []
    for batch in sorted({r.batch for r in rows}):
        stab, literal, vit = (next(r for r in rows if r.batch == batch and r.model.startswith(p)) for p in
                              ("STAB + projector (batched)", "STAB + projector (literal", "ViT"))  # fmt: skip
        out.append(
            f"{batch} video(s): ViT-L/14 vs STAB+projector: {vit.params / stab.params:.1f}x parameters, "
            f"{vit.gflops / stab.gflops:.1f}x GFLOPs, {_ratio(vit.fwd_ms, stab.fwd_ms)} forward time, "
            f"{_ratio(vit.fwd_bwd_ms, stab.fwd_bwd_ms)} forward+backward time; literal per-frame loop vs batched: "
            f"{_ratio(literal.fwd_ms, stab.fwd_ms)} forward, {_ratio(literal.fwd_bwd_ms, stab.fwd_bwd_ms)} fwd+bwd"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="batch 1 only")
    mode.add_argument("--full", action="store_true", help="also time forward+backward of every model at batch 8")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats at batch 1 (the minimum is reported)")
    p.add_argument("--repeats-large", type=int, default=1, help="timed repeats at batch 8")
    p.add_argument(
        "--model-config", type=Path, default=ROOT / "configs" / "model" / "videopanda-7b.yaml", help="STAB size"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = run(args)
    print(
        f"\nOne video = {FRAMES} frames ({STAB_PX} px for the STAB, {VIT_PX} px for ViT-L/14); CPU, "
        f"{torch.get_num_threads()} threads, fp32, eval mode, torch {torch.__version__}\n"
    )
    print(table(rows))
    print(ratios(rows))
    print(f"\n(benchmark ran {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
