"""``videopanda data``: synthesise the synthetic VideoQA set, or validate an annotation file.

videopanda data synth --out DIR [--seed N] [--train-videos N] [--eval-videos N] [--workers N] [--scene-weights M O F]
                      [--static-first P] [--shape-share P]
videopanda data check FILE [FILE ...] [--media-root DIR] [--no-media-check]
"""

from __future__ import annotations

import argparse
import sys

from videopanda.utils.logging import setup_logging

from .synth import SynthConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videopanda data", description="Data tools for videopanda.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write the synthetic VideoQA set (videos, train/eval JSON, tokenizer)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    synth.add_argument(
        "--train-videos", type=int, default=SynthConfig.train_videos, help="training clips (default %(default)s)"
    )
    synth.add_argument(
        "--eval-videos",
        type=int,
        default=SynthConfig.eval_videos,
        help="evaluation clips, 2 questions each (default %(default)s)",
    )
    synth.add_argument(
        "--frames", type=int, default=SynthConfig.frames, help="frames per clip, a multiple of 8 (default %(default)s)"
    )
    synth.add_argument("--fps", type=int, default=SynthConfig.fps, help="frame rate of the clips (default %(default)s)")
    synth.add_argument(
        "--vocab-size",
        type=int,
        default=SynthConfig.vocab_size,
        help="tokenizer vocabulary bound (default %(default)s)",
    )
    synth.add_argument(
        "--workers", type=int, default=SynthConfig.workers, help="encoding processes (default %(default)s)"
    )
    synth.add_argument(
        "--scene-weights",
        type=float,
        nargs=3,
        metavar=("MOTION", "ORDER", "FLASH"),
        default=SynthConfig.train_scene_weights,
        help="relative frequency of the three training scene kinds; evaluation stays balanced (default %(default)s)",
    )
    synth.add_argument(
        "--static-first",
        type=float,
        default=SynthConfig.train_static_first,
        metavar="P",
        help="share of training records that open with a colour or shape question before the temporal one; the "
        "others ask the temporal question alone (default %(default)s)",
    )
    synth.add_argument(
        "--shape-share",
        type=float,
        default=SynthConfig.train_shape_share,
        metavar="P",
        help="share of those opening questions that ask the shape, the rest ask the colour (default %(default)s)",
    )
    check = sub.add_parser("check", help="validate LLaVA-format annotation files and print a report")
    check.add_argument("files", nargs="+", help="JSON or JSONL annotation files")
    check.add_argument(
        "--media-root", default=None, help="folder the media paths are relative to (default: the file's folder)"
    )
    check.add_argument("--no-media-check", action="store_true", help="do not look for the media files")
    check.add_argument("--max-problems", type=int, default=50, help="problems to list (default 50)")
    return parser


def synth_config(args: argparse.Namespace) -> SynthConfig:
    """The SynthConfig of parsed ``synth`` arguments (raises ValueError on a bad size or mix)."""
    return SynthConfig(
        seed=args.seed,
        train_videos=args.train_videos,
        eval_videos=args.eval_videos,
        frames=args.frames,
        fps=args.fps,
        vocab_size=args.vocab_size,
        workers=args.workers,
        train_scene_weights=tuple(args.scene_weights),
        train_static_first=args.static_first,
        train_shape_share=args.shape_share,
    )


def _synth(args: argparse.Namespace) -> int:
    from .synth import generate

    try:
        cfg = synth_config(args)
    except ValueError as err:  # a bad size or mix: say which, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but the CLI works without it
        tqdm = None
    bar = tqdm(total=cfg.train_videos + cfg.eval_videos, unit="video", desc="synth") if tqdm else None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    manifest = generate(args.out, cfg, progress)
    if bar is not None:
        bar.close()
    counts = manifest["counts"]
    print(
        f"wrote {counts['train_videos']} training clips ({counts['train_turns']} turns), {counts['eval_videos']} "
        f"evaluation clips ({counts['eval_questions']} questions) and a {counts['vocab_size']}-token tokenizer to "
        f"{args.out}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from .errors import DataError
    from .records import ValidationReport, load_records

    report = ValidationReport()
    for path in args.files:
        try:
            _, rep = load_records(path, args.media_root, check_media=not args.no_media_check)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        report.merge(rep)
    print(report.format(args.max_problems))
    return 1 if report.problems else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    if args.command == "synth":
        return _synth(args)
    return _check(args)


if __name__ == "__main__":
    sys.exit(main())
