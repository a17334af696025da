"""Synthetic VideoQA: moving, appearing and flashing coloured shapes, the project's embedded default data.

``videopanda data synth --out DIR --seed N`` writes, deterministically from the seed::

    DIR/videos/train_00000.mp4 ...       short h264 clips (16 frames at 8 fps by default) in five aspect ratios
    DIR/videos/eval_00000.mp4 ...        (16:9, 4:3, 1:1, 3:4, 9:16), plain or lightly textured backgrounds
    DIR/train.json                       LLaVA-format training records (captions and QA turns), media root videos/
    DIR/eval/test_q.json, test_a.json    zero-shot QA format (reference §6.1); answers carry their `type`
    DIR/eval/vcg/generic_qa.json         Video-ChatGPT benchmark format: {video_name, Q, A}
    DIR/eval/vcg/temporal_qa.json        {video_name, Q, A}
    DIR/eval/vcg/consistency_qa.json     {video_name, Q1, Q2, A}
    DIR/tokenizer/                       byte-level BPE trained on the corpus (vocab <= 1024), AutoTokenizer-loadable
    DIR/chance.json, DIR/README.md       chance level of every question type
    DIR/manifest.json                    seed, sizes and counts

Every clip is one of three scenes, and each question type needs either one frame or time:

=========  =======================================  ==========================================  =======
type       question                                 answers                                     chance
=========  =======================================  ==========================================  =======
color      What color is the {shape}?               red green blue yellow purple cyan           1/6
shape      What shape is the {color} object?        circle square triangle cross                1/4
direction  Which direction does the ... move?       left right up down                          1/4
order      Which appears first, the A or the B?     the colour of the one that appears first    1/2
count      How many times does the ... flash?       one two three                               1/3
=========  =======================================  ==========================================  =======

*motion* scenes (one shape crossing the frame) ask color, shape, direction; *order* scenes (a second shape appears
later) ask order, color, shape; *flash* scenes (a shape blinks 1-3 times) ask count, color, shape. The timing
of appearances and flashes is laid out on 8 slots of ``frames // 8`` frames, so the 8 frames the reference rule
picks (reference §6.4) always see it. The evaluation answers are balanced by construction (each type cycles
through its answers, independently of the words its question names), so the majority-answer rate equals the chance
level.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 180, 40),
    "blue": (40, 60, 225),
    "yellow": (235, 215, 30),
    "purple": (160, 40, 200),
    "cyan": (30, 200, 210),
}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down")
COUNTS = ("one", "two", "three")
ASPECTS: dict[str, tuple[int, int]] = {  # name -> (width, height); even sides for yuv420p
    "16:9": (160, 90),
    "4:3": (128, 96),
    "1:1": (112, 112),
    "3:4": (96, 128),
    "9:16": (90, 160),
}
SCENES = ("motion", "order", "flash")
QUESTION_TYPES = ("color", "shape", "direction", "order", "count")
TEMPORAL_TYPES = ("direction", "order", "count")
SLOTS = 8  # timeline granularity: one slot per frame the 8-frame sampler picks

QUESTIONS = {
    "color": "What color is the {shape}?",
    "shape": "What shape is the {color} object?",
    "direction": "Which direction does the {color} {shape} move?",
    "order": "Which appears first, the {color_a} {shape_a} or the {color_b} {shape_b}?",
    "count": "How many times does the {color} {shape} flash?",
}
PARAPHRASES = {  # the second question of the consistency benchmark
    "color": "Which color does the {shape} have?",
    "shape": "Which shape does the {color} object have?",
    "direction": "In which direction is the {color} {shape} moving?",
    "order": "Between the {color_a} {shape_a} and the {color_b} {shape_b}, which one is shown first?",
    "count": "How often does the {color} {shape} blink?",
}
CAPTION_QUESTIONS = ("Describe the video.", "What happens in the video?", "Give a short caption of the video.")


@dataclass
class SynthConfig:
    """Sizes of the synthetic set (defaults: 3200 training clips, 600 evaluation clips = 1200 questions)."""

    seed: int = 0
    train_videos: int = 3200
    # 600 clips = 1200 questions, 200-300 per type: a type's accuracy then moves by 3-3.5 points from sampling alone
    # (5-7 with the 150 clips used before 2026-12-03, which made a 30% shape look like 37-40% in single runs).
    eval_videos: int = 600
    frames: int = 16  # frames per clip (a multiple of SLOTS)
    fps: int = 8
    crf: int = 20  # x264 quality (lower = better)
    vocab_size: int = 1024  # tokenizer vocabulary bound (the tiny model has 1024 embeddings)
    workers: int = 1  # processes encoding videos
    # Relative frequency of the training scenes (motion, order, flash), as in SCENES (a data-mix ablation knob).
    # Evaluation scenes stay balanced whatever this says. Motion clips are three times as frequent as each other kind
    # by default: direction is the type the tiny model learns last (docs/train.md "The learning check").
    train_scene_weights: tuple[float, float, float] = (3.0, 1.0, 1.0)
    # The training question mix (see train_record): the share of records that open with a static question, and
    # the share of those static questions that ask the shape (the rest ask the colour). Shape is asked in 56% of
    # the records rather than 30%: it is the type the tiny model learns slowest, colour the fastest (docs/train.md
    # "The learning check").
    train_static_first: float = 0.7
    train_shape_share: float = 0.8

    @classmethod
    def from_manifest(cls, folder: str | Path) -> SynthConfig:
        """The config a synthetic set was written with (its ``manifest.json``), to rebuild its scenes."""
        path = Path(folder) / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; write the set with `videopanda data synth --out {folder}`")
        return cls(**json.loads(path.read_text())["config"])

    def __post_init__(self) -> None:
        self.train_scene_weights = tuple(self.train_scene_weights)  # JSON and argparse give a list
        if self.frames % SLOTS or self.frames < SLOTS:
            raise ValueError(f"frames={self.frames} must be a positive multiple of {SLOTS}")
        if self.train_videos < 1 or self.eval_videos < 1:
            raise ValueError("train_videos and eval_videos must be >= 1")
        if (
            len(self.train_scene_weights) != len(SCENES)
            or min(self.train_scene_weights) < 0
            or not sum(self.train_scene_weights)
        ):
            raise ValueError(
                f"train_scene_weights={self.train_scene_weights}: need {len(SCENES)} weights >= 0, not all 0"
            )
        for name in ("train_static_first", "train_shape_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be a share in [0, 1]")


@dataclass
class Obj:
    """A shape in a scene: its look, where it is in each slot, and when it is visible."""

    color: str
    shape: str
    radius: float  # pixels
    start: tuple[float, float]  # (x, y) centre at the first frame
    end: tuple[float, float]  # (x, y) centre at the last frame
    visible: list[bool] = field(default_factory=lambda: [True] * SLOTS)  # per slot


@dataclass
class Scene:
    """One clip's content and its ground truth."""

    name: str  # file stem
    kind: str  # motion | order | flash
    aspect: str
    background: dict
    objects: list[Obj]
    answers: dict  # question type -> one-word answer
    caption: str

    @property
    def size(self) -> tuple[int, int]:
        return ASPECTS[self.aspect]


