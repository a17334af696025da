"""The training loop: one readable code path for a CPU process, DDP (torchrun) and DeepSpeed ZeRO, on accelerate.

Launch lines::

    videopanda train configs/train/tiny_finetune.yaml                          # one process (CPU or one GPU)
    torchrun --nproc_per_node 8 -m videopanda.train configs/train/finetune.yaml # one node, DDP or DeepSpeed
    torchrun --nnodes 16 --node_rank $R --master_addr $ADDR --nproc_per_node 4 \\
        -m videopanda.train configs/train/prealign.yaml                      # multi-node (scripts/train/*.sh)

Steps: set up (accelerator, tokenizer, model, teacher, head, trainable groups, data, optimizer) -> resume from the
newest complete checkpoint -> loop (teacher features under no_grad, LM + distillation loss, clipping, AdamW,
warmup + cosine) with logging and atomic checkpoints -> save the model, its tokenizer, the head and the config.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, DistributedDataParallelKwargs, set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from videopanda.config import load_config, save_config
from videopanda.data import DataCollator, ModalityLengthGroupedSampler, VideoPandaDataset, load_tokenizer
from videopanda.model import ModelConfig, build_model, load_model

from .checkpoint import TrainState, find_latest, load_train_state, save_checkpoint
from .config import TrainConfig
from .distill import DistillHead, select_layers
from .optim import build_optimizer, build_scheduler
from .stages import apply_trainable
from .task import TrainingTask

if TYPE_CHECKING:
    from .teacher import VideoTeacher

logger = logging.getLogger(__name__)

HEAD_FILE = "distill_head.safetensors"


def _deepspeed_plugin(cfg: TrainConfig, world_size: int) -> DeepSpeedPlugin | None:
    """Our DeepSpeed JSON with its ``auto`` values filled from the config (the dataloader is not prepared)."""
    if not cfg.distributed.deepspeed:
        return None
    path = Path(cfg.distributed.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"distributed.deepspeed: {path} not found")
    ds = json.loads(path.read_text())
    opt = cfg.optim
    ds["train_micro_batch_size_per_gpu"] = opt.batch_size
    ds["gradient_accumulation_steps"] = opt.grad_accum
    ds["train_batch_size"] = opt.batch_size * opt.grad_accum * world_size
    ds["gradient_clipping"] = opt.grad_clip
    ds.setdefault("bf16", {})["enabled"] = cfg.distributed.mixed_precision == "bf16"
    ds.setdefault("fp16", {})["enabled"] = cfg.distributed.mixed_precision == "fp16"
    return DeepSpeedPlugin(hf_ds_config=ds)


def _fill_auto_buckets(plugin: DeepSpeedPlugin, hidden: int) -> None:
    """Resolve the bucket sizes left as ``auto`` (as HF's integration does, from the LLM width)."""
    zero = plugin.deepspeed_config.get("zero_optimization", {})
    for key, value in (
        ("reduce_bucket_size", hidden * hidden),
        ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
        ("stage3_param_persistence_threshold", 10 * hidden),
    ):
        if zero.get(key) == "auto":
            zero[key] = value


def build_training_model(cfg: TrainConfig):
    """The model of the stage: fresh from a model YAML, a previous stage's folder, or a converted checkpoint.

    Returns:
        ``(model, head_state or None)``: the distillation head's weights when the source carries them.
    """
    src = cfg.model
    head_state = None
    if src.init_from and src.init_format == "videopanda":
        if src.overrides:
            raise ValueError("model.overrides apply to a fresh model (model.config), not to model.init_from")
        model = load_model(src.init_from)
        head_file = Path(cfg.distill.head_init or Path(src.init_from) / HEAD_FILE)
        if head_file.is_file():
            head_state = load_file(head_file)
    elif src.init_from:
        from videopanda.model.convert import convert_checkpoint

        model_cfg = load_config(ModelConfig, src.config, src.overrides)
        fmt = "eve" if src.init_format == "eve" else "videopanda"
        model, report = convert_checkpoint(src.init_from, fmt, model_cfg)
        logger.info("%s", report.summary())
        head_state = report.distill_head or None
    else:
        model = build_model(load_config(ModelConfig, src.config, src.overrides))
        if cfg.distill.head_init:
            head_state = load_file(cfg.distill.head_init)
    return model.float(), head_state


def build_teacher(cfg: TrainConfig) -> VideoTeacher:
    """The frozen teacher: a LanguageBind checkpoint, or a seeded random one of the configured size."""
    from .teacher import TeacherConfig, VideoTeacher, load_teacher

    if cfg.distill.teacher_path:
        return load_teacher(cfg.distill.teacher_path)
    logger.warning(
        "distill.teacher_path is empty: distilling a randomly initialised teacher (fine for tests and the CPU "
        "demo; point it at a LanguageBind_Video_merge folder for real training)"
    )
    from videopanda.config import from_dict

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed + 1)
    teacher = VideoTeacher(from_dict(TeacherConfig, cfg.distill.teacher, source="distill.teacher"))
    torch.random.set_rng_state(generator_state)
    return teacher


