"""STAB probe: can the STAB, on its own, see what a question type asks about?

Trains a pooling head over all of a video's STAB tokens plus a linear classifier (no LLM) to predict one question
type's answer of the synthetic set from the 8 sampled frames, and prints held-out accuracy against chance as
training goes. Two modes:

* fresh (default): a randomly initialised STAB of the model config trains with the probe. Answers "can this
  architecture learn the feature quickly when the loss reaches it directly?"
* ``--frozen MODEL_DIR``: the STAB of a trained model is frozen and only the probe trains (``--frozen random``: a
  frozen random STAB, the baseline). Answers "did end-to-end training put the feature into the STAB?"

This separates the two ways the learning check can fail (the STAB cannot learn the feature, or the end-to-end
signal through the LLM does not teach it). ``--type all`` trains one probe per question type at once, and
``--save DIR`` (fresh mode) writes the whole tiny model with the probe-trained STAB, loadable as
``model.init_from`` of ``tiny_prealign``: a diagnostic of whether the LLM can read a feature the STAB already has
(a supervised warm-up is not part of the paper's recipe, and not of the quickstart).

The head and the encoder can be swapped, to tell an encoder that cannot see a feature from a head that cannot read
it: ``--pool max`` takes the channel-wise maximum over the video's tokens instead of a learned-query softmax
average (``--pool mean``: a plain average, which the softmax is at init; ``--pool object``: the average over the
tokens that show a shape, found from the pixels, an oracle attention), ``--token-mlp`` adds a residual per-token
MLP before pooling, and ``--encoder patches`` (a bare patch embedding of the STAB's patch size and width, every
frame) or ``--encoder cnn`` (a three-layer strided CNN, every frame) replace the STAB. ``--encoder
stab-patches|stab-avg|stab-lsd`` keep only the STAB's first stages, every frame: its own patch embedding (with the
model's initialisation), then nothing, LSD's plain 2x2 average (its ``r`` term alone) or its LSD; they tell which
stage loses a feature::

    python benchmarks/stab_probe.py --type direction --steps 600
    python benchmarks/stab_probe.py --type direction --frozen runs/quickstart/finetune --steps 300
    python benchmarks/stab_probe.py --type shape --encoder patches --token-mlp --pool max --steps 900 --clips 1600
    python benchmarks/stab_probe.py --type shape --encoder stab-lsd --token-mlp --pool max --steps 3000 --clips 1600
    python benchmarks/stab_probe.py --type all --clips 3200 --steps 2400 --save runs/stab_warm
    python benchmarks/learning_check.py --only "Video-Panda tiny" --out runs/lc_warm \
        --prealign model.init_from=runs/stab_warm model.init_format=videopanda --finetune optim.epochs=1.8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from videopanda.data.synth import COLORS, COUNTS, DIRECTIONS, SHAPES
from videopanda.utils.tables import curve_table

REPO = Path(__file__).resolve().parents[1]
ANSWERS = {  # the answer vocabulary of each probed type, as the synthetic set defines it
    "color": tuple(COLORS),
    "shape": SHAPES,
    "direction": DIRECTIONS,
    "count": COUNTS,
    "order": tuple(COLORS),  # the colour of the object that appears first
}
IGNORE = -100  # label of a type the clip's scene does not answer
STAGES = {"stab-patches": "patches", "stab-avg": "avg", "stab-lsd": "lsd"}  # --encoder -> StabStages(upto=...)


class Probe(nn.Module):
    """Pooling over a video's tokens, then LayerNorm and a linear classifier.

    Args:
        width: token width C.
        classes: answers of the probed type.
        pool: ``attention`` (a learned query, softmax average), ``mean`` (a plain average), ``object`` (a plain
            average over the tokens that ``forward``'s ``select`` marks: an oracle attention) or ``max`` (channel-wise
            maximum).
        token_mlp: a residual two-layer MLP on every token before pooling.
    """

    def __init__(self, width: int, classes: int, pool: str = "attention", token_mlp: bool = False) -> None:
        super().__init__()
        self.pool = pool
        self.mlp = (
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
            if token_mlp
            else None
        )
        if pool == "attention":
            self.query = nn.Parameter(torch.randn(width) * 0.02)
            self.key = nn.Linear(width, width)
        elif pool not in ("mean", "object", "max"):
            raise ValueError(f"unknown pooling {pool!r}: 'attention', 'mean', 'object' or 'max'")
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, classes))

    def forward(
        self, tokens: torch.Tensor, video: torch.Tensor, videos: int, select: torch.Tensor | None = None
    ) -> torch.Tensor:
        """tokens (T, C) of all videos, video (T,) index of each token's video -> logits (videos, classes).

        ``select`` (T,) bool marks the tokens the ``object`` pooling averages (required by it, ignored otherwise).
        """
        if self.mlp is not None:
            tokens = tokens + self.mlp(tokens)  # (T, C)
        if self.pool == "max":
            start = tokens.new_full((videos, tokens.shape[1]), torch.finfo(tokens.dtype).min)
            pooled = start.scatter_reduce(0, video[:, None].expand_as(tokens), tokens, "amax")  # (videos, C)
            return self.head(pooled)
        if self.pool in ("mean", "object"):
            weight = tokens.new_ones(tokens.shape[0])  # (T,) equal weights
            if self.pool == "object":
                if select is None:
                    raise ValueError("object pooling needs the selected tokens (select)")
                weight = weight * select
        else:
            score = self.key(tokens) @ self.query / tokens.shape[1] ** 0.5  # (T,)
            weight = torch.exp(score - score.max())  # (T,) unnormalised softmax, normalised per video below
        norm = tokens.new_zeros(videos).index_add_(0, video, weight).clamp(min=1e-6)  # (videos,)
        pooled = tokens.new_zeros(videos, tokens.shape[1]).index_add_(0, video, tokens * weight[:, None])
        return self.head(pooled / norm[:, None])


class FrameEncoder(nn.Module):
    """A per-frame stand-in for the STAB: ``patches`` (one strided convolution: the STAB's patch embedding alone) or
    ``cnn`` (a 5x5 then two 3x3 stride-2 convolutions with ReLU, overlapping receptive fields); tokens = output
    pixels."""

    def __init__(self, kind: str, width: int, patch_size: int) -> None:
        super().__init__()
        if kind == "patches":
            self.net = nn.Conv2d(3, width, patch_size, stride=patch_size)
        elif kind != "cnn":
            raise ValueError(f"unknown frame encoder {kind!r}: 'patches' or 'cnn'")
        else:
            self.net = nn.Sequential(
                nn.Conv2d(3, width // 2, 5, stride=2, padding=2), nn.ReLU(),
                nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            )  # fmt: skip

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, F, 4, S, S) -> tokens (B*F*g*g, C) and each token's video index."""
        maps = self.net(frames[:, :, :3].flatten(0, 1))  # (B*F, C, g, g)
        return per_video(maps.flatten(2).transpose(1, 2), frames.shape[0])


class StabStages(nn.Module):
    """The STAB's first stages, every frame: its patch embedding, then ``patches`` (nothing), ``avg`` (a plain 2x2
    average: LSD's ``r`` term alone) or ``lsd`` (its LSD). The full canvas is pooled, letterbox padding included."""

    NAMES = {"patches": "patch embedding", "avg": "patch embedding + 2x2 average", "lsd": "patch embedding + LSD"}

    def __init__(self, stab: nn.Module, upto: str) -> None:
        super().__init__()
        if upto not in self.NAMES:
            raise ValueError(f"unknown STAB stage {upto!r}: one of {list(self.NAMES)}")
        self.patch_embedding, self.lsd, self.upto = stab.patch_embedding, stab.lsd, upto

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, F, 4, S, S) -> tokens (B*F*P, C) and each token's video index (P: tokens per frame)."""
        patches, _ = self.patch_embedding(frames.flatten(0, 1))  # (B*F, C, g, g)
        if self.upto == "lsd":
            return per_video(self.lsd(patches), frames.shape[0])  # LSD: (B*F, g*g/4, C)
        if self.upto == "avg":
            patches = nn.functional.avg_pool2d(patches, 2)  # (B*F, C, g/2, g/2)
        return per_video(patches.flatten(2).transpose(1, 2), frames.shape[0])