# ------------------------------------------------------------------------------------------------- scenes
def _pick(rng: np.random.Generator, options, forced: int | None = None):
    return options[forced % len(options)] if forced is not None else options[int(rng.integers(len(options)))]


def _background(rng: np.random.Generator) -> dict:
    """Desaturated backgrounds, so a shape's colour is never the background's."""
    level = int(rng.choice([35, 70, 110, 190, 225]))
    kind = str(rng.choice(["plain", "plain", "stripes", "checker", "noise"]))
    return {
        "kind": kind,
        "level": level,
        "tint": [int(v) for v in rng.integers(-8, 9, size=3)],
        "period": int(rng.integers(10, 24)),
        "angle": float(rng.uniform(0, np.pi)),
        "amplitude": int(rng.integers(6, 14)),
        "seed": int(rng.integers(2**31)),
    }


def _flash_pattern(rng: np.random.Generator, count: int) -> list[bool]:
    """Slots where a flashing shape is visible: ``count`` separate runs, off at the first and last slot."""
    inner = SLOTS - 2
    while True:
        runs = [int(r) for r in rng.integers(1, 3, size=count)]  # each flash lasts 1-2 slots
        gaps = [1] * (count - 1)
        spare = inner - sum(runs) - sum(gaps)
        if spare >= 0:
            break
    lead = int(rng.integers(0, spare + 1))
    pattern = [False] * SLOTS
    pos = 1 + lead
    for k, run in enumerate(runs):
        for s in range(pos, pos + run):
            pattern[s] = True
        pos += run + (gaps[k] if k < len(gaps) else 0)
    return pattern


