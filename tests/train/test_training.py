"""Training: stage freezing, one step, overfitting, resume, distillation masking, DeepSpeed configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_model_config
from tests.model.frames import letterboxed
from tests.train.conftest import REPO, loop_overrides
from videopanda.config import load_config
from videopanda.data import DataCollator, VideoPandaDataset, load_tokenizer
from videopanda.model import build_model
from videopanda.model.geometry import frame_token_counts
from videopanda.plots import read_tensorboard_scalars
from videopanda.train.config import TrainConfig
from videopanda.train.distill import DistillHead, distillation_loss, select_layers
from videopanda.train.loop import train
from videopanda.train.optim import build_optimizer, lr_lambda
from videopanda.train.stages import apply_trainable
from videopanda.train.task import TrainingTask

CONFIGS = REPO / "configs"


def _task(trainable, distill=True):
    model = build_model(tiny_model_config())
    layers = select_layers(model.config.text_config.num_hidden_layers, 1)
    head = DistillHead(64, 16, len(layers), num_heads=2) if distill else None
    task = TrainingTask(model, head, layers, teacher_patch=8)
    return task, apply_trainable(task, trainable)


@pytest.mark.parametrize("stage", ["prealign", "pretrain", "finetune", "tiny_prealign", "tiny_finetune"])
def test_each_stage_freezes_exactly_its_groups(stage):
    cfg = load_config(TrainConfig, CONFIGS / "train" / f"{stage}.yaml")
    task, counts = _task(cfg.stage.trainable)
    expected_on = {"prealign": {"stab", "projector", "distill_head"}, "tiny_prealign": {"stab", "projector", "distill_head"}}
    on = expected_on.get(stage, {"stab", "projector", "distill_head", "llm"})
    assert {g for g, (n, total) in counts.items() if n} == on
    model = task.model
    stab_total = sum(p.numel() for p in model.model.video_tokenizer.parameters())
    llm_total = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    assert counts["stab"] == (stab_total, stab_total)
    assert counts["llm"] == ((llm_total if "llm" in on else 0), llm_total)
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    assert trainable == sum(n for n, _ in counts.values())


def _batch(synth_dir: Path, n: int = 4, teacher: bool = False):
    cfg = load_config(TrainConfig, CONFIGS / "train" / "tiny_prealign.yaml", [f"data.root={synth_dir}"])
    cfg.data.image_size, cfg.data.patch_size = 32, 4
    cfg.data.teacher_image_size, cfg.data.teacher_patch_size, cfg.data.teacher = 32, 8, teacher
    tok = load_tokenizer(synth_dir / "tokenizer")
    ds = VideoPandaDataset(cfg.data, tok, tiny_model_config().video_tokenizer, train=True)
    return DataCollator(tok.pad_token_id)([ds[i] for i in range(n)]), tok


def _vocab_model(tok):
    cfg = tiny_model_config()
    cfg.llm["vocab_size"] = len(tok)
    return build_model(cfg)


def test_one_step_moves_only_trainable_parameters(synth_dir):
    batch, tok = _batch(synth_dir)
    task = TrainingTask(_vocab_model(tok))
    apply_trainable(task, ["stab", "projector"])
    cfg = load_config(TrainConfig, CONFIGS / "train" / "tiny_prealign.yaml")
    opt = build_optimizer(task, cfg.stage, cfg.optim)
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    task.train()
    task(batch)["loss"].backward()
    opt.step()
    for name, p in task.named_parameters():
        moved = not torch.equal(before[name], p.detach())
        trainable = name.startswith(("model.model.video_tokenizer", "model.model.projector"))
        if trainable and p.grad is not None and p.grad.abs().sum() > 0:
            assert moved, name
        if not trainable:
            assert not moved, name


def test_loss_falls_when_overfitting_one_batch(synth_dir):
    batch, tok = _batch(synth_dir)
    task = TrainingTask(_vocab_model(tok))
    apply_trainable(task, ["stab", "projector", "llm"])
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    losses = []
    for _ in range(40):
        loss = task(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses


def test_distillation_loss_ignores_padded_frames_and_is_positive_for_real_ones():
    model = build_model(tiny_model_config()).eval()
    stab = model.model.video_tokenizer
    frames = letterboxed(1, 8, 32, (8, 24, 0, 32), padded_from=6)  # 6 real frames, 2 padded
    teacher_frames = torch.nn.functional.interpolate(frames[0], size=(32, 32))[None]  # same geometry, patch 8
    teacher_frames[:, 6:] = 0
    with torch.no_grad():
        visual = stab(frames)
    counts = frame_token_counts(frames, 4, stab.cfg.padded_crop)[0]
    n = int(counts.sum())
    input_ids = torch.tensor([[1, 5, 6] + [-200] * n + [7, 2]])
    layers = select_layers(2, 1)  # [2, 1, 0]
    hidden = tuple(torch.randn(1, input_ids.shape[1], 64, requires_grad=True) for _ in range(3))
    head = DistillHead(64, 16, len(layers), num_heads=2)
    teacher_features = torch.randn(1, 8, 16, 16)  # (Bv, F, 4x4 teacher patches, Dt)
    loss, real = distillation_loss(head, hidden, layers, input_ids, -200, visual, True, teacher_features,
                                   teacher_frames, 8)
    assert real == 6 and 0 < float(loss.detach()) <= 2
    loss.backward()
    grad = sum(h.grad[0].abs().sum(-1) for h in hidden)  # (S,)
    starts = 3 + torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])
    for f in range(8):
        span = grad[starts[f] : starts[f] + counts[f]]
        if f >= 6:
            assert torch.count_nonzero(span) == 0, f"padded frame {f} got gradient"
        else:
            h, w = 2, 4  # content 4x8 patches -> 2x4 LSD tokens, rows end with a split token
            grid = [1 + r * (w + 1) + c for r in range(h) for c in range(w)]
            others = [i for i in range(len(span)) if i not in grid]  # context and split tokens
            assert torch.all(span[grid] > 0) and torch.count_nonzero(span[others]) == 0
    assert torch.count_nonzero(grad[:3]) == 0 and torch.count_nonzero(grad[-2:]) == 0


def test_distillation_loss_is_zero_when_prediction_matches_teacher():
    """Closed form: a head whose prediction equals the targets gives exactly 0 (1 - cos = 0)."""
    model = build_model(tiny_model_config()).eval()
    frames = letterboxed(1, 4, 32)
    with torch.no_grad():
        visual = model.model.video_tokenizer(frames)
    n = int(visual.frame_token_counts.sum())
    input_ids = torch.tensor([[1] + [-200] * n])
    head = DistillHead(64, 16, 3, num_heads=2)
    hidden = tuple(torch.randn(1, n + 1, 64) for _ in range(3))
    with torch.no_grad():
        from videopanda.train.distill import grid_token_positions

        rows, cols, _ = grid_token_positions(input_ids, -200, visual, True, torch.ones(4, dtype=torch.bool))
        pred = head(torch.stack([hidden[i][rows, cols] for i in (2, 1, 0)], 1))  # (64 tokens, 16)
    teacher = (pred * 3.0).view(1, 4, 16, 16)  # same direction, other scale
    loss, _ = distillation_loss(head, hidden, [2, 1, 0], input_ids, -200, visual, True, teacher, frames, 8)
    assert abs(float(loss)) < 1e-5


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(100, 0.1, "cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.02) and f(100) == pytest.approx(0.0, abs=1e-9)


def _run(synth_dir, out, *extra):
    cfg = load_config(
        TrainConfig,
        CONFIGS / "train" / "tiny_finetune.yaml",
        loop_overrides(synth_dir, out, "model.config=configs/model/tiny.yaml", "model.init_from=", *extra),
    )
    return train(cfg)


def test_resume_reproduces_the_next_steps_of_an_uninterrupted_run(synth_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    common = ("optim.max_steps=4", "optim.batch_size=2", "checkpoint.every_steps=2", "checkpoint.keep_last=2",
              "optim.epochs=1")
    full = _run(synth_dir, tmp_path / "full", *common)
    assert (full / "checkpoint-2" / "train_state.json").is_file()
    assert (full / "model.safetensors").is_file() and (full / "distill_head.safetensors").is_file()
    assert not any("teacher" in k for k in json.loads((full / "model.safetensors.index.json").read_text())["weight_map"]) \
        if (full / "model.safetensors.index.json").exists() else True
    # A "killed" run: only the checkpoint of step 2 survived (plus a half-written one that must be ignored).
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copytree(full / "checkpoint-2", killed / "checkpoint-2")
    shutil.copytree(full / "checkpoint-2", killed / "checkpoint-3.tmp")
    resumed = _run(synth_dir, killed, *common)
    a = read_tensorboard_scalars(full / "tb")
    b = read_tensorboard_scalars(resumed / "tb")
    steps_b = dict(b["loss/lm"])
    assert sorted(steps_b) == [3, 4]  # it continued from step 2, not from scratch
    for step in (3, 4):
        assert steps_b[step] == pytest.approx(dict(a["loss/lm"])[step], rel=1e-5)
        assert dict(b["loss/distill"])[step] == pytest.approx(dict(a["loss/distill"])[step], rel=1e-5)
    from safetensors.torch import load_file

    wa, wb = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("name", ["zero2", "zero2_offload", "zero3", "zero3_offload"])
def test_every_deepspeed_json_is_accepted_by_deepspeed(name, tmp_path, monkeypatch):
    from deepspeed.runtime.config import DeepSpeedConfig

    from videopanda.train.loop import _deepspeed_plugin, _fill_auto_buckets

    cfg = load_config(TrainConfig, CONFIGS / "train" / "finetune.yaml", [f"distributed.deepspeed=configs/deepspeed/{name}.json"])
    monkeypatch.chdir(REPO)
    plugin = _deepspeed_plugin(cfg, world_size=1)  # DeepSpeedConfig checks the batch against this process group
    _fill_auto_buckets(plugin, 4096)
    ds = plugin.deepspeed_config
    assert "auto" not in json.dumps(ds), ds
    parsed = DeepSpeedConfig(ds)
    assert parsed.train_batch_size == 4 and parsed.bfloat16_config.enabled
    assert parsed.zero_optimization_stage == (3 if name.startswith("zero3") else 2)
    assert parsed.gradient_clipping == 1.0
