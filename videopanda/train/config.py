"""``TrainConfig``: one training stage (pre-alignment, pre-training or fine-tuning) as a typed dataclass tree.

Loaded from ``configs/train/*.yaml`` with :func:`videopanda.config.load_config`; paths inside are relative to
the working directory (the launch scripts run from the repository root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from videopanda.data.config import DataConfig

GROUPS = ("stab", "projector", "distill_head", "llm")


@dataclass
class ModelSource:
    """Where the stage's model comes from."""

    config: str = ""  # model YAML for a fresh model (configs/model/*.yaml or configs/ablations/*.yaml)
    overrides: list[str] = field(default_factory=list)  # dotted overrides of that YAML, e.g. video_tokenizer.dpe=false
    init_from: str = ""  # a checkpoint folder: the previous stage's output, or a source to convert (see init_format)
    init_format: Literal["videopanda", "eve", "official"] = "videopanda"  # eve/official: converted on load
    tokenizer: str = ""  # tokenizer folder; "" = the init_from folder

    def __post_init__(self) -> None:
        if not self.config and not self.init_from:
            raise ValueError("model: set model.config (a fresh model) or model.init_from (a checkpoint)")
        if self.init_format != "videopanda" and not self.config:
            raise ValueError("model.init_format eve/official needs model.config (the target model's sizes)")


@dataclass
class StageConfig:
    """What trains in this stage and how fast (reference §5.3)."""

    name: str = "finetune"
    trainable: list[str] = field(default_factory=lambda: list(GROUPS))  # subset of stab, projector, distill_head, llm
    lr: float = 2e-5  # learning rate of every trainable group without its own below
    lr_stab: float | None = None
    lr_projector: float | None = None
    lr_distill_head: float | None = None
    lr_llm: float | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.trainable) - set(GROUPS))
        if unknown:
            raise ValueError(f"stage.trainable: unknown group(s) {unknown}; known: {list(GROUPS)}")
        if not self.trainable:
            raise ValueError("stage.trainable is empty: nothing would train")

    def group_lr(self, group: str) -> float:
        own = getattr(self, f"lr_{group}")
        return self.lr if own is None else own


@dataclass
class OptimConfig:
    """AdamW (or Muon for hidden matrices), warmup then cosine (HF's: linear warmup over ceil(ratio * steps))."""

    batch_size: int = 8  # per device (micro-batch)
    grad_accum: int = 1
    epochs: float = 1.0  # used when max_steps is 0
    max_steps: int = 0  # optimizer steps; 0 = epochs * steps per epoch
    warmup_ratio: float = 0.03
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # DECISIONS.md: a config value; 0 reproduces the reference (no clipping)
    # "muon": Muon on the Linear weights but the LM head, AdamW on the rest (videopanda.train.muon), at the group
    # learning rates (times muon_lr_scale for Muon); "adamw" everywhere is the reference's.
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_momentum: float = 0.95
    muon_lr_scale: float = 1.0  # Muon groups train at this multiple of their group's learning rate
    muon_convs: bool = False  # Muon for the (not grouped) convolutions too, each weight as (out, in * kernel)
    muon_ns_steps: int = 5  # Newton-Schulz iterations of Muon's orthogonalisation (the reference's 5)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("optim.batch_size and optim.grad_accum must be >= 1")
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            raise ValueError("optim: set max_steps > 0 or epochs > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("optim.warmup_ratio must be in [0, 1)")
        if self.muon_ns_steps < 1:
            raise ValueError(f"optim.muon_ns_steps must be >= 1, got {self.muon_ns_steps}")


@dataclass
class DistillConfig:
    """Distillation of a frozen video teacher into the LLM's hidden states at visual positions (reference §3)."""

    enabled: bool = True
    weight: float = 1.0  # loss = LM cross-entropy + weight * distillation
    layer_rate: int = 4  # selected LLM layers: L, L - rate, ..., 0 (nine for a 32-layer LLM)
    num_heads: int = 8  # heads of the head's cross-layer attention
    teacher_path: str = ""  # a LanguageBind_Video_merge folder; "" = a randomly initialised teacher (tests, CPU demo)
    teacher: dict = field(default_factory=dict)  # TeacherConfig fields (sizes when no checkpoint is given)
    head_init: str = ""  # distill_head.safetensors to start from ("" = the init_from folder's, if it has one)

    def __post_init__(self) -> None:
        if self.layer_rate < 1:
            raise ValueError("distill.layer_rate must be >= 1")
        if self.weight < 0:
            raise ValueError("distill.weight must be >= 0")


@dataclass
class DistributedConfig:
    deepspeed: str = ""  # a configs/deepspeed/*.json file; "" = plain DDP (or one process)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    find_unused_parameters: bool = True  # text-only or image-only batches leave some STAB parameters unused
    verify_sync: bool = False  # every rank writes rank<r>_param_sums.json at the end (DDP/ZeRO-2)


@dataclass
class CheckpointConfig:
    every_steps: int = 200  # save a resumable checkpoint every N optimizer steps (0 = only at the end)
    keep_last: int = 1  # resumable checkpoints kept (older ones are deleted)
    resume: bool = True  # continue from the newest complete checkpoint in output_dir

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise ValueError(f"checkpoint.every_steps must be >= 0 (0 = only at the end), got {self.every_steps}")
        if self.keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass
class LoggingConfig:
    every_steps: int = 1
    tensorboard: bool = True
    progress: bool = True  # a progress bar on rank 0

    def __post_init__(self) -> None:
        if self.every_steps < 1:
            raise ValueError(f"logging.every_steps must be >= 1, got {self.every_steps}")


@dataclass
class TrainConfig:
    """One training stage."""

    output_dir: str = "runs/finetune"
    seed: int = 42
    model: ModelSource = field(default_factory=lambda: ModelSource(config="configs/model/tiny.yaml"))
    data: DataConfig = field(default_factory=DataConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    max_minutes: float = 0.0  # stop with a checkpoint (no final model; exit code 3) after this wall time; 0 = none

    def __post_init__(self) -> None:
        if self.optim.optimizer == "muon" and self.distributed.deepspeed:
            raise ValueError(
                f"optim.optimizer=muon with distributed.deepspeed={self.distributed.deepspeed}: DeepSpeed's ZeRO "
                "flattens each param group into one vector, and Muon needs every weight as a matrix; add "
                "optim.optimizer=adamw (the tiny configs use Muon), or train without DeepSpeed (DDP works)"
            )
        if "distill_head" in self.stage.trainable and not self.distill.enabled:
            self.stage.trainable = [g for g in self.stage.trainable if g != "distill_head"]
        if self.distill.enabled and not self.data.teacher:
            self.data.teacher = True  # the teacher needs its 224 px frames
