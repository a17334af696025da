"""``videopanda summary``: build a model from its config and show what it is made of.

Prints parameter counts per part (each STAB block, the projector, the LLM), the number of LLM tokens each frame
of a letterboxed video becomes, and the time of one forward pass on a random video plus a short prompt holding
the right number of placeholders. Models too large for a quick CPU pass (the 7B config) are built on the meta
device and only counted::

    videopanda summary                                                  # the tiny model, with a forward pass
    videopanda summary --model-config configs/model/videopanda-7b.yaml  # counts only (meta device)
    videopanda summary --frames 16 --aspect 4:3 --set video_tokenizer.lste=false
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from videopanda.config import ConfigError, load_config

from .build import build_model, parameter_counts
from .config import ModelConfig, VideoTokenizerConfig
from .geometry import frame_token_counts
from .modeling_videopanda import VideoPandaForConditionalGeneration

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "model" / "tiny.yaml"
PROMPT_BEFORE, PROMPT_AFTER = 12, 6  # text tokens around the video placeholders of the test prompt


def letterbox_box(cfg: VideoTokenizerConfig, aspect: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box ``(top, bottom, left, right)`` of a frame of aspect ``w:h`` letterboxed on the student canvas.

    Follows the data pipeline's rule (reference §6.5): the content spans ``2 * ceil(g/2 * short/long)`` patches
    along its short side, centred on an even patch offset, and the full canvas along its long side.
    """
    w, h = aspect
    half = cfg.grid_size // 2  # the teacher-scale grid (16 at 448 px)
    val = math.ceil(half * min(w, h) / max(w, h))
    start, span = 2 * ((half - val) // 2) * cfg.patch_size, 2 * val * cfg.patch_size
    full = cfg.image_size
    if w >= h:
        return start, start + span, 0, full
    return 0, full, start, start + span


def random_video(cfg: VideoTokenizerConfig, frames: int, aspect: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(1, frames, 4, H, W) random normalised RGB inside the letterbox box, content mask as the 4th channel."""
    gen = torch.Generator().manual_seed(seed)
    size = cfg.image_size
    video = torch.zeros(1, frames, 4, size, size)
    top, bottom, left, right = letterbox_box(cfg, aspect)
    video[:, :, :3, top:bottom, left:right] = torch.randn(1, frames, 3, bottom - top, right - left, generator=gen)
    video[:, :, 3, top:bottom, left:right] = 1.0
    return video


def part_counts(model: VideoPandaForConditionalGeneration) -> list[tuple[str, int, int]]:
    """``(name, parameters, indent)`` rows: STAB blocks, projector, LLM parts, totals."""

    def n(module) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    totals = parameter_counts(model)
    stab = model.model.video_tokenizer
    lm = model.model.language_model
    rows = [("STAB (video tokenizer)", totals["stab"], 0)]
    for name in ("patch_embedding", "lste", "gstra", "lsd", "fsra", "fusion"):
        module = getattr(stab, name)
        rows.append((name if module is not None else f"{name} (off)", n(module), 1))
    if stab.split_embedding is not None:
        rows.append(("split_embedding", stab.split_embedding.numel(), 1))
    rows.append((f"projector ({model.config.projector_type})", totals["projector"], 0))
    rows.append(("STAB + projector", totals["stab+projector"], 0))
    rows.append(("LLM", totals["llm"], 0))
    rows.append(("embed_tokens", n(lm.embed_tokens), 1))
    rows.append((f"decoder layers ({len(lm.layers)})", n(lm.layers), 1))
    rows.append(("final norm", n(lm.norm), 1))
    rows.append(("lm_head", model.lm_head.weight.numel(), 1))
    rows.append(("total", totals["total"], 0))
    return rows


def _aspect(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.split(":"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected W:H such as 16:9, got {text!r}") from err
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"aspect sides must be positive, got {text!r}")
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="videopanda summary",
        description=(
            "Build a Video-Panda model from a ModelConfig YAML and print parameter counts per part, visual tokens "
            "per frame of a letterboxed video, and the time of one forward pass (skipped for models larger than "
            "--max-forward-params, which are built on the meta device)."
        ),
    )
    p.add_argument("--model-config", default=str(DEFAULT_CONFIG), help="ModelConfig YAML (default: the tiny model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--frames", type=int, default=8, help="frames of the test video (a multiple of the chunk size)")
    p.add_argument("--aspect", type=_aspect, default=(16, 9), help="aspect W:H of the test video (default 16:9)")
    p.add_argument(
        "--max-forward-params",
        type=float,
        default=2e9,
        help="larger models are only counted, on the meta device (default 2e9)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``videopanda summary``; returns the exit code (2 on a bad config or argument)."""
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(ModelConfig, args.model_config, args.overrides)
    except ConfigError as err:
        sys.stderr.write(f"videopanda summary: {err}\n")
        return 2
    stab_cfg = cfg.video_tokenizer
    if args.frames < 1 or (args.frames > 1 and args.frames % stab_cfg.chunk_size):
        sys.stderr.write(
            f"videopanda summary: --frames {args.frames} is not a multiple of video_tokenizer.chunk_size="
            f"{stab_cfg.chunk_size}\n"
        )
        return 2

    model = build_model(cfg, device="meta")
    total = parameter_counts(model)["total"]
    run_forward = total <= args.max_forward_params
    if run_forward:
        torch.manual_seed(0)
        model = build_model(cfg).eval()

    text = model.config.text_config
    print(f"Model config: {args.model_config}" + (f" + {' '.join(args.overrides)}" if args.overrides else ""))
    print(
        f"  STAB width {stab_cfg.width}, {stab_cfg.num_heads} heads, {stab_cfg.image_size} px canvas, patch "
        f"{stab_cfg.patch_size}, chunks of {stab_cfg.chunk_size} frames; LLM {text.num_hidden_layers} layers x "
        f"{text.hidden_size}, vocab {text.vocab_size}; dtype {cfg.dtype}"
        + ("" if run_forward else "; built on the meta device (counts only)")
    )
    print("\nParameters")
    for name, count, indent in part_counts(model):
        print(f"  {'  ' * indent}{name:<{30 - 2 * indent}} {count:>15,}")

    video = random_video(stab_cfg, args.frames, args.aspect)
    counts = frame_token_counts(video[0], stab_cfg.patch_size, stab_cfg.padded_crop, stab_cfg.row_tokens)  # (F,)
    square = frame_token_counts(torch.ones(1, 4, stab_cfg.image_size, stab_cfg.image_size), stab_cfg.patch_size,
                                stab_cfg.padded_crop, stab_cfg.row_tokens)  # fmt: skip
    w, h = args.aspect
    print(f"\nVisual tokens per frame ({args.frames} frames, {w}:{h} letterbox): {' '.join(map(str, counts.tolist()))}")
    print(f"  video total {int(counts.sum())}; a square frame is {int(square[0])} tokens")

    if not run_forward:
        print(f"\nNo forward pass: {total:,} parameters > --max-forward-params {args.max_forward_params:.3g}")
        return 0
    gen = torch.Generator().manual_seed(0)
    n_visual = int(counts.sum())
    text_ids = torch.randint(3, text.vocab_size, (PROMPT_BEFORE + PROMPT_AFTER,), generator=gen).tolist()
    ids = [text.bos_token_id or 1] + text_ids[:PROMPT_BEFORE] + [cfg.video_token_id] * n_visual
    ids = torch.tensor([ids + text_ids[PROMPT_BEFORE:]])  # (1, S)
    dtype = next(model.parameters()).dtype
    start = time.perf_counter()
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values_videos=video.to(dtype))
    elapsed = time.perf_counter() - start
    got = out.video_tokens.frame_token_counts
    if not torch.equal(got.cpu(), counts):
        raise RuntimeError(f"STAB token counts {got.tolist()} differ from the geometry's {counts.tolist()}")
    print(
        f"\nForward pass: 1 video x {args.frames} frames + {len(text_ids) + 1} text tokens = sequence {ids.shape[1]}, "
        f"logits {tuple(out.logits.shape)}: {elapsed * 1000:.1f} ms (first call) on {torch.get_num_threads()} "
        "CPU thread(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
