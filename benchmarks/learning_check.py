"""Learning check: does the tiny model learn every question type of the synthetic set above chance on a CPU?

Trains the tiny Video-Panda (pre-alignment, then fine-tuning) on the synthetic VideoQA set, evaluates the held-out
questions with the offline exact-match judge, and does the same for an ablation without any temporal modelling
(no LSTE, no GSTRA: `configs/ablations/tiny_no_lste_gstra.yaml`). Prints accuracy per question type against its
chance level, and the wall time of each model. Both models see the same data (one synthetic set, seed 0).

    python benchmarks/learning_check.py [--out runs/learning_check] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from videopanda.quickstart import run
from videopanda.utils.logging import setup_logging

MODELS = {
    "Video-Panda tiny": None,
    "no LSTE, no GSTRA": "configs/ablations/tiny_no_lste_gstra.yaml",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/learning_check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_logging()
    out = Path(args.out)
    rows = {}
    data = out / "data"  # synthesised by the first run, reused by the second
    for i, (name, model_config) in enumerate(MODELS.items()):
        start = time.time()
        res = run(out / f"model{i}", seed=args.seed, progress=False, model_config=model_config, data=data)
        rows[name] = (res, (time.time() - start) / 60)
    types = list(next(iter(rows.values()))[0]["per_type"])
    header = "| question type | needs time | chance % | " + " | ".join(f"{n} %" for n in rows) + " |"
    lines = [header, "|" + "---|" * (3 + len(rows))]
    first = next(iter(rows.values()))[0]["per_type"]
    for t in types:
        cells = " | ".join(f"{res['per_type'][t]['accuracy']:.1f}" for res, _ in rows.values())
        lines.append(f"| {t} | {'yes' if first[t].get('needs_time') else 'no'} | {first[t]['chance']:.1f} | {cells} |")
    lines.append("| train + eval minutes | | | " + " | ".join(f"{m:.1f}" for _, m in rows.values()) + " |")
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    (out / "learning_check.md").write_text(table + "\n")
    (out / "learning_check.json").write_text(json.dumps({n: r for n, (r, _) in rows.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
