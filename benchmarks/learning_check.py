"""Learning check: does the tiny model learn every question type of the synthetic set above chance on a CPU?

For each model (the tiny Video-Panda, and the ablation without any temporal modelling: no LSTE, no GSTRA,
``configs/ablations/tiny_no_lste_gstra.yaml``), on one synthetic VideoQA set (3200 training clips, 1200 held-out
questions):

1. run the quickstart pipeline (``videopanda.quickstart.run``) on the same data: ``configs/train/tiny_prealign.yaml``
   then ``configs/train/tiny_finetune.yaml`` exactly as configured (steps, batch, learning rates; only the data
   root, the output folders and the model YAML are set here), then greedy answers, offline exact-match judging;
2. print accuracy per question type against its chance level, and the wall time of each model.

A model passes when every question type is above chance by at least ``--margin`` points. Run it on an otherwise
idle machine (the time column is what it measures); pin two cores with ``taskset -c 0,1`` to reproduce the
2-core setting::

    taskset -c 0,1 python benchmarks/learning_check.py [--out runs/learning_check] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
MODELS = {
    "Video-Panda tiny": "configs/model/tiny.yaml",
    "no LSTE, no GSTRA": "configs/ablations/tiny_no_lste_gstra.yaml",
}


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
    times = [r["timings_s"] for r in rows.values()]
    minutes = [f"{t['train_s'] / 60:.1f} / {(t['train_s'] + t['eval_s']) / 60:.1f}" for t in times]
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
    from videopanda.quickstart import run
    from videopanda.utils.logging import setup_logging

    setup_logging()
    out = Path(args.out)
    data = out / "data"  # synthesised by the first run (the quickstart's sizes), shared by both models
    rows = {}
    for i, (name, model_config) in enumerate(MODELS.items()):
        if args.only and name != args.only:
            continue
        extra = {"prealign": args.prealign, "finetune": args.finetune}
        rows[name] = run(out / f"model{i}", seed=args.seed, progress=False, model_config=str(REPO / model_config),
                         data=data, overrides=extra)  # fmt: skip
    chance = json.loads((data / "chance.json").read_text())
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
