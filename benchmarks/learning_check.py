"""Learning check: does the tiny model learn every question type of the synthetic set above chance on a CPU?

For each model (the tiny Video-Panda, and the ablation without any temporal modelling: no LSTE, no GSTRA,
``configs/ablations/tiny_no_lste_gstra.yaml``), on one synthetic VideoQA set (800 training clips, 150 held-out
questions):

1. train ``configs/train/tiny_prealign.yaml`` then ``configs/train/tiny_finetune.yaml`` exactly as configured
   (steps, batch, learning rates; only the data root, the output folders and the model YAML are set here);
2. answer the held-out questions greedily, judge them offline (normalised exact match), aggregate;
3. print accuracy per question type against its chance level, and the wall time of each model.

A model passes when every question type is above chance by at least ``--margin`` points. Run it on an otherwise
idle machine (the time column is what it measures); pin two cores with ``taskset -c 0,1`` to reproduce the
2-core setting::

    taskset -c 0,1 python benchmarks/learning_check.py [--out runs/learning_check] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
MODELS = {
    "Video-Panda tiny": "configs/model/tiny.yaml",
    "no LSTE, no GSTRA": "configs/ablations/tiny_no_lste_gstra.yaml",
}


def train_and_evaluate(out: Path, data: Path, model_config: str, extra: dict[str, list[str]]) -> dict:
    """Both stages, then generate / judge / aggregate; returns per-type accuracies and timings."""
    from videopanda.config import load_config
    from videopanda.eval.__main__ import main as eval_main
    from videopanda.eval.aggregate import accuracy_by_field
    from videopanda.train.config import TrainConfig
    from videopanda.train.loop import train

    common = [f"data.root={data}", "logging.progress=false"]
    t0 = time.time()
    prealign, finetune = out / "prealign", out / "finetune"
    stages = (
        ("tiny_prealign.yaml", [f"output_dir={prealign}", f"model.config={model_config}",
                                f"model.tokenizer={data / 'tokenizer'}", *extra["prealign"]]),
        ("tiny_finetune.yaml", [f"output_dir={finetune}", f"model.init_from={prealign}", *extra["finetune"]]),
    )  # fmt: skip
    for config, overrides in stages:
        train(load_config(TrainConfig, CONFIGS / "train" / config, [*common, *overrides]))
    train_s = time.time() - t0
    evals = out / "eval"
    for argv in (
        ["generate", "--model", str(finetune), "--task", "synthetic_qa", "--data-root", str(data), "--out", str(evals),
         "--max-new-tokens", "8", "--batch-size", "16", "--no-progress"],
        ["judge", "--predictions", str(evals / "predictions.jsonl"), "--profile", "exact", "--no-progress"],
    ):  # fmt: skip
        if eval_main(argv):
            raise RuntimeError(f"videopanda eval {argv[0]} failed")
    judgments = next(evals.glob("judge-*/judgments.jsonl"))
    per_type = accuracy_by_field(evals / "predictions.jsonl", judgments, "type")
    return {"per_type": per_type, "train_min": train_s / 60, "total_min": (time.time() - t0) / 60}


def table(rows: dict[str, dict], chance: dict, margin: float) -> str:
    names = list(rows)
    lines = [
        "| question type | needs time | chance % | " + " | ".join(f"{n} %" for n in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for qtype, info in chance.items():
        cells = [f"{rows[n]['per_type'][qtype]['accuracy']:.1f}" for n in names]
        lines.append(f"| {qtype} | {'yes' if info['needs_time'] else 'no'} | {100 * info['chance']:.1f} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    passed = [all(r["per_type"][q]["accuracy"] >= 100 * c["chance"] + margin for q, c in chance.items()) for r in
              rows.values()]  # fmt: skip
    lines.append(f"| all types >= chance + {margin:g} | | | " + " | ".join("yes" if p else "no" for p in passed) + " |")
    minutes = [f"{r['train_min']:.1f} / {r['total_min']:.1f}" for r in rows.values()]
    lines.append("| minutes (train / train + eval) | | | " + " | ".join(minutes) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/learning_check", help="run folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic set")
    parser.add_argument("--margin", type=float, default=10.0, help="points above chance that count as learned")
    parser.add_argument("--only", choices=list(MODELS), help="run one model only")
    parser.add_argument("--prealign", nargs="*", default=[], help="extra overrides of tiny_prealign (tuning)")
    parser.add_argument("--finetune", nargs="*", default=[], help="extra overrides of tiny_finetune (tuning)")
    args = parser.parse_args()
    from videopanda.data.synth import SynthConfig, generate
    from videopanda.utils.logging import setup_logging

    setup_logging()
    out = Path(args.out)
    data = out / "data"
    if not (data / "manifest.json").is_file():
        generate(data, SynthConfig(seed=args.seed, train_videos=800, eval_videos=75))
    chance = json.loads((data / "chance.json").read_text())
    rows = {}
    for i, (name, model_config) in enumerate(MODELS.items()):
        if args.only and name != args.only:
            continue
        extra = {"prealign": args.prealign, "finetune": args.finetune}
        rows[name] = train_and_evaluate(out / f"model{i}", data, model_config, extra)
    result = table(rows, chance, args.margin)
    threads = torch.get_num_threads()
    changed = " ".join([*args.prealign, *args.finetune]) or "the tiny configs as they are"
    header = f"Learning check: synthetic VideoQA (seed {args.seed}), {threads} CPU threads, {changed}"
    sys.stdout.write(f"\n{header}\n\n{result}\n")
    (out / "learning_check.md").write_text(f"{header}\n\n{result}\n")
    (out / "learning_check.json").write_text(json.dumps({"chance": chance, "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
