"""Chat about a video in the terminal, with tokens streamed as they are generated.

    videopanda chat --model runs/quickstart/finetune --video clip.mp4                   # interactive, multi-turn
    videopanda chat --model runs/quickstart/finetune --video clip.mp4 --question "What colour is the circle?"

The model folder is a ``save_pretrained`` folder with its tokenizer (what training writes). The video is decoded
and letterboxed once, exactly as in training (no flip); every answer is greedy by default and conditioned on the
whole conversation so far, with the video in the first turn (the training template, DECISIONS.md).
Type an empty line, ``exit`` or Ctrl-D to leave.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TextIO

import torch
from transformers import TextStreamer

from videopanda.data.config import DataConfig
from videopanda.data.conversation import build_inference_prompt
from videopanda.data.errors import DataError
from videopanda.data.processor import VideoPandaProcessor
from videopanda.data.tokenizer import load_tokenizer
from videopanda.model import load_model

logger = logging.getLogger(__name__)


class _StreamTo(TextStreamer):
    """A transformers streamer that writes finished words to a text stream instead of printing."""

    def __init__(self, tokenizer, out: TextIO) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.out = out

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.out.write(text + ("\n" if stream_end else ""))
        self.out.flush()


class VideoChat:
    """A multi-turn conversation about one video (or image, or none).

    Args:
        model_dir: a saved Video-Panda model folder that also holds its tokenizer.
        video: path of the video to talk about (or None for text only).
        num_frames: frames sampled from the video (the model's training setting; 8 in the paper).
        max_new_tokens: longest answer.
        image: an image instead of a video.
    """

    def __init__(
        self,
        model_dir: str | Path,
        video: str | Path | None = None,
        num_frames: int = 8,
        max_new_tokens: int = 256,
        image: str | Path | None = None,
    ) -> None:
        self.model = load_model(model_dir).eval()
        self.tokenizer = load_tokenizer(model_dir)
        stab = self.model.config.stab
        data_cfg = DataConfig(
            num_frames=num_frames,
            image_size=stab.image_size,
            patch_size=stab.patch_size,
            **DataConfig.trained_prompt(model_dir),  # the prompt the model was trained with
        )
        self.processor = VideoPandaProcessor(self.tokenizer, stab, data_cfg)
        self.max_new_tokens = max_new_tokens
        self.history: list[tuple[str, str]] = []
        self.visual: dict[str, torch.Tensor] = {}
        self.counts, self.modality = None, "text"
        if video is not None:
            frames, self.counts = self.processor.load_video(video)
            self.visual, self.modality = {"pixel_values_videos": frames[None]}, "video"
        elif image is not None:
            frames, self.counts = self.processor.load_image(image)
            self.visual, self.modality = {"pixel_values_images": frames}, "image"

    @torch.no_grad()
    def ask(self, question: str, stream: TextIO | None = None) -> str:
        """Answer ``question`` given the conversation so far; stream the words to ``stream`` if given."""
        data_cfg = self.processor.data_cfg
        ids = build_inference_prompt(
            self.tokenizer,
            question,
            data_cfg.template,
            self.counts,
            self.modality,
            self.history,
            data_cfg.system_prompt,
        )
        limit = self.model.config.text_config.max_position_embeddings
        if len(ids) + self.max_new_tokens > limit:
            raise DataError(
                f"the conversation is {len(ids)} tokens, and {self.max_new_tokens} new ones would pass the model's "
                f"context of {limit} tokens: lower --max-new-tokens or --num-frames, or start a new chat"
            )
        input_ids = torch.tensor([ids])
        streamer = _StreamTo(self.tokenizer, stream) if stream is not None else None
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            **self.visual,
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            streamer=streamer,
        )
        answer = self.tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True).strip()
        self.history.append((question, answer))
        return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videopanda chat", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="saved model folder (with its tokenizer)")
    media = parser.add_mutually_exclusive_group()
    media.add_argument("--video", help="video file (mp4/avi/mov/mkv/webm/gif) or a folder of frames")
    media.add_argument("--image", help="an image instead of a video")
    parser.add_argument("--question", help="ask one question, print the answer and exit")
    parser.add_argument("--num-frames", type=int, default=8, help="frames sampled from the video (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer (default 256)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        chat = VideoChat(args.model, args.video, args.num_frames, args.max_new_tokens, args.image)
    except (DataError, FileNotFoundError, OSError, ValueError) as err:
        sys.stderr.write(f"videopanda chat: {err}\n")
        return 2
    if args.question is not None:
        try:
            chat.ask(args.question, stream=sys.stdout)
        except (DataError, ValueError) as err:
            sys.stderr.write(f"videopanda chat: {err}\n")
            return 2
        return 0
    sys.stdout.write(f"Chatting about {args.video or args.image or 'nothing (text only)'}. Empty line to quit.\n")
    while True:
        try:
            question = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            sys.stdout.write("\n")
            return 0
        if question.lower() in ("", "exit", "quit"):
            return 0
        sys.stdout.write("panda> ")
        try:
            chat.ask(question, stream=sys.stdout)
        except (DataError, ValueError) as err:  # a bad question ends neither the chat nor its history
            sys.stdout.write(f"\n(not answered: {err})\n")
