"""Dense teacher: what can distillation carry into the tiny model when the teacher knows something?

The tiny configs distil a randomly initialised teacher (there is no LanguageBind checkpoint offline), so the
learning check cannot show what the paper's distillation is for. This diagnostic trains a tiny teacher of the
LanguageBind-Video architecture (``videopanda.train.teacher``) on the synthetic training clips, with one label per
teacher patch and frame, and saves it in the LanguageBind layout, ready for ``distill.teacher_path``:

* colour of the shape covering the patch (or background), read from the pixels of the teacher canvas;
* its shape, and its direction of motion (or "static"), from the clip's scene;
* the clip's flash count and the colour that appears first, on every patch the object covers in some frame
  (trained there; scored on the patches the object covers in that frame).

Per-patch labels avoid pooling (a softmax average over a video's patches does not learn shape at all, see
``benchmarks/stab_probe.py --pool``). Held-out accuracy per label, over object patches, is printed as training
goes. A supervised teacher is not the paper's recipe (LanguageBind learned from video-text pairs): the point is
to measure whether a teacher's knowledge reaches the student within the learning check's budget::

    python benchmarks/dense_teacher.py --data runs/learning_check/data --out runs/dense_teacher --steps 2000
    python benchmarks/learning_check.py --only "Video-Panda tiny" --out runs/lc_dense \\
        --prealign distill.teacher_path=runs/dense_teacher --finetune distill.teacher_path=runs/dense_teacher
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from videopanda.data.synth import COLORS, COUNTS, DIRECTIONS, SHAPES, Scene, SynthConfig, build_scenes, scene_frames
from videopanda.utils.tables import curve_table

IGNORE = -100
LABELS = {  # label -> classes; colour and shape end with "background", direction with "static", "background"
    "colour": len(COLORS) + 1,
    "shape": len(SHAPES) + 1,
    "direction": len(DIRECTIONS) + 2,
    "count": len(COUNTS),
    "first colour": len(COLORS),
}
COLOR_TOLERANCE = 45  # max channel distance (0-255) of a pixel to a palette colour
MIN_COVER = 0.15  # share of a patch's pixels that makes it an object patch


def patch_labels(frames: torch.Tensor, scenes: list[Scene], patch: int) -> torch.Tensor:
    """Per-patch labels of normalised teacher frames.

    Args:
        frames: (N, F, 4, S, S) teacher frames (``preprocess_frames`` output) of the N scenes.
        scenes: the clips' scenes, for shapes, directions, counts and order.
        patch: the teacher's patch size.

    Returns:
        (N, F, G*G, len(LABELS)) class indices, ``IGNORE`` where a label does not apply.
    """
    from videopanda.data.transforms import unnormalize_rgb

    n, f = frames.shape[:2]
    rgb = unnormalize_rgb(frames) * 255  # (N, F, 3, S, S)
    palette = torch.tensor(list(COLORS.values()), dtype=torch.float32)  # (K, 3)
    cover = []  # per palette colour: (N, F, P) share of each patch's pixels near it, row-major patches
    for rgb_k in palette:
        near = ((rgb - rgb_k.view(1, 1, 3, 1, 1)).abs().amax(2) < COLOR_TOLERANCE).float()  # (N, F, S, S)
        cover.append(nn.functional.avg_pool2d(near.flatten(0, 1)[:, None], patch).view(n, f, -1))
    cover = torch.stack(cover, dim=2)  # (N, F, K, P)
    best, colour = cover.max(2)  # (N, F, P)
    on_object = best > MIN_COVER  # (N, F, P)
    names = list(COLORS)
    # per scene and palette colour: the shape and direction of the object of that colour (background elsewhere)
    shape_of = torch.full((n, len(COLORS)), len(SHAPES))
    direction_of = torch.full((n, len(COLORS)), len(DIRECTIONS) + 1)
    count = torch.full((n,), IGNORE)
    first = torch.full((n,), IGNORE)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            k = names.index(obj.color)
            shape_of[i, k] = SHAPES.index(obj.shape)
            direction_of[i, k] = DIRECTIONS.index(scene.answers["direction"]) if scene.kind == "motion" else len(
                DIRECTIONS)  # fmt: skip
        if "count" in scene.answers:
            count[i] = COUNTS.index(scene.answers["count"])
        if "order" in scene.answers:
            first[i] = names.index(scene.answers["order"])
    rows = torch.arange(n)[:, None, None].expand_as(colour)  # (N, F, P)
    ever = on_object.any(1, keepdim=True).expand_as(on_object)  # (N, F, P): the object covers it in some frame
    return torch.stack(
        [
            torch.where(on_object, colour, len(COLORS)),
            torch.where(on_object, shape_of[rows, colour], len(SHAPES)),
            torch.where(on_object, direction_of[rows, colour], len(DIRECTIONS) + 1),
            torch.where(ever, count[:, None, None].expand_as(colour), IGNORE),
            torch.where(ever, first[:, None, None].expand_as(colour), IGNORE),
        ],
        dim=-1,
    )  # (N, F, P, len(LABELS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/learning_check/data", help="a synthetic set (videopanda data synth)")
    parser.add_argument("--out", default="runs/dense_teacher", help="teacher folder to write (LanguageBind layout)")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (batch 32 clips)")
    parser.add_argument("--clips", type=int, default=3200, help="training clips loaded (10%% held out)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3, help="encoder layers (the features are those of layer -2)")
    parser.add_argument("--image-size", type=int, default=56, help="teacher canvas (the tiny configs use 56)")
    parser.add_argument(
        "--patch-size",
        type=int,
        default=14,
        help="teacher patch side; the grid (image size / patch size) must be the student's token grid",
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.clips < 10:
        parser.error(f"--clips {args.clips}: need at least 10 (10% are held out)")
    from videopanda.train.teacher import TeacherConfig, VideoTeacher, save_teacher

    try:
        cfg = TeacherConfig(width=args.width, num_layers=args.layers, num_heads=4, mlp_dim=2 * args.width,
                            image_size=args.image_size, patch_size=args.patch_size, num_frames=8)  # fmt: skip
    except ValueError as err:
        parser.error(f"teacher sizes: {err}")
    torch.manual_seed(args.seed)
    data = Path(args.data)
    scenes = build_scenes(SynthConfig.from_manifest(data))[0][: args.clips]
    frames = scene_frames(data, scenes, cfg.image_size, cfg.patch_size, cells=cfg.grid)  # (N, 8, 4, S, S)
    labels = patch_labels(frames, scenes, cfg.patch_size)  # (N, 8, P, len(LABELS))
    teacher = VideoTeacher(cfg).requires_grad_(True)
    heads = nn.ModuleList(nn.Linear(cfg.width, classes) for classes in LABELS.values())
    optimizer = torch.optim.AdamW([*teacher.parameters(), *heads.parameters()], lr=args.lr)
    n_train = int(len(scenes) * 0.9)

    def logits(idx: torch.Tensor) -> list[torch.Tensor]:
        feats = teacher.features(frames[idx])  # (B, 8, P, C)
        return [head(feats) for head in heads]

    rows, start = [], time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n_train, (32,))
        gold = labels[idx]  # (32, 8, P, len(LABELS))
        loss = sum(
            nn.functional.cross_entropy(out.flatten(0, 2), gold[..., k].flatten(), ignore_index=IGNORE)
            for k, out in enumerate(logits(idx))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                outs = logits(torch.arange(n_train, len(scenes)))
            gold = labels[n_train:]  # (held out, 8, P, len(LABELS))
            on_object = gold[..., 0] != len(COLORS)
            accs = []
            for k, (name, out) in enumerate(zip(LABELS, outs, strict=True)):
                keep = on_object & (gold[..., k] != IGNORE)
                if name == "direction":  # moving objects only: most object patches are static
                    keep &= gold[..., k] != len(DIRECTIONS)
                accs.append(float((out.argmax(-1) == gold[..., k])[keep].float().mean()))
            rows.append((step, loss.item(), accs, time.time() - start))
    save_teacher(teacher.requires_grad_(False), args.out)
    lines = [
        f"Dense teacher: {n_train} training / {len(scenes) - n_train} held-out clips, {cfg}",
        "",
        curve_table(list(LABELS), rows),
        "",
        "held-out accuracy over object patches (direction: of moving objects); chance: colour 1/6, shape 1/4, "
        "direction 1/4, count 1/3, first colour 1/2 (the two colours of the scene)",
        f"saved the teacher to {args.out} (distill.teacher_path)",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
