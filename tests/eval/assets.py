"""Tiny evaluation assets made at test time: mp4 clips (PyAV), a QA set in the Video-ChatGPT layout, a model folder."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

WORDS = ["red", "green", "blue", "circle", "square", "moving", "left", "right", "what", "colour", "is", "the", "shape"]


def write_mp4(path: Path, frames: int = 10, size: tuple[int, int] = (48, 64), fps: int = 5, seed: int = 0) -> Path:
    """A small h264 clip of coloured noise (height, width = ``size``)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_qa_set(
    root: Path,
    n: int,
    folder: str = "MSVD_Zero_Shot_QA",
    video_sub: str = "videos",
    prefix: str = "",
    unreadable: tuple[int, ...] = (),
    answers_shuffled: bool = True,
) -> dict:
    """A zero-shot QA set under ``root/folder``: ``n`` questions on ``ceil(n / 2)`` clips.

    Args:
        unreadable: indices of questions whose clip is a corrupt file (garbage bytes).
        answers_shuffled: write ``test_a.json`` in reverse order, so matching by position would be wrong.

    Returns:
        ``{question_id: answer}``.
    """
    task_dir = root / folder
    videos = task_dir / video_sub
    questions, answers = [], []
    for i in range(n):
        name = f"clip{i // 2}"
        qid = f"q{i}"
        questions.append(
            {"video_name": name, "question_id": qid, "question": f"what colour is{' the' * (i % 4)} thing {i}?"}
        )
        answers.append({"answer": WORDS[i % 3], "question_id": qid, "type": i % 2})
        file = videos / f"{prefix}{name}.mp4"
        if i in unreadable:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(b"this is not an mp4 file" * 10)
        elif not file.exists():
            write_mp4(file, seed=i)
    if answers_shuffled:
        answers = answers[::-1]
    (task_dir / "test_q.json").write_text(json.dumps(questions))
    (task_dir / "test_a.json").write_text(json.dumps(answers))
    return {a["question_id"]: a["answer"] for a in answers}


def write_tiny_model(out: Path) -> Path:
    """Save a tiny random Video-Panda (32 px canvas, patch 4, 2-layer LLM) and a byte-level BPE tokenizer."""
    import torch

    from tests.conftest import tiny_model_config
    from videopanda.data.tokenizer import train_tokenizer
    from videopanda.model import build_model

    corpus = [" ".join(WORDS)] * 20 + ["USER: ASSISTANT: A chat between a curious user and an assistant."] * 20
    tokenizer = train_tokenizer(corpus, out, vocab_size=300)
    cfg = tiny_model_config()
    cfg.llm["vocab_size"] = 300
    cfg.llm["pad_token_id"] = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # large random weights: the greedy answer then depends on every input token and frame
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.5 if p.dim() > 1 else 0.1)
        # A zero logit for </s> almost never wins among 300 large random ones: answers run to max_new_tokens,
        # which keeps a generation run busy long enough for the kill test.
        model.lm_head.weight[tokenizer.eos_token_id] = 0.0
    model.save_pretrained(out)
    return out
