"""benchmarks/dense_teacher.py: per-patch labels follow the scene, and the trained teacher loads for distillation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.conftest import load_benchmark
from videopanda.data.synth import (
    COLORS,
    DIRECTIONS,
    SHAPES,
    Obj,
    Scene,
    SynthConfig,
    build_scenes,
    generate,
    render,
)
from videopanda.data.transforms import preprocess_frames
from videopanda.train.teacher import TeacherConfig, VideoTeacher, load_teacher


@pytest.fixture(scope="module")
def dense_teacher():
    return load_benchmark("dense_teacher")


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


def test_object_patches_are_where_the_object_is(dense_teacher):
    """A square in the top-left quarter of a 1:1 frame marks the top-left 2x2 teacher patches, row-major."""
    plain = {"kind": "plain", "level": 70, "tint": [0, 0, 0], "period": 12, "angle": 0.0, "amplitude": 0, "seed": 0}
    square = Obj("red", "square", radius=20.0, start=(28.0, 28.0), end=(28.0, 28.0))
    scene = Scene("probe", "flash", "1:1", plain, [square], {"count": "one", "color": "red", "shape": "square"}, "")
    labels = dense_teacher.patch_labels(_teacher_frames(scene)[None], [scene], 14)  # (1, 8, 16, 5)
    on_object = labels[0, 0, :, 0] != len(COLORS)  # (16,) first frame
    assert on_object.view(4, 4).nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert (labels[0, 0, on_object, 1] == SHAPES.index("square")).all()


@pytest.mark.parametrize("image_size, patch_size", [(56, 14), (112, 28)])  # the same 4x4 grid, two resolutions
def test_the_trained_teacher_is_saved_for_distillation(dense_teacher, tmp_path, monkeypatch, capsys, image_size,
                                                       patch_size):  # fmt: skip
    data, out = tmp_path / "synth", tmp_path / "teacher"
    generate(data, SynthConfig(seed=2, train_videos=10, eval_videos=3))
    argv = ["dense_teacher", "--data", str(data), "--out", str(out), "--steps", "2", "--clips", "10", "--width", "32",
            "--image-size", str(image_size), "--patch-size", str(patch_size)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert dense_teacher.main() == 0
    assert "| 2 |" in capsys.readouterr().out
    teacher = load_teacher(out)
    assert teacher.cfg.width == 32 and teacher.cfg.image_size == image_size and teacher.cfg.patch_size == patch_size
    assert not any(p.requires_grad for p in teacher.parameters())
    feats = teacher(torch.randn(1, 8, 4, image_size, image_size))
    assert feats.shape == (1, 8, 16, 32)
    torch.manual_seed(0)  # the script's seed: the same initialisation, before its two optimizer steps
    untrained = VideoTeacher(teacher.cfg).state_dict()
    changed = [k for k, v in teacher.state_dict().items() if not torch.equal(v, untrained[k])]
    assert any("patch_embedding" in k for k in changed) and any("encoder.layers.0" in k for k in changed)


def test_too_few_clips_is_a_clear_error(dense_teacher, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["dense_teacher", "--clips", "3"])
    with pytest.raises(SystemExit):
        dense_teacher.main()
    assert "--clips 3: need at least 10" in capsys.readouterr().err


def test_a_canvas_that_is_not_a_multiple_of_the_patch_is_a_clear_error(dense_teacher, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["dense_teacher", "--image-size", "112", "--patch-size", "30"])
    with pytest.raises(SystemExit):
        dense_teacher.main()
    assert "teacher sizes: image_size 112 is not a multiple of patch_size 30" in capsys.readouterr().err


def test_features_is_forward_with_a_graph():
    cfg = TeacherConfig(width=32, num_layers=2, num_heads=4, mlp_dim=64, image_size=28, patch_size=14, num_frames=4)
    teacher = VideoTeacher(cfg)
    frames = torch.randn(2, 4, 3, 28, 28)
    frozen = teacher(frames)
    assert not frozen.requires_grad
    teacher.requires_grad_(True)
    feats = teacher.features(frames)
    torch.testing.assert_close(feats, frozen)
    feats.sum().backward()
    assert teacher.vision_model.embeddings.patch_embedding.weight.grad is not None
