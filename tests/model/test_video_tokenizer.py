"""The STAB: token counts, batched == literal per-frame reference, zero-inits, ablation switches, gradients."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_model_config
from tests.model.frames import letterboxed
from tests.model.reference_stab import reference_stab_forward
from videopanda.config import load_config
from videopanda.model import ModelConfig, VideoTokenizerConfig, build_model
from videopanda.model.geometry import frame_token_counts
from videopanda.model.video_tokenizer import VideoTokenizer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _stab(**changes) -> VideoTokenizer:
    """A narrow STAB with every parameter randomised (so zero-inits do not hide mistakes), in eval mode."""
    model = build_model(tiny_model_config(**changes))
    stab = model.model.video_tokenizer
    with torch.no_grad():
        for p in stab.parameters():
            p.normal_(0, 0.2)
        if stab.lste is not None:
            bn = stab.lste.temporal[0]
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return stab.eval()


def _split_frames(out, counts):
    return list(torch.split(out.tokens, counts.tolist()))


# Reference §1.5: source frame -> (student content box in pixels on the 448 canvas, tokens per frame).
PAPER_CASES = {
    "square 500x500": ((0, 448, 0, 448), 273),
    "16:9 640x360": ((84, 448 - 112, 0, 448), 154),
    "portrait 360x640": ((0, 448, 84, 448 - 112), 161),
    "4:3 320x240": ((56, 448 - 56, 0, 448), 205),
}


@pytest.mark.parametrize("case", sorted(PAPER_CASES))
def test_token_counts_per_frame_match_reference_table(case):
    box, expected = PAPER_CASES[case]
    frames = letterboxed(1, 8, 448, box, padded_from=6)  # last two frames padded: 73 tokens each (§1.5)
    counts = frame_token_counts(frames, patch_size=14, padded_crop=16)
    assert counts.tolist() == [[expected] * 6 + [73] * 2]
    # And the STAB itself produces exactly that many tokens (a narrow STAB on the real 448/14 geometry).
    stab = VideoTokenizer(VideoTokenizerConfig(width=16, num_heads=2)).eval()
    with torch.no_grad():
        out = stab(frames)
    assert out.frame_token_counts.tolist() == counts[0].tolist()
    assert out.tokens.shape == (6 * expected + 2 * 73, 16)


@pytest.mark.parametrize(
    "box,padded_from",
    [((0, 32, 0, 32), None), ((8, 24, 0, 32), None), ((0, 32, 8, 32), 6), ((0, 32, 0, 32), 4)],
    ids=["square", "landscape", "portrait+padded", "square+padded-chunk"],
)
def test_batched_equals_literal_per_frame_reference(box, padded_from):
    stab = _stab()
    frames = letterboxed(2, 8, 32, box, padded_from=padded_from)
    with torch.no_grad():
        out = stab(frames)
    ref = reference_stab_forward(stab, frames)
    got = _split_frames(out, out.frame_token_counts)
    assert len(got) == len(ref) == 16
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"frame {i}")


def test_paper_size_stab_uses_the_reference_attention_scales_and_dropouts():
    """LSD and FSRA scale by 1024^-0.5 (full width, reference §1.2); dropouts 0.5 in the GSTRA MLP and fusion proj."""
    cfg = load_config(ModelConfig, CONFIGS / "model" / "videopanda-7b.yaml").video_tokenizer
    with torch.device("meta"):
        stab = VideoTokenizer(cfg)
    assert stab.lsd.pool.scale == stab.fsra.pool.scale == 1024**-0.5
    assert stab.lsd.pool.num_heads == stab.fsra.pool.num_heads == stab.gstra.num_heads == 8
    assert stab.gstra.mlp.dropout.p == 0.5 and stab.fusion.proj[1].p == 0.5
    assert stab.cfg.padded_crop == 16  # a fully padded frame keeps the top-left 16x16 patch block (reference §1.4)


def test_batch_mixing_aspect_ratios_keeps_sample_and_frame_order():
    """Two videos with different content boxes: frames are grouped by box inside, but come out in order."""
    stab = _stab()
    a = letterboxed(1, 8, 32, (8, 24, 0, 32))
    b = letterboxed(1, 8, 32, (0, 32, 8, 24), padded_from=5)
    frames = torch.cat([a, b])
    with torch.no_grad():
        out = stab(frames)
        alone = [stab(a).tokens, stab(b).tokens]
    ref = torch.cat(reference_stab_forward(stab, frames))
    torch.testing.assert_close(out.tokens, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.tokens, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_images_run_with_t1_and_fsra_context():
    stab = _stab()
    images = letterboxed(3, 1, 32, (8, 24, 0, 32))
    with torch.no_grad():
        out = stab(images)
    ref = reference_stab_forward(stab, images)
    torch.testing.assert_close(out.tokens, torch.cat(ref), rtol=1e-4, atol=1e-4)
    # The image's context token is the raw FSRA output: no fusion proj, no GSTRA.
    grid = stab.lsd(stab.patch_embedding(images[:1, 0])[0][:, :, 2:6, :])  # content rows 2..5 of the 8x8 grid
    torch.testing.assert_close(out.tokens[0], stab.fsra(grid)[0], rtol=1e-5, atol=1e-5)


def test_layout_context_then_rows_each_ending_with_split_token():
    stab = _stab()
    frames = letterboxed(1, 4, 32, (8, 24, 0, 32))  # content 4x8 patches -> h=2, w=4 after LSD
    with torch.no_grad():
        tokens = stab(frames).tokens[: 1 + 2 * 5]  # first frame
    split = stab.split_embedding
    assert torch.equal(tokens[5], split) and torch.equal(tokens[10], split)
    assert not torch.equal(tokens[4], split)


def test_video_frame_count_must_be_a_multiple_of_chunk_size():
    stab = _stab()
    with pytest.raises(ValueError, match="multiple of chunk_size=4"):
        stab(letterboxed(1, 6, 32))


def test_training_mode_batchnorm_uses_statistics_of_every_chunk_in_the_micro_batch():
    stab = _stab()
    stab.train()
    bn = stab.lste.temporal[0]
    bn.reset_running_stats()
    bn.momentum = 1.0  # running_mean becomes exactly the batch mean
    frames = letterboxed(2, 8, 32)
    stab(frames)
    patches, _ = stab.patch_embedding(frames.flatten(0, 1))
    torch.testing.assert_close(bn.running_mean, patches.mean(dim=(0, 2, 3)).detach(), rtol=1e-4, atol=1e-5)


def test_zero_initialised_blocks_leave_features_unchanged_at_init():
    model = build_model(tiny_model_config())
    stab = model.model.video_tokenizer.eval()
    x = torch.randn(3, 32, 4, 8, 8)
    with torch.no_grad():
        assert torch.count_nonzero(stab.lste.temporal(x)) == 0  # LSTE's temporal branch adds nothing at init
        g = stab.gstra(torch.randn(3, 50, 32))
    assert torch.count_nonzero(g) == 0  # GSTRA token == its (zero) query: attention and MLP outputs are zero
    assert torch.count_nonzero(stab.fusion.balance) == 0  # alpha = 0.5
    for p in (stab.gstra.out_proj.weight, stab.gstra.mlp.c_proj.weight, stab.lste.temporal[3].weight):
        assert torch.count_nonzero(p) == 0


def _ablation_outputs(base_changes: dict, changes: dict, frames: torch.Tensor):
    """Outputs of a base STAB and an ablated one that shares every weight they have in common."""
    base = _stab(**base_changes)
    ablated = VideoTokenizer(dataclasses.replace(base.cfg, **changes)).eval()
    missing, unexpected = ablated.load_state_dict(base.state_dict(), strict=False)
    assert not missing, missing
    with torch.no_grad():
        return base(frames), ablated(frames), unexpected


def _context_and_grid(out):
    frames = _split_frames(out, out.frame_token_counts)
    return torch.stack([f[0] for f in frames]), torch.cat([f[1:] for f in frames])


VIDEO = letterboxed(2, 8, 32, (8, 24, 0, 32))
IMAGES = letterboxed(2, 1, 32, (8, 24, 0, 32))


def test_ablation_fusion_modes_change_only_the_context_token():
    for mode in ("fsra_only", "gstra_only"):
        base, abl, unexpected = _ablation_outputs({}, {"fusion": mode}, VIDEO)
        assert not unexpected
        (c0, g0), (c1, g1) = _context_and_grid(base), _context_and_grid(abl)
        torch.testing.assert_close(g0, g1)
        assert not torch.allclose(c0, c1)


def test_ablation_no_gstra_removes_its_weights_and_matches_fsra_only_fusion():
    base, abl, unexpected = _ablation_outputs({"fusion": "fsra_only"}, {"gstra": False}, VIDEO)
    assert unexpected and all(k.startswith("gstra.") for k in unexpected)
    torch.testing.assert_close(base.tokens, abl.tokens)  # GSTRA only ever feeds the fused context token


def test_ablation_no_fsra_matches_gstra_only_fusion_for_videos():
    base, abl, unexpected = _ablation_outputs({"fusion": "gstra_only"}, {"fsra": False}, VIDEO)
    assert unexpected and all(k.startswith("fsra.") for k in unexpected)
    torch.testing.assert_close(base.tokens, abl.tokens)
    with pytest.raises(ValueError, match="images need the FSRA"):
        _ablation_outputs({"fusion": "gstra_only"}, {"fsra": False}, IMAGES)


def test_ablation_no_row_tokens_drops_exactly_the_split_tokens():
    base, abl, _ = _ablation_outputs({}, {"row_tokens": False}, VIDEO)
    frames_b = _split_frames(base, base.frame_token_counts)
    frames_a = _split_frames(abl, abl.frame_token_counts)
    for fb, fa in zip(frames_b, frames_a, strict=True):
        h, w = 2, 4
        keep = [0] + [1 + r * (w + 1) + c for r in range(h) for c in range(w)]
        torch.testing.assert_close(fb[keep], fa)


def test_ablation_no_dpe_removes_exactly_the_dpe_term():
    """dpe: false equals the full STAB with a DPE that outputs zero: nothing else in LSTE changes."""
    base = _stab()
    ablated = VideoTokenizer(dataclasses.replace(base.cfg, dpe=False)).eval()
    missing, unexpected = ablated.load_state_dict(base.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == ["lste.dpe.bias", "lste.dpe.weight"]
    with torch.no_grad():
        full = base(VIDEO).tokens
        base.lste.dpe.weight.zero_()
        base.lste.dpe.bias.zero_()
        torch.testing.assert_close(ablated(VIDEO).tokens, base(VIDEO).tokens)
        assert not torch.allclose(ablated(VIDEO).tokens, full)


def test_ablation_no_lste_leaves_grid_tokens_purely_per_frame():
    """Without LSTE nothing mixes frames before LSD: a video's grid tokens equal those of its frames run one by
    one as images; the context tokens still fuse the chunk's GSTRA token. With LSTE, grid tokens see neighbours."""
    per_frame = VIDEO.flatten(0, 1)[:, None]  # (16, 1, 4, H, W): every frame as its own image
    for lste, grids_match in ((False, True), (True, False)):
        stab = _stab(lste=lste)
        with torch.no_grad():
            (ctx_v, grid_v), (ctx_i, grid_i) = _context_and_grid(stab(VIDEO)), _context_and_grid(stab(per_frame))
        assert torch.allclose(grid_v, grid_i, rtol=1e-4, atol=1e-5) == grids_match
        assert not torch.allclose(ctx_v, ctx_i)