def make_scene(rng: np.random.Generator, name: str, kind: str, balance: dict[str, int] | None = None) -> Scene:
    """Draw one scene.

    ``balance`` (evaluation) replaces the random draws by given indices, ``{"aspect", "color", "shape",
    "temporal"} -> int`` (each taken modulo its number of options), so that the set can be balanced.
    """
    pick = (lambda key: None) if balance is None else balance.get
    aspect = _pick(rng, list(ASPECTS), pick("aspect"))
    w, h = ASPECTS[aspect]
    radius = 0.24 * min(w, h) * float(rng.uniform(0.9, 1.1))  # large: ~3 patches wide on the tiny 112 px canvas
    colors, shapes = list(COLORS), list(SHAPES)
    color = _pick(rng, colors, pick("color"))
    shape = _pick(rng, shapes, pick("shape"))
    margin = radius + 2

    def spot() -> tuple[float, float]:
        return float(rng.uniform(margin, w - margin)), float(rng.uniform(margin, h - margin))

    def between(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2

    if kind == "motion":
        direction = _pick(rng, DIRECTIONS, pick("temporal"))
        x, y = spot()
        lo_x, hi_x = margin, w - margin
        lo_y, hi_y = margin, h - margin
        # Cross most of the frame: from the first ~quarter to the last ~quarter of the travel axis.
        a = float(rng.uniform(0.0, 0.15))
        b = float(rng.uniform(0.85, 1.0))
        if direction in ("left", "right"):
            xs = (lo_x + a * (hi_x - lo_x), lo_x + b * (hi_x - lo_x))
            start, end = ((xs[0], y), (xs[1], y)) if direction == "right" else ((xs[1], y), (xs[0], y))
        else:
            ys = (lo_y + a * (hi_y - lo_y), lo_y + b * (hi_y - lo_y))
            start, end = ((x, ys[0]), (x, ys[1])) if direction == "down" else ((x, ys[1]), (x, ys[0]))
        objects = [Obj(color, shape, radius, start, end)]
        answers = {"color": color, "shape": shape, "direction": direction}
        moves = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}[direction]
        caption = f"A {color} {shape} moves {moves}."
    elif kind == "order":
        color_b = _pick(rng, [c for c in colors if c != color])
        shape_b = _pick(rng, [s for s in shapes if s != shape])
        radius *= 0.85  # two shapes side by side
        r2 = radius * 0.9
        margin = radius + 2
        # two spots that do not overlap: opposite halves of the long side
        if w >= h:
            pa = (between(margin, w / 2 - radius), between(margin, h - margin))
            pb = (between(w / 2 + r2, w - r2 - 2), between(r2 + 2, h - r2 - 2))
        else:
            pa = (between(margin, w - margin), between(margin, h / 2 - radius))
            pb = (between(r2 + 2, w - r2 - 2), between(h / 2 + r2, h - r2 - 2))
        if rng.random() < 0.5:
            pa, pb = pb, pa
        first_at = int(rng.integers(0, 2))
        second_at = int(rng.integers(3, 6))
        vis_first = [s >= first_at for s in range(SLOTS)]
        vis_second = [s >= second_at for s in range(SLOTS)]
        first = Obj(color, shape, radius, pa, pa, vis_first)
        second = Obj(color_b, shape_b, r2, pb, pb, vis_second)
        objects = [first, second]
        mention_first = bool(rng.random() < 0.5) if balance is None else bool(balance["temporal"] % 2)
        a_obj, b_obj = (first, second) if mention_first else (second, first)
        answers = {
            "order": color,
            "order_objects": [a_obj.color, a_obj.shape, b_obj.color, b_obj.shape],
            "color": color,
            "shape": shape,
        }
        caption = f"A {color} {shape} appears first, then a {color_b} {shape_b} appears."
    elif kind == "flash":
        count = _pick(rng, [1, 2, 3], pick("temporal"))
        pos = spot()
        objects = [Obj(color, shape, radius, pos, pos, _flash_pattern(rng, count))]
        answers = {"count": COUNTS[count - 1], "color": color, "shape": shape}
        caption = f"A {color} {shape} flashes {COUNTS[count - 1]} {'time' if count == 1 else 'times'}."
    else:
        raise ValueError(f"unknown scene kind {kind!r}")
    return Scene(name, kind, aspect, _background(rng), objects, answers, caption)


