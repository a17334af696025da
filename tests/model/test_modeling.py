"""The model at the transformers boundary: splice, padding, mixed batches, generate, save/load, Auto classes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, LlamaForCausalLM
from transformers.utils import is_flash_attn_2_available

from tests.conftest import tiny_model_config
from tests.model.frames import letterboxed
from tests.model.stab_init import assert_stab_starts_from_our_init
from videopanda.model import VideoPandaForConditionalGeneration, VideoPandaModel, build_model, to_hf_config
from videopanda.model.geometry import frame_token_counts

VIDEO_ID, IMAGE_ID = -200, -201


@pytest.fixture
def model() -> VideoPandaForConditionalGeneration:
    m = build_model(tiny_model_config())
    with torch.no_grad():  # leave the zero init so the visual tokens differ between frames and models
        for p in m.model.video_tokenizer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def _sample(n_before: int, n_after: int, visual: torch.Tensor | None, token_id: int) -> list[int]:
    """Random text ids around the right number of placeholders for ``visual`` (F, 4, H, W) frames."""
    ids = torch.randint(3, 128, (n_before + n_after,)).tolist()
    if visual is None:
        return [1] + ids
    n = int(frame_token_counts(visual, patch_size=4, padded_crop=4).sum())
    return [1] + ids[:n_before] + [token_id] * n + ids[n_before:]


def _pad(rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl] = torch.tensor(r)
        mask[i, sl] = 1
    return ids, mask


def _capture_inputs_embeds(model):
    captured = {}

    def hook(_module, _args, kwargs):
        captured["embeds"] = kwargs["inputs_embeds"].detach().clone()

    return captured, model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


def test_visual_tokens_land_exactly_at_placeholder_positions(model):
    video = letterboxed(1, 8, 32, (8, 24, 0, 32), padded_from=6)
    ids = torch.tensor([_sample(3, 4, video[0], VIDEO_ID)])
    captured, handle = _capture_inputs_embeds(model)
    with torch.no_grad():
        model(input_ids=ids, pixel_values_videos=video)
        features = model.get_video_features(video)
    handle.remove()
    pos = (ids[0] == VIDEO_ID).nonzero().squeeze(1)
    assert len(features) == 1 and features[0].shape[0] == len(pos) == 6 * 11 + 2 * 7
    torch.testing.assert_close(captured["embeds"][0, pos], features[0])
    text = (ids[0] != VIDEO_ID).nonzero().squeeze(1)
    embed = model.get_input_embeddings().weight
    torch.testing.assert_close(captured["embeds"][0, text], embed[ids[0, text]])


def test_placeholder_count_mismatch_names_both_counts(model):
    video = letterboxed(1, 8, 32)
    ids = torch.tensor([_sample(2, 2, video[0], VIDEO_ID) + [VIDEO_ID] * 3])  # 3 placeholders too many
    with pytest.raises(ValueError, match=r"video tokens: 171, features: 168"):
        model(input_ids=ids, pixel_values_videos=video)
    with pytest.raises(ValueError, match="no video pixel values"):
        model(input_ids=ids)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mixed_batch_of_video_image_and_text_equals_single_samples(model, side):
    video_a = letterboxed(1, 8, 32, (8, 24, 0, 32))
    video_b = letterboxed(1, 8, 32, (0, 32, 8, 24), padded_from=4)
    image = letterboxed(1, 1, 32)[:, 0]
    rows = [
        _sample(2, 5, video_a[0], VIDEO_ID),
        _sample(6, 3, None, VIDEO_ID),  # text only
        _sample(1, 2, image, IMAGE_ID),
        _sample(4, 1, video_b[0], VIDEO_ID),
    ]
    ids, mask = _pad(rows, side)
    with torch.no_grad():
        batched = model(
            input_ids=ids,
            attention_mask=mask,
            pixel_values_videos=torch.cat([video_a, video_b]),
            pixel_values_images=image,
        ).logits
        singles = [
            model(input_ids=torch.tensor([rows[0]]), pixel_values_videos=video_a).logits[0],
            model(input_ids=torch.tensor([rows[1]])).logits[0],
            model(input_ids=torch.tensor([rows[2]]), pixel_values_images=image).logits[0],
            model(input_ids=torch.tensor([rows[3]]), pixel_values_videos=video_b).logits[0],
        ]
    for i, single in enumerate(singles):
        real = mask[i].bool()
        torch.testing.assert_close(batched[i, real], single, rtol=1e-4, atol=1e-4, msg=f"row {i} ({side} padding)")


def test_labels_on_visual_positions_are_ignored(model):
    video = letterboxed(1, 8, 32)
    ids = torch.tensor([_sample(3, 6, video[0], VIDEO_ID)])
    visual = ids == VIDEO_ID
    labels_garbage = ids.clone().masked_fill(visual, 5)  # a valid token id at every visual position
    labels_ignored = ids.clone().masked_fill(visual, -100)
    with torch.no_grad():
        a = model(input_ids=ids, pixel_values_videos=video, labels=labels_garbage).loss
        b = model(input_ids=ids, pixel_values_videos=video, labels=labels_ignored).loss
        logits = model(input_ids=ids, pixel_values_videos=video).logits
    torch.testing.assert_close(a, b)
    # and the loss is the plain next-token cross-entropy over the text positions
    tgt = labels_ignored[0, 1:]
    keep = tgt != -100
    expected = torch.nn.functional.cross_entropy(logits[0, :-1][keep], tgt[keep])
    torch.testing.assert_close(a, expected)


def test_training_loss_from_supervised_positions_only_equals_the_full_loss(model):
    """full_logits=False runs the LM head only where a label is supervised: same loss and gradients, no logits."""
    video = letterboxed(2, 8, 32)
    rows = [_sample(3, 6, video[0], VIDEO_ID), _sample(5, 2, video[1], VIDEO_ID)]
    ids, mask = _pad(rows, "right")
    labels = ids.masked_fill(mask == 0, -100)
    labels[0, :4] = -100  # an unsupervised prompt in the first row
    losses, grads = [], []
    for full in (True, False):
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, pixel_values_videos=video, labels=labels, full_logits=full)
        out.loss.backward()
        losses.append(out.loss.detach())
        grads.append(model.lm_head.weight.grad.clone())
        assert (out.logits is None) == (not full)
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_text_path_equals_hf_llama(model):
    """Independent reference: with no visual input the model is exactly a LlamaForCausalLM."""
    llama = LlamaForCausalLM(model.config.text_config).eval()
    state = {f"model.{k}": v for k, v in model.model.language_model.state_dict().items()}
    state["lm_head.weight"] = model.lm_head.weight
    llama.load_state_dict(state)
    ids = torch.randint(3, 128, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, llama(input_ids=ids).logits)


def test_generate_with_and_without_cache_gives_the_same_tokens(model):
    video = letterboxed(2, 8, 32, (8, 24, 0, 32))
    rows = [_sample(2, 3, video[0], VIDEO_ID), _sample(5, 4, video[1], VIDEO_ID)]
    ids, mask = _pad(rows, "left")
    kwargs = dict(
        input_ids=ids,
        attention_mask=mask,
        pixel_values_videos=video,
        max_new_tokens=6,
        min_new_tokens=6,
        do_sample=False,
    )
    with torch.no_grad():
        cached = model.generate(**kwargs, use_cache=True)
        uncached = model.generate(**kwargs, use_cache=False)
        single = model.generate(
            input_ids=torch.tensor([rows[1]]),
            pixel_values_videos=video[1:],
            max_new_tokens=6,
            min_new_tokens=6,
            do_sample=False,
        )
    assert cached.shape == (2, ids.shape[1] + 6)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[1, -6:], single[0, -6:])  # left padding does not change the answer


def test_a_cache_passed_as_past_key_values_is_used(model):
    """transformers' older keyword for the cache: a decoding step with it equals the full forward pass."""
    ids = torch.randint(3, 128, (1, 12))
    with torch.no_grad():
        full = model(input_ids=ids).logits[:, -1]
        prefix = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], past_key_values=prefix.cache, use_cache=True).logits[:, -1]
    torch.testing.assert_close(step, full)