def _check_teacher_geometry(cfg: TrainConfig, teacher: VideoTeacher) -> None:
    tcfg = teacher.cfg
    if (tcfg.image_size, tcfg.patch_size) != (cfg.data.teacher_image_size, cfg.data.teacher_patch_size):
        raise ValueError(
            f"teacher is {tcfg.image_size}px/patch {tcfg.patch_size} but data.teacher_image_size/"
            f"teacher_patch_size are {cfg.data.teacher_image_size}/{cfg.data.teacher_patch_size}"
        )


def sync_batchnorm_stats(accelerator: Accelerator, task) -> None:
    """Average LSTE's BatchNorm running statistics over ranks.

    DDP only broadcasts rank 0's buffers at the start of each forward (DeepSpeed not at all), so after the last
    step every rank holds statistics of its own data; the saved model gets their mean instead of rank 0's alone.
    """
    if accelerator.num_processes == 1:
        return
    for module in accelerator.unwrap_model(task).modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            module.running_mean.copy_(accelerator.reduce(module.running_mean.detach().clone(), reduction="mean"))
            module.running_var.copy_(accelerator.reduce(module.running_var.detach().clone(), reduction="mean"))


def save_model(accelerator: Accelerator, task: TrainingTask, tokenizer, out: Path, cfg: TrainConfig) -> None:
    """Save the inference model (no teacher, no head), its tokenizer, the head beside it, and the config."""
    sync_batchnorm_stats(accelerator, task)
    state = accelerator.get_state_dict(task)  # consolidated on rank 0 (ZeRO-3 gathers 16-bit weights)
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(task)
    model_sd = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    unwrapped.model.save_pretrained(out, state_dict=model_sd, safe_serialization=True)
    head_sd = {k[len("head.") :]: v.contiguous() for k, v in state.items() if k.startswith("head.")}
    if head_sd:
        save_file(head_sd, out / HEAD_FILE)
    tokenizer.save_pretrained(out)
    save_config(cfg, out / "train_config.yaml")
    logger.info("saved the model, tokenizer and config to %s", out)


