"""The training loop: one readable code path for a CPU process, DDP (torchrun) and DeepSpeed ZeRO, on accelerate.

Launch lines::

    videopanda train configs/train/tiny_finetune.yaml                          # one process (CPU or one GPU)
    torchrun --nproc_per_node 8 -m videopanda.train configs/train/finetune.yaml # one node, DDP or DeepSpeed
    torchrun --nnodes 16 --node_rank $R --master_addr $ADDR --nproc_per_node 4 \\
        -m videopanda.train configs/train/prealign.yaml                      # multi-node (scripts/train/*.sh)
    accelerate launch -m videopanda.train ... / deepspeed --num_gpus 8 -m videopanda.train ...   # also fine

Steps: build the model (fresh, a previous stage, or a converted EVE / official checkpoint), the accelerator (DDP,
DeepSpeed from ``distributed.deepspeed``; gloo without CUDA), the frozen teacher and the distillation head, the
trainable groups of the stage, the data and the per-group AdamW with warmup + cosine -> resume from the newest
complete checkpoint (model, optimizer, scheduler, RNG, data position) -> loop: teacher features under no_grad,
LM + weighted distillation loss, clipping, step; tensorboard scalars, a rank-0 progress bar, atomic checkpoints
every N steps -> save the inference model, its tokenizer and the distillation head.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, DistributedDataParallelKwargs, InitProcessGroupKwargs, set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from videopanda.config import load_config, save_config
from videopanda.data import DataCollator, ModalityLengthGroupedSampler, VideoPandaDataset, load_tokenizer
from videopanda.model import ModelConfig, build_model, load_model
from videopanda.model.precision import CPU_MIXED_SDPA, cpu_has_fast_bf16

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


def deepspeed_config(cfg: TrainConfig, hidden_size: int, world_size: int | None = None) -> dict:
    """Our DeepSpeed JSON (``distributed.deepspeed``) with every ``auto`` filled from the stage config.

    Micro-batch, accumulation and global batch from ``optim``, ``gradient_clipping`` from ``optim.grad_clip``,
    bf16/fp16 from ``distributed.mixed_precision``, and the bucket sizes from the LLM width (as HF's integration
    does). The result passes DeepSpeed's own parser.

    Args:
        cfg: the stage config.
        hidden_size: the LLM width D.
        world_size: number of processes (the global batch is micro * accumulation * world); None leaves
            ``train_batch_size`` to accelerate, which fills it from its process count in ``prepare``.
    """
    path = Path(cfg.distributed.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"distributed.deepspeed: {path} not found")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"distributed.deepspeed: {path} is not valid JSON: {err}") from err
    opt = cfg.optim
    ds["train_micro_batch_size_per_gpu"] = opt.batch_size
    ds["gradient_accumulation_steps"] = opt.grad_accum
    ds["train_batch_size"] = "auto" if world_size is None else opt.batch_size * opt.grad_accum * world_size
    ds["gradient_clipping"] = opt.grad_clip
    ds.setdefault("bf16", {})["enabled"] = cfg.distributed.mixed_precision == "bf16"
    ds.setdefault("fp16", {})["enabled"] = cfg.distributed.mixed_precision == "fp16"
    zero = ds.get("zero_optimization", {})
    for key, value in (
        ("reduce_bucket_size", hidden_size * hidden_size),
        ("stage3_prefetch_bucket_size", int(0.9 * hidden_size * hidden_size)),
        ("stage3_param_persistence_threshold", 10 * hidden_size),
    ):
        if zero.get(key) == "auto":
            zero[key] = value
    left = [k for k, v in _flatten(ds) if v == "auto" and not (k == "train_batch_size" and world_size is None)]
    if left:
        raise ValueError(f"distributed.deepspeed: {path}: no value for 'auto' key(s) {left}")
    return ds


def _flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def build_accelerator(cfg: TrainConfig, hidden_size: int) -> Accelerator:
    """One accelerator for every setting: one process, DDP (torchrun / accelerate launch), DeepSpeed ZeRO.

    Without CUDA the process group uses gloo: accelerate's CPU data-parallel mode (``cpu=True``) for DDP, and
    DeepSpeed's CPU accelerator for ZeRO (accelerate takes the DeepSpeed path only with ``cpu=False``).
    """
    cuda = torch.cuda.is_available()
    plugin = None
    if cfg.distributed.deepspeed:
        plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(cfg, hidden_size))
        if "LOCAL_RANK" not in os.environ:
            _emulate_single_process_launcher()
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=cfg.distributed.find_unused_parameters)]
    if not cuda and plugin is not None:  # accelerate leaves the backend to DeepSpeed, which has none for CPU
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    return Accelerator(
        cpu=not cuda and plugin is None,
        gradient_accumulation_steps=cfg.optim.grad_accum,
        mixed_precision=cfg.distributed.mixed_precision,
        deepspeed_plugin=plugin,
        log_with="tensorboard" if cfg.logging.tensorboard else None,
        project_dir=cfg.output_dir,
        kwargs_handlers=handlers,
    )


def _emulate_single_process_launcher() -> None:
    """DeepSpeed always runs in a process group; without a launcher, describe a group of one, as a launcher would.

    This is what torchrun / ``deepspeed`` / ``accelerate launch`` export (and what HF documents for DeepSpeed in
    notebooks); only called when none of them started this process.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    logger.info("DeepSpeed without a launcher: running as a process group of one (127.0.0.1:%d)", port)
    os.environ.update(env)


