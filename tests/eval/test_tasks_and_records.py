"""The task registry (layouts, id joins, video naming) and the resumable JSONL files (torn lines, shards, merge)."""

from __future__ import annotations

import json

import pytest

from tests.eval.conftest import write_jsonl
from videopanda.eval.generate import merge_predictions, shard_file
from videopanda.eval.records import JsonlAppender, RecordError, read_jsonl, shard_bounds
from videopanda.eval.tasks import TASKS, find_video, get_task, load_task, resolve_layout


def _qa(root, folder, questions, answers, videos=()):
    d = root / folder
    d.mkdir(parents=True)
    (d / "test_q.json").write_text(json.dumps(questions))
    (d / "test_a.json").write_text(json.dumps(answers))
    return d


def _q(i, name="clip"):
    return {"video_name": f"{name}{i}", "question_id": f"q{i}", "question": f"question {i}?"}


def test_answers_are_joined_by_question_id_not_position(tmp_path):
    questions = [_q(i) for i in range(4)]
    answers = [{"answer": f"ans{i}", "question_id": f"q{i}", "type": i} for i in range(4)][::-1]
    d = _qa(tmp_path / "GPT_Zero_Shot_QA", "MSVD_Zero_Shot_QA", questions, answers)
    (d / "videos").mkdir()
    data = load_task(get_task("msvd_qa"), tmp_path)  # the layout one level down is found
    assert [(r.id, r.answer, r.meta["type"]) for r in data.records] == [(f"q{i}", f"ans{i}", i) for i in range(4)]
    assert data.video_dir == d / "videos"


def test_bad_qa_files_are_errors_that_name_the_file_and_record(tmp_path):
    spec = get_task("msvd_qa")
    cases = [
        ([_q(0), _q(1)], [{"answer": "a", "question_id": "q0"}], r"test_a.json: no answer for 1 question id\(s\).*q1"),
        ([_q(0), _q(0)], [{"answer": "a", "question_id": "q0"}], r"test_q.json: duplicate question_id\(s\): q0"),
        ([_q(0), {"video_name": "v"}], [{"answer": "a"}], r"test_q.json: record 1: missing key\(s\) question_id"),
        ([_q(0)], [{"answer": "a"}], "records have no question_id.*--answers-by-position"),
        ([_q(0)], [{"question_id": "q0"}], "test_a.json: record 0: missing key 'answer'"),
        ([_q(0)], [{"answer": ["x"], "question_id": "q0"}], "test_a.json: record 0: 'answer' must be a string"),
        # the index is the answer's own position in test_a.json, not its question's
        (
            [_q(0), _q(1)],
            [{"answer": "a", "question_id": "q1"}, {"answer": None, "question_id": "q0"}],
            "test_a.json: record 1: 'answer' must be a string",
        ),
        ([_q(0)], [], r"test_a.json: no answer records \(an empty list\) for the 1 questions"),
    ]
    for i, (questions, answers, message) in enumerate(cases):
        root = tmp_path / str(i)
        (_qa(root, "MSVD_Zero_Shot_QA", questions, answers) / "videos").mkdir()
        with pytest.raises(RecordError, match=message):
            load_task(spec, root)


def test_answers_by_position_only_when_asked(tmp_path):
    d = _qa(tmp_path, "MSRVTT_Zero_Shot_QA", [_q(0), _q(1)], [{"answer": "a"}, {"answer": "b"}])
    (d / "videos" / "all").mkdir(parents=True)
    data = load_task(get_task("msrvtt_qa"), tmp_path, answers_by_position=True)
    assert [(r.id, r.answer) for r in data.records] == [("q0", "a"), ("q1", "b")]