def test_a_sequence_longer_than_the_context_is_a_clear_error(model):
    limit = model.config.text_config.max_position_embeddings
    with torch.no_grad():
        model(input_ids=torch.randint(3, 128, (1, limit)))  # exactly the context: fine
        with pytest.raises(ValueError, match=rf"{limit + 1} tokens is longer than the LLM's context"):
            model(input_ids=torch.randint(3, 128, (1, limit + 1)))
        prefix = model(input_ids=torch.randint(3, 128, (1, limit - 1)), use_cache=True)  # the cache counts too
        with pytest.raises(ValueError, match=rf"{limit + 1} tokens"):
            model(input_ids=torch.randint(3, 128, (1, 2)), cache=prefix.cache)


def test_save_and_load_round_trip_bit_exactly_in_safetensors(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    saved = load_file(tmp_path / "model.safetensors")
    assert not any("teacher" in k or "lmhra2" in k for k in saved)
    loaded = VideoPandaForConditionalGeneration.from_pretrained(tmp_path)
    ref = model.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert loaded.config.video_tokenizer == model.config.video_tokenizer
    assert loaded.config._attn_implementation == "sdpa"
    # The Auto classes know the model type.
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "VideoPandaConfig"
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert isinstance(auto, VideoPandaForConditionalGeneration)
    base = AutoModel.from_pretrained(tmp_path)  # the body without the LM head, weights under the "model." prefix
    assert isinstance(base, VideoPandaModel)
    body = model.model.state_dict()
    assert base.state_dict().keys() == body.keys()
    assert all(torch.equal(v, body[k]) for k, v in base.state_dict().items())


def test_zero_inits_hold_after_from_config_and_after_load(tmp_path):
    fresh = build_model(tiny_model_config())
    fresh.save_pretrained(tmp_path)
    loaded = VideoPandaForConditionalGeneration.from_pretrained(tmp_path)
    for m in (fresh, loaded):
        assert_stab_starts_from_our_init(m.model.video_tokenizer)


def test_loaded_weights_are_not_reinitialised(model, tmp_path):
    with torch.no_grad():
        model.model.video_tokenizer.gstra.out_proj.weight.fill_(0.5)  # a zero-init layer with trained weights
    model.save_pretrained(tmp_path)
    loaded = VideoPandaForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.all(loaded.model.video_tokenizer.gstra.out_proj.weight == 0.5)


def test_attention_implementation_defaults_to_sdpa_without_flash_attn():
    cfg = tiny_model_config().replace(attn_implementation="auto")
    m = build_model(cfg)
    assert m.model.language_model.config._attn_implementation == "sdpa"


def test_attention_implementation_auto_picks_flash_attention_2_when_installed(monkeypatch, caplog):
    import videopanda.model.build as build

    monkeypatch.setattr(build, "is_flash_attn_2_available", lambda: True)
    config = to_hf_config(tiny_model_config().replace(attn_implementation="auto"))
    assert config._attn_implementation == config.text_config._attn_implementation == "flash_attention_2"
    monkeypatch.setattr(build, "is_flash_attn_2_available", lambda: False)
    config = to_hf_config(tiny_model_config().replace(attn_implementation="auto"))
    assert config._attn_implementation == config.text_config._attn_implementation == "sdpa"
    # An explicit request without flash-attn falls back to sdpa, and says so. (Listen on the module's logger
    # itself: an entry point run earlier in the session may have stopped "videopanda" logs from propagating.)
    build.logger.addHandler(caplog.handler)
    try:
        config = to_hf_config(tiny_model_config().replace(attn_implementation="flash_attention_2"))
    finally:
        build.logger.removeHandler(caplog.handler)
    assert config.text_config._attn_implementation == "sdpa"
    assert "flash_attention_2 requested but flash-attn is not available" in caplog.text


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and is_flash_attn_2_available()), reason="needs a CUDA GPU and flash-attn"
)
def test_flash_attention_2_matches_sdpa_on_gpu():
    """Same weights, same right-padded mixed batch: the two attention backends give the same logits."""
    cfg = tiny_model_config().replace(dtype="bfloat16")
    sdpa = build_model(cfg.replace(attn_implementation="sdpa"), device="cuda").eval()
    flash = build_model(cfg.replace(attn_implementation="flash_attention_2"), device="cuda").eval()
    flash.load_state_dict(sdpa.state_dict())
    assert flash.model.language_model.config._attn_implementation == "flash_attention_2"
    video = letterboxed(1, 8, 32, (8, 24, 0, 32))
    ids, mask = _pad([_sample(3, 4, video[0], VIDEO_ID), _sample(6, 2, None, VIDEO_ID)], "right")
    inputs = dict(input_ids=ids.cuda(), attention_mask=mask.cuda(), pixel_values_videos=video.cuda())
    with torch.no_grad():
        a, b = sdpa(**inputs).logits.float(), flash(**inputs).logits.float()
    real = mask.cuda().bool()
    torch.testing.assert_close(a[real], b[real], rtol=2e-2, atol=2e-2)
