"""The README's main job, `videopanda quickstart`, end to end in its --fast form."""

from __future__ import annotations

import json

from videopanda.quickstart import main


def test_quickstart_fast_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # from outside the repository: no path may depend on the working directory
    out = tmp_path / "qs"
    assert main(["--fast", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    chance = json.loads((out / "data" / "chance.json").read_text())
    assert set(results["per_type"]) == set(chance)  # every question type of the set is reported
    for qtype, row in results["per_type"].items():
        assert 0.0 <= row["accuracy"] <= 100.0 and row["records"] >= 1, qtype
        assert row["chance"] == round(100 * chance[qtype]["chance"], 2)
    assert results["results"][0]["judge_model"] == "exact-match"
    for name in ("training_curves.png", "accuracy_vs_chance.png", "efficiency.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG", name
    for stage in ("prealign", "finetune"):
        assert (out / stage / "model.safetensors").is_file() and (out / stage / "config.yaml").is_file()
    printed = capsys.readouterr().out
    assert "| question type |" in printed and f"Run folder: {out.resolve()}" in printed


def test_a_stage_stopped_by_max_minutes_is_an_error_not_a_finished_stage(monkeypatch):
    import pytest

    import videopanda.train.loop as loop
    from videopanda.quickstart import _stage

    monkeypatch.setattr(loop, "train", lambda cfg: None)  # what train() returns after a max_minutes stop
    with pytest.raises(RuntimeError, match="tiny_prealign.yaml: stopped by max_minutes .* run the same command"):
        _stage("tiny_prealign.yaml", [])