def object_tokens(frames: torch.Tensor, per_frame: int) -> torch.Tensor:
    """Which tokens of a full-canvas, row-major token grid show a shape: (B*F*P,) bool for frames (B, F, 4, S, S).

    A token counts when more than 5% of its window is saturated (max - min of RGB above 0.3 of the range): the
    synthetic shapes are saturated colours, backgrounds and the letterbox are not.
    """
    from videopanda.data.transforms import unnormalize_rgb

    grid = round(per_frame**0.5)
    if grid * grid != per_frame:
        raise ValueError(f"{per_frame} tokens per frame are not a square grid")
    rgb = unnormalize_rgb(frames)  # (B, F, 3, S, S) in [0, 1]
    saturated = (rgb.amax(2) - rgb.amin(2) > 0.3).to(frames.dtype)  # (B, F, S, S)
    share = nn.functional.adaptive_avg_pool2d(saturated.flatten(0, 1)[:, None], grid)  # (B*F, 1, g, g)
    return share.flatten() > 0.05


def per_video(tokens: torch.Tensor, videos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B*F, P, C) of every frame -> (B*F*P, C) and each token's video index (B*F*P,)."""
    flat = tokens.reshape(videos, -1, tokens.shape[-1])  # (B, F*P, C)
    video = torch.arange(videos, device=tokens.device).repeat_interleave(flat.shape[1])  # (B*F*P,)
    return flat.flatten(0, 1), video


