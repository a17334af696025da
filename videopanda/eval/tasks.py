"""The evaluation task registry: where each benchmark's files live, how its records look, how it is judged.

A task is a small declarative :class:`TaskSpec` (reference §7.1-7.5):

* the four zero-shot VideoQA sets of Video-ChatGPT / Video-LLaVA (``msvd_qa``, ``msrvtt_qa``, ``tgif_qa``,
  ``activitynet_qa``): ``test_q.json`` (``{video_name, question_id, question}``) and ``test_a.json``
  (``{answer, question_id, type}``) in ``<Set>_Zero_Shot_QA/``, judged for QA correctness (yes/no + 0-5);
* the Video-ChatGPT benchmark (``vcg_generic``: correctness, detail and context; ``vcg_temporal``;
  ``vcg_consistency``: two paraphrased questions per video), files ``Benchmarking_QA/*.json`` with
  ``{video_name, Q, A}`` or ``{video_name, Q1, Q2, A}``, scored 0-5 per dimension;
* ``synthetic_qa``: the set ``videopanda data synth`` writes, judged offline by normalised exact match.

``--data-root`` is the folder that holds the datasets' folders. Each task lists the layouts it accepts, tried in
order (the folder itself, or one or two levels up as in ``DATA_ROOT/eval/GPT_Zero_Shot_QA``), and the first whose
question file exists wins; ``--questions/--answers/--video-dir`` override them.

Answers are joined to questions by ``question_id``, never by list position (the reference's §8.35 bug); a file
without ids needs the explicit ``answers_by_position`` switch.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .records import RecordError, read_json

logger = logging.getLogger(__name__)

TaskKind = Literal["qa", "vcg", "vcg_consistency"]
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class Layout:
    """One accepted folder layout, relative to ``--data-root``.

    Attributes:
        root: the task folder under the data root (``""`` for the data root itself).
        questions: question file, relative to ``root``.
        video_dir: folder of the videos, relative to ``root``.
        answers: answer file relative to ``root`` (QA sets), or None when answers sit in the question records.
    """

    root: str
    questions: str
    video_dir: str
    answers: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark: its layouts, record format, video naming and judge dimensions.

    Attributes:
        name: registry key (``--task``).
        kind: ``qa`` (question + answer, yes/no judge), ``vcg`` (question + answer, 0-5 score),
            ``vcg_consistency`` (two questions, one answer, two predictions).
        layouts: accepted folder layouts, tried in order.
        dimensions: judge dimensions, one judge call per record and dimension.
        video_prefix: prepended to ``video_name`` before lookup (ActivityNet's ``v_``).
        extensions: file extensions tried in order after the exact name.
        default_profile: judge profile used when none is given (only for offline judges).
        description: one line for ``videopanda eval tasks``.
    """

    name: str
    kind: TaskKind
    layouts: tuple[Layout, ...]
    dimensions: tuple[str, ...]
    video_prefix: str = ""
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    default_profile: str | None = None
    description: str = ""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation item.

    Attributes:
        id: question id as a string (QA sets), or ``{video_name}_{k}`` for the benchmark (k counts the records of
            that video in file order, as the Video-ChatGPT judge names them).
        video_name: the name in the question file (without prefix or extension).
        questions: one question, or two for consistency.
        answer: the reference answer.
        meta: extra fields kept in the prediction row (e.g. the QA ``type``).
    """

    id: str
    video_name: str
    questions: tuple[str, ...]
    answer: str
    meta: dict = field(default_factory=dict)


@dataclass
class TaskData:
    """A task's records and where they came from."""

    spec: TaskSpec
    records: list[EvalRecord]
    video_dir: Path
    questions_file: Path
    answers_file: Path | None


def _qa_layouts(folder: str, video_dir: str) -> tuple[Layout, ...]:
    roots = (folder, f"GPT_Zero_Shot_QA/{folder}", f"eval/GPT_Zero_Shot_QA/{folder}")
    return tuple(Layout(root, "test_q.json", video_dir, "test_a.json") for root in roots)


def _vcg_layouts(file: str) -> tuple[Layout, ...]:
    roots = ("", "Video_5_Benchmark", "eval/Video_5_Benchmark")
    real = tuple(Layout(root, f"Benchmarking_QA/{file}", "Test_Videos") for root in roots)
    # The synthetic set of `videopanda data synth` keeps the same files under eval/vcg/.
    return (*real, Layout("", f"eval/vcg/{file}", "videos"))


