"""Inference inputs: the training template, left padding, placeholders that match the STAB, generate()."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_model_config
from videopanda.config import ConfigError, load_config
from videopanda.data import (
    SYSTEM_V1,
    VIDEO_TOKEN_ID,
    DataConfig,
    DataError,
    VideoPandaProcessor,
    VideoReadError,
    load_tokenizer,
)
from videopanda.model import build_model

STAB = tiny_model_config().video_tokenizer


@pytest.fixture(scope="module")
def processor(synth_dir):
    tok = load_tokenizer(synth_dir / "tokenizer")
    return VideoPandaProcessor(tok, STAB, DataConfig(image_size=32, patch_size=4))


def test_batch_of_questions_with_and_without_videos(processor, synth_dir):
    videos = [synth_dir / "videos" / "eval_00000.mp4", None, synth_dir / "videos" / "eval_00001.mp4"]
    questions = ["What color is the circle?", "Say hi.", "<video>\nWhich direction does it move?"]
    inputs = processor(questions, videos)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert inputs["pixel_values_videos"].shape == (2, 8, 4, 32, 32) and "pixel_values_images" not in inputs
    assert ids.shape == mask.shape and mask[:, -1].all()  # left padding: every row ends at the last column
    assert not mask[1, 0] and ids[1, 0] == processor.tokenizer.pad_token_id  # the text-only row is the shortest
    counts = processor._counts(inputs["pixel_values_videos"].flatten(0, 1))
    assert (ids == VIDEO_TOKEN_ID).sum().item() == sum(counts)
    assert (ids[1] == VIDEO_TOKEN_ID).sum() == 0
    text = processor.tokenizer.decode(ids[0][ids[0] >= 0], skip_special_tokens=True)
    assert text.startswith(SYSTEM_V1) and "curious user" in text and text.endswith("ASSISTANT:")
    again = processor(questions[:1], videos[:1])
    assert torch.equal(again["pixel_values_videos"][0], inputs["pixel_values_videos"][0])  # no random flip


def test_generate_runs_on_processor_outputs(processor, synth_dir):
    cfg = tiny_model_config()
    cfg.llm["vocab_size"] = len(processor.tokenizer)
    model = build_model(cfg).eval()
    inputs = processor(["What color is the circle?"] * 2, [synth_dir / "videos" / "eval_00002.mp4"] * 2)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 3)
    assert len(processor.batch_decode(out[:, inputs["input_ids"].shape[1] :])) == 2


def test_unreadable_video_names_the_file(processor, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    with pytest.raises(VideoReadError, match="bad.mp4"):
        processor(["q"], [bad])


def test_data_config_loads_from_yaml_and_checks_the_model(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(
        "sources:\n  - path: a.json\n    media_root: media\n    fraction: 0.5\nnum_frames: 8\nroot: /data\n"
    )
    cfg = load_config(DataConfig, path, ["image_size=32", "patch_size=4"])
    assert cfg.sources[0].fraction == 0.5 and str(cfg.resolve(cfg.sources[0].path)) == "/data/a.json"
    cfg.check_against(STAB)
    with pytest.raises(DataError, match=r"data.image_size=448 but video_tokenizer.image_size=32"):
        DataConfig().check_against(STAB)
    with pytest.raises(DataError, match="not a multiple of video_tokenizer.chunk_size=4"):
        DataConfig(image_size=32, patch_size=4, num_frames=6).check_against(STAB)
    with pytest.raises(ConfigError, match="fraction"):
        load_config(DataConfig, path, ["sources=[{path: a.json, fraction: 2.0}]"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(DataConfig, path, ["num_frame=8"])
