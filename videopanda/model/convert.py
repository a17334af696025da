"""Checkpoint interop: load EVE-7B-Pretrain or official Video-Panda checkpoints into our model.

Two source formats (reference.md §1.9, §4.7):

* ``eve``: an EVE-7B-Pretrain-v1.0 folder. LLaMA weights, EVE's vision tokenizer under ``model.vision_tower.``
  (patch embedding, class and split embeddings, local and global attention), the projector under
  ``model.mm_projector.`` and EVE's distillation head under ``model.vision_tower_compressor.``. This is the
  reference's pre-alignment start: the modules Video-Panda adds (LSTE, GSTRA, the fusion and GSTRA's query) keep
  their fresh initialisation from ``VideoPandaPreTrainedModel._init_weights``.
* ``videopanda``: an official Video-Panda release. The STAB under ``model.video_tower.``, the projector under
  ``model.video_projector.``, each also saved a second time under the alias ``model.vision_tower.`` /
  ``model.mm_projector.``; the unused ``lmhra2`` copy of LSTE; the frozen teacher under ``model.video_teacher.``;
  the distillation head under ``model.video_tower_compressor.``.

Every key of the source is accounted for: it is loaded into the model (explicit key table below), returned as
part of the distillation head (training-only: ``norm_layer.{j}.{0,1}.*``, ``input_layer.*``, ``output_layer.*``,
saved as ``distill_head.safetensors`` beside the converted model), or dropped for a stated reason. Anything else
is an error that lists the names, and so are model weights the checkpoint does not provide (except the fresh
modules of an EVE start), shape mismatches, and alias twins that differ. Weights are never loaded partially.

Reading: safetensors (one file, or shards with ``model.safetensors.index.json``) and PyTorch ``.bin`` (one file,
or shards with ``pytorch_model.bin.index.json``), the latter only through ``torch.load(weights_only=True,
mmap=True)``. Tensors are read one at a time while they are copied, so a 7B conversion needs the model's memory
plus one tensor.

Command line::

    videopanda convert --from eve EVE-7B-Pretrain-v1.0 --out ckpt/eve7b --model-config configs/model/videopanda-7b.yaml
    videopanda convert --from videopanda Video-Panda-7B --out ckpt/videopanda7b \\
        --model-config configs/model/videopanda-7b.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from videopanda.config import ConfigError, load_config, save_config
from videopanda.utils.logging import setup_logging

from .build import build_model, to_hf_config
from .config import ModelConfig
from .modeling_videopanda import VideoPandaForConditionalGeneration

logger = logging.getLogger(__name__)

SourceFormat = Literal["eve", "videopanda"]

# ---------------------------------------------------------------------------------------------------------------
# The key table
# ---------------------------------------------------------------------------------------------------------------

# STAB keys, relative to the reference's tower prefix -> relative to ours (``model.video_tokenizer.``).
# An entry ending in "." renames every key under that prefix; the others are exact names.
STAB_KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("patch_embedding.weight", "patch_embedding.proj.weight"),
    ("class_embedding", "fsra.query"),  # FSRA's learned per-frame query
    ("split_embedding", "split_embedding"),  # the row-end token
    ("temporal_cls_token", "gstra.query"),  # GSTRA's learned per-chunk query
    ("balance", "fusion.balance"),  # alpha = sigmoid(balance)
    ("lmhra1.pos_embed.", "lste.temporal."),  # LSTE stacked temporal convs (BatchNorm3d, 1x1x1, 3x1x1 dw, 1x1x1)
    ("dpe.", "lste.dpe."),  # LSTE dynamic position encoding
    ("dec.attn.in_proj_weight", "gstra.in_proj_weight"),
    ("dec.attn.in_proj_bias", "gstra.in_proj_bias"),
    ("dec.attn.out_proj.", "gstra.out_proj."),
    ("dec.ln_1.", "gstra.ln_1."),
    ("dec.ln_2.", "gstra.ln_2."),
    ("dec.ln_3.", "gstra.ln_3."),
    ("dec.mlp.c_fc.", "gstra.mlp.c_fc."),
    ("dec.mlp.c_proj.", "gstra.mlp.c_proj."),
    ("proj.0.", "fusion.proj.0."),  # LayerNorm (index 1 is the dropout)
    ("proj.2.", "fusion.proj.2."),  # Linear
    ("local_attention.", "lsd.pool."),  # LSD
    ("global_attention.", "fsra.pool."),  # FSRA
)

# LLaMA keys (EVE and Video-Panda both use LlamaForCausalLM's names) -> ours.
LLM_KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)

OUR_STAB_PREFIX = "model.video_tokenizer."
OUR_PROJECTOR_PREFIX = "model.projector."

# Reference-relative names of the distillation head (VideoCompressor / EVE's VisionCompressor), less its teacher.
_DISTILL_HEAD_RE = re.compile(r"^(norm_layer\.\d+\.(0\.(weight|bias)|1\.weight)|(input|output)_layer\.(weight|bias))$")
# LLaMA checkpoints written by older transformers carry RoPE's inverse frequencies per layer; ours recomputes them.
_INV_FREQ_RE = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")

DROP_ALIAS = "alias of the video tower / projector (duplicate of its video_* twin)"
DROP_LMHRA2 = "lmhra2 (deprecated second LSTE, built but never called)"
DROP_TEACHER = "frozen teacher (the training wrapper reloads it)"
DROP_EVE_CLIP = "EVE's CLIP teacher"
DROP_INV_FREQ = "RoPE inv_freq (recomputed from the config)"


@dataclass(frozen=True)
class _FormatSpec:
    tower: str  # prefix of the STAB (EVE: its vision tokenizer)
    projector: str
    compressor: str  # prefix of the distillation head
    aliases: tuple[tuple[str, str], ...] = ()  # (alias prefix, twin prefix): duplicates dropped after a check
    dropped: tuple[tuple[str, str], ...] = ()  # (prefix, reason), checked before everything else
    fresh: tuple[str, ...] = ()  # our STAB-relative prefixes that may stay freshly initialised


FORMATS: dict[str, _FormatSpec] = {
    "videopanda": _FormatSpec(
        tower="model.video_tower.",
        projector="model.video_projector.",
        compressor="model.video_tower_compressor.",
        aliases=(("model.vision_tower.", "model.video_tower."), ("model.mm_projector.", "model.video_projector.")),
        dropped=(("model.video_teacher.", DROP_TEACHER),),
    ),
    "eve": _FormatSpec(
        tower="model.vision_tower.",
        projector="model.mm_projector.",
        compressor="model.vision_tower_compressor.",
        dropped=(("model.vision_tower_compressor.clip_layer.", DROP_EVE_CLIP), ("model.vision_clip.", DROP_EVE_CLIP)),
        # The modules Video-Panda adds to EVE's tokenizer start from our init (reference §1.6, DECISIONS.md).
        fresh=("lste.", "gstra.", "fusion."),
    ),
}

_TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
DISTILL_HEAD_FILE = "distill_head.safetensors"
REPORT_FILE = "conversion_report.json"
MODEL_CONFIG_FILE = "model_config.yaml"


class ConversionError(ValueError):
    """A checkpoint cannot be converted; the message names the file or the keys and the problem."""


def _listing(names, limit: int = 40) -> str:
    names = sorted(names)
    shown = "\n  ".join(names[:limit])
    more = f"\n  ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"\n  {shown}{more}"


def _rename(rel: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """Apply the first matching entry of a key table to ``rel``; None if no entry matches."""
    for src, dst in table:
        if src.endswith("."):
            if rel.startswith(src):
                return dst + rel[len(src) :]
        elif rel == src:
            return dst
    return None


# ---------------------------------------------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------------------------------------------


class ReferenceStateDict(Mapping):
    """A read-only, lazily read state dict over one checkpoint file or a set of shards.

    ``sd[key]`` reads that tensor (safetensors) or returns the memory-mapped tensor (``.bin``); ``shape(key)``
    never reads data. ``files`` maps every key to the file it lives in, for error messages.
    """

    def __init__(self, source: Path, files: list[Path]) -> None:
        self.source = source
        self.files: dict[str, Path] = {}
        self._safetensors: dict[Path, object] = {}
        self._tensors: dict[str, torch.Tensor] = {}
        for path in files:
            if path.suffix == ".safetensors":
                keys = self._open_safetensors(path)
            else:
                keys = self._open_bin(path)
            for key in keys:
                if key in self.files:
                    raise ConversionError(f"{path}: key {key!r} also appears in {self.files[key]}")
                self.files[key] = path

    def _open_safetensors(self, path: Path) -> list[str]:
        try:
            handle = safe_open(str(path), framework="pt", device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise ConversionError(f"{path}: not a readable safetensors file: {err}") from err
        self._safetensors[path] = handle
        return list(handle.keys())

    def _open_bin(self, path: Path) -> list[str]:
        try:
            # weights_only: a .bin is a pickle; never run code from it. mmap: read tensors only when copied.
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # unpickling errors come in many types
            raise ConversionError(
                f"{path}: cannot be read with torch.load(weights_only=True, mmap=True): {err}"
            ) from err
        if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ConversionError(f"{path}: expected a state dict (a mapping of names to tensors)")
        self._tensors.update(obj)
        return list(obj)

    def __getitem__(self, key: str) -> torch.Tensor:
        path = self.files[key]
        if path in self._safetensors:
            return self._safetensors[path].get_tensor(key)
        return self._tensors[key]

    def shape(self, key: str) -> tuple[int, ...]:
        path = self.files[key]
        if path in self._safetensors:
            return tuple(self._safetensors[path].get_slice(key).get_shape())
        return tuple(self._tensors[key].shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def _shape(state_dict: Mapping, key: str) -> tuple[int, ...]:
    if isinstance(state_dict, ReferenceStateDict):
        return state_dict.shape(key)
    return tuple(state_dict[key].shape)


def _shards_from_index(index_path: Path) -> list[Path]:
    try:
        index = json.loads(index_path.read_text())
        weight_map = index["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConversionError(f"{index_path}: not a valid shard index (needs a 'weight_map'): {err}") from err
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (index_path.parent / s).is_file()]
    if missing:
        raise ConversionError(f"{index_path}: shard file(s) listed in the index do not exist:{_listing(missing)}")
    return [index_path.parent / s for s in shards]


def load_reference_state_dict(src: str | Path) -> ReferenceStateDict:
    """Open a reference checkpoint (a folder, or one ``.safetensors`` / ``.bin`` file).

    In a folder, the first of these that exists is used: ``model.safetensors.index.json`` (shards),
    ``model.safetensors``, ``pytorch_model.bin.index.json`` (shards), ``pytorch_model.bin``.

    Args:
        src: checkpoint folder or file.

    Returns:
        A lazily read mapping of reference key names to tensors.

    Raises:
        ConversionError: no checkpoint found, an unreadable file, a shard index that names missing files or
            keys, or a key present in two shards.
    """
    src = Path(src)
    if src.is_file():
        if src.suffix not in (".safetensors", ".bin", ".pt", ".pth"):
            raise ConversionError(f"{src}: expected a .safetensors or .bin checkpoint file")
        return ReferenceStateDict(src, [src])
    if not src.is_dir():
        raise ConversionError(f"{src}: checkpoint folder or file not found")
    for index_name, single_name in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index_path = src / index_name
        if index_path.is_file():
            sd = ReferenceStateDict(src, _shards_from_index(index_path))
            weight_map = json.loads(index_path.read_text())["weight_map"]
            absent = [k for k, shard in weight_map.items() if sd.files.get(k) != src / shard]
            if absent:
                raise ConversionError(f"{index_path}: key(s) not found in the shard the index names:{_listing(absent)}")
            return sd
        if (src / single_name).is_file():
            return ReferenceStateDict(src, [src / single_name])
    raise ConversionError(
        f"{src}: no checkpoint found (looked for model.safetensors.index.json, model.safetensors, "
        "pytorch_model.bin.index.json, pytorch_model.bin)"
    )


# ---------------------------------------------------------------------------------------------------------------
# Mapping names
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class KeyMap:
    """Where every key of a reference checkpoint goes.

    Attributes:
        fmt: source format.
        weights: our model's key -> the reference key it is read from.
        distill_head: distillation-head key (``norm_layer.{j}.{0,1}.*``, ``input_layer.*``, ``output_layer.*``)
            -> the reference key.
        dropped: reason -> reference keys dropped by design.
        from_alias: our keys read from an alias because the checkpoint lacks the ``video_*`` twin.
    """

    fmt: str
    weights: dict[str, str] = field(default_factory=dict)
    distill_head: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    from_alias: list[str] = field(default_factory=list)


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device.type == "meta" or b.device.type == "meta":
        return True  # shape-only planning: meta tensors carry no values to compare
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True  # one tensor saved under two names (torch.save keeps the sharing)
    return torch.equal(a, b)


def _format_hint(keys, fmt: str) -> str:
    keys = list(keys)
    if fmt == "eve" and any(k.startswith("model.video_tower.") for k in keys):
        return "\nThe keys look like a Video-Panda checkpoint: use --from videopanda."
    if fmt == "videopanda" and not any(k.startswith("model.video_tower.") for k in keys):
        if any(k.startswith("model.vision_tower.") for k in keys):
            return "\nThe keys look like an EVE checkpoint (no model.video_tower.*): use --from eve."
    return ""


def map_reference_keys(state_dict: Mapping[str, torch.Tensor], fmt: SourceFormat) -> KeyMap:
    """Map the key names of a reference checkpoint onto ours (no shapes checked; see :func:`plan_conversion`).

    Args:
        state_dict: reference key -> tensor (a :class:`ReferenceStateDict`, a dict, or meta tensors).
        fmt: ``"eve"`` or ``"videopanda"``.

    Returns:
        The :class:`KeyMap`.

    Raises:
        ConversionError: unknown format, keys that are neither mapped, nor part of the distillation head, nor
            dropped by design (listed by name), or alias twins that hold different values.
    """
    if fmt not in FORMATS:
        raise ConversionError(f"unknown checkpoint format {fmt!r} (expected one of {sorted(FORMATS)})")
    spec = FORMATS[fmt]
    out = KeyMap(fmt=fmt)
    sources: dict[str, list[str]] = {}  # our key -> reference keys claiming it
    unrecognised: list[str] = []
    differing: list[str] = []

    def drop(reason: str, key: str) -> None:
        out.dropped.setdefault(reason, []).append(key)

    for key in state_dict:
        name = key
        reason = next((r for prefix, r in spec.dropped if key.startswith(prefix)), None)
        if reason is None and _INV_FREQ_RE.match(key):
            reason = DROP_INV_FREQ
        if reason is not None:
            drop(reason, key)
            continue
        alias = next(((a, twin) for a, twin in spec.aliases if key.startswith(a)), None)
        if alias is not None:
            twin = alias[1] + key[len(alias[0]) :]
            if twin in state_dict:
                if not _same_tensor(state_dict[key], state_dict[twin]):
                    differing.append(f"{key} != {twin}")
                drop(DROP_ALIAS, key)
                continue
            name = twin  # only the alias spelling was saved: read the weight from it
        target = None
        if name.startswith(spec.tower):
            rel = name[len(spec.tower) :]
            if rel.startswith("lmhra2."):
                drop(DROP_LMHRA2, key)
                continue
            ours = _rename(rel, STAB_KEY_TABLE)
            target = None if ours is None else OUR_STAB_PREFIX + ours
        elif name.startswith(spec.projector):
            target = OUR_PROJECTOR_PREFIX + name[len(spec.projector) :]
        elif name.startswith(spec.compressor):
            rel = name[len(spec.compressor) :]
            if _DISTILL_HEAD_RE.match(rel):
                out.distill_head[rel] = key
                continue
        else:
            target = _rename(name, LLM_KEY_TABLE)
        if target is None:
            unrecognised.append(key)
            continue
        if name != key:
            out.from_alias.append(target)
        sources.setdefault(target, []).append(key)

    if differing:
        raise ConversionError(f"alias twins hold different values (they must be one module):{_listing(differing)}")
    if unrecognised:
        raise ConversionError(
            f"{len(unrecognised)} checkpoint key(s) are not recognised for format {fmt!r} (not in the key table, "
            f"not part of the distillation head, not dropped by design):{_listing(unrecognised)}"
            + _format_hint(state_dict, fmt)
        )
    clashes = {t: s for t, s in sources.items() if len(s) > 1}
    if clashes:
        raise ConversionError(
            "several checkpoint keys map to the same weight:"
            + _listing(f"{t} <- {', '.join(s)}" for t, s in clashes.items())
        )
    out.weights = {t: s[0] for t, s in sources.items()}
    return out


# ---------------------------------------------------------------------------------------------------------------
# Checking against the model, and loading
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """What a conversion did with every key.

    Attributes:
        source: the checkpoint path.
        fmt: ``eve`` or ``videopanda``.
        loaded: our keys loaded from the checkpoint.
        fresh: our keys left at their fresh initialisation (expected for an EVE start: LSTE, GSTRA, fusion).
        dropped: reason -> reference keys dropped by design.
        from_alias: our keys read from an alias spelling.
        distill_head_keys: distillation-head names (see :attr:`distill_head`).
        distill_head: the distillation head as a state dict with reference-relative names; empty if the
            checkpoint has none. Not part of the inference model.
    """

    source: str
    fmt: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    from_alias: list[str] = field(default_factory=list)
    distill_head_keys: list[str] = field(default_factory=list)
    distill_head: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """Names only (JSON-serialisable)."""
        return {
            "source": self.source,
            "format": self.fmt,
            "loaded": sorted(self.loaded),
            "initialised_fresh": sorted(self.fresh),
            "dropped": {reason: sorted(keys) for reason, keys in self.dropped.items()},
            "loaded_from_alias": sorted(self.from_alias),
            "distill_head": sorted(self.distill_head_keys),
            "missing": [],
            "unexpected": [],
        }

    def summary(self) -> str:
        """A human-readable report (printed at the end of ``videopanda convert``)."""
        lines = [f"Converted {self.fmt} checkpoint {self.source}"]
        lines.append(f"  loaded into the model:          {len(self.loaded)} tensors")
        if self.from_alias:
            lines.append(f"    of which read from an alias:  {len(self.from_alias)} (no video_* twin saved)")
        if self.fresh:
            lines.append(f"  initialised fresh (expected):   {len(self.fresh)} tensors")
            lines += [f"    {k}" for k in sorted(self.fresh)]
        lines.append(f"  distillation head (training):   {len(self.distill_head_keys)} tensors")
        if self.dropped:
            lines.append("  dropped by design:")
            for reason, keys in sorted(self.dropped.items()):
                lines.append(f"    {len(keys):6d}  {reason}  (e.g. {sorted(keys)[0]})")
        lines.append("  missing: none    unexpected: none    shape mismatches: none")
        return "\n".join(lines)


def plan_conversion(
    key_map: KeyMap, state_dict: Mapping[str, torch.Tensor], model: VideoPandaForConditionalGeneration
) -> ConversionReport:
    """Check a key map against a model (which may live on the meta device) without touching any weight.

    Raises:
        ConversionError: mapped keys the model does not have (unexpected), model keys the checkpoint does not
            provide and that are not allowed to stay fresh (missing), shape mismatches, or an incomplete
            distillation head; each listed by name.
    """
    spec = FORMATS[key_map.fmt]
    target_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    unexpected = [f"{key_map.weights[k]} -> {k}" for k in key_map.weights if k not in target_shapes]
    if unexpected:
        raise ConversionError(
            f"{len(unexpected)} checkpoint key(s) map to weights this model does not have (check the model config, "
            f"e.g. an ablation that removes a block):{_listing(unexpected)}"
        )
    mismatched = [
        f"{ref} -> {ours}: checkpoint {_shape(state_dict, ref)} vs model {target_shapes[ours]}"
        for ours, ref in key_map.weights.items()
        if _shape(state_dict, ref) != target_shapes[ours]
    ]
    if mismatched:
        raise ConversionError(f"{len(mismatched)} shape mismatch(es):{_listing(mismatched)}")
    _check_distill_head(key_map, state_dict, model.config.text_config.hidden_size)
    fresh_prefixes = tuple(OUR_STAB_PREFIX + p for p in spec.fresh)
    not_given = [k for k in target_shapes if k not in key_map.weights]
    fresh = [k for k in not_given if k.startswith(fresh_prefixes)]
    missing = [k for k in not_given if not k.startswith(fresh_prefixes)]
    if missing:
        raise ConversionError(
            f"{len(missing)} model weight(s) are not in the checkpoint (format {key_map.fmt!r}):{_listing(missing)}"
            + _format_hint(state_dict, key_map.fmt)
        )
    return ConversionReport(
        source=str(getattr(state_dict, "source", "<state dict>")),
        fmt=key_map.fmt,
        loaded=sorted(key_map.weights),
        fresh=sorted(fresh),
        dropped={r: sorted(keys) for r, keys in key_map.dropped.items()},
        from_alias=sorted(key_map.from_alias),
        distill_head_keys=sorted(key_map.distill_head),
    )


def _check_distill_head(key_map: KeyMap, state_dict: Mapping, llm_width: int) -> None:
    """The head reads LLM hidden states: its LayerNorms and input Linears must have the LLM width."""
    bad = []
    names = set(key_map.distill_head)
    if names:  # a head is all or nothing: every norm layer 0..n-1 complete, plus the input and output layers
        n_norm = 1 + max((int(k.split(".")[1]) for k in names if k.startswith("norm_layer.")), default=-1)
        expected = {f"{io}_layer.{p}" for io in ("input", "output") for p in ("weight", "bias")}
        expected |= {f"norm_layer.{j}.{p}" for j in range(n_norm) for p in ("0.weight", "0.bias", "1.weight")}
        if n_norm == 0 or names != expected:
            missing = sorted(expected - names) or ["norm_layer.*"]
            bad += [f"{key_map.fmt} distillation head lacks {m}" for m in missing]
    for rel, ref in key_map.distill_head.items():
        shape = _shape(state_dict, ref)
        if re.match(r"norm_layer\.\d+\.0\.", rel) and shape != (llm_width,):
            bad.append(f"{ref}: {shape}, expected ({llm_width},)")
        elif (re.match(r"norm_layer\.\d+\.1\.weight", rel) or rel == "input_layer.weight") and (
            len(shape) != 2 or shape[1] != llm_width
        ):
            bad.append(f"{ref}: {shape}, expected (teacher width, {llm_width})")
    if bad:
        raise ConversionError(f"distillation head incomplete or not fitting the LLM width {llm_width}:{_listing(bad)}")


@torch.no_grad()
def load_mapped_weights(
    model: VideoPandaForConditionalGeneration, key_map: KeyMap, state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Copy the mapped weights into ``model`` (already checked by :func:`plan_conversion`), then initialise the rest.

    The model may come straight from ``to_empty``: every weight the checkpoint provides is copied (cast to the
    model's dtype) and flagged as loaded, and transformers' ``initialize_weights`` then initialises only the
    unflagged ones (the fresh modules of an EVE start, and non-persistent buffers such as RoPE's frequencies).
    """
    targets = model.state_dict(keep_vars=True)
    for ours, ref in key_map.weights.items():
        param = targets[ours]
        param.copy_(state_dict[ref])
        param._is_hf_initialized = True  # transformers' marker: initialize_weights leaves this tensor alone
    model.initialize_weights()
    _check_inv_freq(model, key_map, state_dict)