def questions_for(scene: Scene, subject: int = 0) -> dict[str, tuple[str, str, str]]:
    """Question type -> (question, paraphrase, answer) for every type the scene can answer.

    ``subject`` picks the object the colour and shape questions are about (scenes with two objects).
    """
    out = {}
    obj = scene.objects[subject]
    fill = {"color": obj.color, "shape": obj.shape}  # the words of the questions, and the static answers
    for qtype in ("color", "shape", "direction", "count"):
        if qtype in scene.answers:
            out[qtype] = (
                QUESTIONS[qtype].format(**fill),
                PARAPHRASES[qtype].format(**fill),
                fill.get(qtype, scene.answers[qtype]),
            )
    if "order" in scene.answers:
        ca, sa, cb, sb = scene.answers["order_objects"]
        fill2 = {"color_a": ca, "shape_a": sa, "color_b": cb, "shape_b": sb}
        answer = scene.answers["order"]
        out["order"] = (QUESTIONS["order"].format(**fill2), PARAPHRASES["order"].format(**fill2), answer)
    return out


# ---------------------------------------------------------------------------------------------- rendering
def render(scene: Scene, frames: int) -> np.ndarray:
    """Pixels of a scene: (frames, H, W, 3) uint8, every frame computed at once with broadcasting."""
    w, h = scene.size
    bg = scene.background
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)  # (H, W)
    base = np.full((h, w, 3), float(bg["level"]), dtype=np.float32) + np.asarray(bg["tint"], dtype=np.float32)
    if bg["kind"] == "stripes":
        phase = (xx * np.cos(bg["angle"]) + yy * np.sin(bg["angle"])) * (2 * np.pi / bg["period"])
        base += bg["amplitude"] * np.sin(phase)[..., None]
    elif bg["kind"] == "checker":
        cells = ((xx // bg["period"]).astype(int) + (yy // bg["period"]).astype(int)) % 2
        base += (bg["amplitude"] * (2 * cells - 1))[..., None]
    elif bg["kind"] == "noise":
        base += np.random.default_rng(bg["seed"]).normal(0, bg["amplitude"] / 2, size=(h, w, 1)).astype(np.float32)
    video = np.broadcast_to(base, (frames, h, w, 3)).copy()  # (T, H, W, 3)
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None, None]  # (T, 1, 1) position along the path
    slot = (np.arange(frames) * SLOTS) // frames  # (T,) slot of each frame
    for obj in scene.objects:
        cx = obj.start[0] + (obj.end[0] - obj.start[0]) * t  # (T, 1, 1)
        cy = obj.start[1] + (obj.end[1] - obj.start[1]) * t
        dx, dy = xx[None] - cx, yy[None] - cy  # (T, H, W)
        mask = _shape_mask(obj.shape, dx, dy, obj.radius)  # (T, H, W)
        mask &= np.asarray(obj.visible, dtype=bool)[slot][:, None, None]
        video[mask] = COLORS[obj.color]
    return np.clip(video, 0, 255).round().astype(np.uint8)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if shape == "triangle":  # apex up, base 2r wide
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "cross":
        arm = r / 2.5
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, crf: int = 20) -> None:
    """Encode (T, H, W, 3) uint8 frames as h264 mp4 with PyAV (single-threaded x264, CRF quality)."""
    import av

    _, h, w, _ = frames.shape
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _encode_job(job: tuple[Scene, str, int, int, int]) -> None:
    scene, path, frames, fps, crf = job
    write_mp4(path, render(scene, frames), fps, crf)


# ---------------------------------------------------------------------------------------------- the set
def _scene_rng(seed: int, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, {"train": 1, "eval": 2}[split], i])


