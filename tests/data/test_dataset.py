"""The dataset, the collator and the model together: shapes, placeholder counts, bad samples, policies."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import tiny_model_config
from videopanda.data import (
    IGNORE_INDEX,
    IMAGE_TOKEN_ID,
    VIDEO_TOKEN_ID,
    DataCollator,
    DataConfig,
    DataError,
    DataSource,
    ModalityLengthGroupedSampler,
    SampleError,
    VideoPandaDataset,
    model_inputs,
)
from videopanda.model import build_model

from .media import image_record, indexed_frames, text_record, video_record, write_image, write_json, write_video

STAB = tiny_model_config().video_tokenizer  # 32 px canvas, patch 4 (8x8 grid), chunks of 4 frames
TEACHER = {"teacher": True, "teacher_image_size": 16, "teacher_patch_size": 4}  # 4x4 teacher patches


@pytest.fixture
def sources(tmp_path):
    """Two annotation files with their own media roots: videos (JSON) and images + text (JSONL)."""
    videos, images = tmp_path / "videos", tmp_path / "images"
    videos.mkdir()
    images.mkdir()
    write_video(videos / "wide.mp4", indexed_frames(16, 48, 96))
    write_video(videos / "tall.mp4", indexed_frames(16, 64, 32))
    write_video(videos / "short.mp4", indexed_frames(3, 48, 48))
    (videos / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 50)
    write_image(images / "pic.png", 30, 40)
    vjson = write_json(
        tmp_path / "videos.json",
        [
            video_record("wide", "wide.mp4", answer="left"),
            video_record("tall", "tall.mp4", question="Which way?\n<video>", answer="up"),
            video_record("short", "short.mp4"),
        ],
    )
    ijsonl = tmp_path / "images.jsonl"
    ijsonl.write_text(json.dumps(image_record("pic", "pic.png")) + "\n" + json.dumps(text_record("txt")) + "\n")
    return {"videos": (vjson, videos), "images": (ijsonl, images), "root": tmp_path}


def _cfg(sources, **changes) -> DataConfig:
    srcs = [DataSource(path=str(p), media_root=str(m)) for p, m in (sources["videos"], sources["images"])]
    return DataConfig(sources=srcs, image_size=32, patch_size=4, num_frames=8, **changes)


def test_mixed_sources_give_model_ready_items(sources, bpe_tokenizer):
    ds = VideoPandaDataset(_cfg(sources, **TEACHER), bpe_tokenizer, STAB, train=False)
    assert len(ds) == 5 and ds.modalities == ["video", "video", "video", "image", "text"]
    assert dict(ds.report.counts) == {"video": 3, "image": 1, "text": 1}
    lengths = ds.lengths
    assert all(v < 0 for v in lengths[:3]) and all(v > 0 for v in lengths[3:])  # reference §5.5 sign convention
    wide, tall, short, pic, txt = (ds[i] for i in range(5))
    assert wide["pixel_values"].shape == (8, 4, 32, 32) and wide["teacher_pixel_values"].shape == (8, 4, 16, 16)
    assert pic["pixel_values"].shape == (1, 4, 32, 32) and pic["teacher_pixel_values"] is None
    assert txt["pixel_values"] is None and txt["modality"] == "text"
    # wide 2:1 video on a 4-cell canvas: content 2 cells = 4 patch rows -> 2 token rows of 4: 1 + 2 * 5 = 11
    assert (wide["input_ids"] == VIDEO_TOKEN_ID).sum() == 8 * 11
    assert (tall["input_ids"] == VIDEO_TOKEN_ID).sum() == 8 * (1 + 4 * 3)  # portrait 1:2 -> 4 rows of 2 tokens
    # a 3-frame video padded with 5 zero frames of the 4x4-patch fallback block (1 + 2 * 3 = 7 tokens)
    assert (short["input_ids"] == VIDEO_TOKEN_ID).sum() == 3 * 21 + 5 * 7
    assert short["pixel_values"][3:].abs().sum() == 0 and short["teacher_pixel_values"][3:].abs().sum() == 0
    assert short["teacher_pixel_values"][:3, 3].any(dim=(1, 2)).all()  # real teacher frames carry a mask
    assert (pic["input_ids"] == IMAGE_TOKEN_ID).sum() == 1 + 3 * 5  # 30x40 image: 3 token rows of 4
    assert wide["labels"][wide["input_ids"] < 0].eq(IGNORE_INDEX).all()


def test_collated_mixed_batch_runs_through_the_model_with_matching_placeholders(sources, bpe_tokenizer):
    cfg = _cfg(sources, **TEACHER)
    ds = VideoPandaDataset(cfg, bpe_tokenizer, STAB, train=True)
    items = [ds[i] for i in (4, 0, 3, 2, 1)]  # text, video, image, short video, video
    batch = DataCollator(bpe_tokenizer.pad_token_id)(items)
    assert batch["pixel_values_videos"].shape == (3, 8, 4, 32, 32)
    assert batch["pixel_values_images"].shape == (1, 4, 32, 32)
    assert batch["teacher_pixel_values_videos"].shape == (3, 8, 4, 16, 16)
    assert batch["ids"] == ["txt", "wide", "pic", "short", "tall"]
    model_cfg = tiny_model_config()
    model_cfg.llm["vocab_size"] = len(bpe_tokenizer)
    model = build_model(model_cfg)
    out = model(**model_inputs(batch))  # raises if a placeholder count differs from the STAB's token count
    assert torch.isfinite(out.loss)
    per_video = out.video_tokens.frame_token_counts.view(3, 8).sum(dim=1)
    placeholders = (batch["input_ids"] == VIDEO_TOKEN_ID).sum(dim=1)[[1, 3, 4]]
    assert per_video.tolist() == placeholders.tolist()
    assert int(out.image_tokens.frame_token_counts.sum()) == int((batch["input_ids"] == IMAGE_TOKEN_ID).sum())


def test_collator_pads_right_for_training_and_left_for_generation(sources, bpe_tokenizer):
    ds = VideoPandaDataset(_cfg(sources), bpe_tokenizer, STAB, train=False)
    items = [ds[3], ds[4]]
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    right = DataCollator(bpe_tokenizer.pad_token_id)(items)
    short = 1 if n1 < n0 else 0
    n = min(n0, n1)
    assert right["attention_mask"][short, :n].all() and not right["attention_mask"][short, n:].any()
    assert right["labels"][short, n:].eq(IGNORE_INDEX).all()
    assert right["input_ids"][short, n:].eq(bpe_tokenizer.pad_token_id).all()
    left = DataCollator(bpe_tokenizer.pad_token_id, padding_side="left")(items)
    pad = max(n0, n1) - n
    assert not left["attention_mask"][short, :pad].any() and left["attention_mask"][short, pad:].all()
    assert torch.equal(left["input_ids"][short, pad:], items[short]["input_ids"])


def test_bad_video_fails_naming_annotation_record_and_file(sources, bpe_tokenizer):
    path, root = sources["videos"]
    write_json(path, [video_record("ok", "wide.mp4"), video_record("broken", "corrupt.mp4")])
    ds = VideoPandaDataset(_cfg(sources), bpe_tokenizer, STAB)
    with pytest.raises(SampleError) as info:
        ds[1]
    message = str(info.value)
    assert str(path) in message and "record 1 (id 'broken')" in message
    assert str(root / "corrupt.mp4") in message and "not a readable video" in message


def test_skip_substitutes_the_same_modality_logs_and_keeps_the_epoch_size(sources, bpe_tokenizer, caplog):
    path, _ = sources["videos"]
    records = [video_record("a", "wide.mp4"), video_record("broken", "corrupt.mp4"), video_record("b", "tall.mp4")]
    write_json(path, records)
    ds = VideoPandaDataset(_cfg(sources, on_bad_sample="skip"), bpe_tokenizer, STAB)
    assert len(ds) == 5
    with caplog.at_level(logging.WARNING, logger="videopanda.data"):
        item = ds[1]
    assert item["id"] == "b" and item["modality"] == "video" and item["skipped"] == ["broken"]
    assert "skipping" in caplog.text and "broken" in caplog.text and "1 skipped so far" in caplog.text
    batch = DataCollator(0)([ds[i] for i in range(len(ds))])
    assert len(batch["ids"]) == 5 and batch["skipped"] == ["broken"] and ds.skipped == 2


def test_invalid_records_fail_up_front_or_are_left_out_with_a_report(sources, bpe_tokenizer, caplog):
    path, _ = sources["videos"]
    write_json(path, [video_record("a", "wide.mp4"), video_record("escape", "../x.mp4")])
    with pytest.raises(DataError, match=r"record 1 \(id 'escape'\).*escapes its media root"):
        VideoPandaDataset(_cfg(sources), bpe_tokenizer, STAB)
    with caplog.at_level(logging.WARNING, logger="videopanda.data"):
        ds = VideoPandaDataset(_cfg(sources, on_bad_sample="skip"), bpe_tokenizer, STAB)
    assert len(ds) == 3 and "1 invalid record(s) left out" in caplog.text and "escape" in caplog.text


def test_overlength_truncates_after_the_visual_tokens_or_skips(sources, bpe_tokenizer, caplog):
    path, _ = sources["videos"]
    long_answer = " ".join(["left"] * 200)
    write_json(path, [video_record("long", "wide.mp4", answer=long_answer), video_record("ok", "tall.mp4")])
    with caplog.at_level(logging.WARNING, logger="videopanda.data"):
        ds = VideoPandaDataset(_cfg(sources, max_length=250), bpe_tokenizer, STAB)
        item = ds[0]
    assert len(item["input_ids"]) == 250 and (item["input_ids"] == VIDEO_TOKEN_ID).sum() == 88
    assert (item["labels"] != IGNORE_INDEX).any() and "truncated" in caplog.text and ds.overlength == 1
    skip = VideoPandaDataset(_cfg(sources, max_length=250, overlength="skip"), bpe_tokenizer, STAB)
    assert skip[0]["id"] == "ok" and skip[0]["skipped"] == ["long"]
    tiny = VideoPandaDataset(_cfg(sources, max_length=40), bpe_tokenizer, STAB)  # 88 visual tokens cannot fit
    with pytest.raises(SampleError, match="visual tokens alone"):
        tiny[1]


def test_cache_decodes_each_clip_once_and_gives_the_same_samples(sources, bpe_tokenizer, monkeypatch):
    import videopanda.data.dataset as dataset_module

    plain = VideoPandaDataset(_cfg(sources, **TEACHER), bpe_tokenizer, STAB)
    cached = VideoPandaDataset(_cfg(sources, cache=True, **TEACHER), bpe_tokenizer, STAB)
    decoded = []
    real_read = dataset_module.read_video

    def counting_read(path, *args, **kwargs):
        decoded.append(path)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "read_video", counting_read)
    flips = set()
    for epoch in (0, 3, 0):  # no flip in epoch 0, clip 0 flipped in epoch 3: the cached clips are flipped afresh
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in (0, 1):
            flips.add(cached._flip(i))
            a, b = plain[i], cached[i]
            assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
            assert torch.equal(a["pixel_values"], b["pixel_values"])  # also after a flip: the cache is not mirrored
            assert torch.equal(a["teacher_pixel_values"], b["teacher_pixel_values"])
    assert flips == {True, False}
    # the plain dataset decoded clips 0 and 1 in every epoch; the cached one only in the first
    assert len(decoded) == 6 + 2


def test_token_lengths_are_the_exact_llm_lengths_and_fill_the_cache(sources, bpe_tokenizer, monkeypatch):
    import videopanda.data.dataset as dataset_module

    with pytest.raises(ValueError, match="group_by: tokens .* needs cache: true"):
        _cfg(sources, group_by="tokens")
    cached = VideoPandaDataset(_cfg(sources, cache=True, group_by="tokens"), bpe_tokenizer, STAB)
    decoded = []
    real_read = dataset_module.read_video
    monkeypatch.setattr(dataset_module, "read_video", lambda *a, **k: decoded.append(a[0]) or real_read(*a, **k))
    calls = []
    lengths = cached.token_lengths(lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(cached), len(cached))
    assert len(decoded) == 3  # the three videos, once each
    signs = [-1 if r.modality == "video" else 1 for r in cached.records]
    expected = [len(cached[i]["input_ids"]) * sign for i, sign in enumerate(signs)]
    assert lengths == expected and len(decoded) == 3  # the samples afterwards come from the cache
    # the wide, tall and short clips differ in visual tokens, which the word-count proxy cannot see
    assert len({abs(n) for n, r in zip(lengths, cached.records, strict=True) if r.modality == "video"}) == 3


def test_fraction_is_seeded_and_identical_for_every_rank(tmp_path, bpe_tokenizer):
    write_video(tmp_path / "v.mp4", indexed_frames(8))
    path = write_json(tmp_path / "many.json", [video_record(f"r{k}", "v.mp4") for k in range(20)])

    def ids(seed):
        cfg = DataConfig([DataSource(str(path), str(tmp_path), fraction=0.5)], image_size=32, patch_size=4, seed=seed)
        return [r.id for r in VideoPandaDataset(cfg, bpe_tokenizer, STAB).records]

    first = ids(42)
    assert len(first) == 10 and first == ids(42) and first != ids(7)


def test_flip_only_in_training_deterministic_and_shared_with_the_teacher(sources, bpe_tokenizer):
    cfg = _cfg(sources, **TEACHER)
    train = VideoPandaDataset(cfg, bpe_tokenizer, STAB, train=True)
    evaluation = VideoPandaDataset(cfg, bpe_tokenizer, STAB, train=False)
    flips = [train._flip(i) for i in range(64)]
    assert 10 < sum(flips) < 54 and flips == [train._flip(i) for i in range(64)]
    assert not any(evaluation._flip(i) for i in range(64))
    train.set_epoch(1)
    assert flips != [train._flip(i) for i in range(64)]
    k = next(i for i in range(64) if train._flip(i))  # a flipped draw for record index k
    flipped = train._build(train.records[0], k)
    plain = evaluation[0]
    assert torch.equal(flipped["pixel_values"][:, 3], plain["pixel_values"][:, 3])  # same mask
    assert torch.allclose(flipped["pixel_values"][:, :3, 8:24], plain["pixel_values"][:, :3, 8:24].flip(-1))
    teacher_flipped, teacher_plain = flipped["teacher_pixel_values"], plain["teacher_pixel_values"]
    assert torch.allclose(teacher_flipped[:, :3, 4:12], teacher_plain[:, :3, 4:12].flip(-1))


def test_records_marked_allow_flip_false_are_never_flipped(sources, bpe_tokenizer):
    path, _ = sources["videos"]
    write_json(path, [video_record("left", "wide.mp4", answer="left") | {"allow_flip": False}])
    train = VideoPandaDataset(_cfg(sources), bpe_tokenizer, STAB, train=True)
    plain = VideoPandaDataset(_cfg(sources), bpe_tokenizer, STAB, train=False)[0]
    k = next(i for i in range(64) if train._flip(i))
    assert torch.equal(train._build(train.records[0], k)["pixel_values"], plain["pixel_values"])
    write_json(path, [video_record("bad", "wide.mp4") | {"allow_flip": "no"}])
    with pytest.raises(DataError, match="'allow_flip' must be true or false"):
        VideoPandaDataset(_cfg(sources), bpe_tokenizer, STAB)


def test_dataloader_with_workers_and_the_grouped_sampler(sources, bpe_tokenizer):
    ds = VideoPandaDataset(_cfg(sources, num_workers=2), bpe_tokenizer, STAB)
    sampler = ModalityLengthGroupedSampler(ds.lengths, batch_size=2, num_replicas=1, rank=0, seed=0)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, collate_fn=DataCollator(0))
    seen = [i for batch in loader for i in batch["ids"]]
    assert sorted(seen) == sorted(["wide", "tall", "short", "pic", "txt"])


def _bad_media(videos, images) -> dict[str, tuple[str, str]]:
    """Bad media files written into the sources' folders: record id -> (media file, reason in the message)."""
    import numpy as np

    (videos / "empty.mp4").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (48, 96, 128, 3), dtype=np.uint8)  # big frames
    data = write_video(videos / "full.mp4", noise, faststart=True).read_bytes()  # index first
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the later frames are missing
    (images / "text.png").write_text("not an image")
    write_image(images / "full.png", 64, 64)
    data = (images / "full.png").read_bytes()
    (images / "cut.png").write_bytes(data[: len(data) // 2])
    return {
        "empty": ("empty.mp4", "file is empty"),
        "truncated": ("truncated.mp4", "truncated or corrupt"),
        "corrupt": ("corrupt.mp4", "not a readable video"),
        "gone": ("gone.mp4", "file not found"),  # with check_media off, found only when loading
        "text_image": ("text.png", "not an image file"),
        "cut_image": ("cut.png", "truncated or corrupt"),
    }


@pytest.mark.parametrize("rid", ["empty", "truncated", "corrupt", "gone", "text_image", "cut_image"])
def test_every_bad_medium_names_the_annotation_file_the_record_and_the_medium(sources, bpe_tokenizer, caplog, rid):
    (vpath, videos), (ipath, images) = sources["videos"], sources["images"]
    media, reason = _bad_media(videos, images)[rid]
    image = rid.endswith("_image")
    ann, root = (ipath, images) if image else (vpath, videos)
    good = image_record("ok", "pic.png") if image else video_record("ok", "wide.mp4")
    bad = image_record(rid, media) if image else video_record(rid, media)
    if image:  # the images' annotation file is JSONL: its records are named by line
        ann.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        where = f"line 2 (id '{rid}')"
    else:
        write_json(ann, [good, bad])
        where = f"record 1 (id '{rid}')"
    ds = VideoPandaDataset(_cfg(sources, check_media=False), bpe_tokenizer, STAB)
    index = next(i for i, r in enumerate(ds.records) if r.id == rid)
    with pytest.raises(SampleError) as info:
        ds[index]
    message = str(info.value)
    assert str(ann) in message and where in message
    assert str(root / media) in message and reason in message, message
    skip = VideoPandaDataset(_cfg(sources, check_media=False, on_bad_sample="skip"), bpe_tokenizer, STAB)
    assert len(skip) == len(ds)  # the epoch size does not change
    with caplog.at_level(logging.WARNING, logger="videopanda.data"):
        item = skip[index]
    assert item["id"] == "ok" and item["skipped"] == [rid] and skip.skipped == 1
    assert f"skipping {ann}: {where}" in caplog.text and reason in caplog.text


def test_frame_count_and_decoder_come_from_the_config_never_the_environment(sources, bpe_tokenizer, monkeypatch):
    import videopanda.data.dataset as dataset_module

    monkeypatch.setenv("NUM_FRAMES", "16")  # the reference read the frame count from this variable
    calls = []
    real = dataset_module.read_video

    def spy(path, num_frames, **kwargs):
        calls.append((num_frames, kwargs["decoder"]))
        return real(path, num_frames, **kwargs)

    monkeypatch.setattr(dataset_module, "read_video", spy)
    eight = VideoPandaDataset(_cfg(sources, decoder="pyav"), bpe_tokenizer, STAB)[0]
    assert eight["pixel_values"].shape[0] == 8 and calls == [(8, "pyav")]
    cfg = _cfg(sources)
    cfg.num_frames = 4  # one chunk of the tiny STAB
    four = VideoPandaDataset(cfg, bpe_tokenizer, STAB)[0]
    assert four["pixel_values"].shape[0] == 4 and calls[-1] == (4, "auto")
    assert (four["input_ids"] == VIDEO_TOKEN_ID).sum() == 4 * 11
