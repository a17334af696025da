"""Fixtures of the evaluation tests: a loopback judge server, prediction files, judge profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.eval.fake_judge_server import FakeJudgeServer

REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-test-Zq8vN3-never-written"


@pytest.fixture
def judge_server():
    """A started loopback chat-completions server (default: the protocol responder); stopped afterwards."""
    with FakeJudgeServer() as server:
        yield server


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    return API_KEY


def qa_predictions(n: int, wrong: tuple[int, ...] = (), errors: tuple[int, ...] = (), task: str = "msvd_qa"):
    """``n`` QA prediction rows: correct except at ``wrong``; generation errors at ``errors``."""
    rows = []
    for i in range(n):
        answer = ["red", "green", "blue"][i % 3]
        pred = "purple" if i in wrong else answer.upper() + "."
        row = {"id": f"q{i}", "task": task, "video": f"v{i}", "question": f"question number {i}?",
               "answer": answer, "pred": pred, "error": None}  # fmt: skip
        if i in errors:
            row.update(pred=None, error="VideoReadError: v.mp4: cannot read video: truncated")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_profile(path: Path, base_url: str, **changes) -> Path:
    """A judge profile for the loopback server: short timeouts and millisecond backoffs."""
    profile = {
        "name": "loopback-test",
        "provider": "openai_compatible",
        "model": "test-judge-7b",
        "model_revision": "0123abcd",
        "base_url": base_url,
        "requires_api_key": True,
        "timeout_s": 0.5,
        "max_retries": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "concurrency": 4,
    }
    profile.update(changes)
    path.write_text(yaml.safe_dump(profile))
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
