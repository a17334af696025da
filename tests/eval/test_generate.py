"""Inference with a tiny saved model on CPU: batched left-padded generation, error rows, kill/resume, shard/merge,
and the scripts/eval launchers end to end (one process per visible GPU, merge, judge, tables)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.data.media import indexed_frames, write_video
from tests.eval.assets import write_mp4, write_qa_set, write_tiny_model
from tests.eval.conftest import REPO, read_rows, write_profile
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


def test_eval_scripts_shard_over_gpus_merge_and_judge_tgif_gif_and_mp4(assets, tmp_path):
    """run_qa_tgif.sh: one generate process per visible GPU (here two CPU processes), then merge; GIF clips decode;
    the merged file equals a one-process run; eval_qa_tgif.sh judges it (offline exact judge) and writes the tables."""
    data = tmp_path / "data"
    write_qa_set(data, 6, "TGIF_Zero_Shot_QA", video_sub="mp4")  # q0..q5 on clip0..clip2
    clips = data / "TGIF_Zero_Shot_QA" / "mp4"
    (clips / "clip1.mp4").unlink()
    write_video(clips / "clip1.gif", indexed_frames(12), fps=8)  # TGIF's original GIFs (q2, q3)
    model = str(assets["model"])
    opts = ["--max-new-tokens", "6", "--batch-size", "2"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"CUDA_VISIBLE_DEVICES": "0,1"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"  # `videopanda` without .venv
    out = tmp_path / "tgif"
    scripts = REPO / "scripts" / "eval"
    proc = subprocess.run(["bash", str(scripts / "run_qa_tgif.sh"), model, str(data), str(out), *opts], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 shards on GPUs 0 1" in proc.stdout and "merged 6 of 6 records (0 errors, 0 missing)" in proc.stdout
    assert json.loads((out / "run.json").read_text())["num_shards"] == 2
    for k in (0, 1):
        assert (out / f"predictions.shard-00{k}-of-002.jsonl").is_file()
        assert f"shard {k}/2" in (out / "logs" / f"shard{k}.log").read_text()
    merged = read_rows(out / "predictions.jsonl")
    assert [r["id"] for r in merged] == [f"q{i}" for i in range(6)]
    assert not any(r["error"] for r in merged) and all(isinstance(r["pred"], str) for r in merged)

    one = tmp_path / "one"
    assert main(["generate", "--model", model, "--task", "tgif_qa", "--data-root", str(data), "--out", str(one),
                 "--no-progress", *opts]) == 0  # fmt: skip
    assert [r["pred"] for r in read_rows(one / "predictions.jsonl")] == [r["pred"] for r in merged]

    proc = subprocess.run(["bash", str(scripts / "eval_qa_tgif.sh"), str(out), "exact"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    judged = read_rows(out / "judge-exact" / "judgments.jsonl")
    assert sorted(r["id"] for r in judged) == [f"q{i}" for i in range(6)]
    result = json.loads((out / "results" / "results.json").read_text())["results"]
    assert [(r["task"], r["records"], r["judged"], r["judge_model"]) for r in result] == [("tgif_qa", 6, 6,
                                                                                           "exact-match")]  # fmt: skip
    assert (out / "results" / "results.md").is_file() and (out / "results" / "results.csv").is_file()


def test_video_chatgpt_benchmark_scripts_generate_three_tasks_and_judge_five_dimensions(assets, tmp_path, judge_server):
    """run_vcg.sh -> OUT/vcg_{generic,temporal,consistency}; eval_vcg.sh judges them on the loopback server and
    aggregates the five dimensions and their average."""
    bench = tmp_path / "data" / "Video_5_Benchmark"
    for k in range(2):
        write_mp4(bench / "Test_Videos" / f"v_{k}.mp4", seed=k)
    qa = [{"video_name": f"v_{k}", "Q": f"what happens in clip {k}?", "A": "a dog runs"} for k in range(2)]
    pairs = [{"video_name": "v_1", "Q1": "what runs?", "Q2": "which animal is running?", "A": "a dog"}]
    (bench / "Benchmarking_QA").mkdir()
    for name, items in (("generic", qa), ("temporal", qa[:1]), ("consistency", pairs)):
        (bench / "Benchmarking_QA" / f"{name}_qa.json").write_text(json.dumps(items))
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"CUDA_VISIBLE_DEVICES": "0"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    out = tmp_path / "vcg"
    scripts = REPO / "scripts" / "eval"
    proc = subprocess.run(["bash", str(scripts / "run_vcg.sh"), str(assets["model"]), str(tmp_path / "data"), str(out),
                           "--max-new-tokens", "4"], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    counts = {
        t: len(read_rows(out / t / "predictions.jsonl")) for t in ("vcg_generic", "vcg_temporal", "vcg_consistency")
    }
    assert counts == {"vcg_generic": 2, "vcg_temporal": 1, "vcg_consistency": 1}
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url, requires_api_key=False)
    proc = subprocess.run(["bash", str(scripts / "eval_vcg.sh"), str(out), str(profile)], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(judge_server.requests) == 2 * 3 + 1 + 1  # generic: three dimensions per record
    consistency = [r for r in judge_server.requests if "Question 2: which animal is running?" in r.user_text]
    assert len(consistency) == 1 and "Question 1: what runs?" in consistency[0].user_text
    results = json.loads((out / "results" / "results.json").read_text())
    assert sorted(e["dimension"] for e in results["results"]) == sorted(
        ["correctness", "detail", "context", "temporal", "consistency"]
    )
    (average,) = results["vcg_average"]
    assert average["judge_profile"] == "loopback-test" and average["average"] == 3.0  # the server scores 3


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "scripts" / "eval").glob("*.sh")))
def test_eval_scripts_parse(name):
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "eval" / name)]).returncode == 0


def test_a_prompt_that_leaves_no_room_for_the_answer_is_an_error_row(assets, tmp_path, capsys):
    # The tiny model's context is 1024 positions: no prompt fits with 1020 new tokens after it.
    assert main(_generate(assets, tmp_path / "long", max_new_tokens="1020")) == 0
    rows = read_rows(tmp_path / "long" / "predictions.jsonl")
    readable = [r for r in rows if r["id"] not in ("q8", "q9", "q10", "q11")]  # the others' videos are bad
    assert readable and all(r["error"].startswith("ContextTooLong: the prompt is") for r in readable)
    assert all("max_new_tokens=1020; the LLM's context is 1024" in r["error"] for r in readable)
    assert all(r["pred"] is None for r in rows)


def test_prompts_follow_the_system_prompt_setting_of_the_models_training_run(assets, tmp_path):
    import shutil

    bare = tmp_path / "model"
    shutil.copytree(assets["model"], bare)
    (bare / "config.yaml").write_text("data:\n  system_prompt: false\n")  # what a training run folder holds
    outs = {}
    for name, model in (("default", assets["model"]), ("bare", bare)):
        argv = _generate(assets, tmp_path / name, "--limit", "4")
        argv[argv.index("--model") + 1] = str(model)
        assert main(argv) == 0
        outs[name] = read_rows(tmp_path / name / "predictions.jsonl")
        manifest = json.loads((tmp_path / name / "run.json").read_text())
        assert manifest["generation"]["system_prompt"] is (name == "default")
    # the model's answers depend on every prompt token, so a prompt without the system prompt changes them
    assert [r["pred"] for r in outs["bare"]] != [r["pred"] for r in outs["default"]]