def test_missing_layout_lists_every_path_tried(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        resolve_layout(get_task("tgif_qa"), tmp_path)
    text = str(info.value)
    assert "TGIF_Zero_Shot_QA/test_q.json" in text and "eval/GPT_Zero_Shot_QA/TGIF_Zero_Shot_QA/test_q.json" in text
    with pytest.raises(KeyError, match="known tasks: msvd_qa, msrvtt_qa"):
        get_task("msvd")


# Each task in the layout docs/eval.md documents (DATA_ROOT/eval/..., as Video-LLaVA ships the sets; the synthetic
# set as `videopanda data synth` writes it): (task folder, its video file, that video's name in the question file).
ZS = "eval/GPT_Zero_Shot_QA"
VCG = "eval/Video_5_Benchmark"
LAYOUTS = {
    "msvd_qa": (f"{ZS}/MSVD_Zero_Shot_QA", "videos/-4wsuPCjDBc_5_15.avi", "-4wsuPCjDBc_5_15"),
    "msrvtt_qa": (f"{ZS}/MSRVTT_Zero_Shot_QA", "videos/all/video7010.mp4", "video7010"),
    "tgif_qa": (f"{ZS}/TGIF_Zero_Shot_QA", "mp4/tumblr_nk172bbdPI1u1lr18o1_250.gif", "tumblr_nk172bbdPI1u1lr18o1_250"),
    "activitynet_qa": (f"{ZS}/Activitynet_Zero_Shot_QA", "all_test/v_fhhBvm7P1nU.mp4", "fhhBvm7P1nU"),
    "vcg_generic": (VCG, "Test_Videos/v_1QIUV7WYKXg.mkv", "v_1QIUV7WYKXg"),
    "vcg_temporal": (VCG, "Test_Videos/v_1QIUV7WYKXg.mp4", "v_1QIUV7WYKXg"),
    "vcg_consistency": (VCG, "Test_Videos/v_1QIUV7WYKXg.mp4", "v_1QIUV7WYKXg"),
    "synthetic_qa": ("", "videos/eval_00000.mp4", "eval_00000"),
}
QUESTION_FILES = {
    "vcg_generic": "Benchmarking_QA/generic_qa.json",
    "vcg_temporal": "Benchmarking_QA/temporal_qa.json",
    "vcg_consistency": "Benchmarking_QA/consistency_qa.json",
    "synthetic_qa": "eval/test_q.json",
}


def test_the_layout_table_covers_every_task():
    assert set(LAYOUTS) == set(TASKS)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_task_reads_its_documented_layout_and_finds_its_videos(tmp_path, name):
    spec = get_task(name)
    folder, video, video_name = LAYOUTS[name]
    root = tmp_path / "data"
    task_dir = root / folder
    questions = task_dir / QUESTION_FILES.get(name, "test_q.json")
    answers = task_dir / ("eval/test_a.json" if name == "synthetic_qa" else "test_a.json")
    for path in (questions, task_dir / video):
        path.parent.mkdir(parents=True, exist_ok=True)
    (task_dir / video).write_bytes(b"\0")
    if spec.kind == "qa":
        questions.write_text(json.dumps([{"video_name": video_name, "question_id": 7, "question": "why?"}]))
        answers.write_text(json.dumps([{"answer": "because", "question_id": 7, "type": "why"}]))
    elif spec.kind == "vcg":
        questions.write_text(json.dumps([{"video_name": video_name, "Q": "why?", "A": "because"}]))
    else:
        questions.write_text(json.dumps([{"video_name": video_name, "Q1": "why?", "Q2": "how so?", "A": "because"}]))
    data = load_task(spec, root)
    assert data.questions_file == questions
    assert data.answers_file == (answers if spec.kind == "qa" else None)
    assert data.video_dir == (task_dir / video).parent
    (record,) = data.records
    assert record.id == ("7" if spec.kind == "qa" else f"{video_name}_0") and record.answer == "because"
    assert find_video(spec, data.video_dir, record.video_name) == task_dir / video


def test_video_naming_activitynet_prefix_tgif_gif_and_extensions(tmp_path):
    anet = get_task("activitynet_qa")
    (tmp_path / "v_abc.mp4").touch()
    (tmp_path / "v_def.mkv").touch()
    assert find_video(anet, tmp_path, "abc").name == "v_abc.mp4"
    assert find_video(anet, tmp_path, "v_abc").name == "v_abc.mp4"  # already prefixed: not doubled
    assert find_video(anet, tmp_path, "def").name == "v_def.mkv"
    with pytest.raises(FileNotFoundError, match=r"video 'xyz' not found .*tried v_xyz.mp4"):
        find_video(anet, tmp_path, "xyz")
    tgif = get_task("tgif_qa")
    (tmp_path / "tumblr_1.gif").touch()
    (tmp_path / "tumblr_2.gif").touch()
    (tmp_path / "tumblr_2.mp4").touch()
    assert find_video(tgif, tmp_path, "tumblr_1").name == "tumblr_1.gif"
    assert find_video(tgif, tmp_path, "tumblr_2").name == "tumblr_2.mp4"  # mp4 first, as Video-LLaVA ships them
    msvd = get_task("msvd_qa")
    (tmp_path / "clip.avi").touch()
    assert find_video(msvd, tmp_path, "clip.avi").name == "clip.avi"  # a name with its extension


def test_video_chatgpt_benchmark_records(tmp_path):
    bench = tmp_path / "Video_5_Benchmark"
    (bench / "Benchmarking_QA").mkdir(parents=True)
    (bench / "Test_Videos").mkdir()
    items = [{"video_name": "v1", "Q": "q a", "A": "a"}, {"video_name": "v1", "Q": "q b", "A": "b"},
             {"video_name": "v2", "Q": "q c", "A": "c"}]  # fmt: skip
    (bench / "Benchmarking_QA" / "generic_qa.json").write_text(json.dumps(items))
    pairs = [{"video_name": "v1", "Q1": "one?", "Q2": "same, reworded?", "A": "yes"}]
    (bench / "Benchmarking_QA" / "consistency_qa.json").write_text(json.dumps(pairs))
    generic = load_task(get_task("vcg_generic"), tmp_path)
    assert [r.id for r in generic.records] == ["v1_0", "v1_1", "v2_0"]
    consistency = load_task(get_task("vcg_consistency"), tmp_path)
    assert consistency.records[0].questions == ("one?", "same, reworded?")
    (bench / "Benchmarking_QA" / "temporal_qa.json").write_text(json.dumps([{"video_name": "v1", "Q": "q"}]))
    with pytest.raises(RecordError, match=r"temporal_qa.json: record 0: missing key\(s\) A"):
        load_task(get_task("vcg_temporal"), tmp_path)


def test_every_task_declares_a_judge_dimension_with_a_template():
    from videopanda.eval.judge.prompts import DIMENSION_TEMPLATES

    for spec in TASKS.values():
        assert spec.dimensions and all(d in DIMENSION_TEMPLATES for d in spec.dimensions), spec.name
    assert {d for s in TASKS.values() for d in s.dimensions} == set(DIMENSION_TEMPLATES)


# --------------------------------------------------------------------------------------------------- JSONL


def test_a_torn_last_line_is_skipped_on_read_and_cut_off_on_append(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "pr')
    assert [r["id"] for r in read_jsonl(path)] == [1, 2]
    with pytest.raises(RecordError, match="incomplete"):
        read_jsonl(path, allow_torn_tail=False)
    with JsonlAppender(path) as out:
        out.append({"id": 3})
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n{"id": 3}\n'
    path.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(RecordError, match=r"x.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_line_and_paragraph_separators_inside_strings_round_trip(tmp_path):
    """U+2028/U+2029/U+0085 stay unescaped in the written JSON; only "\\n" ends a row."""
    path = tmp_path / "x.jsonl"
    texts = ["a\u2028b", "c\u2029d", "e\x85f", "plain"]
    with JsonlAppender(path) as out:
        for i, text in enumerate(texts):
            out.append({"id": i, "pred": text})
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw, so the reader must not split there
    assert [r["pred"] for r in read_jsonl(path)] == texts


def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"id": 1, "pred": "\xff"}\n')
    with pytest.raises(RecordError, match=r"x.jsonl: not UTF-8 text"):
        read_jsonl(path)


def test_shards_cover_every_record_exactly_once():
    for n in range(0, 23):
        for shards in range(1, 7):
            covered = []
            for k in range(shards):
                start, end = shard_bounds(n, shards, k)
                covered += range(start, end)
            assert covered == list(range(n)), (n, shards)
    with pytest.raises(ValueError, match="shard must be in"):
        shard_bounds(5, 2, 2)


def test_merge_checks_shards_duplicates_and_missing_records(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"num_shards": 2, "ids": ["a", "b", "c"]}))
    write_jsonl(shard_file(tmp_path, 2, 0), [{"id": "b"}, {"id": "a"}])
    with pytest.raises(RecordError, match=r"shard file\(s\) missing: predictions.shard-001-of-002.jsonl"):
        merge_predictions(tmp_path)
    write_jsonl(shard_file(tmp_path, 2, 1), [{"id": "b"}])
    with pytest.raises(RecordError, match="record 'b' also appears in another shard"):
        merge_predictions(tmp_path)
    write_jsonl(shard_file(tmp_path, 2, 1), [])
    with pytest.raises(RecordError, match=r"1 of 3 records have no prediction yet \(e.g. 'c'\)"):
        merge_predictions(tmp_path)
    path, counts = merge_predictions(tmp_path, allow_missing=True)
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]  # question order, not shard-file order
    assert counts == {"records": 3, "written": 2, "errors": 0, "missing": 1}
    write_jsonl(shard_file(tmp_path, 2, 1), [{"id": "c"}, {"id": "zz"}])
    with pytest.raises(RecordError, match="not records of the task"):
        merge_predictions(tmp_path)
