"""``videopanda quickstart``: the whole pipeline on the embedded synthetic VideoQA set, on a CPU, in minutes.

1. synthesise the VideoQA set (moving coloured shapes; colour, shape, direction, order and flash-count
   questions) with its own tokenizer;
2. train the tiny model: pre-alignment (STAB + projector + distillation head, LLM frozen), then fine-tuning
   (everything), each with the LM and distillation losses;
3. answer the held-out questions (greedy, batched), judge them offline (normalised exact match), aggregate;
4. print accuracy per question type against its chance level and write plots into the run folder.

``--fast`` is a one-minute version (tiny data, a few steps) used by the tests; its accuracies mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# The full run uses SynthConfig's default sizes and the schedule (steps, epochs, batch, learning rates) of
# configs/train/tiny_{prealign,finetune}.yaml; the fast run shrinks both.
FAST_SIZES = {"train_videos": 24, "eval_videos": 4}
FAST_SCHEDULE = {
    "prealign": ["optim.max_steps=2", "optim.batch_size=4"],
    "finetune": ["optim.max_steps=3", "optim.batch_size=4"],
}


def _stage(config: str, overrides: list[str]):
    from videopanda.config import load_config
    from videopanda.train.config import TrainConfig
    from videopanda.train.loop import train

    out = train(load_config(TrainConfig, CONFIGS / "train" / config, overrides))
    if out is None:  # a max_minutes override stopped the stage: its checkpoint is written, its model is not
        raise RuntimeError(
            f"{config}: stopped by max_minutes before its last step (no final model); run the same command again "
            "to resume it from its checkpoint"
        )
    return out


def run(
    out: Path,
    fast: bool = False,
    seed: int = 0,
    progress: bool = True,
    model_config: str | None = None,
    data: Path | None = None,
    overrides: dict[str, list[str]] | None = None,
) -> dict:
    """Run the quickstart into ``out``; returns the results (also written to ``out/results.json``).

    Args:
        model_config: a model YAML instead of ``configs/model/tiny.yaml`` (e.g. an ablation).
        data: an existing synthetic set to reuse (default: ``out/data``, synthesised when missing).
        overrides: extra dotted overrides per stage, ``{"prealign": [...], "finetune": [...]}`` (tuning).
    """
    from videopanda.data.synth import SynthConfig, generate
    from videopanda.eval.__main__ import main as eval_main
    from videopanda.eval.aggregate import accuracy_by_field

    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.time()
    data = data or out / "data"
    if not (data / "manifest.json").is_file():
        workers = min(4, os.cpu_count() or 1)
        generate(data, SynthConfig(seed=seed, workers=workers, **(FAST_SIZES if fast else {})))
    timings["data_s"] = time.time() - t0

    extra = {stage: [*(FAST_SCHEDULE[stage] if fast else []), *(overrides or {}).get(stage, [])]
             for stage in ("prealign", "finetune")}  # fmt: skip
    common = [
        f"data.root={data}",
        f"logging.progress={str(progress).lower()}",
        f"seed={seed}",
        "checkpoint.every_steps=0",
    ]
    t1 = time.time()
    prealign = out / "prealign"
    if not (prealign / "model.safetensors").is_file():
        # absolute: the stage YAML's own model.config is relative to the repository, not to where this runs
        model = [f"model.config={model_config or CONFIGS / 'model' / 'tiny.yaml'}"]
        _stage(
            "tiny_prealign.yaml",
            [*common, f"output_dir={prealign}", f"model.tokenizer={data / 'tokenizer'}", *model, *extra["prealign"]],
        )
    finetune = out / "finetune"
    if not (finetune / "model.safetensors").is_file():
        _stage(
            "tiny_finetune.yaml", [*common, f"output_dir={finetune}", f"model.init_from={prealign}", *extra["finetune"]]
        )
    timings["train_s"] = time.time() - t1

    t2 = time.time()
    evals = out / "eval"
    quiet = [] if progress else ["--no-progress"]
    for argv in (
        [
            "generate",
            "--model",
            str(finetune),
            "--task",
            "synthetic_qa",
            "--data-root",
            str(data),
            "--out",
            str(evals),
            "--max-new-tokens",
            "8",
            "--batch-size",
            "16",
            *quiet,
        ],
        ["judge", "--predictions", str(evals / "predictions.jsonl"), "--profile", "exact", *quiet],
        ["aggregate", str(evals), "--out", str(out)],
    ):
        code = eval_main(argv)
        if code:
            raise RuntimeError(f"videopanda eval {argv[0]} failed with exit code {code}")
    timings["eval_s"] = time.time() - t2

    chance = json.loads((data / "chance.json").read_text())
    judgments = next(evals.glob("judge-*/judgments.jsonl"))
    per_type = accuracy_by_field(evals / "predictions.jsonl", judgments, "type")
    results = json.loads((out / "results.json").read_text())
    results["per_type"] = {
        t: {**v, "chance": round(100.0 * chance[t]["chance"], 2), "needs_time": chance[t].get("needs_time")}
        for t, v in per_type.items()
    }
    results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    results["fast"] = fast
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _plots(out, data, results)
    return results


def _plots(out: Path, data: Path, results: dict) -> None:
    from videopanda.model import load_model, parameter_counts
    from videopanda.plots import (
        plot_accuracy_vs_chance,
        plot_curves,
        plot_efficiency,
        read_efficiency_csv,
        read_tensorboard_scalars,
    )

    curves = {}
    for stage in ("prealign", "finetune"):
        for tag, points in read_tensorboard_scalars(out / stage).items():
            if tag.startswith("loss/"):
                curves[f"{stage} {tag}"] = points
    if curves:
        plot_curves(curves, out / "plots" / "training_curves.png")
    plot_accuracy_vs_chance(results["per_type"], out / "plots" / "accuracy_vs_chance.png")
    # The efficiency chart: the paper's reported numbers plus this run, as separate labelled series.
    counts = parameter_counts(load_model(out / "finetune"))
    total = sum(v["records"] for v in results["per_type"].values())
    acc = sum(v["correct"] for v in results["per_type"].values()) / max(1, total) * 100
    train_samples = len(json.loads((data / "train.json").read_text()))
    rows = read_efficiency_csv(REPO / "results" / "efficiency.csv")
    rows.append(
        {
            "series": "videopanda (this run)",
            "model": "tiny Video-Panda",
            "visual_params_m": counts["stab+projector"] / 1e6,
            "accuracy": acc,
            "train_samples_k": train_samples / 1000,
            "benchmark": "synthetic QA, exact match",
        }
    )
    with (out / "efficiency.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_efficiency(rows, out / "plots" / "efficiency.png")


def results_table(results: dict) -> str:
    """Markdown table: accuracy per question type against chance."""
    lines = ["| question type | needs time | accuracy % | chance % | records |", "|---|---|---|---|---|"]
    for t, v in results["per_type"].items():
        lines.append(
            f"| {t} | {'yes' if v.get('needs_time') else 'no'} | {v['accuracy']:.1f} | {v['chance']:.1f} "
            f"| {v['records']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videopanda quickstart", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/quickstart", help="run folder (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="a one-minute smoke run (meaningless accuracies)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from videopanda.utils.logging import setup_logging

    setup_logging(logging.INFO)
    out = Path(args.out)
    start = time.time()
    results = run(out, fast=args.fast, seed=args.seed, progress=not args.no_progress)
    sys.stdout.write("\n" + results_table(results) + "\n\n")
    sys.stdout.write(
        f"Finished in {(time.time() - start) / 60:.1f} min. Run folder: {out.resolve()}\n"
        f"  results: {out / 'results.json'}, {out / 'results.md'}; plots: {out / 'plots'}/\n"
        f"  chat with the model: videopanda chat --model {out / 'finetune'} --video "
        f"{out / 'data' / 'videos' / 'eval_00000.mp4'}\n"
    )
    return 0