def build_scenes(cfg: SynthConfig) -> tuple[list[Scene], list[Scene]]:
    """All training and evaluation scenes (no pixels yet)."""
    train = []
    weights = np.asarray(cfg.train_scene_weights, dtype=np.float64)
    for i in range(cfg.train_videos):
        rng = _scene_rng(cfg.seed, "train", i)
        train.append(make_scene(rng, f"train_{i:05d}", SCENES[int(rng.choice(len(SCENES), p=weights / weights.sum()))]))
    evals = []
    for i, balance in enumerate(_eval_balance(cfg)):
        evals.append(make_scene(_scene_rng(cfg.seed, "eval", i), f"eval_{i:05d}", SCENES[i % 3], balance))
    return train, evals


def scene_frames(folder: str | Path, scenes: list[Scene], image_size: int, patch_size: int, cells: int | None = None):
    """The 8 sampled, preprocessed frames of written clips, as training reads them (diagnostics and probes).

    Args:
        folder: the synthetic set.
        scenes: which clips (from :func:`build_scenes` of ``SynthConfig.from_manifest(folder)``).
        image_size, patch_size, cells: the canvas, as :func:`videopanda.data.transforms.preprocess_frames`.

    Returns:
        (len(scenes), 8, 4, image_size, image_size) float32 tensor.
    """
    import torch

    from .transforms import preprocess_frames
    from .video_io import read_video

    videos = Path(folder) / "videos"
    return torch.stack(
        [preprocess_frames(read_video(videos / f"{s.name}.mp4", SLOTS).frames, SLOTS, image_size, patch_size,
                           cells=cells) for s in scenes]
    )  # fmt: skip


def _eval_balance(cfg: SynthConfig) -> list[dict[str, int]]:
    """Answer indices of the evaluation scenes: every answer equally often, and no answer tied to the question's words.

    Scenes take the kinds in turn; scene ``b`` of a kind asks colour (``b`` even) or shape (``b`` odd). The asked
    attribute cycles with ``b // 2``; the temporal answer and the aspect follow seeded permutations of ``b``, and the
    attribute that is not asked is drawn at random. Cycling everything with ``b`` would tie answers to the colour
    and shape words of the questions (every "red circle" moving left, say), which lets a model that has learned
    nothing from the video score far from chance in either direction.
    """
    rng = np.random.default_rng([cfg.seed, 4])
    per_kind = [len(range(k, cfg.eval_videos, len(SCENES))) for k in range(len(SCENES))]
    temporal = [rng.permutation(n) for n in per_kind]
    aspect = [rng.permutation(n) for n in per_kind]
    out = []
    for i in range(cfg.eval_videos):
        kind, b = i % len(SCENES), i // len(SCENES)
        asked, other = ("color", "shape") if b % 2 == 0 else ("shape", "color")
        out.append(
            {
                "aspect": int(aspect[kind][b]),
                asked: b // 2,
                other: int(rng.integers(1 << 30)),
                "temporal": int(temporal[kind][b]),
            }
        )
    return out


def train_record(
    scene: Scene,
    rng: np.random.Generator,
    static_first: float = SynthConfig.train_static_first,
    shape_share: float = SynthConfig.train_shape_share,
) -> dict:
    """LLaVA-format record in which no turn's answer is written in an earlier turn, so every answer needs the video.

    Questions name the shape and colour of what they ask about ("What shape is the green object?", "Which direction
    does the green cross move?"), so a naive multi-turn record would let the model copy later answers from earlier
    questions instead of looking, and then fail on the single-question evaluation. Two layouts, so that every
    question type is also asked as the first question, as the evaluation asks it (with the temporal question always
    second, a model learns that a first answer is a colour or a shape):

    * static first (a share ``static_first`` of the records): a static question (the shape with probability
      ``shape_share``, the colour otherwise), then the scene's temporal question (its answer is never in the static
      turn);
    * temporal first: the scene's temporal question alone (a static question after it would be answered by its
      words).

    Then, 40% of the time, a caption (which may repeat what was asked). In two-object scenes the static question is
    about either object, so it says nothing about which came first.
    """
    qa = questions_for(scene, subject=int(rng.integers(len(scene.objects))))
    static = "shape" if rng.random() < shape_share else "color"
    temporal = next(t for t in TEMPORAL_TYPES if t in qa)
    turns: list[tuple[str, str]] = [(qa[temporal][0], qa[temporal][2])]
    if rng.random() < static_first:
        turns.insert(0, (qa[static][0], qa[static][2]))
    if rng.random() < 0.4:
        turns.append((_pick(rng, CAPTION_QUESTIONS), scene.caption))
    first_q = turns[0][0]
    turns[0] = ("<video>\n" + first_q if rng.random() < 0.5 else first_q + "\n<video>", turns[0][1])
    conversations = []
    for q, a in turns:
        conversations += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    record = {"id": scene.name, "video": scene.name + ".mp4", "conversations": conversations, "scene": scene.kind}
    if scene.kind == "motion":
        record["allow_flip"] = False  # a mirrored clip would move the other way than its answer says
    return record