_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "msvd_qa", "qa", _qa_layouts("MSVD_Zero_Shot_QA", "videos"), ("qa",),
        description="MSVD-QA zero-shot (Video-ChatGPT split): yes/no + score 0-5",
    ),
    TaskSpec(
        "msrvtt_qa", "qa", _qa_layouts("MSRVTT_Zero_Shot_QA", "videos/all"), ("qa",),
        description="MSRVTT-QA zero-shot: yes/no + score 0-5",
    ),
    TaskSpec(
        "tgif_qa", "qa", _qa_layouts("TGIF_Zero_Shot_QA", "mp4"), ("qa",),
        extensions=(".mp4", ".gif"),  # Video-LLaVA ships mp4 conversions; the original TGIF clips are GIFs
        description="TGIF-QA (FrameQA) zero-shot, mp4 or GIF clips: yes/no + score 0-5",
    ),
    TaskSpec(
        "activitynet_qa", "qa", _qa_layouts("Activitynet_Zero_Shot_QA", "all_test"), ("qa",),
        video_prefix="v_",  # the question file names videos without the v_ of the file names (reference §7.2)
        description="ActivityNet-QA zero-shot (video files named v_<id>): yes/no + score 0-5",
    ),
    TaskSpec(
        "vcg_generic", "vcg", _vcg_layouts("generic_qa.json"), ("correctness", "detail", "context"),
        description="Video-ChatGPT benchmark, generic questions: correctness, detail, context (0-5)",
    ),
    TaskSpec(
        "vcg_temporal", "vcg", _vcg_layouts("temporal_qa.json"), ("temporal",),
        description="Video-ChatGPT benchmark, temporal questions: temporal understanding (0-5)",
    ),
    TaskSpec(
        "vcg_consistency", "vcg_consistency", _vcg_layouts("consistency_qa.json"), ("consistency",),
        description="Video-ChatGPT benchmark, paired questions: consistency (0-5)",
    ),
    TaskSpec(
        "synthetic_qa", "qa", (Layout("", "eval/test_q.json", "videos", "eval/test_a.json"),), ("qa",),
        default_profile="exact",
        description="the synthetic set of `videopanda data synth`, judged offline by normalised exact match",
    ),
)  # fmt: skip

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _TASKS}


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; an unknown name raises with the list of known names."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def resolve_layout(spec: TaskSpec, data_root: str | Path) -> tuple[Path, Path, Path | None]:
    """``(questions_file, video_dir, answers_file)`` of the first layout whose question file exists.

    Raises:
        FileNotFoundError: no layout matches; the message lists every path tried.
    """
    data_root = Path(data_root)
    tried = []
    for layout in spec.layouts:
        root = data_root / layout.root
        questions = root / layout.questions
        tried.append(str(questions))
        if questions.is_file():
            answers = root / layout.answers if layout.answers else None
            return questions, root / layout.video_dir, answers
    raise FileNotFoundError(
        f"task {spec.name}: no question file under --data-root {data_root}; tried:\n  " + "\n  ".join(tried)
    )


