"""``videopanda data``: synthesise the synthetic VideoQA set, or validate an annotation file.

videopanda data synth --out DIR [--seed N] [--train-videos N] [--eval-videos N] [--workers N] [--scene-weights M O F]
                      [--static-first P] [--shape-share P]
videopanda data check FILE [FILE ...] [--media-root DIR] [--no-media-check]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from videopanda.utils.logging import setup_logging

from .synth import SynthConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videopanda data", description="Data tools for videopanda.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write the synthetic VideoQA set (videos, train/eval JSON, tokenizer)")
    synth.add_argument("--out", required=True, help="output folder")
    option = _config_option(synth)
    option("--seed", "seed", "random seed (same seed, same files)")
    option("--train-videos", "train_videos", "training clips")
    option("--eval-videos", "eval_videos", "evaluation clips, 2 questions each")
    option("--frames", "frames", "frames per clip, a multiple of 8")
    option("--fps", "fps", "frame rate of the clips")
    option("--vocab-size", "vocab_size", "tokenizer vocabulary bound")
    option("--workers", "workers", "encoding processes")
    option(
        "--scene-weights",
        "train_scene_weights",
        "relative frequency of the three training scene kinds; evaluation stays balanced",
        type=float,
        nargs=3,
        metavar=("MOTION", "ORDER", "FLASH"),
    )
    option(
        "--static-first",
        "train_static_first",
        "share of training records that open with a colour or shape question before the temporal one; the others "
        "ask the temporal question alone",
        metavar="P",
    )
    option(
        "--shape-share",
        "train_shape_share",
        "share of those opening questions that ask the shape, the rest ask the colour",
        metavar="P",
    )
    check = sub.add_parser("check", help="validate LLaVA-format annotation files and print a report")
    check.add_argument("files", nargs="+", help="JSON or JSONL annotation files")
    check.add_argument(
        "--media-root", default=None, help="folder the media paths are relative to (default: the file's folder)"
    )
    check.add_argument("--no-media-check", action="store_true", help="do not look for the media files")
    check.add_argument("--max-problems", type=int, default=50, help="problems to list (default 50)")
    return parser


def _config_option(parser: argparse.ArgumentParser):
    """``option(flag, field, help, **kw)`` adds a flag that sets SynthConfig's ``field``, with its default and type."""

    def option(flag: str, field: str, help: str, **kwargs) -> None:
        default = getattr(SynthConfig, field)
        kwargs.setdefault("type", type(default))
        parser.add_argument(flag, dest=field, default=default, help=f"{help} (default %(default)s)", **kwargs)

    return option


def synth_config(args: argparse.Namespace) -> SynthConfig:
    """The SynthConfig of parsed ``synth`` arguments (raises ValueError on a bad size or mix)."""
    return SynthConfig(**{f.name: getattr(args, f.name) for f in fields(SynthConfig) if hasattr(args, f.name)})


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
