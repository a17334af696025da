"""Judge profiles (pinned, named, validated), the offline exact judge end to end, and the results tables."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.eval.conftest import REPO, qa_predictions, read_rows, write_jsonl
from videopanda.config import ConfigError, load_config
from videopanda.eval.__main__ import main
from videopanda.eval.aggregate import aggregate, write_results
from videopanda.eval.judge.profiles import JudgeProfile, load_profile

PROFILES = sorted((REPO / "configs" / "eval" / "judges").glob("*.yaml"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_shipped_profiles_load_pinned_and_named_after_their_file(path):
    profile = load_config(JudgeProfile, path)
    assert profile.name == path.stem and profile.temperature == 0.0
    if profile.provider == "openai_compatible":
        assert len(profile.model_revision) == 40  # a full commit hash
    assert load_profile(path.stem).model == profile.model  # found by name too


def test_profiles_refuse_moving_aliases_and_unpinned_open_models(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nprovider: openai\nmodel: gpt-4o-mini\n")
    with pytest.raises(ConfigError, match="moving alias"):
        load_config(JudgeProfile, path)
    path.write_text("name: x\nprovider: openai_compatible\nmodel: Qwen/Qwen2.5-7B-Instruct\nbase_url: http://h/v1\n")
    with pytest.raises(ConfigError, match="model_revision is required"):
        load_config(JudgeProfile, path)
    with pytest.raises(FileNotFoundError, match="known profiles: .*exact"):
        load_profile("gpt-5-the-judge")


def _synthetic(tmp_path: Path, n: int, wrong: tuple[int, ...], errors: tuple[int, ...]) -> Path:
    run = tmp_path / "run" / "synthetic_qa"
    write_jsonl(run / "predictions.jsonl", qa_predictions(n, wrong=wrong, errors=errors, task="synthetic_qa"))
    (run / "run.json").write_text(json.dumps({"task": "synthetic_qa", "num_records": n + 2, "ids": []}))
    return run


def test_exact_judge_offline_end_to_end_and_the_results_tables(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = _synthetic(tmp_path, 10, wrong=(1, 2, 7), errors=(4,))
    # No --task (from run.json) and no profile: the synthetic set declares the offline exact judge.
    assert main(["judge", "--predictions", str(run / "predictions.jsonl"), "--no-progress"]) == 0
    rows = read_rows(run / "judge-exact" / "judgments.jsonl")
    assert {r["judge_model"] for r in rows} == {"exact-match"} and {r["prompt"] for r in rows} == {"exact_match@v1"}
    assert sorted(r["id"] for r in rows if r.get("pred") == "no") == ["q1", "q2", "q7"]
    assert main(["aggregate", str(tmp_path / "run"), "--out", str(tmp_path / "results")]) == 0
    res = json.loads((tmp_path / "results" / "results.json").read_text())["results"]
    assert len(res) == 1
    r = res[0]
    # 12 expected (run.json), 10 predicted: 9 judged (6 yes), 1 generation error, 2 missing.
    assert (r["records"], r["judged"], r["unparseable"], r["errored"], r["missing"]) == (12, 9, 0, 1, 2)
    assert r["accuracy"] == round(100 * 6 / 9, 2) and r["accuracy_all"] == 50.0
    assert r["score"] == round(5 * 6 / 9, 4)
    table = list(csv.DictReader(io.StringIO((tmp_path / "results" / "results.csv").read_text())))
    assert table[0]["task"] == "synthetic_qa" and table[0]["judge_model"] == "exact-match"
    assert float(table[0]["accuracy"]) == r["accuracy"]
    md = (tmp_path / "results" / "results.md").read_text()
    assert "| synthetic_qa | qa | 66.67 | 50.00 | 3.33 | 12 | 9 | 0 | 1 | 2 | exact | exact-match |" in md


def test_a_rerun_refuses_judgments_made_for_other_predictions(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = _synthetic(tmp_path, 6, wrong=(1,), errors=(4,))
    predictions = run / "predictions.jsonl"
    assert main(["judge", "--predictions", str(predictions), "--no-progress"]) == 0
    assert main(["judge", "--predictions", str(predictions), "--no-progress"]) == 0  # unchanged: nothing to redo
    for changed in ({"q1": {"pred": "RED."}}, {"q4": {"pred": "blue", "error": None}}):  # a new answer; a fixed video
        rows = [r | changed.get(r["id"], {}) for r in qa_predictions(6, wrong=(1,), errors=(4,), task="synthetic_qa")]
        write_jsonl(predictions, rows)
        capsys.readouterr()
        assert main(["judge", "--predictions", str(predictions), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "1 judgments were made for other predictions" in err and repr(next(iter(changed))) in err


def test_exact_judge_refuses_benchmark_dimensions(tmp_path, capfd):
    write_jsonl(tmp_path / "p.jsonl", [{"id": "a_0", "task": "vcg_temporal", "question": "q", "answer": "a",
                                        "pred": "a", "error": None}])  # fmt: skip
    assert main(["judge", "--predictions", str(tmp_path / "p.jsonl"), "--task", "vcg_temporal", "--profile",
                 "exact"]) == 2  # fmt: skip
    assert "exact judge scores QA tasks only" in capfd.readouterr().err


def _judgments(path: Path, task: str, dim: str, scores: list[float], judge: str = "j1", model: str = "m-0125"):
    rows = [{"id": f"{task}{i}", "task": task, "dimension": dim, "status": "ok", "pred": None, "score": s,
             "judge_profile": judge, "judge_model": model, "judge_model_revision": None, "temperature": 0.0,
             "prompt": f"vcg_{dim}@v1", "prompt_sha256": "x", "prompt_tokens": 10, "completion_tokens": 2}
            for i, s in enumerate(scores)]  # fmt: skip
    write_jsonl(path / "judgments.jsonl", rows)


def test_records_are_never_fewer_than_the_rows_judged(tmp_path):
    """Shard files judged into one folder leave judge_run.json with the last file's count (here 1 of 3 rows)."""
    folder = tmp_path / "run" / "judge-x"
    _judgments(folder, "vcg_temporal", "temporal", [2, 4, 3])
    (folder / "judge_run.json").write_text(json.dumps({"task": "vcg_temporal", "dimensions": ["temporal"],
                                                       "n_expected": 1}))  # fmt: skip
    (entry,) = aggregate([tmp_path / "run"])["results"]
    assert (entry["records"], entry["judged"], entry["missing"], entry["score"]) == (3, 3, 0, 3.0)