def _need_str(value, path: Path, index: int, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(f"{path}: record {index}: {key!r} must be a string, got {value!r}")
    return str(value)


def _load_list(path: Path) -> list[dict]:
    data = read_json(path)
    if not isinstance(data, list):
        raise RecordError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise RecordError(f"{path}: record {i}: expected an object, got {item!r}")
    return data


def _load_qa(spec: TaskSpec, questions: Path, answers: Path, by_position: bool) -> list[EvalRecord]:
    qs = _load_list(questions)
    if not answers.is_file():
        raise FileNotFoundError(f"task {spec.name}: answer file {answers} not found")
    ans = _load_list(answers)
    for i, q in enumerate(qs):
        missing = [k for k in ("video_name", "question_id", "question") if k not in q]
        if missing:
            raise RecordError(f"{questions}: record {i}: missing key(s) {', '.join(missing)}")
    ids = [_need_str(q["question_id"], questions, i, "question_id") for i, q in enumerate(qs)]
    dups = [k for k, n in Counter(ids).items() if n > 1]
    if dups:
        raise RecordError(f"{questions}: duplicate question_id(s): {', '.join(dups[:5])}")
    for i, a in enumerate(ans):
        if "answer" not in a:
            raise RecordError(f"{answers}: record {i}: missing key 'answer'")

    if not ans:
        raise RecordError(f"{answers}: no answer records (an empty list) for the {len(qs)} questions of {questions}")
    with_ids = sum("question_id" in a for a in ans)
    if with_ids == 0:
        if not by_position:
            raise RecordError(
                f"{answers}: records have no question_id, so answers cannot be matched to questions by id; "
                "pass --answers-by-position to pair them by list position (the reference's behaviour)"
            )
        if len(ans) != len(qs):
            raise RecordError(f"{answers}: {len(ans)} answers for {len(qs)} questions in {questions}")
        logger.warning("%s: pairing answers with questions by list position (--answers-by-position)", answers)
        by_id = {key: (i, a) for i, (key, a) in enumerate(zip(ids, ans, strict=True))}  # id -> (answer index, answer)
    else:
        if with_ids != len(ans):
            raise RecordError(f"{answers}: {len(ans) - with_ids} of {len(ans)} records have no question_id")
        by_id = {}
        for i, a in enumerate(ans):
            key = _need_str(a["question_id"], answers, i, "question_id")
            if key in by_id:
                raise RecordError(f"{answers}: duplicate question_id {key!r}")
            by_id[key] = (i, a)
        missing = [k for k in ids if k not in by_id]
        if missing:
            raise RecordError(
                f"{answers}: no answer for {len(missing)} question id(s) of {questions}, e.g. {', '.join(missing[:5])}"
            )
        extra = len(by_id) - len(ids)
        if extra:
            logger.warning("%s: %d answers have no question in %s; they are ignored", answers, extra, questions)

    records = []
    for i, (q, key) in enumerate(zip(qs, ids, strict=True)):
        j, a = by_id[key]  # j: the answer's own index in its file, for error messages
        meta = {k: v for k, v in a.items() if k not in ("answer", "question_id")}
        records.append(
            EvalRecord(
                id=key,
                video_name=_need_str(q["video_name"], questions, i, "video_name"),
                questions=(_need_str(q["question"], questions, i, "question"),),
                answer=_need_str(a["answer"], answers, j, "answer"),
                meta=meta,
            )
        )
    return records


def _load_vcg(spec: TaskSpec, questions: Path) -> list[EvalRecord]:
    items = _load_list(questions)
    qkeys = ("Q1", "Q2") if spec.kind == "vcg_consistency" else ("Q",)
    seen: Counter[str] = Counter()
    records = []
    for i, item in enumerate(items):
        missing = [k for k in ("video_name", *qkeys, "A") if k not in item]
        if missing:
            raise RecordError(f"{questions}: record {i}: missing key(s) {', '.join(missing)}")
        name = _need_str(item["video_name"], questions, i, "video_name")
        records.append(
            EvalRecord(
                id=f"{name}_{seen[name]}",
                video_name=name,
                questions=tuple(_need_str(item[k], questions, i, k) for k in qkeys),
                answer=_need_str(item["A"], questions, i, "A"),
            )
        )
        seen[name] += 1
    return records


def load_task(
    spec: TaskSpec,
    data_root: str | Path | None,
    questions: str | Path | None = None,
    answers: str | Path | None = None,
    video_dir: str | Path | None = None,
    answers_by_position: bool = False,
) -> TaskData:
    """Read and validate a task's records.

    Args:
        spec: the task.
        data_root: folder holding the datasets (see the module docstring); may be None when all three of
            ``questions``, ``video_dir`` (and ``answers`` for QA sets) are given.
        questions, answers, video_dir: explicit paths that replace the layout's.
        answers_by_position: allow pairing an answer file without question ids by list position.

    Raises:
        FileNotFoundError: a file or folder is missing (paths tried are listed).
        RecordError: a record is malformed, an id is duplicated, or an answer is missing (names file and record).
    """
    q_file = Path(questions) if questions else None
    a_file = Path(answers) if answers else None
    v_dir = Path(video_dir) if video_dir else None
    if q_file is None or v_dir is None or (spec.kind == "qa" and a_file is None):
        if data_root is None:
            raise ValueError(f"task {spec.name}: give --data-root (or --questions, --video-dir and --answers)")
        lq, lv, la = resolve_layout(spec, data_root)
        q_file, v_dir, a_file = q_file or lq, v_dir or lv, a_file or la
    if not q_file.is_file():
        raise FileNotFoundError(f"task {spec.name}: question file {q_file} not found")
    if not v_dir.is_dir():
        raise FileNotFoundError(f"task {spec.name}: video folder {v_dir} not found")
    if spec.kind == "qa":
        records = _load_qa(spec, q_file, a_file, answers_by_position)
    else:
        records = _load_vcg(spec, q_file)
        a_file = None
    logger.info("task %s: %d records from %s (videos in %s)", spec.name, len(records), q_file, v_dir)
    return TaskData(spec=spec, records=records, video_dir=v_dir, questions_file=q_file, answers_file=a_file)


def video_candidates(spec: TaskSpec, video_dir: Path, video_name: str) -> list[Path]:
    """Paths tried for a record's video, in order: with the task's prefix first, then the bare name."""
    names = [spec.video_prefix + video_name] if spec.video_prefix else []
    if video_name not in names:
        names.append(video_name)
    out = []
    for name in names:
        if Path(name).suffix.lower() in spec.extensions:
            out.append(video_dir / name)  # the name already carries its extension
        out += [video_dir / (name + ext) for ext in spec.extensions]
    return out


def find_video(spec: TaskSpec, video_dir: Path, video_name: str) -> Path:
    """The video file of a record.

    Raises:
        FileNotFoundError: none of :func:`video_candidates` exists (the message names the tried paths).
    """
    candidates = video_candidates(spec, video_dir, video_name)
    for path in candidates:
        if path.is_file():
            return path
    shown = ", ".join(p.name for p in candidates)
    raise FileNotFoundError(f"video {video_name!r} not found in {video_dir} (tried {shown})")
