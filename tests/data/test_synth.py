"""The synthetic VideoQA set: deterministic, well-formed, and its answers are visible in the 8 sampled frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from videopanda.data.__main__ import _parser as data_parser
from videopanda.data.__main__ import main as data_main
from videopanda.data.__main__ import synth_config
from videopanda.data.records import load_records
from videopanda.data.synth import (
    COLORS,
    QUESTION_TYPES,
    SynthConfig,
    build_scenes,
    generate,
    render,
    train_record,
)
from videopanda.data.video_io import read_video


def _color_masks(frames: np.ndarray, color: str, tol: int = 60) -> np.ndarray:
    """(T, H, W) pixels close to a palette colour."""
    target = np.asarray(COLORS[color], dtype=np.int32)
    return np.abs(frames.astype(np.int32) - target).max(axis=-1) < tol


def test_same_seed_same_files_and_pixels_different_seed_differs(tmp_path, synth_dir):
    """JSON, tokenizer and rendered pixels are bit-exact; the lossy h264 bytes are only promised to decode closely.

    (A CI machine once produced an mp4 one byte longer for identical input pixels, so the encoder's bytes are
    not part of the contract.)
    """
    again = tmp_path / "again"
    generate(again, SynthConfig(seed=3, train_videos=24, eval_videos=6))
    files = ("train.json", "eval/test_q.json", "eval/test_a.json", "eval/vcg/consistency_qa.json", "chance.json")
    for rel in (*files, "tokenizer/tokenizer.json"):
        assert (again / rel).read_bytes() == (synth_dir / rel).read_bytes(), rel
    cfg = SynthConfig(seed=3, train_videos=24, eval_videos=6)
    first, second = build_scenes(cfg), build_scenes(cfg)
    for a, b in zip(first[0] + first[1], second[0] + second[1], strict=True):
        assert np.array_equal(render(a, cfg.frames), render(b, cfg.frames)), a.name
    for name in ("train_00000.mp4", "train_00003.mp4", "eval_00005.mp4"):
        a = read_video(again / "videos" / name, 16).frames.float()
        b = read_video(synth_dir / "videos" / name, 16).frames.float()
        assert a.shape == b.shape and (a - b).abs().mean() < 1.0, name
    other = tmp_path / "other"
    generate(other, SynthConfig(seed=4, train_videos=24, eval_videos=6))
    assert (other / "train.json").read_bytes() != (synth_dir / "train.json").read_bytes()
    other_frames = read_video(other / "videos" / "train_00000.mp4", 16).frames.float()
    ours = read_video(synth_dir / "videos" / "train_00000.mp4", 16).frames.float()
    assert other_frames.shape != ours.shape or (other_frames - ours).abs().mean() > 5.0


def test_files_have_the_documented_formats(synth_dir):
    records, report = load_records(synth_dir / "train.json", synth_dir / "videos")
    assert len(records) == 24 and not report.problems and report.counts["video"] == 24
    raw = json.loads((synth_dir / "train.json").read_text())
    motion = [r for r in raw if r["scene"] == "motion"]
    assert motion and all(r["allow_flip"] is False for r in motion)  # mirroring would falsify "left"/"right"
    assert all(r.allow_flip == (raw[k]["scene"] != "motion") for k, r in enumerate(records))
    questions = json.loads((synth_dir / "eval/test_q.json").read_text())
    answers = json.loads((synth_dir / "eval/test_a.json").read_text())
    assert len(questions) == len(answers) == 12
    assert [q["question_id"] for q in questions] == [a["question_id"] for a in answers]
    assert set(questions[0]) == {"video_name", "question_id", "question"}
    assert all((synth_dir / "videos" / f"{q['video_name']}.mp4").is_file() for q in questions)
    assert {a["type"] for a in answers} <= set(QUESTION_TYPES) and all(len(a["answer"].split()) == 1 for a in answers)
    generic = json.loads((synth_dir / "eval/vcg/generic_qa.json").read_text())
    consistency = json.loads((synth_dir / "eval/vcg/consistency_qa.json").read_text())
    assert set(generic[0]) == {"video_name", "Q", "A"} and set(consistency[0]) == {"video_name", "Q1", "Q2", "A"}
    chance = json.loads((synth_dir / "chance.json").read_text())
    assert chance["color"]["chance"] == pytest.approx(1 / 6) and chance["order"]["chance"] == 0.5
    assert chance["count"]["chance"] == pytest.approx(1 / 3) and chance["direction"]["needs_time"]
    assert "chance" in (synth_dir / "README.md").read_text()
    tok = AutoTokenizer.from_pretrained(synth_dir / "tokenizer")
    assert len(tok) <= 1024 and tok.unk_token_id == 0 and tok.eos_token_id == 2


def test_answers_are_visible_in_the_eight_sampled_frames(synth_dir):
    """Recover every temporal answer from the pixels of the 8 frames the reference rule samples."""
    answers = {a["question_id"]: a for a in json.loads((synth_dir / "eval/test_a.json").read_text())}
    questions = json.loads((synth_dir / "eval/test_q.json").read_text())
    checked = set()
    for q in questions:
        a = answers[q["question_id"]]
        frames = read_video(synth_dir / "videos" / f"{q['video_name']}.mp4", 8).frames.numpy()  # (8, H, W, 3)
        words = q["question"].rstrip("?").split()
        if a["type"] == "direction":
            mask = _color_masks(frames, words[words.index("the") + 1])
            ys, xs = zip(*[np.argwhere(m).mean(axis=0) for m in mask[[0, -1]]], strict=True)
            dx, dy = xs[1] - xs[0], ys[1] - ys[0]
            seen = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert seen == a["answer"], q
        elif a["type"] == "count":
            visible = _color_masks(frames, words[words.index("the") + 1]).sum(axis=(1, 2)) > 20
            onsets = int(visible[0]) + int(np.sum(visible[1:] & ~visible[:-1]))
            assert ["one", "two", "three"][onsets - 1] == a["answer"], q
        elif a["type"] == "order":
            firsts = {}
            for color in a["options"]:
                visible = _color_masks(frames, color).sum(axis=(1, 2)) > 20
                firsts[color] = int(np.argmax(visible))
            assert min(firsts, key=firsts.get) == a["answer"] and len(set(firsts.values())) == 2, q
        checked.add(a["type"])
    assert checked >= {"direction", "count", "order"}


def test_synth_command_writes_the_set(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "s"), "--seed", "1", "--train-videos", "3", "--eval-videos", "3"]
    assert data_main(argv) == 0
    assert "wrote 3 training clips" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "videos").glob("*.mp4"))) == 6
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]["train_scene_weights"] == [3, 1, 1]


def test_synth_command_sets_the_training_mix_and_rejects_a_bad_one(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "s"), "--train-videos", "6", "--eval-videos", "3"]
    assert data_main([*argv, "--scene-weights", "0", "0", "1"]) == 0
    train = json.loads((tmp_path / "s" / "train.json").read_text())
    assert {r["scene"] for r in train} == {"flash"}
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]["train_scene_weights"] == [0, 0, 1]
    capsys.readouterr()
    assert data_main(["synth", "--out", str(tmp_path / "t"), "--scene-weights", "0", "0", "0"]) == 2
    assert "train_scene_weights=(0.0, 0.0, 0.0)" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def _question_type(question: str) -> str:
    """The type of a synthetic question, from its first words."""
    starts = {"What color": "color", "What shape": "shape", "Which direction": "direction", "Which appears": "order",
              "How many": "count"}  # fmt: skip
    text = question.replace("<video>", "").strip()
    return next(t for start, t in starts.items() if text.startswith(start))


def test_no_training_answer_is_written_in_an_earlier_turn():
    """Otherwise the model learns to copy answers from the question text and fails the single-question evaluation."""
    cfg = SynthConfig(seed=5, train_videos=600, eval_videos=1)
    scenes, _ = build_scenes(cfg)
    firsts, order_hits, order_total = set(), 0, 0
    for i, scene in enumerate(scenes):
        turns = train_record(scene, np.random.default_rng([cfg.seed, 3, i]))["conversations"]
        firsts.add(_question_type(turns[0]["value"]))
        for k in range(1, len(turns), 2):
            answer = turns[k]["value"]
            earlier = " ".join(t["value"] for t in turns[: k - 1]).lower().replace("?", " ").split()
            if scene.kind == "order" and k == 3:  # two-choice: names both colours; the static turn is about either
                order_total += 1
                order_hits += answer in earlier
            elif len(answer.split()) == 1:  # a QA answer, not a caption
                assert answer not in earlier, (scene.name, answer, earlier)
    # every type the evaluation asks (one question per prompt) is also asked first in training
    assert firsts == {"color", "shape", "direction", "order", "count"}
    assert order_total > 70 and 0.35 < order_hits / order_total < 0.65  # no hint about which object came first


def test_training_scene_weights_set_the_mix_and_leave_evaluation_balanced():
    kinds = lambda scenes: [s.kind for s in scenes]  # noqa: E731
    train, evals = build_scenes(SynthConfig(seed=1, train_videos=400, eval_videos=30, train_scene_weights=(0, 1, 0)))
    assert set(kinds(train)) == {"order"} and kinds(evals).count("motion") == kinds(evals).count("flash") == 10
    train, _ = build_scenes(SynthConfig(seed=1, train_videos=600, eval_videos=3, train_scene_weights=(1, 1, 1)))
    assert 0.27 < kinds(train).count("motion") / len(train) < 0.40
    train, _ = build_scenes(SynthConfig(seed=1, train_videos=600, eval_videos=3))
    assert 0.54 < kinds(train).count("motion") / len(train) < 0.66  # default weights (3, 1, 1)
    assert 0.14 < kinds(train).count("flash") / len(train) < 0.26
    with pytest.raises(ValueError, match="train_scene_weights"):
        SynthConfig(train_scene_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="train_scene_weights"):
        SynthConfig(train_scene_weights=(0.0, 0.0, 0.0))


def _first_questions(cfg: SynthConfig) -> list[str]:
    """The type of the first question of every training record of ``cfg``."""
    scenes, _ = build_scenes(cfg)
    mix = (cfg.train_static_first, cfg.train_shape_share)
    records = [train_record(s, np.random.default_rng([cfg.seed, 3, i]), *mix) for i, s in enumerate(scenes)]
    return [_question_type(r["conversations"][0]["value"]) for r in records]


def test_training_question_mix_sets_how_often_colour_and_shape_open_a_record():
    n = 800
    default = _first_questions(SynthConfig(seed=2, train_videos=n, eval_videos=1))
    static = [t for t in default if t in ("color", "shape")]
    assert 0.65 < len(static) / n < 0.75 and 0.75 < static.count("shape") / len(static) < 0.85  # 0.7 and 0.8
    mix = _first_questions(
        SynthConfig(seed=2, train_videos=n, eval_videos=1, train_static_first=0.4, train_shape_share=0.5)
    )
    static = [t for t in mix if t in ("color", "shape")]
    assert 0.35 < len(static) / n < 0.45 and 0.43 < static.count("shape") / len(static) < 0.57
    only_temporal = _first_questions(SynthConfig(seed=2, train_videos=50, eval_videos=1, train_static_first=0.0))
    assert not {"color", "shape"} & set(only_temporal)
    for name in ("train_static_first", "train_shape_share"):
        with pytest.raises(ValueError, match=name):
            SynthConfig(**{name: 1.5})


def test_synth_command_sets_the_question_mix(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "s"), "--train-videos", "6", "--eval-videos", "3"]
    assert data_main([*argv, "--static-first", "1", "--shape-share", "1"]) == 0
    train = json.loads((tmp_path / "s" / "train.json").read_text())
    assert {_question_type(r["conversations"][0]["value"]) for r in train} == {"shape"}
    config = json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]
    assert (config["train_static_first"], config["train_shape_share"]) == (1, 1)
    # the set's README says how to regenerate it: that command rebuilds the same config, mix included
    readme = (tmp_path / "s" / "README.md").read_text()
    command = readme.split("Regenerate with `", 1)[1].split("`", 1)[0].split()
    assert command[:3] == ["videopanda", "data", "synth"]
    assert synth_config(data_parser().parse_args(command[2:])) == SynthConfig.from_manifest(tmp_path / "s")
    capsys.readouterr()
    assert data_main(["synth", "--out", str(tmp_path / "t"), "--shape-share", "2"]) == 2
    assert "train_shape_share=2.0" in capsys.readouterr().err


def test_evaluation_answers_are_not_tied_to_the_words_of_their_questions():
    """Each question type is balanced, and knowing a colour or shape word of the question says little about the answer
    (cycling every attribute with one counter once tied every "red ..." question to two of four directions)."""
    from collections import Counter, defaultdict

    from videopanda.data.synth import SHAPES, eval_files

    _, scenes = build_scenes(SynthConfig(seed=2, train_videos=1, eval_videos=600))
    files = eval_files(scenes)
    answers = {a["question_id"]: a for a in files["test_a.json"]}
    by_word, by_type = defaultdict(Counter), defaultdict(Counter)
    for q in files["test_q.json"]:
        a = answers[q["question_id"]]
        by_type[a["type"]][a["answer"]] += 1
        for word in q["question"].rstrip("?").lower().split():
            if word in COLORS or word in SHAPES:
                by_word[(a["type"], word)][a["answer"]] += 1
    for qtype, counts in by_type.items():
        if qtype == "order":  # balanced by which of the two named shapes is the answer (chance.json's majority)
            continue
        assert max(counts.values()) - min(counts.values()) <= 3, (qtype, counts)  # balanced (up to one per kind)
    checked = 0
    for (qtype, word), counts in by_word.items():
        total = sum(counts.values())
        if qtype != "order" and total >= 20:
            assert max(counts.values()) / total < 0.5, (qtype, word, counts)
            checked += 1
    assert checked >= 20


def test_a_set_rebuilds_its_scenes_from_its_manifest(tmp_path, synth_dir):
    cfg = SynthConfig.from_manifest(synth_dir)
    assert cfg.seed == json.loads((synth_dir / "manifest.json").read_text())["config"]["seed"]
    records = json.loads((synth_dir / "train.json").read_text())
    assert [(s.name, s.kind) for s in build_scenes(cfg)[0]] == [(r["id"], r["scene"]) for r in records]
    with pytest.raises(FileNotFoundError, match="videopanda data synth --out"):
        SynthConfig.from_manifest(tmp_path)