def test_benchmark_average_needs_all_five_dimensions_from_one_judge(tmp_path):
    root = tmp_path / "runs"
    _judgments(root / "generic" / "correctness", "vcg_generic", "correctness", [2, 3])
    _judgments(root / "generic" / "detail", "vcg_generic", "detail", [1, 1])
    _judgments(root / "generic" / "context", "vcg_generic", "context", [4, 4])
    _judgments(root / "temporal", "vcg_temporal", "temporal", [2, 2, 5])
    results = aggregate([root])
    assert results["vcg_average"] == []  # consistency missing
    _judgments(root / "consistency", "vcg_consistency", "consistency", [0, 5])
    _judgments(root / "other-judge", "vcg_temporal", "temporal", [5], judge="j2", model="other-2024-01-01")
    results = aggregate([root])
    assert len(results["vcg_average"]) == 1
    avg = results["vcg_average"][0]
    assert avg["scores"] == {"correctness": 2.5, "detail": 1.0, "context": 4.0, "temporal": 3.0, "consistency": 2.5}
    assert avg["average"] == 2.6 and avg["judge_profile"] == "j1"
    temporal = [e for e in results["results"] if e["dimension"] == "temporal"]
    assert sorted((e["judge_model"], e["run"]) for e in temporal) == [("m-0125", "temporal"),
                                                                      ("other-2024-01-01", "other-judge")]  # fmt: skip
    assert all(e["accuracy"] is None for e in temporal)  # no accuracy for score-only dimensions
    paths = write_results(results, tmp_path / "out")
    assert "| j1 (m-0125) | 2.50 | 1.00 | 4.00 | 3.00 | 2.50 | 2.60 |" in paths["md"].read_text()
