"""Inference with a tiny saved model on CPU: batched left-padded generation, error rows, kill/resume, shard/merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.eval.assets import write_qa_set, write_tiny_model
from tests.eval.conftest import REPO, read_rows
from videopanda.cli import main as cli_main
from videopanda.eval.__main__ import main

N = 12  # questions (on 6 clips); clip 4 (questions 8, 9) is corrupt, question 11's clip is deleted


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_generate")
    model = write_tiny_model(root / "model")
    data = root / "data"
    answers = write_qa_set(data, N, "Activitynet_Zero_Shot_QA", video_sub="all_test", prefix="v_", unreadable=(8,))
    (data / "Activitynet_Zero_Shot_QA" / "all_test" / "v_clip5.mp4").unlink()  # questions 10 and 11
    return {"model": model, "data": data, "answers": answers}


def _generate(assets, out, *extra, max_new_tokens="40"):
    model, data = str(assets["model"]), str(assets["data"])
    return ["generate", "--model", model, "--task", "activitynet_qa", "--data-root", data, "--out", str(out),
            "--max-new-tokens", max_new_tokens, "--no-progress", *extra]  # fmt: skip


def test_predictions_are_keyed_by_id_with_error_rows_and_batched_equals_one_by_one(assets, tmp_path, capsys):
    assert main(_generate(assets, tmp_path / "b4", "--batch-size", "4")) == 0
    assert "12 written (4 errors)" in capsys.readouterr().out
    rows = read_rows(tmp_path / "b4" / "predictions.jsonl")
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(N)]
    for r in rows:
        assert r["answer"] == assets["answers"][r["id"]]  # joined by id although test_a.json is reversed
        assert r["task"] == "activitynet_qa" and r["video"] == f"clip{int(r['id'][1:]) // 2}"
    bad = {r["id"]: r["error"] for r in rows if r["error"]}
    assert sorted(bad) == ["q10", "q11", "q8", "q9"]
    assert "cannot read video" in bad["q8"] and "v_clip4.mp4" in bad["q8"]
    assert bad["q10"].startswith("VideoNotFound") and "v_clip5.mp4" in bad["q10"]
    assert all(r["pred"] is None for r in rows if r["error"])
    preds = [r["pred"] for r in rows if not r["error"]]
    assert all(isinstance(p, str) for p in preds) and len(set(preds)) == len(preds)  # answers depend on the input
    # Left padding: the same answers whether a record shares its batch with others or not.
    assert main(_generate(assets, tmp_path / "b1", "--batch-size", "1", "--no-prefetch")) == 0
    one = read_rows(tmp_path / "b1" / "predictions.jsonl")
    assert [r["pred"] for r in one] == [r["pred"] for r in rows]
    manifest = json.loads((tmp_path / "b4" / "run.json").read_text())
    assert manifest["ids"] == [f"q{i}" for i in range(N)] and manifest["generation"]["do_sample"] is False
    assert manifest["generation"]["template"] == "v1"
    # The same folder refuses a run with other settings.
    assert main(_generate(assets, tmp_path / "b4", max_new_tokens="7")) == 2
    assert "holds another run" in capsys.readouterr().err


def test_killed_generation_resumes_to_the_output_of_an_uninterrupted_run(assets, tmp_path, capfd):
    # 150 new tokens a batch (the test model never emits </s>) keep a shard busy long enough to be killed.
    args = ("--batch-size", "2", "--num-shards", "2")
    ref = tmp_path / "ref"
    for k in ("0", "1"):
        assert main(_generate(assets, ref, *args, "--shard", k, max_new_tokens="150")) == 0
    assert main(["merge", "--out", str(ref)]) == 0

    out = tmp_path / "killed"
    shard0 = out / "predictions.shard-000-of-002.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "videopanda.eval",
        *_generate(assets, out, *args, "--shard", "0", max_new_tokens="150"),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (shard0.exists() and shard0.read_text().count("\n") >= 2):
            assert proc.poll() is None, "generation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    rows = read_rows(shard0)
    assert 2 <= len(rows) < 6  # killed mid-run (shard 0 holds q0..q5)
    # Keep one row of the finished batch and a torn line, as if the kill hit while the batch was being written.
    shard0.write_text(json.dumps(rows[0]) + "\n" + '{"id": "q1", "task": "activ')
    assert main(_generate(assets, out, *args, "--shard", "1", max_new_tokens="150")) == 0
    assert main(["merge", "--out", str(out)]) == 2  # shard 0 unfinished: merge refuses
    assert "have no prediction yet" in capfd.readouterr().err
    assert main(_generate(assets, out, *args, "--shard", "0", max_new_tokens="150")) == 0
    assert main(["merge", "--out", str(out)]) == 0
    assert (out / "predictions.jsonl").read_bytes() == (ref / "predictions.jsonl").read_bytes()
    merged = read_rows(out / "predictions.jsonl")
    assert [r["id"] for r in merged] == [f"q{i}" for i in range(N)]
    assert len({r["pred"] for r in merged if not r["error"]}) == 8  # distinct answers: a mix-up would show


def test_videopanda_eval_dispatches_here(capsys):
    assert cli_main(["eval", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "activitynet_qa" in out and "v_<video_name>" in out and "vcg_consistency" in out


def test_the_synthetic_set_end_to_end_with_the_offline_judge(tmp_path, monkeypatch, capsys):
    """`videopanda data synth` -> generate (synthetic_qa, and vcg_consistency on its eval/vcg files) -> exact judge."""
    import shutil

    from videopanda.config import load_config
    from videopanda.data.__main__ import main as data_main
    from videopanda.model import ModelConfig, build_model

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "synth"
    assert data_main(["synth", "--out", str(data), "--train-videos", "1", "--eval-videos", "3"]) == 0
    model_dir = tmp_path / "model"
    build_model(load_config(ModelConfig, REPO / "configs" / "model" / "tiny.yaml")).save_pretrained(model_dir)
    for f in (data / "tokenizer").iterdir():
        shutil.copy(f, model_dir / f.name)  # training saves the tokenizer next to the weights
    common = ["--model", str(model_dir), "--data-root", str(data), "--max-new-tokens", "6", "--no-progress"]
    assert main(["generate", "--task", "synthetic_qa", "--out", str(tmp_path / "qa"), *common]) == 0
    assert main(["generate", "--task", "vcg_consistency", "--out", str(tmp_path / "cons"), *common]) == 0
    questions = json.loads((data / "eval" / "test_q.json").read_text())
    rows = read_rows(tmp_path / "qa" / "predictions.jsonl")
    assert [r["id"] for r in rows] == [q["question_id"] for q in questions] and not any(r["error"] for r in rows)
    cons = read_rows(tmp_path / "cons" / "predictions.jsonl")
    assert len(cons) == 3 and all(isinstance(r["pred1"], str) and isinstance(r["pred2"], str) for r in cons)
    assert main(["judge", "--predictions", str(tmp_path / "qa" / "predictions.jsonl"), "--no-progress"]) == 0
    assert main(["aggregate", str(tmp_path / "qa"), "--out", str(tmp_path / "results")]) == 0
    result = json.loads((tmp_path / "results" / "results.json").read_text())["results"][0]
    assert result["task"] == "synthetic_qa" and result["judge_model"] == "exact-match"
    assert result["records"] == result["judged"] == len(questions)
