"""Judge prompts: the exact text is pinned by snapshots, and the protocol's fields are all there.

A changed prompt changes the judge, so it must come with a new ``version`` in its template file and new snapshots:
regenerate them with ``python -m tests.eval.test_prompts`` after bumping the version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videopanda.eval.judge.prompts import (
    DIMENSION_TEMPLATES,
    TemplateError,
    builtin_template,
    load_template,
    templates_for,
)

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
RECORD = {
    "question": "What is the man doing?",
    "answer": "He is slicing bread.",
    "pred": "The man cuts a loaf of bread with a knife.",
    "question1": "What is the man doing?",
    "question2": "Which activity does the man perform?",
    "pred1": "He cuts bread.",
    "pred2": "He is cooking pasta.",
}


def _render(dimension: str) -> str:
    tpl = builtin_template(dimension)
    messages = tpl.render(RECORD)
    return json.dumps({"tag": tpl.tag, "sha256": tpl.sha256, "messages": messages}, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("dimension", list(DIMENSION_TEMPLATES))
def test_prompt_text_matches_its_snapshot(dimension):
    snapshot = json.loads((SNAPSHOTS / f"{dimension}.json").read_text())
    now = json.loads(_render(dimension))
    if now["sha256"] != snapshot["sha256"] and now["tag"] == snapshot["tag"]:
        pytest.fail(f"prompt {now['tag']} changed without a version bump: bump `version` and regenerate snapshots")
    assert now == snapshot


def test_protocol_fields_and_reply_formats():
    qa = builtin_template("qa")
    assert qa.reply == "qa" and qa.fields == ("question", "answer", "pred")
    system, user = (m["content"] for m in qa.render(RECORD))
    assert "Question: What is the man doing?" in user
    assert "Correct Answer: He is slicing bread." in user
    assert "Predicted Answer: The man cuts a loaf of bread with a knife." in user
    assert "'pred'" in user and "'score'" in user and "INTEGER" in user and "synonyms" in system.lower()
    for dim in ("correctness", "detail", "context", "temporal"):
        tpl = builtin_template(dim)
        assert tpl.reply == "score" and "'score'" in tpl.user and "'pred'" not in tpl.user
    consistency = builtin_template("consistency")
    user = consistency.render(RECORD)[1]["content"]
    # Both questions reach the judge (the reference sent Q1 twice).
    assert "Question 1: What is the man doing?" in user and "Question 2: Which activity does the man perform?" in user
    assert "Predicted Answer to Question 1: He cuts bread." in user
    assert "Predicted Answer to Question 2: He is cooking pasta." in user


def test_values_with_dollars_and_braces_are_inserted_verbatim():
    messages = builtin_template("qa").render({**RECORD, "pred": "costs $5 {'pred': 'yes'} ${answer}"})
    assert "Predicted Answer: costs $5 {'pred': 'yes'} ${answer}" in messages[1]["content"]


def test_user_templates_are_validated(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: mine\nversion: 2\nreply: score\nfields: [question, answer, pred]\nsystem: s\n"
                    "user: 'Q ${question} A ${answer} P ${pred}'\n")  # fmt: skip
    assert templates_for(("correctness",), {"correctness": good})["correctness"].tag == "mine@v2"
    with pytest.raises(TemplateError, match="dimension qa needs reply 'qa'"):
        templates_for(("qa",), {"qa": good})
    with pytest.raises(TemplateError, match="dimensions are"):
        templates_for(("qa",), {"temporal": good})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nversion: 1\nreply: score\nfields: [question]\nsystem: s\nuser: '${question} ${pred}'\n")
    with pytest.raises(TemplateError, match=r"placeholders \['pred', 'question'\] differ from fields \['question'\]"):
        load_template(bad)
    with pytest.raises(TemplateError, match="not found"):
        load_template(tmp_path / "missing.yaml")


if __name__ == "__main__":  # regenerate the snapshots (after bumping the template version)
    SNAPSHOTS.mkdir(exist_ok=True)
    for dim in DIMENSION_TEMPLATES:
        (SNAPSHOTS / f"{dim}.json").write_text(_render(dim) + "\n")
        print(f"wrote {SNAPSHOTS / dim}.json")
