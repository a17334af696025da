"""Checkpoint interop: tiny EVE-format and official-format checkpoints, written here under the reference's key names
(reference.md §1.9, §4.7), convert with nothing missing; every failure mode raises an error naming the keys; the
full 7B reference key table maps onto the meta-built 7B model with matching shapes.

The reference names and shapes below are written from the spec, independently of ``convert.py``'s key table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import TINY_LLM, tiny_model_config
from tests.model.frames import letterboxed
from tests.model.stab_init import assert_stab_starts_from_our_init
from videopanda.config import load_config, save_config
from videopanda.model import ModelConfig, build_model, load_model
from videopanda.model.convert import (
    ConversionError,
    convert_checkpoint,
    load_reference_state_dict,
    main,
    map_reference_keys,
    plan_conversion,
)
from videopanda.model.geometry import frame_token_counts

# Our STAB names (under model.video_tokenizer.) -> the reference's (under model.video_tower.), from the issue text.
STAB_TO_REFERENCE = {
    "patch_embedding.proj.": "patch_embedding.",
    "fsra.query": "class_embedding",
    "split_embedding": "split_embedding",
    "gstra.query": "temporal_cls_token",
    "fusion.balance": "balance",
    "lste.temporal.": "lmhra1.pos_embed.",
    "lste.dpe.": "dpe.",
    "gstra.in_proj_": "dec.attn.in_proj_",
    "gstra.out_proj.": "dec.attn.out_proj.",
    "gstra.ln_": "dec.ln_",
    "gstra.mlp.": "dec.mlp.",
    "fusion.proj.": "proj.",
    "lsd.pool.": "local_attention.",
    "fsra.pool.": "global_attention.",
}
EVE_TOWER = ("patch_embedding.", "class_embedding", "split_embedding", "local_attention.", "global_attention.")


def to_reference(ours: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """Our model's state dict under the reference's names (EVE: only the modules EVE has)."""
    tower = "model.video_tower." if fmt == "videopanda" else "model.vision_tower."
    projector = "model.video_projector." if fmt == "videopanda" else "model.mm_projector."
    out = {}
    for key, value in ours.items():
        if key.startswith("model.video_tokenizer."):
            rel = key[len("model.video_tokenizer.") :]
            prefix = next(p for p in STAB_TO_REFERENCE if rel.startswith(p))
            name = STAB_TO_REFERENCE[prefix] + rel[len(prefix) :]
            if fmt == "eve" and not name.startswith(EVE_TOWER):
                continue
            out[tower + name] = value.clone()
        elif key.startswith("model.projector."):
            out[projector + key[len("model.projector.") :]] = value.clone()
        elif key.startswith("model.language_model."):
            out["model." + key[len("model.language_model.") :]] = value.clone()
        else:
            assert key == "lm_head.weight"
            out[key] = value.clone()
    return out


def distill_head_shapes(d: int, t: int) -> dict[str, tuple[int, ...]]:
    """VideoCompressor / EVE VisionCompressor, reference-relative (§1.9): 9 norm layers, input and output layers."""
    shapes = {}
    for j in range(9):
        shapes |= {f"norm_layer.{j}.0.weight": (d,), f"norm_layer.{j}.0.bias": (d,), f"norm_layer.{j}.1.weight": (t, d)}
    return shapes | {
        "input_layer.weight": (t, d),
        "input_layer.bias": (t,),
        "output_layer.weight": (t, t),
        "output_layer.bias": (t,),
    }


def lste_shapes(c: int, r: int) -> dict[str, tuple[int, ...]]:
    """One Local_MHRA (lmhra1 or lmhra2), relative to ``lmhraN.``."""
    bn = {f"pos_embed.0.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
    return bn | {
        "pos_embed.0.num_batches_tracked": (),
        "pos_embed.1.weight": (r, c, 1, 1, 1),
        "pos_embed.1.bias": (r,),
        "pos_embed.2.weight": (r, 1, 3, 1, 1),
        "pos_embed.2.bias": (r,),
        "pos_embed.3.weight": (c, r, 1, 1, 1),
        "pos_embed.3.bias": (c,),
    }


def reference_shapes(fmt: str, c: int, p: int, d: int, v: int, layers: int, inter: int, kv: int, t: int):
    """Every key of a reference checkpoint with its shape (§1.9 for Video-Panda, §4.7 for EVE), teacher excluded."""
    pool = {"q.0.weight": (c,), "q.0.bias": (c,), "q.1.weight": (c, c), "kv.0.weight": (c,), "kv.0.bias": (c,)}
    pool |= {"kv.1.weight": (2 * c, c), "proj.weight": (c, c), "proj.bias": (c,)}
    tower = {"patch_embedding.weight": (c, 3, p, p), "class_embedding": (c,), "split_embedding": (c,)}
    tower |= {f"local_attention.{k}": s for k, s in pool.items()} | {
        f"global_attention.{k}": s for k, s in pool.items()
    }
    if fmt == "videopanda":
        r = int(c // 1.5)
        tower |= {"temporal_cls_token": (1, 1, c), "balance": (c,), "dpe.weight": (c, 1, 3, 3, 3), "dpe.bias": (c,)}
        tower |= {f"lmhra1.{k}": s for k, s in lste_shapes(c, r).items()}
        tower |= {f"lmhra2.{k}": s for k, s in lste_shapes(c, r).items()}
        tower |= {"dec.attn.in_proj_weight": (3 * c, c), "dec.attn.in_proj_bias": (3 * c,)}
        tower |= {"dec.attn.out_proj.weight": (c, c), "dec.attn.out_proj.bias": (c,)}
        tower |= {f"dec.ln_{i}.{n}": (c,) for i in (1, 2, 3) for n in ("weight", "bias")}
        tower |= {"dec.mlp.c_fc.weight": (4 * c, c), "dec.mlp.c_fc.bias": (4 * c,)}
        tower |= {"dec.mlp.c_proj.weight": (c, 4 * c), "dec.mlp.c_proj.bias": (c,)}
        tower |= {"proj.0.weight": (c,), "proj.0.bias": (c,), "proj.2.weight": (c, c), "proj.2.bias": (c,)}
    projector = {"0.weight": (d, c), "0.bias": (d,), "2.weight": (d, d), "2.bias": (d,)}
    llm = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,), "lm_head.weight": (v, d)}
    for i in range(layers):
        pre = f"model.layers.{i}."
        llm |= {pre + f"self_attn.{n}_proj.weight": (d, d) for n in "qo"}
        llm |= {pre + f"self_attn.{n}_proj.weight": (kv, d) for n in "kv"}
        llm |= {pre + f"mlp.{n}_proj.weight": (inter, d) for n in ("gate", "up")}
        llm |= {pre + "mlp.down_proj.weight": (d, inter)}
        llm |= {pre + "input_layernorm.weight": (d,), pre + "post_attention_layernorm.weight": (d,)}
    names = ("model.video_tower.", "model.video_projector.", "model.video_tower_compressor.")
    if fmt == "eve":
        names = ("model.vision_tower.", "model.mm_projector.", "model.vision_tower_compressor.")
    shapes = dict(llm)
    shapes |= {names[0] + k: s for k, s in tower.items()}
    shapes |= {names[1] + k: s for k, s in projector.items()}
    shapes |= {names[2] + k: s for k, s in distill_head_shapes(d, t).items()}
    return shapes


CONFIG_7B = Path(__file__).resolve().parents[2] / "configs" / "model" / "videopanda-7b.yaml"
TEACHER_KEYS = {  # a few LanguageBind keys, enough to show they are dropped
    "model.video_teacher.video_tower.embeddings.patch_embedding.weight": (16, 3, 14, 14),
    "model.video_teacher.video_tower.encoder.layers.0.temporal_attn.k_proj.weight": (16, 16),
    "model.video_teacher.video_tower.post_layernorm.weight": (16,),
}
EVE_CLIP_KEYS = {
    "model.vision_tower_compressor.clip_layer.vision_tower.embeddings.patch_embedding.weight": (16, 3, 14, 14),
    "model.vision_clip.vision_model.post_layernorm.weight": (16,),
}
TEACHER_WIDTH = 48  # the tiny distillation head's output width (1024 in the paper)


@pytest.fixture(scope="module")
def source_model():
    """A tiny model whose every weight differs from a fresh init (so a fresh weight cannot pass as loaded)."""
    torch.manual_seed(1)
    model = build_model(tiny_model_config())
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1)
        model.model.video_tokenizer.lste.temporal[0].num_batches_tracked.fill_(7)
    return model.eval()


def _official(model, share_aliases: bool) -> tuple[dict, dict]:
    """An official-format state dict of ``model`` with aliases, lmhra2, teacher, compressor and RoPE buffers."""
    ref = to_reference(model.state_dict(), "videopanda")
    for key in list(ref):
        for prefix, alias in (
            ("model.video_tower.", "model.vision_tower."),
            ("model.video_projector.", "model.mm_projector."),
        ):
            if key.startswith(prefix):
                ref[alias + key[len(prefix) :]] = ref[key] if share_aliases else ref[key].clone()
    c = model.config.stab.width
    for k, s in lste_shapes(c, int(c // 1.5)).items():
        ref[f"model.video_tower.lmhra2.{k}"] = torch.randn(s) if s else torch.tensor(3)
        ref[f"model.vision_tower.lmhra2.{k}"] = ref[f"model.video_tower.lmhra2.{k}"].clone()
    ref |= {k: torch.randn(s) for k, s in TEACHER_KEYS.items()}
    head = {k: torch.randn(s) for k, s in distill_head_shapes(TINY_LLM["hidden_size"], TEACHER_WIDTH).items()}
    ref |= {f"model.video_tower_compressor.{k}": v for k, v in head.items()}
    inv_freq = model.model.language_model.rotary_emb.inv_freq
    ref |= {
        f"model.layers.{i}.self_attn.rotary_emb.inv_freq": inv_freq.clone()
        for i in range(TINY_LLM["num_hidden_layers"])
    }
    return ref, head


def _eve(model) -> tuple[dict, dict]:
    ref = to_reference(model.state_dict(), "eve")
    head = {k: torch.randn(s) for k, s in distill_head_shapes(TINY_LLM["hidden_size"], TEACHER_WIDTH).items()}
    ref |= {f"model.vision_tower_compressor.{k}": v for k, v in head.items()}
    ref |= {k: torch.randn(s) for k, s in EVE_CLIP_KEYS.items()}
    return ref, head


def _write_config_json(folder, **changes) -> None:
    """A reference-style config.json (LLaMA fields at the top level, model_type eve)."""
    cfg = {"model_type": "eve", "architectures": ["EVELlamaForCausalLM"], "rms_norm_eps": 1e-6, **TINY_LLM, **changes}
    cfg.pop("max_position_embeddings")
    (folder / "config.json").write_text(json.dumps(cfg))


def _logits(model, video):
    n = int(frame_token_counts(video[0], patch_size=4, padded_crop=4).sum())
    ids = torch.tensor([[1, 5, 6] + [-200] * n + [7, 8]])
    with torch.no_grad():
        return model(input_ids=ids, pixel_values_videos=video).logits


def _assert_same_weights(converted, source_model):
    got, ref = converted.state_dict(), source_model.state_dict()
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), k


def test_official_safetensors_converts_exactly(source_model, tmp_path):
    ref, head = _official(source_model, share_aliases=False)
    save_file(ref, str(tmp_path / "model.safetensors"))
    _write_config_json(tmp_path)
    model, report = convert_checkpoint(tmp_path, "videopanda", tiny_model_config())

    _assert_same_weights(model, source_model)
    video = letterboxed(1, 8, 32, (8, 24, 0, 32), padded_from=6)
    torch.testing.assert_close(_logits(model, video), _logits(source_model, video), rtol=0, atol=0)
    assert report.fresh == [] and report.from_alias == []
    assert len(report.loaded) == len(source_model.state_dict())
    assert report.distill_head.keys() == head.keys()
    assert all(torch.equal(report.distill_head[k], head[k]) for k in head)
    n_tower = sum(k.startswith(("model.video_tower.", "model.video_projector.")) for k in ref)
    counts = {reason: len(keys) for reason, keys in report.dropped.items()}
    assert sorted(counts.values()) == sorted([n_tower, 11, len(TEACHER_KEYS), TINY_LLM["num_hidden_layers"]])
    assert any("lmhra2" in r and n == 11 for r, n in counts.items())
    lmhra2 = report.dropped[next(r for r in counts if "lmhra2" in r)]
    assert all(k.startswith("model.video_tower.lmhra2.") for k in lmhra2)


def test_official_sharded_bin_with_shared_aliases(source_model, tmp_path):
    ref, head = _official(source_model, share_aliases=True)  # the reference saves one module under two names
    keys = sorted(ref)
    shards = {"pytorch_model-00001-of-00002.bin": keys[::2], "pytorch_model-00002-of-00002.bin": keys[1::2]}
    weight_map = {}
    for name, shard_keys in shards.items():
        torch.save({k: ref[k] for k in shard_keys}, tmp_path / name)
        weight_map |= dict.fromkeys(shard_keys, name)
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model, report = convert_checkpoint(tmp_path, "videopanda", tiny_model_config())
    _assert_same_weights(model, source_model)
    assert all(torch.equal(report.distill_head[k], head[k]) for k in head)


def test_official_checkpoint_with_only_alias_spellings_loads_from_the_aliases(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    ref = {k: v for k, v in ref.items() if not k.startswith(("model.video_tower.", "model.video_projector."))}
    key_map = map_reference_keys(ref, "videopanda")
    report = plan_conversion(key_map, ref, build_model(tiny_model_config(), device="meta"))
    assert key_map.weights["model.video_tokenizer.gstra.query"] == "model.vision_tower.temporal_cls_token"
    assert key_map.weights["model.projector.2.bias"] == "model.mm_projector.2.bias"
    assert len(report.from_alias) == sum(
        k.startswith(("model.video_tokenizer.", "model.projector.")) for k in report.loaded
    )


@pytest.mark.parametrize("storage", ["safetensors", "bin"])
def test_eve_sharded_checkpoint_keeps_new_modules_fresh(source_model, tmp_path, storage):
    """EVE-7B-Pretrain ships as two pytorch_model-0000N-of-00002.bin shards; safetensors shards work the same."""
    ref, head = _eve(source_model)
    keys = sorted(ref)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        if storage == "bin":
            name = f"pytorch_model-0000{i + 1}-of-00002.bin"
            torch.save({k: ref[k] for k in part}, tmp_path / name)
        else:
            name = f"model-0000{i + 1}-of-00002.safetensors"
            save_file({k: ref[k] for k in part}, str(tmp_path / name))
        weight_map |= dict.fromkeys(part, name)
    index = "pytorch_model.bin.index.json" if storage == "bin" else "model.safetensors.index.json"
    (tmp_path / index).write_text(json.dumps({"weight_map": weight_map}))
    model, report = convert_checkpoint(tmp_path, "eve", tiny_model_config())

    fresh_prefixes = tuple(f"model.video_tokenizer.{m}." for m in ("lste", "gstra", "fusion"))
    ours, src = model.state_dict(), source_model.state_dict()
    expected_fresh = sorted(k for k in src if k.startswith(fresh_prefixes))
    assert report.fresh == expected_fresh and len(expected_fresh) == 13 + 15 + 5
    for k in src:
        if k not in expected_fresh:
            assert torch.equal(ours[k], src[k]), k
    # the new modules start from our init: identity LSTE / GSTRA outputs, alpha = 0.5, BN statistics reset
    stab = model.model.video_tokenizer
    assert_stab_starts_from_our_init(stab)
    bn = stab.lste.temporal[0]
    assert torch.count_nonzero(bn.running_mean) == 0 and torch.all(bn.running_var == 1)
    assert int(bn.num_batches_tracked) == 0
    assert all(torch.equal(report.distill_head[k], head[k]) for k in head)
    assert sorted(sum(report.dropped.values(), [])) == sorted(EVE_CLIP_KEYS)
    assert "initialised fresh (expected)" in report.summary()


def test_cli_writes_a_loadable_folder_with_the_distill_head_and_tokenizer(source_model, tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    ref, head = _official(source_model, share_aliases=False)
    save_file(ref, str(src / "model.safetensors"))
    (src / "tokenizer_config.json").write_text('{"model_max_length": 4096}')
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_model_config(), cfg_path)

    argv = ["--from", "videopanda", str(src), "--out", str(out), "--model-config", str(cfg_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Converted videopanda checkpoint" in printed and "missing: none" in printed
    _assert_same_weights(load_model(out), source_model)
    saved_head = load_file(out / "distill_head.safetensors")
    assert saved_head.keys() == head.keys() and all(torch.equal(saved_head[k], head[k]) for k in head)
    assert (out / "tokenizer_config.json").read_text() == '{"model_max_length": 4096}'
    assert load_config(ModelConfig, out / "model_config.yaml") == tiny_model_config()
    assert json.loads((out / "conversion_report.json").read_text())["missing"] == []
    assert main(argv) == 2  # the folder is no longer empty
    assert "not empty" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Errors name the keys
# ---------------------------------------------------------------------------------------------------------------


def _plan(ref, fmt="videopanda", cfg=None):
    key_map = map_reference_keys(ref, fmt)
    return plan_conversion(key_map, ref, build_model(cfg or tiny_model_config(), device="meta"))


def test_missing_weight_is_an_error_naming_it(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    del ref["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(
        ConversionError, match=r"not in the checkpoint[\s\S]*model\.language_model\.layers\.1\.mlp\.up_proj"
    ):
        _plan(ref)


def test_eve_without_split_embedding_is_an_error(source_model):
    ref, _ = _eve(source_model)
    del ref["model.vision_tower.split_embedding"]
    with pytest.raises(ConversionError, match=r"model\.video_tokenizer\.split_embedding"):
        _plan(ref, "eve")


def test_unrecognised_keys_are_an_error_listing_them(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    ref["model.video_tower.bogus.weight"] = torch.zeros(1)
    ref["model.image_newline"] = torch.zeros(1)
    ref["model.video_tower_compressor.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as err:
        _plan(ref)
    for name in ("model.video_tower.bogus.weight", "model.image_newline", "model.video_tower_compressor.extra.weight"):
        assert name in str(err.value)


def test_key_the_model_does_not_have_is_an_error(source_model):
    """A full checkpoint into an ablation without LSTE: the lmhra1 keys have nowhere to go."""
    ref, _ = _official(source_model, share_aliases=False)
    with pytest.raises(ConversionError, match=r"model\.video_tower\.lmhra1\.pos_embed\.1\.weight -> "):
        _plan(ref, cfg=tiny_model_config(lste=False, gstra=False, fusion="fsra_only"))


def test_shape_mismatch_names_the_key_and_both_shapes(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    ref["model.video_projector.0.weight"] = torch.zeros(64, 40)
    ref["model.mm_projector.0.weight"] = ref["model.video_projector.0.weight"]
    with pytest.raises(ConversionError, match=r"model\.video_projector\.0\.weight -> .*\(64, 40\) vs model \(64, 32\)"):
        _plan(ref)


def test_differing_alias_twins_are_an_error(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    ref["model.vision_tower.split_embedding"] = ref["model.video_tower.split_embedding"] + 1
    with pytest.raises(
        ConversionError, match=r"model\.vision_tower\.split_embedding != model\.video_tower\.split_embedding"
    ):
        _plan(ref)


def test_incomplete_distillation_head_is_an_error(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    del ref["model.video_tower_compressor.norm_layer.3.1.weight"]
    with pytest.raises(ConversionError, match=r"distillation head lacks norm_layer\.3\.1\.weight"):
        _plan(ref)


def test_wrong_format_gets_a_hint(source_model):
    ref, _ = _official(source_model, share_aliases=False)
    with pytest.raises(ConversionError, match="use --from videopanda"):
        _plan(ref, "eve")


def test_config_json_mismatch_is_an_error(source_model, tmp_path):
    ref, _ = _official(source_model, share_aliases=False)
    save_file(ref, str(tmp_path / "model.safetensors"))
    _write_config_json(tmp_path, hidden_size=96)
    with pytest.raises(ConversionError, match=r"llm\.hidden_size: config\.json has 96, the model config has 64"):
        convert_checkpoint(tmp_path, "videopanda", tiny_model_config())


class _NotATensor:
    pass


def test_bin_files_are_read_with_weights_only(tmp_path):
    torch.save({"model.norm.weight": torch.ones(2), "payload": _NotATensor()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(
        ConversionError, match=r"pytorch_model\.bin: cannot be read with torch\.load\(weights_only=True"
    ):
        load_reference_state_dict(tmp_path)


def test_shard_index_naming_a_missing_file_is_an_error(tmp_path):
    index = {"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match=r"do not exist:\s+model-00001-of-00002\.safetensors"):
        load_reference_state_dict(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no checkpoint found"):
        load_reference_state_dict(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------------
# The full 7B table on the meta device
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["videopanda", "eve"])
def test_7b_reference_key_table_maps_onto_the_meta_model(fmt):
    cfg = load_config(ModelConfig, CONFIG_7B)
    model = build_model(cfg, device="meta")
    shapes = reference_shapes(fmt, c=1024, p=14, d=4096, v=32000, layers=32, inter=11008, kv=4096, t=1024)
    ref = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    if fmt == "videopanda":  # the alias spellings of the same modules, and the teacher
        ref |= {
            k.replace("model.video_tower.", "model.vision_tower."): v for k, v in ref.items() if "video_tower." in k
        }
        ref |= {k.replace("video_projector", "mm_projector"): v for k, v in ref.items() if "video_projector" in k}
        ref |= {k: torch.empty(s, device="meta") for k, s in TEACHER_KEYS.items()}
    else:
        ref |= {k: torch.empty(s, device="meta") for k, s in EVE_CLIP_KEYS.items()}
    report = _plan(ref, fmt, cfg)

    n_model = len(model.state_dict())
    assert len(report.loaded) + len(report.fresh) == n_model
    assert len(report.distill_head_keys) == 31
    if fmt == "videopanda":
        assert report.fresh == []
        assert len(report.loaded) == n_model == 3 + 32 * 9 + 4 + 52  # LLM + projector + STAB without lmhra2
        loaded_params = sum(
            p.numel()
            for n, p in model.named_parameters()
            if n.startswith("model.video_tokenizer.") or n.startswith("model.projector.")
        )
        assert loaded_params == 45_066_578
    else:
        assert {k.split(".")[2] for k in report.fresh} == {"lste", "gstra", "fusion"}
        assert len(report.fresh) == 13 + 15 + 5