def _check_inv_freq(model: VideoPandaForConditionalGeneration, key_map: KeyMap, state_dict: Mapping) -> None:
    """Dropped per-layer RoPE frequencies must equal the ones our config computes, or the LLM would differ."""
    saved = key_map.dropped.get(DROP_INV_FREQ, [])
    if not saved:
        return
    ours = model.model.language_model.rotary_emb.inv_freq.float()
    for key in saved:
        theirs = state_dict[key].float()
        if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=1e-2, atol=1e-6):
            raise ConversionError(
                f"{key}: the checkpoint's RoPE frequencies differ from the model config's "
                "(check llm.rope_parameters / head size in the model config)"
            )


# ---------------------------------------------------------------------------------------------------------------
# Whole conversion
# ---------------------------------------------------------------------------------------------------------------

_LLM_SIZE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
)


def check_source_config(src: str | Path, model_cfg: ModelConfig) -> None:
    """Cross-check the LLM sizes of the model config against the source's ``config.json``, if there is one.

    Raises:
        ConversionError: a size differs (all differences are listed with both values).
    """
    path = Path(src) / "config.json" if Path(src).is_dir() else Path(src).parent / "config.json"
    if not path.is_file():
        logger.info("%s: no config.json beside the checkpoint; LLM sizes are checked through tensor shapes only", src)
        return
    try:
        source = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConversionError(f"{path}: not valid JSON: {err}") from err
    text = to_hf_config(model_cfg).text_config
    diffs = []
    for key in _LLM_SIZE_KEYS:
        if key not in source:
            continue
        theirs, ours = source[key], getattr(text, key)
        if key == "num_key_value_heads" and theirs is None:
            theirs = source.get("num_attention_heads")
        if theirs is None:
            continue
        if (abs(theirs - ours) > 1e-12) if isinstance(ours, float) else theirs != ours:
            diffs.append(f"llm.{key}: {path.name} has {theirs}, the model config has {ours}")
    if diffs:
        raise ConversionError(f"{path}: the model config does not match the checkpoint:{_listing(diffs)}")