def load_clips(data: Path, types: list[str], limit: int, image_size: int, patch_size: int):
    """Frames (N, 8, 4, S, S) and answer indices (N, len(types)) of the first ``limit`` training clips whose scene
    answers at least one of ``types`` (``IGNORE`` where it does not answer that type)."""
    from videopanda.data.synth import SynthConfig, build_scenes, scene_frames

    scenes = [s for s in build_scenes(SynthConfig.from_manifest(data))[0] if any(t in s.answers for t in types)]
    scenes = scenes[:limit]
    labels = torch.tensor(
        [[ANSWERS[t].index(s.answers[t]) if t in s.answers else IGNORE for t in types] for s in scenes]
    )  # (N, len(types))
    return scene_frames(data, scenes, image_size, patch_size), labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/learning_check/data", help="a synthetic set (videopanda data synth)")
    parser.add_argument("--type", choices=[*ANSWERS, "all"], default="direction", help="question type to probe")
    parser.add_argument("--model-config", default="configs/model/tiny.yaml", help="STAB config of a fresh probe")
    parser.add_argument("--frozen", default="", help="a trained model folder whose STAB is frozen, or 'random'")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps (batch 8)")
    parser.add_argument("--clips", type=int, default=1200, help="clips loaded (15%% held out)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="", help="fresh mode: save the model with the trained STAB here")
    parser.add_argument(
        "--pool", choices=["attention", "mean", "object", "max"], default="attention", help="how the probe pools"
    )
    parser.add_argument("--token-mlp", action="store_true", help="a per-token MLP before pooling")
    parser.add_argument("--encoder", choices=["stab", *STAGES, "patches", "cnn"], default="stab",
                        help="what makes the tokens: the STAB, its first stages (its patch embedding, then nothing, "
                             "a 2x2 average or its LSD), a fresh patch embedding, or a small CNN")  # fmt: skip
    args = parser.parse_args()
    if args.save and (args.frozen or args.encoder != "stab"):
        parser.error("--save keeps a probe-trained STAB; it needs the fresh mode (no --frozen) and --encoder stab")
    if args.pool == "object" and args.encoder == "stab":
        parser.error(
            "--pool object needs a full-canvas token grid: --encoder stab-patches|stab-avg|stab-lsd|patches|cnn"
        )
    if args.frozen and args.encoder in ("patches", "cnn"):
        parser.error("--frozen freezes a STAB; it needs --encoder stab or stab-*")
    types = list(ANSWERS) if args.type == "all" else [args.type]
    from videopanda.config import load_config
    from videopanda.model import ModelConfig, build_model, load_model

    torch.manual_seed(args.seed)
    if args.frozen and args.frozen != "random":
        model = load_model(args.frozen)
    else:  # built as in a fresh model, so the STAB gets the model's initialisation (zero-initialised branches)
        model = build_model(load_config(ModelConfig, REPO / args.model_config))
    stab = model.model.video_tokenizer
    if args.frozen:
        stab.requires_grad_(False).eval()
    cfg = stab.cfg
    frames, labels = load_clips(Path(args.data), types, args.clips, cfg.image_size, cfg.patch_size)
    n_train = int(len(labels) * 0.85)
    probes = nn.ModuleList(Probe(cfg.width, len(ANSWERS[t]), args.pool, args.token_mlp) for t in types)
    if args.encoder in STAGES:
        encoder = StabStages(stab, STAGES[args.encoder])
    else:
        encoder = stab if args.encoder == "stab" else FrameEncoder(args.encoder, cfg.width, cfg.patch_size)
    params = [p for p in [*encoder.parameters(), *probes.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)

    def logits(batch: torch.Tensor) -> list[torch.Tensor]:
        """One (B, classes) tensor per probed type."""
        if args.encoder == "stab":
            out = stab(batch)
            counts = out.frame_token_counts.view(batch.shape[0], -1).sum(1)  # (B,)
            tokens, video = out.tokens, torch.repeat_interleave(torch.arange(batch.shape[0]), counts)  # (T, C), (T,)
            select = None
        else:
            tokens, video = encoder(batch)
            per_frame = tokens.shape[0] // (batch.shape[0] * batch.shape[1])
            select = object_tokens(batch, per_frame) if args.pool == "object" else None
        return [probe(tokens, video, batch.shape[0], select) for probe in probes]

    def held_out() -> list[float]:
        """Held-out accuracy of each type, over the clips that answer it."""
        encoder.eval()
        with torch.no_grad():
            outs = [logits(frames[i : i + 32]) for i in range(n_train, len(labels), 32)]
        encoder.train(not args.frozen)
        accs = []
        for k in range(len(types)):
            pred, gold = torch.cat([o[k] for o in outs]).argmax(-1), labels[n_train:, k]
            accs.append(float((pred == gold)[gold != IGNORE].float().mean()))
        return accs

    rows, start = [], time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n_train, (8,))
        gold = labels[idx]  # (8, len(types))
        loss = sum(
            nn.functional.cross_entropy(out, gold[:, k], ignore_index=IGNORE)
            for k, out in enumerate(logits(frames[idx]))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 150 == 0 or step == args.steps:
            rows.append((step, loss.item(), held_out(), time.time() - start))
    mode = f"frozen STAB of {args.frozen}" if args.frozen else f"fresh STAB ({args.model_config})"
    if args.encoder in STAGES:
        mode = mode.replace("STAB", f"STAB cut after its {StabStages.NAMES[STAGES[args.encoder]]}", 1)
    elif args.encoder != "stab":
        mode = {"patches": "a bare patch embedding", "cnn": "a three-layer CNN"}[args.encoder] + " per frame"
    mode += f", {args.pool} pooling" + (" after a per-token MLP" if args.token_mlp else "")
    chance = ", ".join(f"{t} {100 / len(ANSWERS[t]):.1f}%" for t in types)
    lines = [
        f"STAB probe: {mode}, {n_train} train / {len(labels) - n_train} held-out clips, chance: {chance}",
        "",
        curve_table([f"held-out {t}" for t in types], rows),
    ]
    if args.save:
        from videopanda.data import load_tokenizer

        model.save_pretrained(args.save)
        load_tokenizer(Path(args.data) / "tokenizer").save_pretrained(args.save)
        lines.append(f"\nsaved the model with the probe-trained STAB (fresh LLM and projector) to {args.save}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
