"""The frozen distillation teacher: a LanguageBind-Video CLIP ViT with divided space-time attention.

Reference §3.1: the teacher is ``LanguageBind/LanguageBind_Video_merge``, a CLIP ViT-L/14 (width 1024, 24 layers,
16 heads, MLP 4096, 224 px, patch 14, 256 patches + CLS) whose every encoder layer first runs a *temporal* attention
block and then the usual CLIP spatial block. Its patch features at ``hidden_states[-2]`` (the output of layer 23
of 24, no post-LN), CLS dropped, are the distillation targets: 256 tokens of 1024 per frame.

One encoder layer, as in LanguageBind's ``languagebind/video/modeling_video.py`` (``CLIPEncoderLayer``)::

    x = x + temporal_embedding[:, :t]                  # per frame, broadcast over tokens (skipped when t == 1)
    x = x + temporal_attn(temporal_layer_norm1(x))      # attention over the t frames of each token position
    x = x + self_attn(layer_norm1(x))                   # attention over the 257 tokens of each frame
    x = x + mlp(layer_norm2(x))

The temporal embedding is added to the residual stream itself (the residual of the temporal attention includes
it), and the temporal block has no MLP. The stem is CLIP's: patch conv (no bias), CLS, learned positions,
``pre_layrnorm``.

Fixed (reference §3.1, §8): the reference took ``t`` from ``vision_config.num_frames`` (8), so its "two chunks of 4
frames" were silently attended as one window of 8. Here ``t`` is the number of frames given (at most
``num_frames``); the training loop passes all frames of a video at once, which computes what the reference
computed. All frames of all videos run as one batch (no loop over videos or frames), and only the layers up to
``select_layer`` are run.

State-dict names are those of the release's vision tower (``vision_model.embeddings.*``,
``vision_model.pre_layrnorm.*``, ``vision_model.encoder.layers.N.{self_attn,temporal_attn}.{q,k,v,out}_proj.*``,
``...temporal_embedding``, ``...temporal_layer_norm1.*``, ``vision_model.post_layernorm.*``), so
:func:`load_teacher` reads a LanguageBind checkpoint by name; the text tower, the projections and ``logit_scale``
of the release are dropped and reported.

Notation: ``B`` videos, ``T`` frames per video (``t`` inside a layer), ``N`` = grid*grid patches, ``C`` width,
``S`` image side, ``H`` heads, ``hd`` head dim.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from videopanda.config import from_dict

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

VISION_PREFIX = "vision_model."

# Keys of the release that the teacher does not use, each with the reason it is dropped.
IGNORED_PREFIXES = {
    "text_model.": "LanguageBind text tower",
    "text_projection.": "text projection",
    "visual_projection.": "video projection (pooled CLS -> joint space; the teacher gives patch features)",
    "logit_scale": "contrastive temperature",
    # transformers < 4.31 saved CLIP's position_ids as a persistent buffer; it is a constant arange.
    "vision_model.embeddings.position_ids": "constant position-id buffer of older transformers",
}


class TeacherCheckpointError(RuntimeError):
    """A teacher checkpoint does not match the architecture; the message names every offending key."""


@dataclass
class TeacherConfig:
    """Sizes of the LanguageBind-Video teacher (defaults: ``LanguageBind_Video_merge``, ViT-L/14 at 224 px)."""

    width: int = 1024  # C (HF hidden_size)
    num_layers: int = 24  # HF num_hidden_layers
    num_heads: int = 16  # HF num_attention_heads
    mlp_dim: int = 4096  # HF intermediate_size
    image_size: int = 224  # S: frames are S x S
    patch_size: int = 14  # S / patch_size = grid (16)
    num_frames: int = 8  # length of temporal_embedding = the most frames one forward accepts
    select_layer: int = -2  # hidden-state index as HF: 0 = embeddings after pre_layrnorm, -1 = last layer, no post-LN
    layer_norm_eps: float = 1e-5
    # CLIP's default activation. load_teacher takes the release's own value from config.json (vision_config.hidden_act).
    hidden_act: Literal["quick_gelu", "gelu"] = "quick_gelu"

    def __post_init__(self) -> None:
        for name in ("width", "num_layers", "num_heads", "mlp_dim", "image_size", "patch_size", "num_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not -(self.num_layers + 1) <= self.select_layer <= self.num_layers:
            raise ValueError(
                f"select_layer {self.select_layer} is outside the {self.num_layers + 1} hidden states "
                f"(-{self.num_layers + 1}..{self.num_layers})"
            )
        if self.hidden_act not in ("quick_gelu", "gelu"):
            raise ValueError(f"hidden_act must be 'quick_gelu' or 'gelu', got {self.hidden_act!r}")

    @property
    def grid(self) -> int:
        """Patches per side (16 for ViT-L/14 at 224 px)."""
        return self.image_size // self.patch_size

    @property
    def layers_to_run(self) -> int:
        """Encoder layers whose output is ``hidden_states[select_layer]`` (23 for -2 of 24)."""
        return self.select_layer % (self.num_layers + 1)


# ---------------------------------------------------------------------------------------------------------------
# Blocks


class Attention(nn.Module):
    """CLIP multi-head self-attention (``q/k/v/out_proj`` with biases, scale ``hd^-0.5``, no mask, no dropout).

    Args:
        width: C.
        num_heads: H.
    """

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (M, L, C) M sequences of length L. Returns (M, L, C)."""
        m, length, c = x.shape
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(m, length, h, c // h).transpose(1, 2)  # (M, H, L, hd)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v)  # (M, H, L, hd), softmax(q k^T / sqrt(hd)) v
        return self.out_proj(out.transpose(1, 2).reshape(m, length, c))  # (M, L, C)


class MLP(nn.Module):
    """CLIP MLP: ``fc1 -> activation -> fc2``.

    Args:
        width: C.
        mlp_dim: hidden size.
        act: ``quick_gelu`` (``x * sigmoid(1.702 x)``, OpenAI CLIP) or ``gelu`` (exact, OpenCLIP).
    """

    def __init__(self, width: int, mlp_dim: int, act: str) -> None:
        super().__init__()
        self.act = act
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., C). Returns (..., C)."""
        x = self.fc1(x)  # (..., mlp_dim)
        x = x * torch.sigmoid(1.702 * x) if self.act == "quick_gelu" else F.gelu(x)
        return self.fc2(x)  # (..., C)


class EncoderLayer(nn.Module):
    """Temporal attention (over frames, per token position) followed by CLIP's spatial pre-LN block.

    Args:
        cfg: the teacher sizes.
    """

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        c = cfg.width
        self.self_attn = Attention(c, cfg.num_heads)
        self.layer_norm1 = nn.LayerNorm(c, eps=cfg.layer_norm_eps)
        self.mlp = MLP(c, cfg.mlp_dim, cfg.hidden_act)
        self.layer_norm2 = nn.LayerNorm(c, eps=cfg.layer_norm_eps)
        self.temporal_embedding = nn.Parameter(torch.empty(1, cfg.num_frames, c))
        self.temporal_attn = Attention(c, cfg.num_heads)
        self.temporal_layer_norm1 = nn.LayerNorm(c, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Args: x: (B*T, N+1, C) frames of each video consecutive; t: T. Returns (B*T, N+1, C)."""
        bt, n, c = x.shape
        x = x.view(bt // t, t, n, c)  # (B, T, N+1, C)
        # LanguageBind adds the temporal embedding only when t != 1 (its image/one-frame path) and adds it to the
        # residual stream itself, before the temporal LN; both as in its CLIPEncoderLayer.
        if t != 1:
            x = x + self.temporal_embedding[:, :t].unsqueeze(2)  # (B, T, N+1, C) + (1, T, 1, C)
        y = x.transpose(1, 2).reshape(-1, t, c)  # (B*(N+1), T, C): one sequence per token position
        y = self.temporal_attn(self.temporal_layer_norm1(y))  # (B*(N+1), T, C)
        x = x + y.view(bt // t, n, t, c).transpose(1, 2)  # (B, T, N+1, C)
        x = x.reshape(bt, n, c)  # (B*T, N+1, C)
        x = x + self.self_attn(self.layer_norm1(x))  # (B*T, N+1, C): attention within each frame
        return x + self.mlp(self.layer_norm2(x))  # (B*T, N+1, C)


class Embeddings(nn.Module):
    """CLIP's stem: patch conv without bias, a CLS token, learned absolute positions.

    Args:
        cfg: the teacher sizes.
    """

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        c = cfg.width
        self.class_embedding = nn.Parameter(torch.empty(c))
        self.patch_embedding = nn.Conv2d(3, c, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.position_embedding = nn.Embedding(cfg.grid * cfg.grid + 1, c)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels: (M, 3, S, S). Returns (M, N+1, C), CLS first."""
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # (M, N, C), row-major patches
        cls = self.class_embedding.expand(x.shape[0], 1, -1)  # (M, 1, C)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight  # (M, N+1, C)


class Encoder(nn.Module):
    """The stack of :class:`EncoderLayer` (state-dict name ``encoder.layers.N``)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))


class VisionTransformer(nn.Module):
    """Container with the release's attribute names (``embeddings``, ``pre_layrnorm``, ``encoder``,
    ``post_layernorm``); :class:`VideoTeacher` runs it."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)  # sic, CLIP's spelling
        self.encoder = Encoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)  # loaded, unused by hidden states


# ---------------------------------------------------------------------------------------------------------------
# The teacher


class VideoTeacher(nn.Module):
    """Frozen LanguageBind-Video teacher: frames in, patch features of ``select_layer`` out.

    Always in eval mode (``train()`` keeps it there), no parameter requires grad, and ``forward`` runs under
    ``torch.no_grad``. Randomly initialised here; :func:`load_teacher` fills it from a checkpoint.

    Args:
        cfg: the teacher sizes.
    """

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_model = VisionTransformer(cfg)
        self.reset_parameters()
        self.requires_grad_(False)
        self.eval()

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.cfg.grid

    @property
    def num_patches(self) -> int:
        """Patch tokens per frame (CLS excluded): grid * grid."""
        return self.cfg.grid**2

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """CLIP's initialisation (LanguageBind's ``_init_weights``, factor 1); a checkpoint overrides it."""
        cfg, c = self.cfg, self.cfg.width
        emb = self.vision_model.embeddings
        nn.init.normal_(emb.class_embedding, std=c**-0.5)
        nn.init.normal_(emb.patch_embedding.weight, std=0.02)
        nn.init.normal_(emb.position_embedding.weight, std=0.02)
        in_std = c**-0.5 * (2 * cfg.num_layers) ** -0.5
        for layer in self.vision_model.encoder.layers:
            nn.init.normal_(layer.temporal_embedding, std=c**-0.5)
            for attn in (layer.self_attn, layer.temporal_attn):
                for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                    nn.init.normal_(proj.weight, std=in_std)
                nn.init.normal_(attn.out_proj.weight, std=c**-0.5)
            nn.init.normal_(layer.mlp.fc1.weight, std=(2 * c) ** -0.5)
            nn.init.normal_(layer.mlp.fc2.weight, std=in_std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> VideoTeacher:
        """The teacher is frozen: it stays in eval mode whatever ``mode`` says."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch features of every frame of every video, in one batch, without a graph (see :meth:`features`)."""
        return self.features(frames)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch features of every frame of every video, in one batch (differentiable: for training a teacher).

        Args:
            frames: (B, T, C, S, S) normalised frames with C = 3, or C = 4 whose last channel (the content mask)
                is dropped; T <= ``cfg.num_frames``. All T frames of a video attend to each other.

        Returns:
            (B, T, N, width) features of hidden state ``select_layer`` without the CLS token, N = grid * grid,
            in the input dtype.
        """
        cfg = self.cfg
        if frames.dim() != 5:
            raise ValueError(f"teacher frames must be (B, T, C, S, S), got shape {tuple(frames.shape)}")
        b, t, ch, hgt, wid = frames.shape
        if ch not in (3, 4):
            raise ValueError(f"teacher frames need 3 channels (or 4 with the mask), got {ch}")
        if (hgt, wid) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"teacher frames must be {cfg.image_size}x{cfg.image_size}, got {hgt}x{wid}")
        if not 1 <= t <= cfg.num_frames:
            raise ValueError(
                f"the teacher attends over at most num_frames={cfg.num_frames} frames (its temporal_embedding), "
                f"got {t} frames per video"
            )
        vm = self.vision_model
        dtype = vm.embeddings.patch_embedding.weight.dtype
        pixels = frames[:, :, :3].flatten(0, 1).to(dtype)  # (B*T, 3, S, S)
        x = vm.pre_layrnorm(vm.embeddings(pixels))  # (B*T, N+1, C) = hidden_states[0]
        for layer in vm.encoder.layers[: cfg.layers_to_run]:
            x = layer(x, t)  # (B*T, N+1, C)
        feats = x[:, 1:]  # (B*T, N, C): drop CLS
        return feats.reshape(b, t, self.num_patches, cfg.width).to(frames.dtype)  # (B, T, N, C)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints (LanguageBind_Video_merge layout)


def config_from_hf(config: dict) -> TeacherConfig:
    """A :class:`TeacherConfig` from a LanguageBind ``config.json`` (its ``vision_config``) or a bare vision config.

    Args:
        config: the parsed JSON.

    Returns:
        The teacher sizes; ``select_layer`` is read when present (files written by :func:`save_teacher`), else -2.
    """
    vc = config.get("vision_config", config)
    if not isinstance(vc, dict) or "hidden_size" not in vc:
        raise TeacherCheckpointError("config.json has no vision_config with hidden_size: not a LanguageBind config")
    if not vc.get("add_time_attn", False):
        raise TeacherCheckpointError(
            "vision_config.add_time_attn is false: this is an image CLIP tower, not a LanguageBind video tower"
        )
    if vc.get("num_channels", 3) != 3:
        raise TeacherCheckpointError(f"vision_config.num_channels must be 3, got {vc['num_channels']}")
    image_size = vc.get("image_size", 224)
    if isinstance(image_size, list):  # LanguageBind's resize_pos may store [S, S]
        if len(image_size) != 2 or image_size[0] != image_size[1]:
            raise TeacherCheckpointError(f"vision_config.image_size must be square, got {image_size}")
        image_size = image_size[0]
    fields = {
        "width": vc["hidden_size"],
        "num_layers": vc.get("num_hidden_layers", 12),
        "num_heads": vc.get("num_attention_heads", 12),
        "mlp_dim": vc.get("intermediate_size", 3072),
        "image_size": image_size,
        "patch_size": vc.get("patch_size", 32),
        "num_frames": vc.get("num_frames", 1),
        "layer_norm_eps": vc.get("layer_norm_eps", 1e-5),
        "hidden_act": vc.get("hidden_act", "quick_gelu"),
    }
    if "select_layer" in vc:
        fields["select_layer"] = vc["select_layer"]
    return from_dict(TeacherConfig, fields, source="config.json vision_config")


def config_to_hf(cfg: TeacherConfig) -> dict:
    """The ``config.json`` of :func:`save_teacher`: LanguageBind's layout, plus our ``select_layer``."""
    return {
        "model_type": "LanguageBindVideo",
        "vision_config": {
            "hidden_size": cfg.width,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads,
            "intermediate_size": cfg.mlp_dim,
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "num_channels": 3,
            "num_frames": cfg.num_frames,
            "layer_norm_eps": cfg.layer_norm_eps,
            "hidden_act": cfg.hidden_act,
            "add_time_attn": True,
            "force_patch_dropout": 0.0,
            "lora_r": 0,
            "select_layer": cfg.select_layer,
        },
    }


