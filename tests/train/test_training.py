"""Training: stage freezing, one step, overfitting, distillation masking, schedule, run folder, resume, stage chain,
EVE start, DeepSpeed configs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import tiny_model_config
from tests.model.frames import letterboxed
from tests.train.conftest import REPO, loop_overrides
from videopanda.config import load_config, save_config
from videopanda.data import DataCollator, VideoPandaDataset, load_tokenizer
from videopanda.model import build_model, load_model
from videopanda.model.geometry import frame_token_counts
from videopanda.plots import read_tensorboard_scalars
from videopanda.train import loop
from videopanda.train.__main__ import main
from videopanda.train.config import TrainConfig
from videopanda.train.distill import DistillHead, distillation_loss, grid_token_positions, select_layers
from videopanda.train.loop import build_training_model, deepspeed_config
from videopanda.train.optim import build_optimizer, lr_lambda
from videopanda.train.stages import apply_trainable
from videopanda.train.task import TrainingTask
from videopanda.train.teacher import TeacherConfig, VideoTeacher

CONFIGS = REPO / "configs"
# A teacher matching the unit tests' 32 px student (patch 4 -> 8x8 patches -> 4x4 tokens): 32 px, patch 8.
TINY_TEACHER = TeacherConfig(width=16, num_layers=1, num_heads=2, mlp_dim=32, image_size=32, patch_size=8)


def _task(trainable, distill=True):
    model = build_model(tiny_model_config())
    layers = select_layers(model.config.text_config.num_hidden_layers, 1)
    head = DistillHead(64, 16, len(layers), num_heads=2) if distill else None
    task = TrainingTask(model, head, layers, teacher_patch=8)
    return task, apply_trainable(task, trainable)


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("stage", ["prealign", "pretrain", "finetune", "tiny_prealign", "tiny_finetune"])
def test_each_stage_freezes_exactly_its_groups(stage):
    cfg = load_config(TrainConfig, CONFIGS / "train" / f"{stage}.yaml")
    task, counts = _task(cfg.stage.trainable)
    on = {"stab", "projector", "distill_head"} | ({"llm"} if stage.endswith(("pretrain", "finetune")) else set())
    model = task.model
    totals = {
        "stab": _numel(model.model.video_tokenizer),
        "projector": _numel(model.model.projector),
        "llm": _numel(model.model.language_model) + model.lm_head.weight.numel(),
        "distill_head": _numel(task.head),
    }
    assert counts == {g: (totals[g] if g in on else 0, totals[g]) for g in totals}
    assert sum(p.numel() for p in task.parameters() if p.requires_grad) == sum(n for n, _ in counts.values())
    assert all(p.requires_grad == ("llm" in on) for p in model.model.language_model.parameters())


def test_distillation_off_with_one_key():
    cfg = load_config(TrainConfig, CONFIGS / "train" / "prealign.yaml", ["distill.enabled=false"])
    assert cfg.stage.trainable == ["stab", "projector"]
    on = load_config(TrainConfig, CONFIGS / "train" / "finetune.yaml")
    assert on.distill.enabled and on.distill.weight == 1.0 and on.data.teacher


def test_optimizer_has_one_learning_rate_per_group():
    cfg = load_config(
        TrainConfig, CONFIGS / "train" / "finetune.yaml", ["stage.lr_stab=0.001", "stage.lr_projector=0.002"]
    )
    task, _ = _task(cfg.stage.trainable)
    opt = build_optimizer(task, cfg.stage, cfg.optim)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["stab"] == lrs["stab/no_decay"] == 1e-3 and lrs["projector"] == 2e-3
    assert lrs["llm"] == lrs["distill_head"] == 2e-5
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(task.parameters()))


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


def test_one_prealign_step_moves_only_trainable_parameters(synth_dir):
    batch, tok = _batch(synth_dir, teacher=True)
    model = _vocab_model(tok)
    layers = select_layers(2, 1)
    task = TrainingTask(model, DistillHead(64, TINY_TEACHER.width, len(layers), 2), layers, teacher_patch=8)
    cfg = load_config(TrainConfig, CONFIGS / "train" / "tiny_prealign.yaml")
    apply_trainable(task, cfg.stage.trainable)  # stab, projector, distill_head
    opt = build_optimizer(task, cfg.stage, cfg.optim)
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    task.train()
    losses = task(batch, VideoTeacher(TINY_TEACHER)(batch["teacher_pixel_values_videos"]))
    assert float(losses["distill_loss"]) > 0 and int(losses["real_frames"]) == 4 * 8
    losses["loss"].backward()
    opt.step()
    moved = {n for n, p in task.named_parameters() if not torch.equal(before[n], p.detach())}
    trainable = ("model.model.video_tokenizer.", "model.model.projector.", "head.")
    assert moved and all(n.startswith(trainable) for n in moved)
    with_grad = {n for n, p in task.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad <= moved
    assert {n for n in moved if n.startswith("head.")} == {n for n, _ in task.head.named_parameters(prefix="head")}


def test_loss_falls_when_overfitting_one_batch(synth_dir):
    batch, tok = _batch(synth_dir, n=2)
    task = TrainingTask(_vocab_model(tok))
    apply_trainable(task, ["stab", "projector", "llm"])
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=5e-3)
    task.train()
    losses = []
    for _ in range(40):
        loss = task(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses


def test_hidden_states_are_embeddings_then_layers_with_the_last_after_the_final_norm():
    """The head reads index L as the reference's layer 32: the output after the final RMSNorm (reference §3.2)."""
    model = build_model(tiny_model_config()).eval()
    lm = model.model.language_model
    raw = {}
    lm.layers[-1].register_forward_hook(
        lambda mod, args, out: raw.update(last=out[0] if isinstance(out, tuple) else out)
    )
    frames = letterboxed(1, 4, 32)
    with torch.no_grad():
        n = int(model.model.video_tokenizer(frames).frame_token_counts.sum())
        ids = torch.tensor([[1, 5] + [-200] * n + [7]])
        out = model(input_ids=ids, pixel_values_videos=frames, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.text_config.num_hidden_layers + 1
    torch.testing.assert_close(out.hidden_states[-1], lm.norm(raw["last"]))
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    visual = ids[0] == -200
    assert not torch.allclose(out.hidden_states[0][0, visual], out.hidden_states[1][0, visual])
    assert select_layers(32, 4) == [32, 28, 24, 20, 16, 12, 8, 4, 0] and select_layers(4, 1) == [4, 3, 2, 1, 0]


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
    loss, real = distillation_loss(
        head, hidden, layers, input_ids, -200, visual, True, teacher_features, teacher_frames, 8
    )
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
        rows, cols, _ = grid_token_positions(input_ids, -200, visual, True, torch.ones(4, dtype=torch.bool))
        pred = head(torch.stack([hidden[i][rows, cols] for i in (2, 1, 0)], 1))  # (64 tokens, 16)
        teacher = (pred * 3.0).view(1, 4, 16, 16)  # same direction, other scale
        loss, _ = distillation_loss(head, hidden, [2, 1, 0], input_ids, -200, visual, True, teacher, frames, 8)
    assert abs(float(loss)) < 1e-5


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(100, 0.1, "cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.02) and f(100) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# One real run of the entry point (4 steps, checkpoints every 2), shared by the tests below

COMMON = ("optim.max_steps=4", "optim.batch_size=2", "checkpoint.every_steps=2", "checkpoint.keep_last=2")


def _run(synth_dir: Path, out: Path, *extra: str) -> Path:
    code = main([str(CONFIGS / "train" / "tiny_finetune.yaml"), *loop_overrides(synth_dir, out, *COMMON, *extra)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def finished_run(synth_dir, tmp_path_factory) -> Path:
    return _run(synth_dir, tmp_path_factory.mktemp("run") / "full")


def test_run_folder_holds_config_model_head_tokenizer_and_separate_scalars(finished_run):
    out = finished_run
    cfg = load_config(TrainConfig, out / "config.yaml")  # the resolved config, loadable as is
    assert cfg.optim.max_steps == 4 and cfg.output_dir == str(out)
    weights = load_file(out / "model.safetensors")
    assert weights and not any(k.startswith(("head", "teacher")) or "norm_layer" in k for k in weights)
    head = load_file(out / "distill_head.safetensors")
    assert {k.split(".")[0] for k in head} == {"norm_layer", "input_layer", "output_layer"}
    assert (out / "tokenizer.json").is_file() and (out / "checkpoint-2" / "train_state.json").is_file()
    scalars = read_tensorboard_scalars(out / "tb")
    for tag in (
        "loss/lm",
        "loss/distill",
        "lr/stab",
        "lr/projector",
        "lr/distill_head",
        "lr/llm",
        "throughput/tokens_per_s",
        "throughput/samples_per_s",
    ):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4], tag
    assert all(v > 0 for _, v in scalars["loss/distill"]) and scalars["lr/llm"][0][1] > scalars["lr/llm"][-1][1]


def test_killed_run_resumes_from_its_last_complete_checkpoint_with_the_same_next_steps(
    finished_run, synth_dir, tmp_path
):
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copytree(finished_run / "checkpoint-2", killed / "checkpoint-2")
    # What a crash can leave behind: a checkpoint still being written, and one without its completion marker.
    shutil.copytree(finished_run / "checkpoint-2", killed / "checkpoint-3.tmp")
    shutil.copytree(finished_run / "checkpoint-2", killed / "checkpoint-3")
    (killed / "checkpoint-3" / "train_state.json").unlink()
    resumed = _run(synth_dir, killed)
    a, b = read_tensorboard_scalars(finished_run / "tb"), read_tensorboard_scalars(resumed / "tb")
    assert [s for s, _ in b["loss/lm"]] == [3, 4]  # continued after step 2, not from scratch or from step 3
    for tag in ("loss/lm", "loss/distill", "lr/stab"):
        assert dict(b[tag]) == pytest.approx({s: v for s, v in a[tag] if s > 2}, rel=1e-5), tag
    wa, wb = load_file(finished_run / "model.safetensors"), load_file(resumed / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_next_stage_starts_from_the_previous_output_with_its_head(finished_run):
    cfg = load_config(TrainConfig, CONFIGS / "train" / "tiny_finetune.yaml", [f"model.init_from={finished_run}"])
    model, head_state = build_training_model(cfg)
    saved = load_file(finished_run / "model.safetensors")
    for k, v in model.state_dict().items():
        if k in saved:
            assert torch.equal(v, saved[k]), k
    head = load_file(finished_run / "distill_head.safetensors")
    assert head_state.keys() == head.keys() and all(torch.equal(head_state[k], head[k]) for k in head)


def test_prealign_starts_from_an_eve_checkpoint_with_its_distillation_head(tmp_path):
    from tests.model.test_convert import to_reference

    source = build_model(tiny_model_config())
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.1)
    ref = to_reference(source.state_dict(), "eve")
    head = DistillHead(64, 16, len(select_layers(2, 1)), num_heads=2)  # an EVE head for a 2-layer LLM
    ref |= {f"model.vision_tower_compressor.{k}": v + 0.1 for k, v in head.state_dict().items()}
    eve = tmp_path / "eve"
    eve.mkdir()
    save_file(ref, str(eve / "model.safetensors"))
    save_config(tiny_model_config(), tmp_path / "tiny.yaml")
    cfg = load_config(
        TrainConfig,
        CONFIGS / "train" / "prealign.yaml",
        [f"model.config={tmp_path / 'tiny.yaml'}", f"model.init_from={eve}", "distill.layer_rate=1"],
    )
    assert cfg.model.init_format == "eve"
    model, head_state = build_training_model(cfg)
    ours = model.state_dict()
    assert torch.equal(
        ours["model.video_tokenizer.split_embedding"], source.state_dict()["model.video_tokenizer.split_embedding"]
    )
    assert torch.count_nonzero(ours["model.video_tokenizer.fusion.balance"]) == 0  # a Video-Panda module: fresh
    head.load_state_dict(head_state)  # strict: the EVE head continues as ours
    assert torch.equal(head.output_layer.bias, ref["model.vision_tower_compressor.output_layer.bias"])


@pytest.mark.parametrize("name", ["zero2", "zero2_offload", "zero3", "zero3_offload"])
def test_every_deepspeed_json_is_accepted_by_deepspeed(name, monkeypatch):
    from deepspeed.runtime.config import DeepSpeedConfig

    monkeypatch.chdir(REPO)
    cfg = load_config(
        TrainConfig, CONFIGS / "train" / "finetune.yaml", [f"distributed.deepspeed=configs/deepspeed/{name}.json"]
    )
    ds = deepspeed_config(cfg, hidden_size=4096, world_size=1)
    assert "auto" not in json.dumps(ds), ds
    parsed = DeepSpeedConfig(ds)  # DeepSpeed's own parser and batch checks
    assert parsed.train_batch_size == 4 and parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert parsed.zero_optimization_stage == (3 if name.startswith("zero3") else 2)
    assert parsed.gradient_clipping == 1.0
    assert parsed.zero_config.reduce_bucket_size == 4096 * 4096
    if name.startswith("zero3"):
        assert parsed.zero_config.gather_16bit_weights_on_model_save
    offload = parsed.zero_config.offload_optimizer
    assert (offload is not None and offload.device == "cpu") == name.endswith("offload")


def test_skipped_bad_videos_are_counted_at_the_end_and_the_run_finishes(synth_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    for name in ("train_00003.mp4", "train_00011.mp4"):  # corrupt after validation: found only when decoded
        (data / "videos" / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    # 12 steps of 2 = one epoch of the 24 records, so both corrupt ones are drawn exactly once
    out = tmp_path / "run"
    args = loop_overrides(data, out, "optim.max_steps=12", "optim.batch_size=2", "checkpoint.every_steps=0")
    assert main([str(CONFIGS / "train" / "tiny_finetune.yaml"), *args, "data.on_bad_sample=skip"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped bad sample(s)") == 2
    assert "skipped 2 bad sample(s) in total out of 24 samples" in err
    assert (out / "model.safetensors").is_file()


def test_bf16_on_cpu_trains_with_fp32_attention_and_saves_an_fp32_sdpa_model(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = loop_overrides(synth_dir, out, "optim.max_steps=2", "optim.batch_size=2", "checkpoint.every_steps=0")
    assert main([str(CONFIGS / "train" / "tiny_finetune.yaml"), *args, "distributed.mixed_precision=bf16"]) == 0
    assert "bf16 on CPU: bf16 matrix products, fp32 attention and convolutions" in capsys.readouterr().err
    assert all(math.isfinite(v) and v > 0 for _, v in read_tensorboard_scalars(out / "tb")["loss/lm"])
    saved = load_file(out / "model.safetensors")
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}  # autocast: fp32 weights
    assert load_model(out).config.text_config._attn_implementation == "sdpa"  # the CPU-only name is not saved


def test_bf16_on_a_cpu_without_native_bf16_warns_to_turn_it_off(monkeypatch, caplog):
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: False)
    model = build_model(tiny_model_config())
    with caplog.at_level("WARNING", logger="videopanda.train.loop"):
        loop._keep_cpu_attention_fp32(model)
    assert "without native bf16 matrix products" in caplog.text
    assert "distributed.mixed_precision=no" in caplog.text


def test_gradient_accumulation_windows_end_with_the_epoch(synth_dir, tmp_path):
    """24 records in micro-batches of 2 with grad_accum 5: each epoch is 3 steps (5 + 5 + 2 micro-batches), the last
    one short, so no step mixes two epochs and two epochs read exactly 48 samples."""
    out = tmp_path / "run"
    args = loop_overrides(synth_dir, out, "optim.max_steps=0", "optim.epochs=2", "optim.batch_size=2",
                          "optim.grad_accum=5", "checkpoint.every_steps=1", "checkpoint.keep_last=10",
                          "logging.tensorboard=false")  # fmt: skip
    assert main([str(CONFIGS / "train" / "tiny_finetune.yaml"), *args]) == 0
    states = {
        int(p.name.split("-")[1]): json.loads((p / "train_state.json").read_text()) for p in out.glob("checkpoint-*")
    }
    got = {step: (s["epoch"], s["consumed"], s["samples"]) for step, s in states.items()}
    # (epoch, samples consumed in it, samples in total) after each step; the run's last step (6) is not checkpointed
    assert got == {1: (0, 10, 10), 2: (0, 20, 20), 3: (0, 24, 24), 4: (1, 10, 34), 5: (1, 20, 44)}


def test_a_max_minutes_stop_saves_its_step_once_and_resumes_from_it(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = loop_overrides(synth_dir, out, "optim.max_steps=3", "optim.batch_size=2", "checkpoint.every_steps=1",
                          "logging.tensorboard=false")  # fmt: skip
    assert main([str(CONFIGS / "train" / "tiny_finetune.yaml"), *args, "max_minutes=1e-9"]) == 3
    err = capsys.readouterr().err
    assert "max_minutes=1e-09 reached at step 1 of 3" in err and "relaunch the same command to resume" in err
    # step 1 was due anyway: saved once, not replaced by a second save (which would delete the complete one first)
    assert err.count("saved resumable checkpoint") == 1
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (out / "model.safetensors").exists()  # not a finished stage for the launch scripts
    assert main([str(CONFIGS / "train" / "tiny_finetune.yaml"), *args]) == 0
    assert "at step 1 (epoch 0, sample 2)" in capsys.readouterr().err  # resumed there
    assert (out / "model.safetensors").is_file()


def test_checkpoints_of_an_earlier_run_never_push_out_the_new_one(tmp_path):
    from videopanda.train.checkpoint import _prune

    for step in (600, 800, 200):  # 600 and 800 left by an earlier run; 200 just saved by a run that did not resume
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-900.tmp").mkdir()  # never counted
    (tmp_path / "checkpoint-100").mkdir()  # this run's previous checkpoint
    _prune(tmp_path, 2, tmp_path / "checkpoint-200")
    # the stale 600 and 800 would be taken for the latest by a resume: gone whatever keep_last allows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-100", "checkpoint-200", "checkpoint-900.tmp"]
    _prune(tmp_path, 1, tmp_path / "checkpoint-200")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-200", "checkpoint-900.tmp"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("logging.every_steps=0", "logging.every_steps must be >= 1"),
        ("checkpoint.keep_last=0", "checkpoint.keep_last must be >= 1"),
        ("checkpoint.every_steps=-1", "checkpoint.every_steps must be >= 0"),
    ],
)
def test_bad_cadences_are_config_errors(override, message):
    with pytest.raises(Exception, match=message):
        load_config(TrainConfig, CONFIGS / "train" / "tiny_finetune.yaml", [override])
