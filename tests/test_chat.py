"""`videopanda chat`: a one-shot question answered (and streamed) by a saved tiny model."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.conftest import TINY_LLM, tiny_model_config
from videopanda.chat import VideoChat, main
from videopanda.data.errors import DataError
from videopanda.data.synth import write_mp4
from videopanda.data.tokenizer import train_tokenizer
from videopanda.model import build_model


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    tok = train_tokenizer(
        ["what colour is the circle", "red green blue", "the square moves left"] * 20, root / "model", vocab_size=300
    )
    cfg = tiny_model_config()
    cfg.llm = {**TINY_LLM, "vocab_size": len(tok)}
    model = build_model(cfg)
    model.save_pretrained(root / "model")
    frames = np.zeros((12, 48, 64, 3), dtype=np.uint8)
    frames[:, 10:30, 20:40] = (200, 30, 30)
    write_mp4(root / "clip.mp4", frames, fps=4)
    return root


def test_one_shot_question_streams_the_same_answer_it_returns(saved_model):
    chat = VideoChat(saved_model / "model", saved_model / "clip.mp4", num_frames=8, max_new_tokens=5)
    stream = io.StringIO()
    answer = chat.ask("what colour is the circle?", stream=stream)
    assert stream.getvalue().strip() == answer
    assert chat.history == [("what colour is the circle?", answer)]
    # A follow-up is conditioned on the first round: its prompt is longer than a fresh one-turn prompt.
    chat.ask("and the square?")
    assert len(chat.history) == 2


def test_chat_command_with_question_prints_an_answer(saved_model, capsys):
    code = main(
        [
            "--model",
            str(saved_model / "model"),
            "--video",
            str(saved_model / "clip.mp4"),
            "--question",
            "what moves?",
            "--max-new-tokens",
            "4",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.endswith("\n")


def test_chat_command_reports_a_missing_video(saved_model, capsys):
    code = main(["--model", str(saved_model / "model"), "--video", str(saved_model / "nope.mp4"), "--question", "x"])
    assert code == 2
    assert "nope.mp4" in capsys.readouterr().err


def test_a_bad_question_is_a_clear_error_not_a_traceback(saved_model, capsys):
    args = ["--model", str(saved_model / "model"), "--video", str(saved_model / "clip.mp4"), "--max-new-tokens", "4"]
    assert main([*args, "--question", "<video> and <video>?"]) == 2
    err = capsys.readouterr().err
    assert "videopanda chat: a video sample needs exactly one <video> placeholder, found 2 <video>" in err
    assert "Traceback" not in err


def test_a_conversation_past_the_context_is_refused_before_generating(saved_model):
    chat = VideoChat(saved_model / "model", saved_model / "clip.mp4", num_frames=8, max_new_tokens=1020)
    with pytest.raises(DataError, match=r"new ones would pass the model's context of 1024 tokens"):
        chat.ask("what colour is the circle?")
    assert chat.history == []
