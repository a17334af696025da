"""Annotation files: every malformed record is reported with the file, the record and the problem."""

from __future__ import annotations

import pytest

from videopanda.data.__main__ import main as data_main
from videopanda.data.errors import AnnotationError
from videopanda.data.records import load_records

from .media import image_record, indexed_frames, text_record, video_record, write_image, write_json, write_video


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    write_video(root / "a.mp4", indexed_frames(8))
    write_image(root / "b.png")
    return root


def test_valid_mix_is_counted_by_modality(tmp_path, media):
    path = write_json(
        tmp_path / "ok.json",
        [video_record("v", "a.mp4"), image_record("i", "b.png"), text_record("t"), video_record("v2", "a.mp4")],
    )
    records, report = load_records(path, media)
    assert [r.modality for r in records] == ["video", "image", "text", "video"]
    assert dict(report.counts) == {"video": 2, "image": 1, "text": 1} and not report.problems
    assert records[0].media == media / "a.mp4" and records[0].words == 6


BAD = [
    (video_record("nomedia", "a.mp4") | {"video": None}, "media path must be a non-empty string"),
    ({k: v for k, v in video_record("noph", "a.mp4").items() if k != "video"}, "has no 'video' or 'image' key"),
    (video_record("both", "a.mp4") | {"image": "b.png"}, "has both 'video' and 'image'"),
    (video_record("none", "a.mp4", question="What is this?"), "no <video> placeholder"),
    (video_record("two", "a.mp4", question="<video> and <video>?"), "more placeholders than media"),
    (video_record("abs", "/etc/passwd", question="<video>"), "is absolute"),
    (video_record("up", "../secret.mp4"), "escapes its media root"),
    (video_record("up2", "sub/../../secret.mp4"), "escapes its media root"),
    (video_record("gone", "missing.mp4"), "video file not found"),
    (image_record("img", "b.png", question="<video> what?"), "no <image> placeholder"),
    ({"id": "noconv", "video": "a.mp4"}, "no 'conversations' key"),
    ({"id": "badturns", "conversations": [{"from": "human", "value": "hi"}]}, "has no answer"),
    ([1, 2, 3], "must be a JSON object"),
]


@pytest.mark.parametrize(("record", "reason"), BAD, ids=[r for _, r in BAD])
def test_each_bad_record_is_named_with_its_file_index_and_reason(tmp_path, media, record, reason):
    path = write_json(tmp_path / "bad.json", [video_record("fine", "a.mp4"), record])
    records, report = load_records(path, media)
    assert [r.id for r in records] == ["fine"] and report.total == 2
    assert len(report.problems) >= 1
    problem = report.problems[0]
    assert problem.file == str(path) and problem.where.startswith("record 1")
    assert any(reason in p.reason for p in report.problems), [p.reason for p in report.problems]
    assert str(path) in report.format() and "record 1" in report.format()


def test_malformed_json_names_the_line(tmp_path, media):
    path = tmp_path / "broken.json"
    path.write_text('[\n {"id": "a", "video": "a.mp4",\n  "conversations": [}\n]\n')
    with pytest.raises(AnnotationError, match=r"broken\.json: line 3 column \d+: malformed JSON"):
        load_records(path, media)
    (tmp_path / "obj.json").write_text('{"id": 1}')
    with pytest.raises(AnnotationError, match="expected a JSON list"):
        load_records(tmp_path / "obj.json", media)
    with pytest.raises(AnnotationError, match="annotation file not found"):
        load_records(tmp_path / "nope.json", media)


def test_jsonl_bad_line_is_one_problem_and_the_rest_loads(tmp_path, media):
    import json

    lines = [json.dumps(video_record("a", "a.mp4")), "{not json", "", json.dumps(text_record("t"))]
    path = tmp_path / "mix.jsonl"
    path.write_text("\n".join(lines) + "\n")
    records, report = load_records(path, media)
    assert [r.id for r in records] == ["a", "t"] and records[1].line == 4
    assert len(report.problems) == 1 and report.problems[0].where == "line 2"
    assert "malformed JSON" in report.problems[0].reason


def test_jsonl_strings_may_hold_line_and_paragraph_separators(tmp_path, media):
    """JSON allows U+2028/U+2029/U+0085 raw inside strings; only "\\n" ends a JSONL record."""
    import json

    texts = ["a\u2028b", "c\u2029d", "e\x85f"]
    rows = [text_record(f"t{i}") for i in range(3)]
    for row, text in zip(rows, texts, strict=True):
        row["conversations"][1]["value"] = text
    path = tmp_path / "sep.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    records, report = load_records(path, media)
    assert not report.problems and [r.id for r in records] == ["t0", "t1", "t2"]
    assert [r.line for r in records] == [1, 2, 3]


def test_check_command_prints_the_report_and_fails_on_problems(tmp_path, media, capsys):
    good = write_json(tmp_path / "good.json", [video_record("v", "a.mp4"), text_record("t")])
    assert data_main(["check", str(good), "--media-root", str(media)]) == 0
    out = capsys.readouterr().out
    assert "records: 2" in out and "videos 1" in out and "text-only 1" in out and "problems: 0" in out
    bad = write_json(tmp_path / "bad.json", [video_record("up", "../x.mp4")])
    assert data_main(["check", str(bad), "--media-root", str(media)]) == 1
    assert "escapes its media root" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    assert data_main(["check", str(broken)]) == 2
    assert "malformed JSON" in capsys.readouterr().err
