"""Zero-shot inference: a task's questions -> ``predictions.jsonl``, batched, sharded and resumable.

For each record the video is found by the task's naming rules; the data pipeline's
:class:`~videopanda.data.VideoPandaProcessor` decodes it (same frame selection and letterbox as training, no flip)
and templates the question with the training conversation template (``v1``, the training system prompt; the
reference's inference-only template is not used); the batch is generated greedily (``do_sample=False``) with left
padding, while the next batch is prepared in a background thread.

Output (``--out DIR``):

* ``run.json``: the task, the model, the generation settings, the number of shards and the ordered list of
  question ids. Every shard process writes the same file; a later run into the same folder must match it.
* ``predictions.jsonl`` (one shard) or ``predictions.shard-K-of-N.jsonl`` (N shards, merged by
  :func:`merge_predictions` into ``predictions.jsonl`` in question order). One row per record, appended and
  flushed as soon as its batch is done::

      {"id": "...", "task": "msvd_qa", "video": "...", "question": "...", "answer": "...", "pred": "...",
       "error": null, "meta": {"type": ...}}

  (``question1/question2/pred1/pred2`` for ``vcg_consistency``). A video that cannot be found or read gives a
  row with ``"pred": null`` and the reason in ``"error"``; it is counted, never dropped.

Resume: a rerun skips the records already on disk. Batches are fixed slices of the shard's record list, and a
batch that was cut short is generated again as a whole (only its missing rows are written), so every record is
generated in the same batch as in an uninterrupted run, and the output is the same.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .records import JsonlAppender, RecordError, index_rows, read_json, read_jsonl, shard_items, write_json, write_jsonl
from .tasks import EvalRecord, TaskData, TaskSpec, find_video

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MANIFEST = "run.json"
PREDICTIONS = "predictions.jsonl"


@dataclass
class GenerationSettings:
    """How predictions are generated; everything here except ``batch_size``/``prefetch`` is in ``run.json``.

    Attributes:
        max_new_tokens: generation budget per answer (the reference's 1024).
        batch_size: records per ``generate`` call (left padded).
        prefetch: prepare the next batch (decode, preprocess, tokenize) in a thread while the model generates.
        template: conversation template (``v1`` = the training template).
        system_prompt: ``v1`` prompts start with Vicuna's system prompt (as the model was trained).
        num_frames: frames per video.
        dtype: model dtype name (``float32``, ``bfloat16``, ``float16``).
    """

    max_new_tokens: int = 1024
    batch_size: int = 8
    prefetch: bool = True
    template: str = "v1"
    system_prompt: bool = True
    num_frames: int = 8
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for key in ("max_new_tokens", "batch_size", "num_frames"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")

    def recorded(self) -> dict:
        """The settings that change the predictions (kept in ``run.json`` and checked on resume)."""
        d = asdict(self)
        d.pop("batch_size")
        d.pop("prefetch")
        d["do_sample"] = False
        return d


@dataclass
class GenerateSummary:
    """What one ``generate`` invocation did."""

    records: int = 0  # records of this shard
    already_done: int = 0
    written: int = 0
    errors: int = 0  # rows written with an error (unreadable or missing video)
    seconds: float = 0.0


def shard_file(out_dir: str | Path, num_shards: int, shard: int) -> Path:
    """Where shard ``shard`` of ``num_shards`` writes its predictions."""
    out_dir = Path(out_dir)
    if num_shards == 1:
        return out_dir / PREDICTIONS
    return out_dir / f"predictions.shard-{shard:03d}-of-{num_shards:03d}.jsonl"


def prediction_row(spec: TaskSpec, record: EvalRecord, preds: list[str] | None, error: str | None) -> dict:
    """The output row of a record: its predictions, or ``pred: null`` and the error."""
    row: dict = {"id": record.id, "task": spec.name, "video": record.video_name}
    if spec.kind == "vcg_consistency":
        row.update(question1=record.questions[0], question2=record.questions[1], answer=record.answer)
        row.update(pred1=preds[0] if preds else None, pred2=preds[1] if preds else None)
    else:
        row.update(question=record.questions[0], answer=record.answer, pred=preds[0] if preds else None)
    if record.meta:
        row["meta"] = record.meta
    row["error"] = error
    return row


def write_manifest(out_dir: Path, data: TaskData, records: list[EvalRecord], model: str, settings: GenerationSettings,
                   num_shards: int) -> dict:  # fmt: skip
    """Write ``run.json``, or check that the existing one describes the same run.

    Raises:
        RecordError: the folder holds a run of another task, model, record list, settings or shard count.
    """
    manifest = {
        "task": data.spec.name,
        "model": model,
        "questions_file": str(data.questions_file),
        "answers_file": str(data.answers_file) if data.answers_file else None,
        "video_dir": str(data.video_dir),
        "generation": settings.recorded(),
        "num_shards": num_shards,
        "num_records": len(records),
        "ids": [r.id for r in records],
    }
    path = out_dir / MANIFEST
    if path.is_file():
        old = read_json(path)
        for key in ("task", "model", "generation", "num_shards", "ids"):
            if old.get(key) != manifest[key]:
                what = "the record list" if key == "ids" else f"{key} {old.get(key)!r} (now {manifest[key]!r})"
                raise RecordError(f"{path}: this folder holds another run ({what}); use another --out")
        return old
    write_json(path, manifest)
    return manifest


def _decode_text(tokenizer, ids: torch.Tensor) -> list[str]:
    """Generated ids (B, n) -> answers, special tokens skipped, stripped, a trailing ``</s>`` removed."""
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    out = []
    for text in texts:
        text = text.strip()
        if text.endswith("</s>"):
            text = text[: -len("</s>")].rstrip()
        out.append(text)
    return out


@dataclass
class PreparedBatch:
    """A batch ready for ``generate``: model inputs of its readable records, error messages of the others."""

    records: list[EvalRecord]
    ok: list[EvalRecord]  # records whose questions are in ``inputs``, in order (two rows each for consistency)
    inputs: dict | None
    errors: dict[str, str]


class Generator:
    """Runs a Video-Panda model over records: find videos, build inputs with the processor, generate greedily.

    Args:
        model: a :class:`~videopanda.model.VideoPandaForConditionalGeneration` in eval mode on ``device``.
        processor: :class:`videopanda.data.VideoPandaProcessor` (questions + video paths -> model inputs; training
            template, no flip).
        settings: generation settings.
        device: where the model is (``cpu``, ``cuda``, ``cuda:1``, ...).
    """

    def __init__(self, model, processor, settings: GenerationSettings, device: str) -> None:
        self.model = model
        self.processor = processor
        # Inputs are prepared in a background thread with the processor's tokenizer; answers are decoded here with
        # a copy, so the two threads never share one Rust tokenizer.
        self.tokenizer = copy.deepcopy(processor.tokenizer)
        self.settings = settings
        self.device = device

    def prepare(self, spec: TaskSpec, video_dir: Path, records: list[EvalRecord]) -> PreparedBatch:
        """Find, decode and tokenize a batch; a missing or unreadable video becomes that record's error."""
        from videopanda.data.errors import DataError

        errors: dict[str, str] = {}
        paths: dict[str, Path] = {}
        for r in records:
            try:
                paths[r.id] = find_video(spec, video_dir, r.video_name)
            except FileNotFoundError as err:
                errors[r.id] = f"VideoNotFound: {err}"
        ok = [r for r in records if r.id in paths]

        def build(batch: list[EvalRecord]) -> dict:
            questions = [q for r in batch for q in r.questions]
            videos = [paths[r.id] for r in batch for _ in r.questions]
            return self.processor(questions, videos, padding_side="left")

        inputs = None
        if ok:
            try:
                inputs = build(ok)
            except DataError:
                # Some record failed (an unreadable video, most often): find which, one by one, then batch the rest.
                for r in ok:
                    try:
                        build([r])
                    except DataError as err:
                        errors[r.id] = f"{type(err).__name__}: {err}"
                ok = [r for r in ok if r.id not in errors]
                inputs = build(ok) if ok else None
        if inputs is not None:  # a prompt leaving no room for the answer in the context is that record's error
            limit = self.model.config.text_config.max_position_embeddings
            budget = limit - self.settings.max_new_tokens
            owners = [r for r in ok for _ in r.questions]  # one row per question, in build() order
            for r, n in zip(owners, inputs["attention_mask"].sum(1).tolist(), strict=True):
                if n > budget:
                    errors[r.id] = (
                        f"ContextTooLong: the prompt is {n} tokens and max_new_tokens={self.settings.max_new_tokens}; "
                        f"the LLM's context is {limit} (use fewer frames or a smaller max_new_tokens)"
                    )
            if any(r.id in errors for r in ok):
                ok = [r for r in ok if r.id not in errors]
                inputs = build(ok) if ok else None
        return PreparedBatch(records=records, ok=ok, inputs=inputs, errors=errors)

    def answer(self, inputs: dict) -> list[str]:
        """Greedy answers for one left-padded batch of processor outputs."""
        import torch  # here, so that merging and judging never import torch

        dtype = getattr(torch, self.settings.dtype)
        batch = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(dtype)
                batch[key] = value
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                do_sample=False,
                num_beams=1,
                max_new_tokens=self.settings.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )  # (B, S + n)
        return _decode_text(self.tokenizer, out[:, batch["input_ids"].shape[1] :])

    def run(self, spec: TaskSpec, prepared: PreparedBatch) -> list[dict]:
        """Rows of a prepared batch, in record order."""
        preds: dict[str, list[str]] = {}
        if prepared.ok:
            answers = iter(self.answer(prepared.inputs))
            preds = {r.id: [next(answers) for _ in r.questions] for r in prepared.ok}
        return [prediction_row(spec, r, preds.get(r.id), prepared.errors.get(r.id)) for r in prepared.records]


