"""The frozen LanguageBind-Video teacher: shapes, the temporal block, freezing, checkpoints, full-size count.

Independent references: transformers' ``CLIPVisionModel`` for the spatial path (temporal blocks zeroed), and a
from-scratch functional forward (explicit softmax attention, per-token frame sequences) for the whole layer.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from videopanda.config import ConfigError, from_dict
from videopanda.train.teacher import (
    TeacherCheckpointError,
    TeacherConfig,
    VideoTeacher,
    config_from_hf,
    load_teacher,
    save_teacher,
)

TINY = {"width": 32, "num_layers": 2, "num_heads": 4, "mlp_dim": 64, "image_size": 32, "patch_size": 8}


def tiny_cfg(**changes) -> TeacherConfig:
    """Width 32, 2 layers, 4 heads, 32 px, patch 8 (4x4 grid), 8 frames."""
    return TeacherConfig(**{**TINY, **changes})


def frames(b: int = 1, t: int = 8, c: int = 3, s: int = 32) -> torch.Tensor:
    return torch.randn(b, t, c, s, s)


# ---------------------------------------------------------------------------------------------------------------
# An independent functional forward, written from the LanguageBind layer description


def _ln(x, sd, name, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def _attn(x, sd, name, heads):
    """Explicit softmax attention over the second-to-last axis of x (..., L, C)."""
    c = x.shape[-1]
    hd = c // heads
    q, k, v = (x @ sd[f"{name}.{p}_proj.weight"].T + sd[f"{name}.{p}_proj.bias"] for p in "qkv")
    q, k, v = (z.unflatten(-1, (heads, hd)).transpose(-3, -2) for z in (q, k, v))  # (..., H, L, hd)
    w = torch.softmax(q @ k.transpose(-1, -2) * hd**-0.5, dim=-1)  # (..., H, L, L)
    out = (w @ v).transpose(-3, -2).flatten(-2)  # (..., L, C)
    return out @ sd[f"{name}.out_proj.weight"].T + sd[f"{name}.out_proj.bias"]


def reference_hidden_states(teacher: VideoTeacher, video: torch.Tensor) -> list[torch.Tensor]:
    """All hidden states (index 0 = embeddings after pre_layrnorm) of one batch (B, T, 3, S, S), each (B, T, N+1, C)."""
    cfg = teacher.cfg
    sd = {k.removeprefix("vision_model."): v for k, v in teacher.state_dict().items()}
    b, t = video.shape[:2]
    g, p, c = cfg.grid, cfg.patch_size, cfg.width
    # patchify by hand: (B, T, 3, g, p, g, p) -> (B, T, g*g, 3*p*p), row-major patches
    patches = video.reshape(b, t, 3, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, t, g * g, 3 * p * p)
    x = patches @ sd["embeddings.patch_embedding.weight"].reshape(c, -1).T  # (B, T, N, C)
    cls = sd["embeddings.class_embedding"].expand(b, t, 1, c)
    x = torch.cat([cls, x], dim=2) + sd["embeddings.position_embedding.weight"]  # (B, T, N+1, C)
    x = _ln(x, sd, "pre_layrnorm", cfg.layer_norm_eps)
    states = [x]
    for i in range(cfg.num_layers):
        pre = f"encoder.layers.{i}"
        if t > 1:
            x = x + sd[f"{pre}.temporal_embedding"][0, :t, None, :]  # per frame
        seq = x.permute(0, 2, 1, 3)  # (B, N+1, T, C): each token position over time
        seq = _ln(seq, sd, f"{pre}.temporal_layer_norm1", cfg.layer_norm_eps)
        x = x + _attn(seq, sd, f"{pre}.temporal_attn", cfg.num_heads).permute(0, 2, 1, 3)
        x = x + _attn(_ln(x, sd, f"{pre}.layer_norm1", cfg.layer_norm_eps), sd, f"{pre}.self_attn", cfg.num_heads)
        h = _ln(x, sd, f"{pre}.layer_norm2", cfg.layer_norm_eps) @ sd[f"{pre}.mlp.fc1.weight"].T
        h = h + sd[f"{pre}.mlp.fc1.bias"]
        h = h * torch.sigmoid(1.702 * h) if cfg.hidden_act == "quick_gelu" else F.gelu(h)
        x = x + h @ sd[f"{pre}.mlp.fc2.weight"].T + sd[f"{pre}.mlp.fc2.bias"]
        states.append(x)
    return states


# ---------------------------------------------------------------------------------------------------------------
# Shapes and the selected layer


def test_tiny_shape_drops_cls_and_uses_second_to_last_layer():
    teacher = VideoTeacher(tiny_cfg())
    assert (teacher.grid, teacher.num_patches) == (4, 16)
    x = frames(b=2, t=8)
    seen = {}
    teacher.vision_model.encoder.layers[0].register_forward_hook(lambda m, a, out: seen.__setitem__(0, out))
    teacher.vision_model.encoder.layers[1].register_forward_hook(lambda m, a, out: seen.__setitem__(1, out))
    out = teacher(x)
    assert out.shape == (2, 8, 16, 32)
    # select_layer=-2 of 2 layers = the output of layer 0; layer 1 never runs; the CLS (token 0) is dropped
    assert 1 not in seen
    torch.testing.assert_close(out, seen[0].reshape(2, 8, 17, 32)[:, :, 1:], rtol=0, atol=0)


@pytest.mark.parametrize("select_layer", [-2, -1, 0, 1])
@pytest.mark.parametrize("t", [8, 5, 1])
def test_matches_independent_functional_forward(select_layer, t):
    teacher = VideoTeacher(tiny_cfg(select_layer=select_layer))
    x = frames(b=2, t=t)
    expected = reference_hidden_states(teacher, x)[select_layer][:, :, 1:]  # (B, T, N, C)
    torch.testing.assert_close(teacher(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_spatial_path_matches_hf_clip_vision_model(act):
    """With the temporal blocks zeroed the teacher is a plain CLIP ViT: same keys and same hidden states as HF."""
    teacher = VideoTeacher(tiny_cfg(hidden_act=act))
    with torch.no_grad():
        for layer in teacher.vision_model.encoder.layers:
            layer.temporal_embedding.zero_()
            layer.temporal_attn.out_proj.weight.zero_()
            layer.temporal_attn.out_proj.bias.zero_()
    hf = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            hidden_act=act,
        )
    ).eval()
    # transformers 5 flattened CLIPVisionModel (no vision_model. prefix; it remaps old checkpoints on load)
    spatial = {k.removeprefix("vision_model."): v for k, v in teacher.state_dict().items() if ".temporal_" not in k}
    result = hf.load_state_dict(spatial, strict=True)
    assert not result.unexpected_keys and not result.missing_keys
    x = frames(b=1, t=3)
    with torch.no_grad():
        hs = hf(pixel_values=x[0], output_hidden_states=True).hidden_states  # (T, N+1, C) each
    torch.testing.assert_close(teacher(x)[0], hs[-2][:, 1:], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The temporal block and the frame count


def test_temporal_attention_mixes_frames():
    teacher = VideoTeacher(tiny_cfg())
    x = frames(t=8)
    y = x.clone()
    y[:, 3] = torch.randn_like(y[:, 3])
    a, b = teacher(x), teacher(y)
    assert not torch.allclose(a[:, 0], b[:, 0])  # frame 0 sees frame 3
    # and the frame order matters (temporal embedding): swapping two frames does not just swap their features
    z = x[:, [1, 0, 2, 3, 4, 5, 6, 7]]
    assert not torch.allclose(teacher(z)[:, 0], a[:, 1], atol=1e-4)


def test_single_frame_and_too_many_frames():
    teacher = VideoTeacher(tiny_cfg())
    assert teacher(frames(b=3, t=1)).shape == (3, 1, 16, 32)
    with pytest.raises(ValueError, match=r"at most num_frames=8 .* got 9 frames"):
        teacher(frames(t=9))
    with pytest.raises(ValueError, match="3 channels"):
        teacher(frames(c=2))
    with pytest.raises(ValueError, match="32x32"):
        teacher(frames(s=24))


def test_batched_equals_each_video_alone():
    teacher = VideoTeacher(tiny_cfg())
    x = frames(b=2, t=6)
    both = teacher(x)
    for i in range(2):
        torch.testing.assert_close(both[i : i + 1], teacher(x[i : i + 1]), rtol=1e-5, atol=1e-6)


def test_mask_channel_is_dropped_and_output_dtype_follows_input():
    teacher = VideoTeacher(tiny_cfg())
    x = frames(t=4)
    mask = torch.ones(1, 4, 1, 32, 32)
    torch.testing.assert_close(teacher(torch.cat([x, mask], dim=2)), teacher(x), rtol=0, atol=0)
    out = teacher(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert teacher.vision_model.pre_layrnorm.weight.dtype == torch.float32


def test_frozen():
    teacher = VideoTeacher(tiny_cfg())
    assert not any(p.requires_grad for p in teacher.parameters())
    x = frames(t=2).requires_grad_(True)
    out = teacher(x)
    assert out.grad_fn is None and not out.requires_grad
    teacher.train()
    assert not any(m.training for m in teacher.modules())
    teacher.train(True)
    assert not teacher.training


# ---------------------------------------------------------------------------------------------------------------
# Config


def test_config_from_dict_and_validation():
    cfg = from_dict(TeacherConfig, {**TINY, "num_frames": 4, "select_layer": -1})
    assert (cfg.width, cfg.num_frames, cfg.layers_to_run) == (32, 4, 2)
    assert TeacherConfig().layers_to_run == 23
    with pytest.raises(ConfigError, match="depth"):
        from_dict(TeacherConfig, {"depth": 3})
    with pytest.raises(ConfigError, match="select_layer"):
        from_dict(TeacherConfig, {**TINY, "select_layer": -4})
    with pytest.raises(ConfigError, match="divisible"):
        from_dict(TeacherConfig, {**TINY, "num_heads": 5})


def test_config_from_languagebind_json():
    vision = {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "add_time_attn": True,
        "num_frames": 8,
        "lora_r": 0,
    }
    cfg = config_from_hf({"model_type": "LanguageBindVideo", "text_config": {}, "vision_config": vision})
    assert cfg == TeacherConfig(hidden_act="gelu")
    with pytest.raises(TeacherCheckpointError, match="add_time_attn"):
        config_from_hf({"vision_config": {**vision, "add_time_attn": False}})


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_save_load_round_trip_is_exact(tmp_path):
    teacher = VideoTeacher(tiny_cfg(select_layer=-1, num_frames=6))
    save_teacher(teacher, tmp_path / "t")
    loaded = load_teacher(tmp_path / "t")
    assert loaded.cfg == teacher.cfg
    for (k, a), (k2, b) in zip(teacher.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = frames(b=2, t=6)
    assert torch.equal(loaded(x), teacher(x))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert load_teacher(tmp_path / "t", dtype=torch.bfloat16).vision_model.pre_layrnorm.weight.dtype == torch.bfloat16


def _release_like(tmp_path, teacher: VideoTeacher, **edit) -> tuple:
    """A folder shaped like LanguageBind_Video_merge: vision keys plus the text tower, projections, logit_scale."""
    folder = save_teacher(teacher, tmp_path / "release")
    sd = load_file(folder / "model.safetensors")
    sd.update(
        {
            "text_model.embeddings.token_embedding.weight": torch.zeros(10, 8),
            "text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(4, 8),
            "text_model.final_layer_norm.weight": torch.ones(8),
            "visual_projection.weight": torch.zeros(6, 32),
            "text_projection.weight": torch.zeros(6, 8),
            "logit_scale": torch.tensor(2.6592),
            "vision_model.embeddings.position_ids": torch.arange(17)[None],
        }
    )
    for key, value in edit.items():
        if value is None:
            del sd[key]
        else:
            sd[key] = value
    save_file(sd, folder / "model.safetensors")
    return folder


def test_release_keys_outside_the_vision_tower_are_ignored(tmp_path, caplog):
    teacher = VideoTeacher(tiny_cfg())
    folder = _release_like(tmp_path, teacher)
    with caplog.at_level(logging.INFO, logger="videopanda.train.teacher"):
        loaded = load_teacher(folder)
    assert "ignored 3 key(s) by design: LanguageBind text tower" in caplog.text
    assert "logit_scale" not in loaded.state_dict()
    x = frames(t=8)
    assert torch.equal(loaded(x), teacher(x))


def test_missing_key_is_an_error_naming_it(tmp_path):
    key = "vision_model.encoder.layers.1.temporal_layer_norm1.bias"
    folder = _release_like(tmp_path, VideoTeacher(tiny_cfg()), **{key: None})
    with pytest.raises(TeacherCheckpointError, match=r"missing vision keys \(1\): " + re.escape(key)):
        load_teacher(folder)


def test_unknown_vision_key_is_an_error_naming_it(tmp_path):
    key = "vision_model.encoder.layers.0.temporal_mlp.fc1.weight"  # LanguageBind's commented-out temporal MLP
    folder = _release_like(tmp_path, VideoTeacher(tiny_cfg()), **{key: torch.zeros(64, 32)})
    with pytest.raises(TeacherCheckpointError, match=r"unexpected keys \(1\): " + re.escape(key)):
        load_teacher(folder)


def test_shape_mismatch_is_an_error(tmp_path):
    teacher = VideoTeacher(tiny_cfg())
    key = "vision_model.encoder.layers.0.temporal_embedding"
    folder = _release_like(tmp_path, teacher, **{key: torch.zeros(1, 4, 32)})
    with pytest.raises(TeacherCheckpointError, match=re.escape(f"{key}: (1, 4, 32), expected (1, 8, 32)")):
        load_teacher(folder)


def test_folder_without_config_or_weights(tmp_path):
    save_teacher(VideoTeacher(tiny_cfg()), tmp_path / "t")
    (tmp_path / "t" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_teacher(tmp_path / "t")
    assert load_teacher(tmp_path / "t" / "model.safetensors", cfg=tiny_cfg()).num_patches == 16
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_teacher(tmp_path, cfg=tiny_cfg())


def test_sharded_bin_with_index_loads(tmp_path):
    teacher = VideoTeacher(tiny_cfg())
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_teacher(teacher, tmp_path / "single")
    (folder / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    sd = {f"vision_model.{k}": v.clone() for k, v in teacher.vision_model.state_dict().items()}
    sd["text_projection.weight"] = torch.zeros(6, 8)
    keys = sorted(sd)
    half = len(keys) // 2
    shards = {"pytorch_model-00001-of-00002.bin": keys[:half], "pytorch_model-00002-of-00002.bin": keys[half:]}
    weight_map = {}
    for name, names in shards.items():
        torch.save({k: sd[k] for k in names}, folder / name)
        weight_map.update(dict.fromkeys(names, name))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    x = frames(t=8)
    assert torch.equal(load_teacher(folder)(x), teacher(x))
    assert torch.equal(load_teacher(folder / "pytorch_model.bin.index.json", cfg=teacher.cfg)(x), teacher(x))


# ---------------------------------------------------------------------------------------------------------------
# Full size


def test_full_size_parameter_count_on_meta():
    cfg = TeacherConfig()
    with torch.device("meta"):
        teacher = VideoTeacher(cfg)
    c, m, p, n, f, layers = cfg.width, cfg.mlp_dim, cfg.patch_size, cfg.grid**2, cfg.num_frames, cfg.num_layers
    attn = 4 * (c * c + c)  # q, k, v, out projections with biases
    ln = 2 * c
    embeddings = c + 3 * p * p * c + (n + 1) * c  # CLS, patch conv (no bias), positions
    spatial = attn + ln + (c * m + m) + (m * c + c) + ln  # self_attn, layer_norm1, mlp, layer_norm2
    temporal = f * c + attn + ln  # temporal_embedding, temporal_attn, temporal_layer_norm1
    expected = embeddings + ln + layers * (spatial + temporal) + ln  # + pre_layrnorm, post_layernorm
    total = sum(q.numel() for q in teacher.parameters())
    assert total == expected == 404_187_136
    assert 380e6 < total < 420e6  # reference §1.8: "≈0.4B"
    assert embeddings + 2 * ln + layers * spatial == 303_179_776  # the plain CLIP ViT-L/14 vision tower
    shapes = {k: tuple(v.shape) for k, v in teacher.state_dict().items()}
    assert shapes["vision_model.embeddings.position_embedding.weight"] == (257, 1024)
    assert shapes["vision_model.embeddings.patch_embedding.weight"] == (1024, 3, 14, 14)
    assert shapes["vision_model.encoder.layers.23.temporal_embedding"] == (1, 8, 1024)
    assert shapes["vision_model.encoder.layers.23.temporal_attn.q_proj.weight"] == (1024, 1024)
    assert len(shapes) == 3 + 2 + 2 + 24 * (8 + 2 + 4 + 2 + 1 + 8 + 2)  # no position_ids buffer
