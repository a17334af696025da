"""The LLM judge against a real HTTP server on 127.0.0.1: replies, retries, timeouts, bad replies, kills, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.eval.conftest import API_KEY, REPO, qa_predictions, read_rows, write_jsonl, write_profile
from tests.eval.fake_judge_server import FakeJudgeServer, FakeReply, per_prompt, qa_reply
from tests.eval.fake_judge_server import protocol_reply as protocol
from videopanda.eval.__main__ import main
from videopanda.eval.judge.client import JudgeFatalError, JudgeRequestError, OpenAIChatClient
from videopanda.eval.judge.profiles import JudgeProfile
from videopanda.eval.judge.prompts import builtin_template

MESSAGES = [{"role": "user", "content": "Correct Answer: red\nPredicted Answer: red\n'pred'"}]


def _profile(server: FakeJudgeServer, **changes) -> JudgeProfile:
    settings = dict(name="unit", provider="openai_compatible", model="m-1", model_revision="r1", timeout_s=0.5,
                    base_url=server.base_url, max_retries=4, backoff_base_s=0.1, backoff_max_s=0.3)  # fmt: skip
    settings.update(changes)
    return JudgeProfile(**settings)


def _complete(profile: JudgeProfile, sleeps: list[float]):
    """One chat completion through the real client; the waits between retries are recorded, not slept."""

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go():
        client = OpenAIChatClient(profile, API_KEY, sleep=sleep, rng=random.Random(0))
        try:
            return await client.complete(MESSAGES)
        finally:
            await client.close()

    return asyncio.run(go())


def _judge(tmp_path, profile, predictions="predictions.jsonl", *extra):
    return main(["judge", "--predictions", str(tmp_path / predictions), "--task", "msvd_qa", "--profile",
                 str(profile), "--out", str(tmp_path / "judged"), "--no-progress", *extra])  # fmt: skip


def _asked_ids(requests) -> list[str]:
    return [f"q{m.group(1)}" for r in requests if (m := re.search(r"question number (\d+)\?", r.user_text))]


# ------------------------------------------------------------------------------------------------ the client


def test_429_honours_retry_after_seconds_and_milliseconds(judge_server):
    judge_server.set_responder(per_prompt([
        FakeReply(status=429, headers={"Retry-After": "3"}),
        FakeReply(status=429, headers={"retry-after-ms": "250"}),
    ]))  # fmt: skip
    sleeps: list[float] = []
    result = _complete(_profile(judge_server), sleeps)
    assert result.attempts == 3 and result.content == "{'pred': 'yes', 'score': 5}"
    assert len(sleeps) == 2
    assert 3.0 <= sleeps[0] <= 3.3  # never earlier than the server asked; at most 10 % jitter on top
    assert 0.25 <= sleeps[1] <= 0.275


def test_5xx_retried_with_exponential_backoff_and_jitter(judge_server):
    judge_server.set_responder(per_prompt([FakeReply(status=500), FakeReply(status=502), FakeReply(status=503)]))
    sleeps: list[float] = []
    result = _complete(_profile(judge_server), sleeps)
    assert result.attempts == 4
    # retry k waits min(0.3, 0.1 * 2**k) scaled by a jitter factor in [0.5, 1]
    for k, (low, high) in enumerate([(0.05, 0.1), (0.1, 0.2), (0.15, 0.3)]):
        assert low <= sleeps[k] <= high, (k, sleeps)
    assert len(set(sleeps)) == 3


def test_retries_exhausted_raise_request_error_and_4xx_is_not_retried(judge_server):
    judge_server.set_responder(lambda r: FakeReply(status=500))
    sleeps: list[float] = []
    with pytest.raises(JudgeRequestError, match="after 3 attempts; last: HTTP 500") as info:
        _complete(_profile(judge_server, max_retries=2), sleeps)
    assert info.value.attempts == 3 and len(sleeps) == 2
    judge_server.set_responder(lambda r: FakeReply(status=400))
    before = len(judge_server.requests)
    with pytest.raises(JudgeRequestError, match="HTTP 400 \\(not retried\\)"):
        _complete(_profile(judge_server), [])
    assert len(judge_server.requests) == before + 1


def test_slow_reply_past_the_timeout_is_retried(judge_server):
    judge_server.set_responder(per_prompt([FakeReply(delay_s=1.5)]))
    sleeps: list[float] = []
    result = _complete(_profile(judge_server, timeout_s=0.3), sleeps)
    assert result.attempts == 2 and len(sleeps) == 1
    assert result.content == "{'pred': 'yes', 'score': 5}"


def test_malformed_http_bodies_are_retried(judge_server):
    judge_server.set_responder(per_prompt([FakeReply(raw_body=b"<html>bad gateway</html>"),
                                           FakeReply(raw_body=b'{"object": "chat.completion"}')]))  # fmt: skip
    result = _complete(_profile(judge_server), [])
    assert result.attempts == 3 and result.content.startswith("{'pred'")


def test_auth_failure_is_fatal_and_names_no_key(judge_server):
    judge_server.set_responder(lambda r: FakeReply(status=401))
    with pytest.raises(JudgeFatalError, match="HTTP 401") as info:
        _complete(_profile(judge_server), [])
    assert API_KEY not in str(info.value)
    assert len(judge_server.requests) == 1


# ---------------------------------------------------------------------------------------- the judge command


def test_normal_run_records_the_judge_in_every_row_and_sums_usage(tmp_path, judge_server, api_key, capsys):
    judge_server.set_responder(lambda r: FakeReply(content=protocol(r).content, delay_s=0.05))
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(7, wrong=(1, 4), errors=(5,)))
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url, concurrency=3)
    assert _judge(tmp_path, profile) == 0
    rows = read_rows(tmp_path / "judged" / "judgments.jsonl")
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == [f"q{i}" for i in range(7)]
    assert by_id["q0"]["status"] == "ok" and by_id["q0"]["pred"] == "yes" and by_id["q0"]["score"] == 5.0
    assert by_id["q1"]["pred"] == "no" and by_id["q4"]["pred"] == "no"
    assert by_id["q5"]["status"] == "prediction_error" and "cannot read video" in by_id["q5"]["error"]
    tpl = builtin_template("qa")
    for r in rows:
        assert r["judge_profile"] == "loopback-test" and r["judge_model"] == "test-judge-7b"
        assert r["judge_model_revision"] == "0123abcd" and r["temperature"] == 0.0
        assert r["prompt"] == "qa_correctness@v1" and r["prompt_sha256"] == tpl.sha256
    # One request per judged record (none for the generation error), each at temperature 0 with the pinned model.
    assert sorted(_asked_ids(judge_server.requests)) == [f"q{i}" for i in (0, 1, 2, 3, 4, 6)]
    for req in judge_server.requests:
        assert req.body["temperature"] == 0.0 and req.body["model"] == "test-judge-7b"
        assert req.authorization == f"Bearer {API_KEY}"
    assert 1 < judge_server.max_in_flight <= 3  # bounded concurrency
    out = capsys.readouterr().out
    prompt_tokens = sum(r["prompt_tokens"] for r in rows if r["status"] == "ok")
    completion_tokens = sum(r["completion_tokens"] for r in rows if r["status"] == "ok")
    assert prompt_tokens > 0
    assert f"prompt {prompt_tokens}, completion {completion_tokens}, total {prompt_tokens + completion_tokens}" in out


def test_unparseable_and_empty_replies_are_kept_counted_and_not_asked_again(tmp_path, judge_server, api_key):
    replies = {0: "", 1: None, 2: "The prediction is correct.", 3: "{'pred': 'maybe', 'score': 3}",
               4: "{'pred': 'Yes', 'score': 9}", 5: '```json\n{"pred": "no", "score": 1}\n```'}  # fmt: skip

    def responder(request):
        i = int(re.search(r"question number (\d+)\?", request.user_text).group(1))
        return FakeReply(content=replies[i])

    judge_server.set_responder(responder)
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(6))
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url)
    assert _judge(tmp_path, profile) == 0
    by_id = {r["id"]: r for r in read_rows(tmp_path / "judged" / "judgments.jsonl")}
    for i in (0, 1, 2, 3):
        assert by_id[f"q{i}"]["status"] == "unparseable" and by_id[f"q{i}"]["score"] is None
        assert by_id[f"q{i}"]["reply"] == replies[i] and by_id[f"q{i}"]["parse_error"]
    assert by_id["q0"]["parse_error"] == "empty reply"
    assert by_id["q4"]["status"] == "ok" and by_id["q4"]["score"] == 5.0 and by_id["q4"]["score_clamped"]
    assert by_id["q5"]["status"] == "ok" and by_id["q5"]["pred"] == "no"
    asked = len(judge_server.requests)
    assert _judge(tmp_path, profile) == 0  # a rerun pays for nothing: every record has its row
    assert len(judge_server.requests) == asked
    assert main(["aggregate", str(tmp_path / "judged"), "--out", str(tmp_path / "results")]) == 0
    result = json.loads((tmp_path / "results" / "results.json").read_text())["results"][0]
    assert (result["judged"], result["unparseable"], result["errored"], result["missing"]) == (2, 4, 0, 0)
    assert result["accuracy"] == 50.0 and result["accuracy_all"] == pytest.approx(100 / 6, abs=0.01)


def test_failed_requests_write_no_row_and_the_rerun_asks_only_for_them(tmp_path, judge_server, api_key, capsys):
    judge_server.set_responder(lambda r: FakeReply(status=503) if "number 2?" in r.user_text else protocol(r))
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(4))
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url, max_retries=1)
    assert _judge(tmp_path, profile) == 1
    assert "1 requests failed" in capsys.readouterr().out
    assert sorted(r["id"] for r in read_rows(tmp_path / "judged" / "judgments.jsonl")) == ["q0", "q1", "q3"]
    failures = read_rows(tmp_path / "judged" / "judge_failures.jsonl")
    assert [f["id"] for f in failures] == ["q2"] and "HTTP 503" in failures[0]["error"]
    before = len(judge_server.requests)
    judge_server.set_responder(protocol)
    assert _judge(tmp_path, profile) == 0
    assert _asked_ids(judge_server.requests[before:]) == ["q2"]
    assert not (tmp_path / "judged" / "judge_failures.jsonl").exists()


def test_killing_the_judge_mid_run_repeats_no_call_for_a_finished_record(tmp_path, judge_server, api_key):
    n = 40
    judge_server.set_responder(lambda r: FakeReply(content="{'pred': 'yes', 'score': 4}", delay_s=0.05))
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(n))
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url, concurrency=2)
    out = tmp_path / "judged" / "judgments.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "videopanda.eval", "judge", "--predictions", str(tmp_path / "predictions.jsonl"),
           "--task", "msvd_qa", "--profile", str(profile), "--out", str(out.parent), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.read_text().count("\n") >= 8):
            assert proc.poll() is None, "the judge finished before it could be killed"
            assert time.monotonic() < deadline, "the judge wrote nothing"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = {r["id"] for r in read_rows(out)}
    assert 8 <= len(finished) < n
    with open(out, "a") as f:
        f.write('{"id": "q39", "dimension": "q')  # a write cut short by the kill
    before = len(judge_server.requests)
    judge_server.set_responder(protocol)
    assert _judge(tmp_path, profile) == 0
    asked = _asked_ids(judge_server.requests[before:])
    assert not set(asked) & finished  # no finished record was paid for twice
    rows = read_rows(out)
    assert sorted(r["id"] for r in rows) == sorted(f"q{i}" for i in range(n))  # each exactly once, torn line gone


def test_the_api_key_is_in_no_file_and_no_log_line(tmp_path, judge_server, api_key, capfd, caplog):
    caplog.set_level("DEBUG")  # openai/httpx debug logs included
    judge_server.set_responder(per_prompt([FakeReply(status=429, headers={"Retry-After": "0"}), FakeReply(status=500)]))
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(3, errors=(1,)))
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url)
    assert _judge(tmp_path, profile, "predictions.jsonl", "--verbose") == 0
    judge_server.set_responder(lambda r: FakeReply(status=401))
    write_jsonl(tmp_path / "more.jsonl", qa_predictions(2))
    other = write_profile(tmp_path / "j2.yaml", judge_server.base_url, name="other")
    assert _judge(tmp_path, other, "more.jsonl", "--out", str(tmp_path / "judged-other")) == 2
    assert all(r.authorization == f"Bearer {API_KEY}" for r in judge_server.requests)  # it was really used
    captured = capfd.readouterr()
    assert API_KEY not in captured.out and API_KEY not in captured.err and API_KEY not in caplog.text
    assert "HTTP 401" in captured.err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "judge_run.json" for p in files)
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path


def test_a_rerun_with_another_judge_is_refused(tmp_path, judge_server, api_key, capfd):
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(2))
    assert _judge(tmp_path, write_profile(tmp_path / "a.yaml", judge_server.base_url)) == 0
    other = write_profile(tmp_path / "b.yaml", judge_server.base_url, model_revision="ffff0000")
    assert _judge(tmp_path, other) == 2
    assert "another judge" in capfd.readouterr().err


def test_no_judge_no_run_and_aliases_are_refused(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(2))
    args = ["judge", "--predictions", str(tmp_path / "predictions.jsonl"), "--task", "msvd_qa"]
    assert main(args) == 2
    assert "no judge given" in capfd.readouterr().err
    assert main([*args, "--judge-model", "gpt-3.5-turbo"]) == 2
    assert "moving alias" in capfd.readouterr().err
    assert main([*args, "--judge-model", "gpt-3.5-turbo-0125"]) == 2  # pinned, but no key
    assert "set OPENAI_API_KEY" in capfd.readouterr().err
    assert not (tmp_path / "judge-cli-gpt-3.5-turbo-0125" / "judgments.jsonl").exists()


def test_consistency_judge_sees_both_questions_and_vcg_generic_has_three_dimensions(tmp_path, judge_server, api_key):
    rows = [{"id": f"v{i}_0", "task": "vcg_consistency", "video": f"v{i}", "question1": f"first wording {i}?",
             "question2": f"second wording {i}?", "answer": "a dog runs", "pred1": "a dog", "pred2": "a cat",
             "error": None} for i in range(2)]  # fmt: skip
    write_jsonl(tmp_path / "c.jsonl", rows)
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url)
    assert main(["judge", "--predictions", str(tmp_path / "c.jsonl"), "--task", "vcg_consistency", "--profile",
                 str(profile), "--out", str(tmp_path / "c"), "--no-progress"]) == 0  # fmt: skip
    for i, req in enumerate(sorted(judge_server.requests, key=lambda r: r.user_text)):
        assert (
            f"Question 1: first wording {i}?" in req.user_text and f"Question 2: second wording {i}?" in req.user_text
        )
        assert "Predicted Answer to Question 1: a dog" in req.user_text
    judged = read_rows(tmp_path / "c" / "judgments.jsonl")
    assert {(r["dimension"], r["score"]) for r in judged} == {("consistency", 3.0)}

    generic = [{"id": f"g{i}", "task": "vcg_generic", "question": f"what happens {i}?", "answer": "x", "pred": "y",
                "error": None} for i in range(3)]  # fmt: skip
    write_jsonl(tmp_path / "g.jsonl", generic)
    assert main(["judge", "--predictions", str(tmp_path / "g.jsonl"), "--task", "vcg_generic", "--profile",
                 str(profile), "--out", str(tmp_path / "g"), "--no-progress"]) == 0  # fmt: skip
    judged = read_rows(tmp_path / "g" / "judgments.jsonl")
    assert sorted((r["id"], r["dimension"]) for r in judged) == sorted(
        (f"g{i}", d) for i in range(3) for d in ("correctness", "detail", "context")
    )
    assert {r["prompt"] for r in judged} == {"vcg_correctness@v1", "vcg_detail@v1", "vcg_context@v1"}


def test_a_user_template_replaces_the_builtin_one(tmp_path, judge_server, api_key):
    tpl = tmp_path / "my_qa.yaml"
    tpl.write_text(
        "name: my_qa\nversion: 3\nreply: qa\nfields: [question, answer, pred]\n"
        "system: 'Grade strictly.'\nuser: \"Q=${question} A=${answer} P=${pred}. Reply {'pred': .., 'score': ..}\"\n"
    )
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(1))
    judge_server.set_responder(qa_reply("{'pred': 'no', 'score': 2}"))
    profile = write_profile(tmp_path / "judge.yaml", judge_server.base_url)
    assert _judge(tmp_path, profile, "predictions.jsonl", "--prompt-template", str(tpl)) == 0
    row = read_rows(tmp_path / "judged" / "judgments.jsonl")[0]
    assert row["prompt"] == "my_qa@v3" and row["score"] == 2.0
    assert judge_server.requests[0].user_text.startswith("Q=question number 0? A=red P=RED.")


def test_base_url_flag_and_an_explicit_model_on_any_compatible_endpoint(tmp_path, judge_server, monkeypatch, capfd):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_jsonl(tmp_path / "predictions.jsonl", qa_predictions(3, wrong=(2,)))
    # --base-url replaces the profile's endpoint (nothing listens on port 9).
    profile = write_profile(tmp_path / "judge.yaml", "http://127.0.0.1:9/v1", requires_api_key=False)
    assert _judge(tmp_path, profile, "predictions.jsonl", "--base-url", judge_server.base_url) == 0
    rows = read_rows(tmp_path / "judged" / "judgments.jsonl")
    assert {r["judge_base_url"] for r in rows} == {judge_server.base_url} and len(judge_server.requests) == 3
    # No profile: an explicit model and its exact revision on a local server (no key needed there).
    args = ["judge", "--predictions", str(tmp_path / "predictions.jsonl"), "--task", "msvd_qa", "--judge-model",
            "Qwen/Qwen2.5-7B-Instruct", "--base-url", judge_server.base_url, "--no-progress"]  # fmt: skip
    assert main(args) == 2  # an open model without its revision says nothing about which judge it was
    assert "model_revision is required" in capfd.readouterr().err
    assert main([*args, "--judge-revision", "a09a35458c70"]) == 0
    rows = read_rows(tmp_path / "judge-cli-Qwen_Qwen2.5-7B-Instruct" / "judgments.jsonl")
    assert {(r["judge_model"], r["judge_model_revision"], r["temperature"]) for r in rows} == {
        ("Qwen/Qwen2.5-7B-Instruct", "a09a35458c70", 0.0)
    }
    assert sorted((r["id"], r["pred"]) for r in rows) == [("q0", "yes"), ("q1", "yes"), ("q2", "no")]
    assert {r.body["model"] for r in judge_server.requests[3:]} == {"Qwen/Qwen2.5-7B-Instruct"}


def test_replies_received_before_a_fatal_error_are_all_written(tmp_path, monkeypatch):
    """A 401 cancels the workers; rows still queued behind a slow fsync (a network disk) must reach the file."""
    import videopanda.eval.records as records
    from videopanda.eval.judge import Judge, build_items, run_judge
    from videopanda.eval.judge.prompts import templates_for
    from videopanda.eval.tasks import get_task

    real_fsync = os.fsync

    def slow_fsync(fd):
        time.sleep(0.05)
        real_fsync(fd)

    monkeypatch.setattr(records.os, "fsync", slow_fsync)
    spec = get_task("msvd_qa")
    rows = [{"id": str(i), "task": "msvd_qa", "question": "q", "answer": "a", "pred": "a", "error": None}
            for i in range(40)]  # fmt: skip
    out = tmp_path / "judgments.jsonl"
    with FakeJudgeServer(lambda req: FakeReply(status=401, delay_s=0.1) if req.index == 20 else FakeReply()) as srv:
        profile = JudgeProfile(name="fake", provider="openai_compatible", model="fake", model_revision="none",
                               base_url=srv.base_url, requires_api_key=False, concurrency=8)  # fmt: skip
        client = OpenAIChatClient(profile, None)
        replies = []
        complete = client.complete

        async def counted(messages):
            reply = await complete(messages)
            replies.append(reply)
            return reply

        client.complete = counted
        judge = Judge(spec, profile, templates_for(spec.dimensions), client)

        async def go():
            try:
                with pytest.raises(JudgeFatalError):
                    await run_judge(build_items(spec, rows, "mem"), judge, out, 8)
            finally:
                await client.close()

        asyncio.run(go())
    assert replies and len(read_rows(out)) == len(replies)


def test_the_protocol_fake_judge_reads_an_empty_field_as_empty():
    from videopanda.eval.fake_server import FakeRequest

    def reply(answer: str, pred: str) -> str:
        text = f"Question: q\nCorrect Answer: {answer}\nPredicted Answer: {pred}\n\nReply with {{'pred': 'yes'}}"
        return protocol(FakeRequest(0, {"messages": [{"role": "user", "content": text}]}, None)).content

    assert reply("", "") == "{'pred': 'yes', 'score': 5}"  # an empty answer is not the next line's text
    assert reply("cat", "") == "{'pred': 'no', 'score': 0}"
    assert reply("Cat", "cat.") == "{'pred': 'yes', 'score': 5}"