def train(cfg: TrainConfig) -> Path:
    """Run one training stage; returns the output folder (which holds the final model)."""
    out = Path(cfg.output_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate / deepspeed launchers
    plugin = _deepspeed_plugin(cfg, world)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # without it, CPU processes under torchrun would not form a group
        gradient_accumulation_steps=cfg.optim.grad_accum,
        mixed_precision=cfg.distributed.mixed_precision,
        deepspeed_plugin=plugin,
        log_with="tensorboard" if cfg.logging.tensorboard else None,
        project_dir=str(out),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.distributed.find_unused_parameters)],
    )
    set_seed(cfg.seed)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    accelerator.wait_for_everyone()

    # ---- model, teacher, head, trainable groups
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.init_from)
    model, head_state = build_training_model(cfg)
    if len(tokenizer) > model.config.text_config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the LLM's vocab_size is {model.config.text_config.vocab_size}"
        )
    if plugin is not None:
        _fill_auto_buckets(plugin, model.config.text_config.hidden_size)
    if cfg.distributed.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    teacher = head = None
    layers: list[int] = []
    if cfg.distill.enabled:
        teacher = build_teacher(cfg)
        _check_teacher_geometry(cfg, teacher)
        layers = select_layers(model.config.text_config.num_hidden_layers, cfg.distill.layer_rate)
        head = DistillHead(model.config.text_config.hidden_size, teacher.cfg.width, len(layers), cfg.distill.num_heads)
        if head_state is not None:
            head.load_state_dict(head_state)  # strict: a partial head is an error
            logger.info("distillation head initialised from the checkpoint")
    task = TrainingTask(model, head, layers, cfg.distill.weight, cfg.data.teacher_patch_size)
    apply_trainable(task, cfg.stage.trainable)
    task.train()

    # ---- data
    dataset = VideoPandaDataset(cfg.data, tokenizer, model.config.stab, train=True)
    sampler = ModalityLengthGroupedSampler(
        dataset.lengths, cfg.optim.batch_size, accelerator.num_processes, accelerator.process_index, cfg.seed
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        collate_fn=DataCollator(tokenizer.pad_token_id),
        num_workers=cfg.data.num_workers,
        # Its own generator: creating an iterator must not draw from the global RNG (dropout), or a resumed run
        # would see different dropout masks than the uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.optim.grad_accum))
    total_steps = cfg.optim.max_steps or math.ceil(cfg.optim.epochs * steps_per_epoch)

    # ---- optimizer, accelerate
    optimizer = build_optimizer(task, cfg.stage, cfg.optim)
    scheduler = build_scheduler(optimizer, total_steps, cfg.optim)  # stepped by hand, once per optimizer step
    task, optimizer = accelerator.prepare(task, optimizer)
    if teacher is not None:
        teacher.to(accelerator.device)
    if cfg.logging.tensorboard:
        accelerator.init_trackers("tb")

    state = TrainState()
    latest = find_latest(out) if cfg.checkpoint.resume else None
    if latest is not None:
        accelerator.load_state(str(latest))
        state = load_train_state(latest, accelerator.process_index)
        scheduler.last_epoch = state.step - 1
        scheduler.step()  # recompute the learning rates for the restored step
        logger.info("resumed from %s at step %d (epoch %d, sample %d)", latest, state.step, state.epoch, state.consumed)
    logger.info(
        "training %d steps (%d per epoch), %d samples per rank per epoch, %d rank(s)",
        total_steps,
        steps_per_epoch,
        len(sampler),
        accelerator.num_processes,
    )

    progress = None
    if cfg.logging.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state.step, desc=f"{cfg.stage.name}", dynamic_ncols=True)
    clip = cfg.optim.grad_clip
    start = time.time()
    window = {"lm": 0.0, "distill": 0.0, "micro": 0, "tokens": 0, "samples": 0, "t0": time.time()}
    stopped_early = False
    while state.step < total_steps and not stopped_early:
        sampler.set_epoch(state.epoch)
        dataset.set_epoch(state.epoch)
        sampler.skip(state.consumed)
        for batch in loader:
            batch = _to_device(batch, accelerator.device)
            with accelerator.accumulate(task):
                teacher_features = None
                if teacher is not None and batch.get("teacher_pixel_values_videos") is not None:
                    with torch.no_grad():
                        teacher_features = teacher(batch["teacher_pixel_values_videos"])
                losses = task(batch, teacher_features)
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and clip > 0 and plugin is None:
                    accelerator.clip_grad_norm_(task.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad()
            n_samples = len(batch["ids"])
            n_tokens = int(batch["attention_mask"].sum())
            state.consumed += n_samples
            state.samples += n_samples
            state.tokens += n_tokens
            window["lm"] += float(losses["lm_loss"])
            window["distill"] += float(losses["distill_loss"])
            window["micro"] += 1
            window["tokens"] += n_tokens
            window["samples"] += n_samples
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            scheduler.step()
            if progress is not None:
                progress.update(1)
            if state.step % cfg.logging.every_steps == 0 or state.step == total_steps:
                _log(accelerator, state, window, optimizer, progress)
            if cfg.checkpoint.every_steps and state.step % cfg.checkpoint.every_steps == 0 and state.step < total_steps:
                save_checkpoint(accelerator, out, state, cfg.checkpoint.keep_last)
            if cfg.max_minutes and time.time() - start > 60 * cfg.max_minutes:
                logger.warning("max_minutes=%s reached at step %d: saving and stopping", cfg.max_minutes, state.step)
                stopped_early = True
            if state.step >= total_steps or stopped_early:
                break
        else:
            state.epoch += 1
            state.consumed = 0
    if progress is not None:
        progress.close()
    if stopped_early:
        save_checkpoint(accelerator, out, state, cfg.checkpoint.keep_last)
    save_model(accelerator, task, tokenizer, out, cfg)
    if cfg.distributed.verify_sync:
        _write_param_sums(accelerator, task, out)
    accelerator.end_training()
    return out


def _write_param_sums(accelerator: Accelerator, task, out: Path) -> None:
    """Per-parameter float64 sums of this rank's own replica (DDP, ZeRO-1/2; ZeRO-3 partitions parameters)."""
    state = accelerator.unwrap_model(task).state_dict()
    sums = {k: float(v.double().sum()) for k, v in state.items()}
    (out / f"rank{accelerator.process_index}_param_sums.json").write_text(json.dumps(sums, sort_keys=True))


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _log(accelerator: Accelerator, state: TrainState, window: dict, optimizer, progress) -> None:
    """Log the means of the last window of micro-batches (averaged over ranks) and reset it."""
    micro = max(1, window["micro"])
    means = torch.tensor([window["lm"] / micro, window["distill"] / micro], device=accelerator.device)
    means = accelerator.reduce(means, reduction="mean")
    elapsed = max(1e-6, time.time() - window["t0"])
    metrics = {
        "loss/lm": float(means[0]),
        "loss/distill": float(means[1]),
        "throughput/tokens_per_s": window["tokens"] * accelerator.num_processes / elapsed,
        "throughput/samples_per_s": window["samples"] * accelerator.num_processes / elapsed,
    }
    for group in optimizer.param_groups:
        name = group.get("name", "group")
        if not name.endswith("/no_decay"):
            metrics[f"lr/{name}"] = group["lr"]
    accelerator.log(metrics, step=state.step)
    if progress is not None:
        progress.set_postfix(lm=f"{metrics['loss/lm']:.3f}", distill=f"{metrics['loss/distill']:.3f}")
    logger.debug("step %d %s", state.step, metrics)
    window.update(lm=0.0, distill=0.0, micro=0, tokens=0, samples=0, t0=time.time())
