"""benchmarks/dense_teacher.py: per-patch labels follow the scene, and the trained teacher loads for distillation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videopanda.data.synth import COLORS, DIRECTIONS, SHAPES, SynthConfig, build_scenes, generate, render
from videopanda.data.transforms import preprocess_frames
from videopanda.train.teacher import load_teacher

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dense_teacher():
    spec = importlib.util.spec_from_file_location("dense_teacher", REPO / "benchmarks" / "dense_teacher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _teacher_frames(scene) -> torch.Tensor:
    video = render(scene, 16)[np.linspace(0, 15, 8, dtype=int)]  # (8, H, W, 3): the 8 sampled frames, no codec
    return preprocess_frames(torch.from_numpy(np.ascontiguousarray(video)), 8, 56, 14, cells=4)  # (8, 4, 56, 56)


def test_patch_labels_follow_the_scene(dense_teacher):
    scenes, _ = build_scenes(SynthConfig(seed=3, train_videos=30, eval_videos=3))
    frames = torch.stack([_teacher_frames(s) for s in scenes])
    labels = dense_teacher.patch_labels(frames, scenes, 14)  # (N, 8, 16, 5)
    assert labels.shape == (30, 8, 16, 5)
    background = len(COLORS)
    for i, scene in enumerate(scenes):
        colour, shape, direction, count, first = labels[i].unbind(-1)  # each (8, 16)
        on_object = colour != background
        assert on_object.any(), scene.name  # every clip shows its object in some frame
        seen = {list(COLORS)[c] for c in colour[on_object].tolist()}
        assert seen <= {o.color for o in scene.objects}, (scene.name, seen)
        for obj in scene.objects:  # each object patch carries its object's shape
            mask = colour == list(COLORS).index(obj.color)
            assert (shape[mask] == SHAPES.index(obj.shape)).all()
        moving = direction[on_object]
        if scene.kind == "motion":
            assert (moving == DIRECTIONS.index(scene.answers["direction"])).all()
        else:
            assert (moving == len(DIRECTIONS)).all()  # static
        assert (shape[~on_object] == len(SHAPES)).all() and (direction[~on_object] == len(DIRECTIONS) + 1).all()
        if scene.kind == "flash":
            assert set(count[on_object].tolist()) == {["one", "two", "three"].index(scene.answers["count"])}
        else:
            assert (count == dense_teacher.IGNORE).all()
        if scene.kind == "order":
            assert set(first[on_object].tolist()) == {list(COLORS).index(scene.answers["order"])}


def test_the_trained_teacher_is_saved_for_distillation(dense_teacher, tmp_path, monkeypatch, capsys):
    data, out = tmp_path / "synth", tmp_path / "teacher"
    generate(data, SynthConfig(seed=2, train_videos=10, eval_videos=3))
    argv = ["dense_teacher", "--data", str(data), "--out", str(out), "--steps", "2", "--clips", "10", "--width", "32"]
    monkeypatch.setattr(sys, "argv", argv)
    assert dense_teacher.main() == 0
    assert "| 2 |" in capsys.readouterr().out
    teacher = load_teacher(out)
    assert teacher.cfg.width == 32 and teacher.cfg.image_size == 56
    assert not any(p.requires_grad for p in teacher.parameters())
    feats = teacher(torch.randn(1, 8, 4, 56, 56))
    assert feats.shape == (1, 8, 16, 32)