@pytest.mark.parametrize("switch", ["lste", "dpe"])
def test_ablation_lste_and_dpe_change_video_tokens_but_not_images(switch):
    base, abl, unexpected = _ablation_outputs({}, {switch: False}, VIDEO)
    assert unexpected
    assert not torch.allclose(base.tokens, abl.tokens)
    base_i, abl_i, _ = _ablation_outputs({}, {switch: False}, IMAGES)
    torch.testing.assert_close(base_i.tokens, abl_i.tokens)  # images never run LSTE


def test_gstra_padding_mask_option_ignores_padding_content():
    """Off by default (reference behaviour: padding influences GSTRA); on: padding values do not matter.

    LSTE is off here: its 3x3x3 DPE mixes padding into the border patches whatever GSTRA does.
    """
    frames = letterboxed(1, 8, 32, (8, 24, 0, 32))
    noisy = frames.clone()
    noisy[:, :, :3, :8] = torch.randn_like(noisy[:, :, :3, :8])  # change only the letterbox padding
    for masked, should_match in ((False, False), (True, True)):
        stab = _stab(gstra_mask_padding=masked, lste=False)
        with torch.no_grad():
            a, b = stab(frames).tokens, stab(noisy).tokens
        assert torch.allclose(a, b, atol=1e-5) == should_match


def test_gradients_reach_every_trainable_parameter():
    """The LM loss of a mixed batch (videos with letterbox and padded frames, images, text) reaches every weight."""
    model = build_model(tiny_model_config()).train()
    with torch.no_grad():  # move off the zero init so every path carries signal
        for p in model.model.video_tokenizer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    videos = letterboxed(2, 8, 32, (8, 24, 0, 32), padded_from=6)
    images = letterboxed(2, 1, 32, (0, 32, 8, 24))[:, 0]
    rows = [[1, 5, 6] + [-200] * int(frame_token_counts(v, 4, 4).sum()) + [7, 8] for v in videos]
    rows += [[1, 9] + [-201] * int(frame_token_counts(i, 4, 4)) + [10, 11] for i in images]
    rows += [[1, 12, 13, 14]]  # text only
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    labels = ids.masked_fill(mask == 0, -100)
    loss = model(
        input_ids=ids, attention_mask=mask, pixel_values_videos=videos, pixel_values_images=images, labels=labels
    ).loss
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(list(model.parameters()))
    for name, p in trainable:
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