def eval_files(scenes: list[Scene]) -> dict[str, list[dict]]:
    """The zero-shot QA and Video-ChatGPT files of the evaluation scenes."""
    questions, answers, generic, temporal, consistency = [], [], [], [], []
    for i, scene in enumerate(scenes):
        qa = questions_for(scene)
        temporal_type = next(t for t in TEMPORAL_TYPES if t in qa)
        single_type = ("color", "shape")[(i // 3) % 2]  # alternate (matches make_scene's balancing)
        for qtype in (single_type, temporal_type):
            q, _, a = qa[qtype]
            qid = f"{scene.name}_{qtype}"
            questions.append({"video_name": scene.name, "question_id": qid, "question": q})
            row = {"question_id": qid, "answer": a, "type": qtype}
            if qtype == "order":
                row["options"] = [scene.answers["order_objects"][0], scene.answers["order_objects"][2]]
            answers.append(row)
        generic.append({"video_name": scene.name, "Q": CAPTION_QUESTIONS[0], "A": scene.caption})
        q, _, a = qa[temporal_type]
        temporal.append({"video_name": scene.name, "Q": q, "A": a})
        q, q2, a = qa[single_type]
        consistency.append({"video_name": scene.name, "Q1": q, "Q2": q2, "A": a})
    return {
        "test_q.json": questions,
        "test_a.json": answers,
        "vcg/generic_qa.json": generic,
        "vcg/temporal_qa.json": temporal,
        "vcg/consistency_qa.json": consistency,
    }


def chance_levels(answers: list[dict]) -> dict[str, dict]:
    """Per question type: options, uniform chance, and the majority-answer rate in the evaluation set."""
    options = {
        "color": list(COLORS),
        "shape": list(SHAPES),
        "direction": list(DIRECTIONS),
        "order": ["(the colour of either shape named in the question)"],
        "count": list(COUNTS),
    }
    out = {}
    for qtype in QUESTION_TYPES:
        rows = [a for a in answers if a["type"] == qtype]
        # order: the baseline is always naming the first (or the second) shape of the question
        got = [a["options"].index(a["answer"]) if qtype == "order" else a["answer"] for a in rows]
        n_options = 2 if qtype == "order" else len(options[qtype])
        majority = max(got.count(v) for v in set(got)) / len(got) if got else 0.0
        out[qtype] = {
            "options": options[qtype],
            "chance": 1.0 / n_options,
            "majority": majority,
            "questions": len(got),
            "needs_time": qtype in TEMPORAL_TYPES,
        }
    return out


def corpus(records: list[dict], files: dict[str, list[dict]]) -> list[str]:
    """Texts to train the tokenizer on: whole conversations in the v1 template, plus every evaluation text."""
    from .conversation import SYSTEM_V1

    texts = []
    for rec in records:
        parts = [SYSTEM_V1]
        for turn in rec["conversations"]:
            value = turn["value"].replace("<video>", "").strip()
            parts.append(f"USER: {value}" if turn["from"] == "human" else f"ASSISTANT: {value}</s>")
        texts.append(" ".join(parts))
    for rows in files.values():
        for row in rows:
            texts += [str(v) for k, v in row.items() if k in ("question", "answer", "Q", "Q1", "Q2", "A")]
    for words in (COLORS, SHAPES, DIRECTIONS, COUNTS):
        texts += [f"ASSISTANT: {w}</s>" for w in words]
    return texts


def _readme(cfg: SynthConfig, chance: dict, counts: dict) -> str:
    rows = "\n".join(
        f"| {t} | {'yes' if c['needs_time'] else 'no'} | {', '.join(c['options'])} | {c['chance']:.3f} | "
        f"{c['majority']:.3f} | {c['questions']} |"
        for t, c in chance.items()
    )
    weights = " ".join(f"{w:g}" for w in cfg.train_scene_weights)
    return f"""# Synthetic VideoQA (videopanda data synth, seed {cfg.seed})

{counts["train_videos"]} training clips ({counts["train_turns"]} QA/caption turns) and
{counts["eval_videos"]} evaluation clips ({counts["eval_questions"]} questions), {cfg.frames} frames at {cfg.fps} fps,
h264, in five aspect ratios.
Scenes: a shape crossing the frame (motion), a second shape appearing later (order), a shape blinking 1-3 times
(flash). Answers are one word.

| type | needs time | answers | chance | majority in eval | questions |
|---|---|---|---|---|---|
{rows}

`chance` is one over the number of possible answers (for `order`: the two shapes the question names);
`majority` is the share of the most frequent answer in this evaluation set (for `order`: of always naming the
first, or always the second, shape of the question); the set is balanced by construction.
Files: `train.json` (LLaVA format, media root `videos/`), `eval/test_q.json` + `eval/test_a.json`
(zero-shot QA), `eval/vcg/*.json` (Video-ChatGPT benchmark format), `tokenizer/` (AutoTokenizer folder).
Regenerate with `videopanda data synth --out DIR --seed {cfg.seed} --train-videos {cfg.train_videos}
--eval-videos {cfg.eval_videos} --frames {cfg.frames} --fps {cfg.fps} --vocab-size {cfg.vocab_size}
--scene-weights {weights} --static-first {cfg.train_static_first:g} --shape-share {cfg.train_shape_share:g}`.
"""


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(out_dir: str | Path, cfg: SynthConfig | None = None, progress=None) -> dict:
    """Write the synthetic set to ``out_dir`` (see the module docstring). Returns the manifest.

    Args:
        out_dir: output folder (created; existing files of the same names are overwritten).
        cfg: sizes and seed.
        progress: optional callable ``(done, total)`` called as videos are written (for a CLI progress bar).
    """
    from .tokenizer import train_tokenizer

    cfg = cfg or SynthConfig()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, evals = build_scenes(cfg)
    records = [
        train_record(s, np.random.default_rng([cfg.seed, 3, i]), cfg.train_static_first, cfg.train_shape_share)
        for i, s in enumerate(train)
    ]
    files = eval_files(evals)
    jobs = [(s, str(out / "videos" / f"{s.name}.mp4"), cfg.frames, cfg.fps, cfg.crf) for s in train + evals]
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            for done, _ in enumerate(pool.map(_encode_job, jobs, chunksize=16), start=1):
                if progress:
                    progress(done, len(jobs))
    else:
        for done, job in enumerate(jobs, start=1):
            _encode_job(job)
            if progress:
                progress(done, len(jobs))
    _dump(out / "train.json", records)
    for rel, rows in files.items():
        _dump(out / "eval" / rel, rows)
    chance = chance_levels(files["test_a.json"])
    _dump(out / "chance.json", chance)
    tokenizer = train_tokenizer(corpus(records, files), out / "tokenizer", cfg.vocab_size)
    counts = {
        "train_videos": len(train),
        "train_turns": sum(len(r["conversations"]) // 2 for r in records),
        "eval_videos": len(evals),
        "eval_questions": len(files["test_q.json"]),
        "vocab_size": len(tokenizer),
    }
    manifest = {"generator": "videopanda data synth", "config": asdict(cfg), "counts": counts}
    manifest["config"].pop("workers")
    _dump(out / "manifest.json", manifest)
    (out / "README.md").write_text(_readme(cfg, chance, counts), encoding="utf-8")
    logger.info(
        "synthetic VideoQA: %d train + %d eval clips, %d questions, vocab %d -> %s (%.1f s)",
        len(train),
        len(evals),
        counts["eval_questions"],
        counts["vocab_size"],
        out,
        time.perf_counter() - t0,
    )
    return manifest