def convert_checkpoint(
    src: str | Path, fmt: SourceFormat, model_cfg: ModelConfig | str | Path
) -> tuple[VideoPandaForConditionalGeneration, ConversionReport]:
    """Load a reference checkpoint into a new model.

    Args:
        src: checkpoint folder (or file); see :func:`load_reference_state_dict`.
        fmt: ``"eve"`` (EVE-7B-Pretrain, the pre-alignment start) or ``"videopanda"`` (official release).
        model_cfg: the target model (a :class:`ModelConfig` or the path of its YAML); its LLM sizes are
            cross-checked against ``src/config.json`` when present.

    Returns:
        ``(model, report)``: the model in eval mode, in ``model_cfg.dtype``; the report lists what was loaded,
        initialised fresh and dropped, and carries the distillation head (``report.distill_head``).

    Raises:
        ConversionError: see :func:`load_reference_state_dict`, :func:`map_reference_keys` and
            :func:`plan_conversion`.
    """
    if not isinstance(model_cfg, ModelConfig):
        model_cfg = load_config(ModelConfig, model_cfg)
    state_dict = load_reference_state_dict(src)
    check_source_config(src, model_cfg)
    key_map = map_reference_keys(state_dict, fmt)
    model = build_model(model_cfg, device="meta")
    report = plan_conversion(key_map, state_dict, model)
    model = model.to_empty(device="cpu")
    load_mapped_weights(model, key_map, state_dict)
    report.distill_head = {rel: state_dict[ref].clone() for rel, ref in sorted(key_map.distill_head.items())}
    logger.info("converted %s: %d tensors loaded, %d fresh", src, len(report.loaded), len(report.fresh))
    return model.eval(), report