def cast_batchnorm_for_deepspeed(task: torch.nn.Module, dtype: torch.dtype) -> int:
    """Cast every BatchNorm (parameters and running statistics) to DeepSpeed's 16-bit training dtype.

    DeepSpeed >= 0.19 casts parameters to bf16/fp16 but keeps buffers in fp32, and batch norm rejects bf16
    weights with fp32 running statistics. The reference's DeepSpeed cast the whole module, statistics included;
    this does the same for LSTE's BatchNorm only (rotary ``inv_freq`` and other buffers stay fp32).

    Returns:
        The number of BatchNorm modules cast.
    """
    norms = [m for m in task.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for module in norms:
        module.to(dtype)
    return len(norms)


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


def _keep_cpu_attention_fp32(model) -> None:
    """Under CPU bf16 autocast, run the LLM's SDPA in fp32 (its bf16 backward is slower there; the STAB's attention
    and convolutions do the same by themselves): :mod:`videopanda.model.precision`."""
    if not cpu_has_fast_bf16():
        logger.warning(
            "distributed.mixed_precision=bf16 on a CPU without native bf16 matrix products (AVX512-BF16 or AMX): "
            "steps will be slower than in fp32; set distributed.mixed_precision=no"
        )
    text = model.config.text_config
    if text._attn_implementation == "sdpa":
        model.model.language_model.set_attn_implementation(CPU_MIXED_SDPA)
        logger.info("bf16 on CPU: bf16 matrix products, fp32 attention and convolutions")


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


def _load_head(head: DistillHead, state: dict, layers: list[int]) -> None:
    """Load a saved head strictly, with an error that says what does not fit."""
    saved = {k.split(".")[1] for k in state if k.startswith("norm_layer.")}
    if len(saved) != len(layers):
        raise ValueError(
            f"the checkpoint's distillation head reads {len(saved)} LLM layers but distill.layer_rate selects "
            f"{len(layers)} ({layers}); set distill.layer_rate to match, or distill.head_init to another head"
        )
    try:
        head.load_state_dict(state)  # strict: a partial head is an error
    except RuntimeError as err:
        raise ValueError(f"the checkpoint's distillation head does not fit distill.* / the LLM width: {err}") from err


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


def save_model(accelerator: Accelerator, task: TrainingTask, tokenizer, out: Path) -> None:
    """Save the inference model (no teacher, no head), its tokenizer and the head beside it (all ranks call this)."""
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
    logger.info("saved the model, its tokenizer and the distillation head to %s", out)


def train(cfg: TrainConfig) -> Path | None:
    """Run one training stage.

    Returns:
        The output folder, which then holds the final model; ``None`` when ``max_minutes`` stopped the run before its
        last step: only a resumable checkpoint is written then, no final model (whose presence marks a finished stage
        for the launch scripts and the quickstart), and relaunching the same command resumes.
    """
    out = Path(cfg.output_dir)
    set_seed(cfg.seed)  # before the model is built: every rank starts from the same weights

    # ---- model, teacher, head, trainable groups
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.init_from)
    model, head_state = build_training_model(cfg)
    text = model.config.text_config
    if len(tokenizer) > text.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the LLM's vocab_size is {text.vocab_size}")
    accelerator = build_accelerator(cfg, text.hidden_size)
    if cfg.distributed.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not cfg.distributed.deepspeed:
        _keep_cpu_attention_fp32(model)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    accelerator.wait_for_everyone()
    if cfg.distributed.gradient_checkpointing:
        # Non-reentrant: works with DDP's find_unused_parameters and with frozen inputs (prealign's frozen LLM).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    teacher = head = None
    layers: list[int] = []
    if cfg.distill.enabled:
        teacher = build_teacher(cfg)
        _check_teacher_geometry(cfg, teacher)
        layers = select_layers(text.num_hidden_layers, cfg.distill.layer_rate)
        head = DistillHead(text.hidden_size, teacher.cfg.width, len(layers), cfg.distill.num_heads)
        if head_state is not None:
            _load_head(head, head_state, layers)
            logger.info("distillation head initialised from the checkpoint")
        logger.info("distillation: LLM hidden states %s, weight %g", layers, cfg.distill.weight)
    task = TrainingTask(model, head, layers, cfg.distill.weight, cfg.data.teacher_patch_size)
    apply_trainable(task, cfg.stage.trainable)
    task.train()

    # ---- data
    dataset = VideoPandaDataset(cfg.data, tokenizer, model.config.stab, train=True)
    sampler = ModalityLengthGroupedSampler(
        _sample_lengths(dataset, cfg.logging.progress and accelerator.is_main_process),
        cfg.optim.batch_size,
        accelerator.num_processes,
        accelerator.process_index,
        cfg.seed,
        group_size=cfg.data.group_size,
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        collate_fn=DataCollator(tokenizer.pad_token_id),
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.cache and cfg.data.num_workers > 0,  # a worker's cache outlives the epoch
        # Its own generator: creating an iterator must not draw from the global RNG (dropout), or a resumed run
        # would see different dropout masks than the uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.optim.grad_accum))
    total_steps = cfg.optim.max_steps or math.ceil(cfg.optim.epochs * steps_per_epoch)

    # ---- optimizer, schedule, accelerate
    optimizer = build_optimizer(task, cfg.stage, cfg.optim)
    scheduler = build_scheduler(optimizer, total_steps, cfg.optim)  # stepped by hand, once per optimizer step
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.distributed.mixed_precision)
    if cfg.distributed.deepspeed and half is not None:
        cast_batchnorm_for_deepspeed(task, half)
    if cfg.distributed.deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3:
        if accelerator.num_processes > 1:
            raise NotImplementedError(
                f"distributed.deepspeed={cfg.distributed.deepspeed}: ZeRO-3 with {accelerator.num_processes} "
                "processes is not supported yet: the STAB runs LSD/FSRA once per crop shape of the batch, so ranks "
                "gather different parameters (a collective mismatch); declared a ZeRO-3 leaf module, its backward "
                "fails in DeepSpeed 0.19. Use zero2.json (the paper's setting) or zero2_offload.json; ZeRO-3 works in "
                "one process (e.g. zero3_offload.json to fit a 7B model on one GPU)."
            )
    task, optimizer = accelerator.prepare(task, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # saved and restored with the optimizer
    if teacher is not None:
        teacher.to(accelerator.device, dtype=half)  # the reference ran its teacher in bf16 too
    if cfg.logging.tensorboard:
        accelerator.init_trackers("tb")

    state = TrainState()
    latest = find_latest(out)
    if latest is not None and not cfg.checkpoint.resume:
        logger.warning(
            "checkpoint.resume=false: starting from scratch; the checkpoints already in %s (newest %s) are replaced "
            "as this run saves its own",
            out,
            latest.name,
        )
        latest = None
    if latest is not None:
        accelerator.load_state(str(latest))  # model, optimizer, scheduler, RNG of every rank
        state = load_train_state(latest, accelerator.process_index)
        logger.info("resumed from %s at step %d (epoch %d, sample %d)", latest, state.step, state.epoch, state.consumed)
    logger.info(
        "training %d steps (%d per epoch), %d samples per rank per epoch, %d rank(s), %s",
        total_steps,
        steps_per_epoch,
        len(sampler),
        accelerator.num_processes,
        f"DeepSpeed {cfg.distributed.deepspeed}" if cfg.distributed.deepspeed else accelerator.distributed_type,
    )

    progress = None
    if cfg.logging.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state.step, desc=cfg.stage.name, dynamic_ncols=True)
    deepspeed = cfg.distributed.deepspeed != ""
    clip = cfg.optim.grad_clip
    start = time.time()
    window = _Window()
    stopped_early = False
    saved_step = -1  # the step of the last checkpoint this run wrote
    while state.step < total_steps and not stopped_early:
        sampler.set_epoch(state.epoch)
        dataset.set_epoch(state.epoch)
        sampler.skip(state.consumed)  # resume mid-epoch: same order, the consumed samples skipped
        last = len(loader) - 1  # this epoch's last micro-batch on this rank (after the skip)
        for i, batch in enumerate(loader):
            batch = _to_device(batch, accelerator.device)
            if i == last:
                # The epoch's last micro-batch closes the accumulation window even when it is short, as with a
                # prepared DataLoader (ours is not prepared: the sampler shards by rank itself), so that no window
                # mixes two epochs and an epoch is the steps_per_epoch counted above. `accumulate` counts
                # micro-batches in `accelerator.step` and syncs when it reaches a multiple of grad_accum.
                accelerator.step = -1 % accelerator.gradient_accumulation_steps
            with accelerator.accumulate(task):
                teacher_features = None
                if teacher is not None and batch.get("teacher_pixel_values_videos") is not None:
                    teacher_features = teacher(batch["teacher_pixel_values_videos"])  # (Bv, F, N, Dt), no grad
                losses = task(batch, teacher_features)
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and clip > 0 and not deepspeed:  # DeepSpeed clips itself
                    accelerator.clip_grad_norm_(task.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad()
            n_samples, n_tokens = len(batch["ids"]), int(batch["attention_mask"].sum())
            if batch["skipped"]:  # bad records replaced by the dataset (data.on_bad_sample: skip)
                state.skipped += len(batch["skipped"])
                logger.warning("skipped bad sample(s) %s (%d so far on this rank)", batch["skipped"], state.skipped)
            state.consumed += n_samples
            state.samples += n_samples
            state.tokens += n_tokens
            window.add(losses, n_samples, n_tokens)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            if progress is not None:
                progress.update(1)
            if state.step % cfg.logging.every_steps == 0 or state.step == total_steps:
                _log(accelerator, state, window, optimizer, progress)  # the learning rates this step used
            scheduler.step()
            if cfg.checkpoint.every_steps and state.step % cfg.checkpoint.every_steps == 0 and state.step < total_steps:
                save_checkpoint(accelerator, out, state, cfg.checkpoint.keep_last)
                saved_step = state.step
            if (
                cfg.max_minutes
                and state.step < total_steps
                and _any_rank(accelerator, time.time() - start > 60 * cfg.max_minutes)
            ):
                logger.warning(
                    "max_minutes=%s reached at step %d of %d: saving a checkpoint and stopping",
                    cfg.max_minutes,
                    state.step,
                    total_steps,
                )
                stopped_early = True
            if state.step >= total_steps or stopped_early:
                break
        else:
            state.epoch += 1
            state.consumed = 0
    if progress is not None:
        progress.close()
    _log_skipped_total(accelerator, state.skipped, state.samples)
    if stopped_early:
        if saved_step != state.step:  # saving the same step again would replace a complete one
            save_checkpoint(accelerator, out, state, cfg.checkpoint.keep_last)
        accelerator.end_training()
        return None
    save_model(accelerator, task, tokenizer, out)
    if cfg.distributed.verify_sync:
        _write_param_sums(accelerator, task, out)
    accelerator.end_training()
    return out


def _sample_lengths(dataset: VideoPandaDataset, progress: bool) -> list[int]:
    """The sampler's length per sample: the word-count proxy, or (``data.group_by: tokens``) the exact LLM length,
    which builds every sample once here (every rank builds them all: the global order needs every length)."""
    if dataset.cfg.group_by == "words":
        return dataset.lengths
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc="lengths", unit="sample", dynamic_ncols=True)
    lengths = dataset.token_lengths((lambda done, total: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    logger.info(
        "data.group_by=tokens: built %d samples in %.1f s; LLM lengths %d-%d (mean %.0f)",
        len(lengths),
        time.perf_counter() - start,
        min(map(abs, lengths)),
        max(map(abs, lengths)),
        sum(map(abs, lengths)) / len(lengths),
    )
    return lengths


def _write_param_sums(accelerator: Accelerator, task, out: Path) -> None:
    """Per-parameter float64 sums of this rank's own replica (DDP, ZeRO-1/2; ZeRO-3 partitions parameters)."""
    state = accelerator.unwrap_model(task).state_dict()
    sums = {k: float(v.double().sum()) for k, v in state.items()}
    (out / f"rank{accelerator.process_index}_param_sums.json").write_text(json.dumps(sums, sort_keys=True))


def _log_skipped_total(accelerator: Accelerator, skipped: int, samples: int) -> None:
    """Log, on rank 0, how many bad records were replaced over the whole run (all ranks; resumed runs included)."""
    counts = torch.tensor([float(skipped), float(samples)], device=accelerator.device)
    if accelerator.num_processes > 1:
        counts = accelerator.reduce(counts, reduction="sum")
    total, seen = int(counts[0]), int(counts[1])
    if accelerator.is_main_process and total:
        logger.warning(
            "skipped %d bad sample(s) in total out of %d samples (data.on_bad_sample: skip); each was replaced by "
            "another record of the same modality, so the epoch size did not change",
            total,
            seen,
        )


def _any_rank(accelerator: Accelerator, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (ranks must agree on when to stop)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum") > 0)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class _Window:
    """Sums over the micro-batches since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lm = self.distill = 0.0
        self.micro = self.tokens = self.samples = 0
        self.t0 = time.time()

    def add(self, losses: dict, samples: int, tokens: int) -> None:
        self.lm += float(losses["lm_loss"])
        self.distill += float(losses["distill_loss"])
        self.micro += 1
        self.samples += samples
        self.tokens += tokens


def _log(accelerator: Accelerator, state: TrainState, window: _Window, optimizer, progress) -> None:
    """Log the means of the last window of micro-batches (averaged over ranks); the caller starts a new window."""
    micro = max(1, window.micro)
    means = torch.tensor([window.lm / micro, window.distill / micro], device=accelerator.device)
    means = accelerator.reduce(means, reduction="mean")
    elapsed = max(1e-6, time.time() - window.t0)
    metrics = {
        "loss/lm": float(means[0]),
        "loss/distill": float(means[1]),
        "throughput/tokens_per_s": window.tokens * accelerator.num_processes / elapsed,
        "throughput/samples_per_s": window.samples * accelerator.num_processes / elapsed,
    }
    for group in optimizer.param_groups:  # lr/<group> (and lr/<group>/muon where Muon runs at its own scale)
        name = group.get("name", "group").removesuffix("/no_decay")
        metrics.setdefault(f"lr/{name}", group["lr"])
    accelerator.log(metrics, step=state.step)
    if progress is not None:
        progress.set_postfix(lm=f"{metrics['loss/lm']:.3f}", distill=f"{metrics['loss/distill']:.3f}")
    logger.debug("step %d %s", state.step, metrics)
    window.reset()