def _prefetch(prefetch: bool, prepare: Callable, batches: list[list[EvalRecord]]) -> Iterator[PreparedBatch]:
    """Prepared batches in order; with ``prefetch`` the next one is prepared in a thread during generation."""
    if not prefetch:
        for batch in batches:
            yield prepare(batch)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="prepare") as pool:
        pending: Future | None = pool.submit(prepare, batches[0]) if batches else None
        for i in range(len(batches)):
            current = pending.result()
            pending = pool.submit(prepare, batches[i + 1]) if i + 1 < len(batches) else None
            yield current


def generate_predictions(
    generator: Generator,
    data: TaskData,
    out_dir: str | Path,
    model_name: str,
    num_shards: int = 1,
    shard: int = 0,
    limit: int | None = None,
    on_row: Callable[[dict], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> GenerateSummary:
    """Generate (or finish generating) the predictions of one shard of a task.

    Args:
        generator: the model wrapper.
        data: the task's records (from :func:`videopanda.eval.tasks.load_task`).
        out_dir: output folder (``run.json`` + predictions).
        model_name: recorded in ``run.json`` (the model folder).
        num_shards, shard: this process handles the ``shard``-th of ``num_shards`` contiguous chunks.
        limit: only the first ``limit`` records of the task (smoke runs).
        on_row: called after each row is written (progress bars).
        on_start: called with the number of records already on disk, before generating.

    Raises:
        RecordError: the output folder holds another run, or its predictions file is corrupt.
    """
    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = data.records[:limit] if limit is not None else data.records
    write_manifest(out_dir, data, records, model_name, generator.settings, num_shards)
    mine = shard_items(records, num_shards, shard)
    path = shard_file(out_dir, num_shards, shard)
    done = index_rows(read_jsonl(path), lambda r: str(r.get("id")), str(path))
    foreign = set(done) - {r.id for r in mine}
    if foreign:
        raise RecordError(f"{path}: {len(foreign)} rows are not records of this shard (e.g. {sorted(foreign)[0]!r})")
    summary = GenerateSummary(records=len(mine), already_done=len(done))
    bs = generator.settings.batch_size
    batches = [mine[i : i + bs] for i in range(0, len(mine), bs)]
    todo = [b for b in batches if any(r.id not in done for r in b)]
    if on_start is not None:
        on_start(len(done))
    if done:
        logger.info("%s: %d of %d records already done; %d batches to go", path, len(done), len(mine), len(todo))
    prepare = lambda batch: generator.prepare(data.spec, data.video_dir, batch)  # noqa: E731
    with JsonlAppender(path) as out:
        for prepared in _prefetch(generator.settings.prefetch, prepare, todo):
            for row in generator.run(data.spec, prepared):
                if row["id"] in done:
                    continue
                out.append(row)
                summary.written += 1
                if row["error"]:
                    summary.errors += 1
                    logger.warning("record %s: %s", row["id"], row["error"])
                if on_row is not None:
                    on_row(row)
    summary.seconds = time.monotonic() - start
    return summary


def merge_predictions(out_dir: str | Path, allow_missing: bool = False) -> tuple[Path, dict]:
    """Merge the shard files of ``out_dir`` into ``predictions.jsonl``, in the task's question order.

    Returns:
        ``(path, counts)`` with ``records``, ``written``, ``errors`` and ``missing``.

    Raises:
        RecordError: a shard file is absent, an id appears twice or is not in the task, or records are missing
            (unless ``allow_missing``).
    """
    out_dir = Path(out_dir)
    manifest = read_json(out_dir / MANIFEST)
    n = int(manifest["num_shards"])
    files = [shard_file(out_dir, n, k) for k in range(n)]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise RecordError(f"{out_dir}: shard file(s) missing: {', '.join(absent)} (run those shards first)")
    by_id: dict[str, dict] = {}
    for f in files:
        for row in read_jsonl(f):
            key = str(row.get("id"))
            if key in by_id:
                raise RecordError(f"{f}: record {key!r} also appears in another shard")
            by_id[key] = row
    expected = [str(i) for i in manifest["ids"]]
    extra = set(by_id) - set(expected)
    if extra:
        raise RecordError(f"{out_dir}: {len(extra)} rows are not records of the task (e.g. {sorted(extra)[0]!r})")
    missing = [i for i in expected if i not in by_id]
    if missing and not allow_missing:
        raise RecordError(
            f"{out_dir}: {len(missing)} of {len(expected)} records have no prediction yet (e.g. {missing[0]!r}); "
            "rerun the unfinished shards, or merge anyway with --allow-missing"
        )
    rows = [by_id[i] for i in expected if i in by_id]
    target = out_dir / PREDICTIONS
    if n > 1:
        write_jsonl(target, rows)
    counts = {
        "records": len(expected),
        "written": len(rows),
        "errors": sum(bool(r.get("error")) for r in rows),
        "missing": len(missing),
    }
    return target, counts