def save_converted(
    model: VideoPandaForConditionalGeneration,
    report: ConversionReport,
    out: str | Path,
    src: str | Path | None = None,
    model_cfg: ModelConfig | None = None,
) -> list[Path]:
    """Write a converted model folder loadable with :func:`videopanda.model.load_model`.

    Writes the ``save_pretrained`` files, ``distill_head.safetensors`` (when the checkpoint had a head), the
    tokenizer files found in ``src``, ``conversion_report.json`` and, given ``model_cfg``, ``model_config.yaml``.

    Returns:
        The files written besides the ``save_pretrained`` ones.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    written = []
    if report.distill_head:
        head = {k: v.contiguous() for k, v in report.distill_head.items()}
        save_file(head, str(out / DISTILL_HEAD_FILE), metadata={"format": "pt", "source_format": report.fmt})
        written.append(out / DISTILL_HEAD_FILE)
    if src is not None:
        src_dir = Path(src) if Path(src).is_dir() else Path(src).parent
        for name in _TOKENIZER_FILES:
            if (src_dir / name).is_file():
                shutil.copy2(src_dir / name, out / name)
                written.append(out / name)
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=1))
    written.append(out / REPORT_FILE)
    if model_cfg is not None:
        save_config(model_cfg, out / MODEL_CONFIG_FILE)
        written.append(out / MODEL_CONFIG_FILE)
    return written


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="videopanda convert",
        description=(
            "Convert an EVE-7B-Pretrain checkpoint (the pre-alignment start: LLaMA + EVE's tokenizer and projector; "
            "LSTE, GSTRA and the fusion are initialised fresh) or an official Video-Panda release into a videopanda "
            "model folder (save_pretrained layout, loadable with videopanda.model.load_model). Every source key is "
            "loaded, saved as the distillation head (distill_head.safetensors), or dropped for a stated reason "
            "(aliases, lmhra2, teacher); anything else, missing weights and shape mismatches are errors."
        ),
        epilog=(
            "example: videopanda convert --from videopanda Video-Panda-7B --out ckpt/videopanda-7b "
            "--model-config configs/model/videopanda-7b.yaml"
        ),
    )
    p.add_argument("--from", dest="fmt", required=True, choices=sorted(FORMATS), help="source checkpoint format")
    p.add_argument(
        "src", help="checkpoint folder (sharded or single safetensors / pytorch_model.bin) or a single weights file"
    )
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--model-config", required=True, help="ModelConfig YAML, e.g. configs/model/videopanda-7b.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model config key (repeatable), e.g. --set dtype=float32",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    """``videopanda convert``; returns the exit code (2 on a conversion or config error)."""
    args = _parser().parse_args(argv)
    setup_logging()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        sys.stderr.write(f"videopanda convert: {out} is not empty (pass --overwrite to write into it)\n")
        return 2
    try:
        model_cfg = load_config(ModelConfig, args.model_config, args.overrides)
        model, report = convert_checkpoint(args.src, args.fmt, model_cfg)
        save_converted(model, report, out, src=args.src, model_cfg=model_cfg)
    except (ConversionError, ConfigError) as err:
        sys.stderr.write(f"videopanda convert: {err}\n")
        return 2
    print(report.summary())
    print(f"Wrote {out} (load with videopanda.model.load_model)")
    if report.distill_head:
        print(f"Distillation head: {out / DISTILL_HEAD_FILE} (loaded by the training wrapper)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
