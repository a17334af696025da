"""Plots: the paper-style efficiency bubble chart, training curves and per-type accuracy of a run.

    videopanda plot efficiency results/efficiency.csv --out efficiency.png
    videopanda plot run RUN_DIR            # training curves + accuracy per question type, into RUN_DIR/plots/

The efficiency CSV has one row per model: ``series,model,visual_params_m,accuracy,train_samples_k,benchmark``.
``series`` groups the bubbles (e.g. ``paper`` for numbers reported in the Video-Panda paper, ``videopanda`` for
this repository's own measurements); each series gets its own colour and legend entry, so reported and measured
numbers are never mixed up.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

EFFICIENCY_COLUMNS = ("series", "model", "visual_params_m", "accuracy", "train_samples_k", "benchmark")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out: str | Path, dpi: int) -> Path:
    """Write a figure as PNG (creating the folder) and free it."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def read_efficiency_csv(path: str | Path) -> list[dict]:
    """Rows of an efficiency CSV, validated (the error names the file, line and column)."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in EFFICIENCY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(EFFICIENCY_COLUMNS)}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                for key in ("visual_params_m", "accuracy", "train_samples_k"):
                    row[key] = float(row[key])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}:{line}: {key} is not a number ({row.get(key)!r})") from err
            if row["visual_params_m"] <= 0:
                raise ValueError(f"{path}:{line}: visual_params_m must be > 0 for a log scale")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def plot_efficiency(rows: list[dict], out: str | Path, title: str = "Accuracy vs visual parameters") -> Path:
    """Bubble chart: accuracy against visual-parameter count (log x), bubble area ~ training samples."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = sorted({r["series"] for r in rows})
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(series):
        pts = [r for r in rows if r["series"] == name]
        bench = sorted({r["benchmark"] for r in pts})
        ax.scatter(
            [r["visual_params_m"] for r in pts],
            [r["accuracy"] for r in pts],
            s=[max(20.0, 3.0 * r["train_samples_k"]) for r in pts],
            alpha=0.55,
            color=colours(i),
            edgecolors="black",
            label=f"{name} ({', '.join(bench)})",
        )
        for r in pts:
            ax.annotate(
                r["model"], (r["visual_params_m"], r["accuracy"]), fontsize=8, xytext=(5, 4), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_xlabel("visual parameters (M, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title + "\nbubble area ~ training samples (thousands)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, out, dpi=120)


def plot_curves(scalars: dict[str, list[tuple[int, float]]], out: str | Path) -> Path:
    """Training curves: one panel per scalar series (e.g. LM loss and distillation loss)."""
    if not scalars:
        raise ValueError("no training scalars to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(scalars), figsize=(4.5 * len(scalars), 3.5), squeeze=False)
    for ax, (name, points) in zip(axes[0], sorted(scalars.items()), strict=True):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, lw=1.2)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    return _save(plt, fig, out, dpi=110)


def plot_accuracy_vs_chance(per_type: dict[str, dict], out: str | Path, title: str = "Accuracy per question type"):
    """Bars of accuracy per question type with each type's chance level marked.

    Args:
        per_type: ``{type: {"accuracy": float (0-100), "chance": float (0-100)}}``.
    """
    plt = _pyplot()
    names = sorted(per_type)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.8))
    xs = range(len(names))
    ax.bar(xs, [per_type[n]["accuracy"] for n in names], color="tab:green", alpha=0.8, label="accuracy")
    ax.scatter(xs, [per_type[n]["chance"] for n in names], marker="_", s=900, color="black", label="chance")
    ax.set_xticks(list(xs), names, rotation=20, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(plt, fig, out, dpi=110)


def read_tensorboard_scalars(logdir: str | Path, tags: tuple[str, ...] | None = None) -> dict[str, list]:
    """Scalars from every tensorboard event file under ``logdir``: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list] = {}
    for events in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            if tags is None or tag in tags:
                scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(set(v)) for k, v in scalars.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videopanda plot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    eff = sub.add_parser("efficiency", help="bubble chart from an efficiency CSV")
    eff.add_argument("csv", help="CSV with columns " + ",".join(EFFICIENCY_COLUMNS))
    eff.add_argument("--out", default="efficiency.png", help="output PNG (default: %(default)s)")
    eff.add_argument("--title", default="Accuracy vs visual parameters")
    run = sub.add_parser("run", help="training curves and accuracy-vs-chance of a run folder")
    run.add_argument("run_dir", help="a run folder (tensorboard logs under it; results.json from eval aggregate)")
    run.add_argument("--results", default=None, help="results.json with per-type accuracy and chance")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.what == "efficiency":
        out = plot_efficiency(read_efficiency_csv(args.csv), args.out, args.title)
        print(f"wrote {out}")
        return 0
    run_dir = Path(args.run_dir)
    scalars = read_tensorboard_scalars(run_dir)
    losses = {k: v for k, v in scalars.items() if "loss" in k}
    if losses:
        print(f"wrote {plot_curves(losses, run_dir / 'plots' / 'training_curves.png')}")
    else:
        print(f"no loss scalars found under {run_dir}")
    if args.results:
        data = json.loads(Path(args.results).read_text())
        per_type = data.get("per_type") or data
        print(f"wrote {plot_accuracy_vs_chance(per_type, run_dir / 'plots' / 'accuracy_vs_chance.png')}")
    return 0
