"""Anypixel letterbox, mask, normalisation, padding and the shared flip (reference §6.5-6.6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from videopanda.data.config import DataConfig
from videopanda.data.transforms import (
    BACKGROUND,
    CLIP_MEAN,
    CLIP_STD,
    letterbox_geometry,
    preprocess_clip,
    preprocess_frames,
    unnormalize_rgb,
)
from videopanda.data.video_io import read_video
from videopanda.model.geometry import content_boxes, frame_token_counts, patch_mask


@pytest.mark.parametrize(
    ("hw", "student", "teacher", "tokens"),
    [  # reference §1.5 / §6.5: (top, left, height, width) of the content on the 448 and 224 canvases
        ((500, 500), (0, 0, 448, 448), (0, 0, 224, 224), 273),
        ((360, 640), (84, 0, 252, 448), (42, 0, 126, 224), 154),  # 16:9: pad 84 top / 112 bottom
        ((640, 360), (0, 84, 448, 252), (0, 42, 224, 126), 161),  # portrait
        ((240, 320), (56, 0, 336, 448), (28, 0, 168, 224), 205),  # 4:3: pad 56 / 56
    ],
)
def test_geometry_and_token_counts_match_the_reference_table(hw, student, teacher, tokens):
    s = letterbox_geometry(*hw, 448, 14)
    t = letterbox_geometry(*hw, 224, 14, cells=16)
    assert (s.top, s.left, s.height, s.width) == student
    assert (t.top, t.left, t.height, t.width) == teacher
    frames = torch.randint(0, 256, (2, *hw, 3), dtype=torch.uint8)
    out = preprocess_frames(frames, 3, 448, 14)
    assert frame_token_counts(out, 14, 16).tolist() == [tokens, tokens, 73]  # the padded frame: 8x8 block


def test_canvas_mask_background_normalisation_and_zero_padding():
    frames = torch.zeros(2, 30, 60, 3, dtype=torch.uint8)
    frames[..., 0] = 255  # pure red, 2:1 landscape
    out = preprocess_frames(frames, 4, 112, 14)  # 4 cells of 28 px: content 2 cells high, 1 cell from the top
    assert out.shape == (4, 4, 112, 112) and out.dtype == torch.float32
    mask = out[:, 3]
    assert mask[:2, 28:84].eq(1).all() and mask[:2, :28].eq(0).all() and mask[:2, 84:].eq(0).all()
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    red = (torch.tensor([1.0, 0.0, 0.0]) - mean) / std
    bg = (torch.tensor(BACKGROUND) / 255.0 - mean) / std
    assert torch.allclose(out[0, :3, 56, 56], red, atol=1e-5)
    assert torch.allclose(out[1, :3, 5, 5], bg, atol=1e-5)
    assert BACKGROUND == (122, 116, 104)
    assert out[2:].abs().sum() == 0  # padded frames: all zero, mask included


def test_resize_matches_pil_bicubic_on_big_buck_bunny(bbb_path):
    video = read_video(bbb_path, 8)
    out = preprocess_frames(video.frames, 8, 448, 14)
    assert frame_token_counts(out, 14, 16).tolist() == [154] * 8
    assert out[:, 3, 84:336].eq(1).all() and out[:, 3, :84].eq(0).all() and out[:, 3, 336:].eq(0).all()
    # independent reference: PIL's bicubic resize of the first frame to 448x252, then CLIP normalisation
    ref = np.asarray(Image.fromarray(video.frames[0].numpy()).resize((448, 252), Image.BICUBIC), dtype=np.float32)
    ref = (torch.from_numpy(ref).permute(2, 0, 1) / 255.0 - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(
        CLIP_STD
    )[:, None, None]
    got = out[0, :3, 84:336]
    assert (got - ref).abs().mean() < 0.02  # ~1 grey level after normalisation


def test_batched_clip_equals_frame_by_frame():
    frames = torch.randint(0, 256, (3, 50, 70, 3), dtype=torch.uint8)
    whole = preprocess_frames(frames, 3, 112, 14)
    single = torch.cat([preprocess_frames(frames[k : k + 1], 1, 112, 14) for k in range(3)])
    assert torch.equal(whole, single)


def test_flip_is_shared_by_student_teacher_and_mask_and_keeps_the_boxes():
    frames = torch.zeros(1, 40, 90, 3, dtype=torch.uint8)
    frames[:, :, :45, 0] = 255  # left half red, right half blue
    frames[:, :, 45:, 2] = 255
    cfg = DataConfig(image_size=448, patch_size=14, teacher=True, num_frames=4)
    plain_s, plain_t = preprocess_clip(frames, cfg, flip=False)
    flip_s, flip_t = preprocess_clip(frames, cfg, flip=True)
    for plain, flipped, patch in ((plain_s, flip_s, 14), (plain_t, flip_t, 14)):
        assert torch.equal(plain[:, 3], flipped[:, 3])  # the mask (box) is the same flipped or not
        box = content_boxes(patch_mask(plain[:1, 3], patch), 0)[0].tolist()
        top, bottom, left, right = (v * patch for v in box)
        assert torch.allclose(flipped[0, :3, top:bottom, left:right], plain[0, :3, top:bottom, left:right].flip(-1))
        # the left edge of the flipped content is blue in both canvases
        assert flipped[0, 2, (top + bottom) // 2, left + 2] > flipped[0, 0, (top + bottom) // 2, left + 2]
    # one teacher patch per 2x2 student patches
    s_box = content_boxes(patch_mask(plain_s[:1, 3], 14), 0)[0]
    t_box = content_boxes(patch_mask(plain_t[:1, 3], 14), 0)[0]
    assert torch.equal(s_box, 2 * t_box)


def test_teacher_canvas_must_be_half_the_student_grid():
    with pytest.raises(ValueError, match="one teacher patch per 2x2 student patches"):
        DataConfig(image_size=112, patch_size=14, teacher=True)  # 8 patches -> teacher needs 4, default gives 16
    cfg = DataConfig(image_size=112, patch_size=14, teacher=True, teacher_image_size=56)
    assert cfg.teacher_grid == cfg.token_grid == 4


def test_unnormalize_rgb_inverts_the_clip_normalisation():
    frames = torch.randint(0, 256, (2, 56, 56, 3), dtype=torch.uint8)  # (n, H, W, 3), already canvas-sized
    out = preprocess_frames(frames, 3, 56, 14)  # (3, 4, 56, 56), the third frame padded
    rgb = unnormalize_rgb(out[None])  # (1, 3, 3, 56, 56)
    assert rgb.shape == (1, 3, 3, 56, 56)
    torch.testing.assert_close(rgb[0, :2] * 255, frames.permute(0, 3, 1, 2).float(), atol=1e-3, rtol=0)