def _weight_files(path: Path) -> list[Path]:
    """The weight file(s) of a folder or a file: single safetensors/bin, or the shards named by an index json."""
    if path.is_dir():
        for name in (SAFETENSORS_FILE, SAFETENSORS_INDEX, BIN_FILE, BIN_INDEX):
            if (path / name).is_file():
                return _weight_files(path / name)
        raise FileNotFoundError(
            f"{path}: no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, {BIN_FILE} or {BIN_INDEX} (a LanguageBind folder)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: teacher checkpoint not found")
    if path.name.endswith(".json"):
        index = json.loads(path.read_text())
        if not isinstance(index.get("weight_map"), dict):
            raise TeacherCheckpointError(f"{path}: index json has no weight_map")
        shards = sorted(set(index["weight_map"].values()))
        missing = [s for s in shards if not (path.parent / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: shard(s) not found: {', '.join(missing)}")
        return [path.parent / s for s in shards]
    return [path]


def _read_weights(files: list[Path], keep: Callable[[str], bool]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """All key names of ``files`` and the tensors of the keys ``keep(key)`` accepts (safetensors reads only those)."""
    tensors: dict[str, torch.Tensor] = {}
    names: list[str] = []
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt", device="cpu") as f:
                for key in f.keys():
                    names.append(key)
                    if keep(key):
                        tensors[key] = f.get_tensor(key)
        else:
            try:  # weights_only: a .bin is a pickle; never run arbitrary code from it
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
                state = torch.load(file, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise TeacherCheckpointError(f"{file}: expected a state dict, got {type(state).__name__}")
            for key, value in state.items():
                names.append(key)
                if keep(key):
                    tensors[key] = value
    return tensors, names


def _ignored_reason(key: str) -> str | None:
    for prefix, reason in IGNORED_PREFIXES.items():
        if key == prefix or key.startswith(prefix):
            return reason
    return None


def load_teacher(
    folder_or_file: str | Path, cfg: TeacherConfig | None = None, dtype: torch.dtype = torch.float32
) -> VideoTeacher:
    """Load a LanguageBind_Video_merge checkpoint (or one written by :func:`save_teacher`) into a frozen teacher.

    The vision tower's keys (``vision_model.*``) must match the architecture exactly: missing keys, unexpected
    vision keys, unrecognised keys and shape mismatches are errors that name the keys. The text tower, the
    projections, ``logit_scale`` and the old ``position_ids`` buffer are dropped by design and reported.

    Args:
        folder_or_file: a folder with ``config.json`` and ``model.safetensors`` / ``pytorch_model.bin`` (or their
            sharded ``*.index.json``), or one weight file / index json (its folder's ``config.json`` gives the
            sizes when ``cfg`` is None).
        cfg: the teacher sizes; None reads ``config.json`` (``vision_config``).
        dtype: parameter dtype of the returned teacher.

    Returns:
        The teacher, frozen and in eval mode, on the CPU.
    """
    path = Path(folder_or_file)
    folder = path if path.is_dir() else path.parent
    if cfg is None:
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: needed for the teacher sizes (or pass cfg)")
        cfg = config_from_hf(json.loads(config_path.read_text()))
    files = _weight_files(path)
    logger.info("loading the teacher from %s", ", ".join(str(f) for f in files))

    with torch.device("meta"):  # no random init of ~0.4B parameters that are overwritten anyway
        teacher = VideoTeacher(cfg)
    expected = {VISION_PREFIX + k: v.shape for k, v in teacher.vision_model.state_dict().items()}
    state, names = _read_weights(files, lambda k: k in expected)

    ignored: dict[str, int] = {}
    unknown: list[str] = []
    for key in names:
        if key in expected:
            continue
        reason = _ignored_reason(key)
        if reason is not None:
            ignored[reason] = ignored.get(reason, 0) + 1
        else:
            unknown.append(key)
    missing = sorted(set(expected) - set(state))
    bad_shape = [
        f"{k}: {tuple(v.shape)}, expected {tuple(expected[k])}" for k, v in state.items() if v.shape != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing vision keys ({len(missing)}): {', '.join(missing)}")
    if unknown:
        hint = ""
        if any("lora_" in k or ".base_model." in k for k in unknown):
            hint = " (LoRA/PEFT-wrapped weights: merge the adapters first, as in LanguageBind_Video_merge)"
        problems.append(f"unexpected keys ({len(unknown)}){hint}: {', '.join(sorted(unknown))}")
    if bad_shape:
        problems.append(f"shape mismatches ({len(bad_shape)}): {'; '.join(bad_shape)}")
    if problems:
        raise TeacherCheckpointError(f"{path}: checkpoint does not match the teacher {cfg}:\n" + "\n".join(problems))
    for reason, count in ignored.items():
        logger.info("teacher checkpoint: ignored %d key(s) by design: %s", count, reason)

    teacher = teacher.to_empty(device="cpu")
    teacher.vision_model.load_state_dict({k[len(VISION_PREFIX) :]: v for k, v in state.items()}, strict=True)
    teacher = teacher.to(dtype).requires_grad_(False).eval()
    logger.info(
        "teacher loaded: %d tensors, %.1fM parameters, %s",
        len(state),
        sum(p.numel() for p in teacher.parameters()) / 1e6,
        cfg,
    )
    return teacher


def save_teacher(teacher: VideoTeacher, folder: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in the LanguageBind layout (keys ``vision_model.*``).

    Args:
        teacher: the teacher to save.
        folder: created if missing.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config_to_hf(teacher.cfg), indent=2) + "\n")
    state = {VISION_PREFIX + k: v.detach().contiguous() for k, v in teacher.vision_model.state_dict().items()}
    save_file(state, str(folder / SAFETENSORS_FILE), metadata={"format": "pt"})
    logger.info("saved the teacher (%s) to %s", asdict(teacher.cfg), folder)
    return folder
