"""Judge a predictions file: one judgment per (record, dimension), appended to ``judgments.jsonl`` as it arrives.

A rerun reads the judgments already on disk and asks the judge only for the missing (id, dimension) pairs, so a
killed or failed run never pays twice for a finished record. Rows of one file must come from one judge: the
profile, model, revision, temperature and prompt version of every existing row are checked against this run's,
and a mismatch is an error (judge into another folder instead).

Row ``status``:

* ``ok``: the reply parsed; ``pred`` (QA only) and ``score`` are set;
* ``unparseable``: the reply did not parse; the raw ``reply`` and the ``parse_error`` are kept, and the row counts
  as judged-but-unparseable (it was paid for; it is not asked again);
* ``prediction_error``: generation failed for this record (e.g. an unreadable video); no judge call is made.

A request that fails for good (retries exhausted) writes no row: it is reported, listed in
``judge_failures.jsonl``, and asked again by the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..records import JsonlAppender, RecordError, index_rows, read_jsonl, write_jsonl
from ..tasks import TaskSpec
from .client import ChatClient, JudgeFatalError, JudgeRequestError, redact_url
from .exact import EXACT_VERSION, exact_match
from .parse import ReplyParseError, parse_reply
from .profiles import JudgeProfile
from .prompts import PromptTemplate

logger = logging.getLogger(__name__)

IDENTITY_KEYS = ("judge_profile", "judge_model", "judge_model_revision", "temperature", "prompt", "prompt_sha256")


@dataclass(frozen=True)
class JudgeItem:
    """One judge call to make: a prediction record under one dimension."""

    id: str
    dimension: str
    values: dict[str, str]  # the template's fields
    prediction_error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.dimension)


@dataclass
class JudgeSummary:
    """What one ``judge`` invocation did."""

    items: int = 0  # (record, dimension) pairs in the predictions
    already_done: int = 0  # found in judgments.jsonl, not asked again
    ok: int = 0
    unparseable: int = 0
    prediction_errors: int = 0
    failed: list[dict] = field(default_factory=list)  # {id, dimension, error}, no row written
    calls: int = 0  # HTTP attempts, retries included
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.ok + self.unparseable + self.prediction_errors


def prediction_fields(spec: TaskSpec, row: dict, source: str) -> dict[str, str]:
    """The prompt fields of a prediction row (``question/answer/pred`` or the two-question consistency form)."""
    keys = ("question1", "question2", "answer", "pred1", "pred2") if spec.kind == "vcg_consistency" else (
        "question", "answer", "pred",
    )  # fmt: skip
    if row.get("error"):
        return {k: "" if row.get(k) is None else str(row[k]) for k in keys}
    missing = [k for k in keys if row.get(k) is None]
    if missing:
        raise RecordError(f"{source}: record {row.get('id')!r}: missing {', '.join(missing)} for task {spec.name}")
    return {k: str(row[k]) for k in keys}


def build_items(spec: TaskSpec, predictions: list[dict], source: str) -> list[JudgeItem]:
    """Judge items of every prediction row and dimension, in file order.

    Raises:
        RecordError: a row has no id, ids repeat, a row belongs to another task, or a field is missing.
    """
    for i, row in enumerate(predictions):
        if "id" not in row:
            raise RecordError(f"{source}: row {i + 1} has no 'id'")
        if row.get("task", spec.name) != spec.name:
            raise RecordError(f"{source}: record {row['id']!r} is from task {row['task']!r}, not {spec.name!r}")
    index_rows(predictions, lambda r: str(r["id"]), source)
    items = []
    for row in predictions:
        values = prediction_fields(spec, row, source)
        error = str(row["error"]) if row.get("error") else None
        items += [JudgeItem(str(row["id"]), dim, values, error) for dim in spec.dimensions]
    return items


class Judge:
    """Turns :class:`JudgeItem` s into judgment rows with one profile, its templates and (for API judges) a client.

    Args:
        task: the task (recorded in rows).
        profile: the judge profile.
        templates: prompt template per dimension (ignored by the ``exact`` judge).
        client: chat client; None for the ``exact`` judge.
    """

    def __init__(
        self,
        task: TaskSpec,
        profile: JudgeProfile,
        templates: dict[str, PromptTemplate],
        client: ChatClient | None = None,
    ) -> None:
        if profile.is_offline:
            if task.kind != "qa":
                raise ValueError(
                    f"the exact judge scores QA tasks only; task {task.name} needs an LLM judge (dimensions "
                    f"{', '.join(task.dimensions)})"
                )
        elif client is None:
            raise ValueError(f"judge profile {profile.name} needs a chat client")
        missing = [d for d in task.dimensions if d not in templates]
        if missing and not profile.is_offline:
            raise ValueError(f"no prompt template for dimension(s) {missing}")
        self.task = task
        self.profile = profile
        self.templates = templates
        self.client = client

    def identity(self, dimension: str) -> dict:
        """The fields that say which judge produced a row of ``dimension``."""
        p = self.profile
        if p.is_offline:
            prompt, sha = EXACT_VERSION, None
        else:
            prompt, sha = self.templates[dimension].tag, self.templates[dimension].sha256
        return {
            "judge_profile": p.name,
            "judge_model": p.model,
            "judge_model_revision": p.model_revision,
            "temperature": p.temperature,
            "prompt": prompt,
            "prompt_sha256": sha,
        }

    def _row(self, item: JudgeItem, status: str, **fields) -> dict:
        base = {"id": item.id, "task": self.task.name, "dimension": item.dimension, "status": status}
        base.update(fields)
        base.update(self.identity(item.dimension))
        base["judge_base_url"] = None if self.profile.is_offline else redact_url(self.client_base_url)
        return base

    @property
    def client_base_url(self) -> str | None:
        return getattr(self.client, "base_url", None) or self.profile.base_url

    def _reference(self, item: JudgeItem) -> dict:
        v = item.values
        pred = [v["pred1"], v["pred2"]] if "pred1" in v else v.get("pred")
        return {"answer": v.get("answer"), "prediction": pred}

    async def judge(self, item: JudgeItem) -> dict:
        """The judgment row of one item (raises :class:`JudgeRequestError` / :class:`JudgeFatalError`)."""
        if item.prediction_error is not None:
            return self._row(item, "prediction_error", error=item.prediction_error, pred=None, score=None)
        if self.profile.is_offline:
            parsed = exact_match(item.values["answer"], item.values["pred"])
            return self._row(item, "ok", pred=parsed.pred, score=parsed.score, **self._reference(item))
        template = self.templates[item.dimension]
        result = await self.client.complete(template.render(item.values))
        common = {
            "reply": result.content,
            "judge_response_model": result.response_model,
            "system_fingerprint": result.system_fingerprint,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "attempts": result.attempts,
            **self._reference(item),
        }
        try:
            parsed = parse_reply(result.content, template.reply)
        except ReplyParseError as err:
            return self._row(item, "unparseable", pred=None, score=None, parse_error=str(err), **common)
        return self._row(
            item, "ok", pred=parsed.pred, score=parsed.score, score_clamped=parsed.clamped, parse_error=None, **common
        )


def check_existing(rows: list[dict], judge: Judge, source: str) -> dict[tuple[str, str], dict]:
    """Existing judgments by (id, dimension), after checking they come from this judge.

    Raises:
        RecordError: duplicate keys, or a row produced by another judge / prompt version.
    """
    for i, row in enumerate(rows):
        if "id" not in row or "dimension" not in row:
            raise RecordError(f"{source}: row {i + 1} has no 'id' or 'dimension'")
        if row["dimension"] not in judge.task.dimensions:
            raise RecordError(f"{source}: row {i + 1}: dimension {row['dimension']!r} is not one of task "
                              f"{judge.task.name}'s {list(judge.task.dimensions)}")  # fmt: skip
        want = judge.identity(row["dimension"])
        got = {k: row.get(k) for k in IDENTITY_KEYS}
        if got != want:
            diff = ", ".join(f"{k}: {got[k]!r} on disk vs {want[k]!r} now" for k in IDENTITY_KEYS if got[k] != want[k])
            raise RecordError(
                f"{source}: holds judgments by another judge or prompt ({diff}); judge into another folder (--out)"
            )
    return index_rows(rows, lambda r: (str(r["id"]), r["dimension"]), source)


def _judged_another_prediction(row: dict, item: JudgeItem, judge: Judge) -> bool:
    """Whether an existing judgment row was made for another prediction (or answer) than ``item`` holds."""
    if (row.get("status") == "prediction_error") != (item.prediction_error is not None):
        return True
    if item.prediction_error is not None:
        return False
    reference = judge._reference(item)
    return any(key in row and row[key] != value for key, value in reference.items())


async def run_judge(
    items: list[JudgeItem],
    judge: Judge,
    out_path: str | Path,
    concurrency: int,
    on_row: Callable[[dict], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> JudgeSummary:
    """Judge every item not yet in ``out_path``, appending rows as they complete.

    Args:
        items: from :func:`build_items`.
        judge: the judge.
        out_path: ``judgments.jsonl`` (appended; created if missing).
        concurrency: requests in flight at once.
        on_row: called after each row is written (progress bars).
        on_start: called with the number of items already on disk, before any request.

    Returns:
        The summary; ``failed`` lists requests that failed for good (no row written; the next run retries them).

    Raises:
        JudgeFatalError: a failure every request shares (the rows written so far stay on disk).
        RecordError: the existing file is corrupt or from another judge.
    """
    out_path = Path(out_path)
    start = time.monotonic()
    done = check_existing(read_jsonl(out_path), judge, str(out_path))
    wanted = {item.key for item in items}
    stale = [k for k in done if k not in wanted]
    if stale:
        logger.warning("%s: %d judgments have no prediction in this file (e.g. %r)", out_path, len(stale), stale[0])
    changed = [
        item.key for item in items if item.key in done and _judged_another_prediction(done[item.key], item, judge)
    ]
    if changed:
        raise RecordError(
            f"{out_path}: {len(changed)} judgments were made for other predictions than this file holds now (e.g. "
            f"{changed[0]!r}: regenerated?); judge into another folder (--out) or delete those rows"
        )
    todo = [item for item in items if item.key not in done]
    summary = JudgeSummary(items=len(items), already_done=len(items) - len(todo))
    if on_start is not None:
        on_start(summary.already_done)
    if summary.already_done:
        logger.info("%s: %d of %d judgments already on disk; judging %d", out_path, summary.already_done,
                    len(items), len(todo))  # fmt: skip

    queue: asyncio.Queue[JudgeItem] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    loop = asyncio.get_running_loop()
    # Rows are appended (and fsynced) by one writer thread, in completion order, so the event loop keeps serving
    # the other requests during the fsync.
    with JsonlAppender(out_path) as out, ThreadPoolExecutor(1, thread_name_prefix="judgments") as writer:

        async def write(row: dict) -> None:
            # shielded: a fatal error cancels the workers, but a reply already paid for is still written (the
            # executor finishes its queue before the file closes)
            await asyncio.shield(loop.run_in_executor(writer, out.append, row))
            status = row["status"]
            if status == "ok":
                summary.ok += 1
            elif status == "unparseable":
                summary.unparseable += 1
            else:
                summary.prediction_errors += 1
            summary.calls += row.get("attempts", 0) or 0
            summary.prompt_tokens += row.get("prompt_tokens", 0) or 0
            summary.completion_tokens += row.get("completion_tokens", 0) or 0
            if on_row is not None:
                on_row(row)

        async def worker() -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    row = await judge.judge(item)
                except JudgeRequestError as err:
                    summary.calls += err.attempts
                    summary.failed.append({"id": item.id, "dimension": item.dimension, "error": str(err)})
                    logger.warning("judge: record %r (%s): %s", item.id, item.dimension, err)
                    continue
                await write(row)

        workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo))))]
        try:
            await asyncio.gather(*workers)
        except JudgeFatalError:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    summary.seconds = time.monotonic() - start
    failures = out_path.with_name("judge_failures.jsonl")
    if summary.failed:
        write_jsonl(failures, summary.failed)
    elif failures.exists():
        failures.unlink()
    return summary
