"""CPU mixed precision: under bf16 autocast the STAB's convolutions and attention and the LLM's SDPA stay fp32, and
outside CPU autocast nothing changes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import tiny_model_config
from videopanda.model import build_model
from videopanda.model.lste import LSTE
from videopanda.model.patch_embed import PatchEmbedding
from videopanda.model.precision import CPU_MIXED_SDPA, fp32_on_cpu

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_a_convolution_under_cpu_autocast_runs_in_fp32_and_gives_the_fp32_result():
    conv = nn.Conv3d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 4, 5, 5)
    want = conv(x)
    with torch.autocast(**BF16):
        assert conv(x).dtype == torch.bfloat16  # what autocast alone would do
        got = fp32_on_cpu(conv, x)
        from_bf16 = fp32_on_cpu(conv, x.bfloat16())  # a bf16 input (the output of a Linear) is cast up
    assert got.dtype == from_bf16.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(from_bf16, conv(x.bfloat16().float()), rtol=0, atol=0)


def test_outside_cpu_autocast_the_call_is_unchanged():
    q, k, v = (torch.randn(2, 3, 5, 8, dtype=torch.bfloat16) for _ in range(3))
    out = fp32_on_cpu(F.scaled_dot_product_attention, q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[..., 0] = True
    with torch.autocast(**BF16):  # keyword tensors (the mask) pass through as they are
        out = fp32_on_cpu(F.scaled_dot_product_attention, q, k, v, attn_mask=mask)
    assert out.dtype == torch.float32
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    torch.testing.assert_close(out, want, rtol=0, atol=0)


def test_stab_convolutions_keep_fp32_under_cpu_autocast():
    torch.manual_seed(0)
    lste = LSTE(16, 8).train()
    with torch.no_grad():
        for p in lste.parameters():
            p.normal_(0, 0.3)  # the zero-initialised output conv would hide the temporal branch
    x = torch.randn(2, 16, 4, 5, 5)
    want = lste(x)
    with torch.autocast(**BF16):
        got = lste(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)

    embed = PatchEmbedding(16, 4)
    frames = torch.randn(3, 4, 16, 16)
    with torch.autocast(**BF16):
        patches, _ = embed(frames)
    assert patches.dtype == torch.float32
    torch.testing.assert_close(patches, embed(frames)[0], rtol=0, atol=0)


def _attention_output_dtypes(model, ids) -> list[torch.dtype]:
    """The dtype that reaches each layer's o_proj (the attention's output) in one forward under CPU autocast."""
    seen = []
    hooks = [
        layer.self_attn.o_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
        for layer in model.model.language_model.layers
    ]
    with torch.autocast(**BF16):
        model(input_ids=ids).logits.float().sum().backward()
    for h in hooks:
        h.remove()
    return seen


def test_the_registered_llm_attention_is_sdpa_but_fp32_under_cpu_autocast():
    model = build_model(tiny_model_config()).eval()
    ids = torch.randint(3, 128, (2, 17))
    with torch.no_grad():
        sdpa_logits = model(input_ids=ids).logits
    assert _attention_output_dtypes(model, ids) == [torch.bfloat16] * 2  # transformers' SDPA under autocast

    model.model.language_model.set_attn_implementation(CPU_MIXED_SDPA)
    assert model.config.text_config._attn_implementation == CPU_MIXED_SDPA
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, sdpa_logits, rtol=0, atol=0)  # no autocast: same
    assert _attention_output_dtypes(model, ids) == [torch.float32] * 2
    padded = torch.ones_like(ids)
    padded[0, :4] = 0  # a padding mask goes through the same mask interface as SDPA's
    with torch.no_grad():
        model.model.language_model.set_attn_implementation("sdpa")
        want = model(input_ids=ids, attention_mask=padded).logits
        model.model.language_model.set_attn_implementation(CPU_MIXED_SDPA)
        torch.testing.assert_close(model(input_ids=ids, attention_mask=padded).logits, want, rtol=0, atol=0)
