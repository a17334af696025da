"""Aggregate judgments into metrics: ``results.json`` plus a Markdown and a CSV table across tasks.

One table row per judgments file and dimension:

* ``records``: predictions expected (from ``judge_run.json``; else the rows present);
* ``judged`` (replies that parsed), ``unparseable``, ``errored`` (generation failed, not judged) and ``missing``
  (no row yet: an unfinished judge run or failed requests);
* ``accuracy`` = yes / judged, in percent (the reference's yes / (yes + no)); ``accuracy_all`` = yes / records,
  counting unparseable, errored and missing records as wrong; QA dimensions only;
* ``score``: mean score over judged rows (0-5, not truncated to an integer as the reference did);
* the judge: profile, model, revision and prompt version, so no number ever travels without its judge.

When one judge profile has exactly one row for each of the five Video-ChatGPT dimensions, their mean is reported
as ``vcg_average``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from pathlib import Path

from .records import RecordError, read_json, read_jsonl, write_json

logger = logging.getLogger(__name__)

VCG_DIMENSIONS = ("correctness", "detail", "context", "temporal", "consistency")
COLUMNS = (
    "task", "dimension", "accuracy", "accuracy_all", "score", "records", "judged", "unparseable", "errored",
    "missing", "judge_profile", "judge_model", "judge_model_revision", "prompt", "run",
)  # fmt: skip


def find_judgments(paths: list[str | Path]) -> list[Path]:
    """``judgments.jsonl`` files: given directly, or found recursively under given folders (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            hits = sorted(p.rglob("judgments.jsonl"))
            if not hits:
                raise FileNotFoundError(f"{p}: no judgments.jsonl under this folder")
            found += hits
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    return unique


def _run_label(path: Path, files: list[Path]) -> str:
    """A short name of a judgments file's folder: relative to the inputs' common folder (or its grandparent)."""
    root = Path(os.path.commonpath([f.parent for f in files])) if len(files) > 1 else path.parent.parent
    rel = os.path.relpath(path.parent, root)
    return path.parent.name if rel == "." else Path(rel).as_posix()


def summarise_file(path: Path, label: str) -> list[dict]:
    """Metrics of one judgments file, one dict per dimension."""
    rows = read_jsonl(path)
    meta_path = path.with_name("judge_run.json")
    meta = read_json(meta_path) if meta_path.is_file() else {}
    by_dim: dict[str, list[dict]] = defaultdict(list)
    for i, row in enumerate(rows):
        if "dimension" not in row or "status" not in row:
            raise RecordError(f"{path}: row {i + 1} is not a judgment (no dimension/status)")
        by_dim[row["dimension"]].append(row)
    dims = list(meta.get("dimensions") or by_dim)
    out = []
    for dim in dims:
        drows = by_dim.get(dim, [])
        ok = [r for r in drows if r["status"] == "ok"]
        unparseable = sum(r["status"] == "unparseable" for r in drows)
        errored = sum(r["status"] == "prediction_error" for r in drows)
        unknown = len(drows) - len(ok) - unparseable - errored
        if unknown:
            raise RecordError(f"{path}: {unknown} rows of dimension {dim} have an unknown status")
        # never fewer than the rows judged: judge_run.json of a folder that several shard files were judged
        # into holds the last file's count
        records = max(int(meta.get("n_expected", 0)), len(drows))
        missing = max(0, records - len(drows))
        yes = sum(r.get("pred") == "yes" for r in ok)
        first = drows[0] if drows else {}
        qa = dim == "qa"
        out.append(
            {
                "task": meta.get("task") or first.get("task"),
                "dimension": dim,
                "accuracy": round(100.0 * yes / len(ok), 2) if qa and ok else None,
                "accuracy_all": round(100.0 * yes / records, 2) if qa and records else None,
                "score": round(sum(float(r["score"]) for r in ok) / len(ok), 4) if ok else None,
                "records": records,
                "judged": len(ok),
                "unparseable": unparseable,
                "errored": errored,
                "missing": missing,
                "yes": yes if qa else None,
                "no": len(ok) - yes if qa else None,
                "judge_profile": first.get("judge_profile") or meta.get("judge", {}).get("name"),
                "judge_model": first.get("judge_model") or meta.get("judge", {}).get("model"),
                "judge_model_revision": first.get("judge_model_revision"),
                "judge_response_models": sorted(
                    {str(r["judge_response_model"]) for r in ok if r.get("judge_response_model")}
                ),
                "prompt": first.get("prompt"),
                "prompt_tokens": sum(r.get("prompt_tokens") or 0 for r in drows),
                "completion_tokens": sum(r.get("completion_tokens") or 0 for r in drows),
                "run": label,
                "judgments": str(path),
            }
        )
        if missing:
            logger.warning("%s: %s: %d of %d records have no judgment yet", path, dim, missing, records)
    return out


def vcg_averages(entries: list[dict]) -> list[dict]:
    """Mean of the five Video-ChatGPT dimension scores, per judge profile that has each exactly once."""
    by_judge: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for e in entries:
        if e["dimension"] in VCG_DIMENSIONS:
            by_judge[e["judge_profile"]][e["dimension"]].append(e)
    out = []
    for judge, dims in by_judge.items():
        if any(len(dims.get(d, [])) != 1 or dims[d][0]["score"] is None for d in VCG_DIMENSIONS):
            logger.info("no vcg_average for judge %s: needs each of %s exactly once", judge, ", ".join(VCG_DIMENSIONS))
            continue
        scores = {d: dims[d][0]["score"] for d in VCG_DIMENSIONS}
        out.append(
            {
                "judge_profile": judge,
                "judge_model": dims["correctness"][0]["judge_model"],
                "scores": scores,
                "average": round(sum(scores.values()) / len(scores), 4),
            }
        )
    return out


def aggregate(paths: list[str | Path]) -> dict:
    """Metrics of every judgments file under ``paths`` (see the module docstring)."""
    files = find_judgments(paths)
    entries = []
    for f in files:
        entries += summarise_file(f, _run_label(f, files))
    return {"results": entries, "vcg_average": vcg_averages(entries), "inputs": [str(f) for f in files]}


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown_table(results: dict) -> str:
    """The results as a Markdown table (plus the VCG averages, if any)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for e in results["results"]:
        lines.append("| " + " | ".join(_fmt(e.get(c)) for c in COLUMNS) + " |")
    if results["vcg_average"]:
        lines += ["", "| judge | " + " | ".join(VCG_DIMENSIONS) + " | average |",
                  "|---|" + "---|" * (len(VCG_DIMENSIONS) + 1)]  # fmt: skip
        for v in results["vcg_average"]:
            cells = [_fmt(v["scores"][d]) for d in VCG_DIMENSIONS]
            judge = f"{v['judge_profile']} ({v['judge_model']})"
            lines.append(f"| {judge} | " + " | ".join(cells) + f" | {_fmt(v['average'])} |")
    return "\n".join(lines) + "\n"


def csv_table(results: dict) -> str:
    """The results as CSV, one row per file and dimension."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for e in results["results"]:
        writer.writerow({c: "" if e.get(c) is None else e[c] for c in COLUMNS})
    return buf.getvalue()


def write_results(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.csv`` to ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md", "csv": out_dir / "results.csv"}
    write_json(paths["json"], results)
    paths["md"].write_text(markdown_table(results), encoding="utf-8")
    paths["csv"].write_text(csv_table(results), encoding="utf-8")
    return paths


def accuracy_by_field(predictions: str | Path, judgments: str | Path, field: str = "type") -> dict[str, dict]:
    """QA accuracy broken down by a field of the answer records (e.g. the synthetic set's question ``type``).

    Joins judgment rows (dimension ``qa``) to prediction rows by record id; the field is read from the
    prediction's ``meta`` (the answer file's extra fields). Records that were not judged ``ok`` count as wrong
    here (``accuracy_all`` convention), so nothing silently leaves the denominator.

    Returns:
        ``{value: {"accuracy": %, "correct": n, "records": n}}``.
    """
    meta = {str(r["id"]): (r.get("meta") or {}).get(field) for r in read_jsonl(predictions)}
    missing = sorted(k for k, v in meta.items() if v is None)
    if missing:
        raise RecordError(f"{predictions}: {len(missing)} record(s) have no meta.{field} (e.g. {missing[0]!r})")
    correct: dict[str, int] = defaultdict(int)
    for row in read_jsonl(judgments):
        if row.get("dimension") == "qa" and row.get("status") == "ok" and row.get("pred") == "yes":
            correct[meta[str(row["id"])]] += 1
    totals: dict[str, int] = defaultdict(int)
    for value in meta.values():
        totals[value] += 1
    return {
        v: {"accuracy": round(100.0 * correct[v] / n, 2), "correct": correct[v], "records": n}
        for v, n in sorted(totals.items())
    }
