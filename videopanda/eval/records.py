"""Resumable JSONL files: append record by record, read back with the torn last line repaired, shard and merge.

Every stage of the evaluation (``generate``, ``judge``) appends one JSON object per line and flushes it (and
``fsync``s it) before it moves on, so a killed process loses at most the line it was writing. On the next run
:class:`JsonlAppender` cuts that torn line off (and says so), the stage reads which keys are already on disk and
does only the rest. Rows are always matched by key (question id, plus the judge dimension), never by position.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RecordError(ValueError):
    """A JSONL or JSON file is malformed or inconsistent; the message names the file and the record."""


def _torn_tail(data: bytes) -> int:
    """Length of the valid prefix of ``data``: everything up to and including the last newline."""
    if not data or data.endswith(b"\n"):
        return len(data)
    return data.rfind(b"\n") + 1


def read_jsonl(path: str | Path, allow_torn_tail: bool = True) -> list[dict]:
    """Read a JSONL file of objects.

    Args:
        path: the file; a missing file reads as no rows.
        allow_torn_tail: a last line without its newline is a write cut short by a kill: skip it with a warning.
            (Only :class:`JsonlAppender` removes it from disk.)

    Returns:
        The rows in file order.

    Raises:
        RecordError: a complete line is not a JSON object (names the file and the line number), or the file is
            not UTF-8.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = _torn_tail(data)
    if keep < len(data):
        if not allow_torn_tail:
            raise RecordError(f"{path}: the last line is incomplete (a write was cut short)")
        logger.warning("%s: ignoring an incomplete last line (%d bytes; a write was cut short)", path, len(data) - keep)
    try:
        text = data[:keep].decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"{path}: not UTF-8 text ({err})") from err
    rows = []
    # split on "\n" only: str.splitlines() also breaks inside JSON strings at U+2028, U+2029 and U+0085, which
    # json.dumps(ensure_ascii=False) leaves unescaped (a model can generate them)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise RecordError(f"{path}:{number}: not valid JSON ({err})") from err
        if not isinstance(row, dict):
            raise RecordError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def index_rows(rows: Iterable[dict], key: Callable[[dict], Hashable], source: str) -> dict[Hashable, dict]:
    """Rows by key; a duplicate key is an error naming ``source`` and the key."""
    out: dict[Hashable, dict] = {}
    for row in rows:
        k = key(row)
        if k in out:
            raise RecordError(f"{source}: duplicate record {k!r}")
        out[k] = row
    return out


class JsonlAppender:
    """Append JSON rows to a file, one line each, flushed and ``fsync``ed before :meth:`append` returns.

    Opening repairs a torn last line left by a killed writer (it is cut off, with a warning), so appends always
    start on a fresh line. Use as a context manager.

    Args:
        path: the JSONL file (created with its folder if missing).
        durable: ``fsync`` after every row (a paid judge call must survive a power cut, not only a kill).
    """

    def __init__(self, path: str | Path, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            keep = _torn_tail(data)
            if keep < len(data):
                logger.warning(
                    "%s: removing an incomplete last line (%d bytes) left by an interrupted run",
                    self.path,
                    len(data) - keep,
                )
                with open(self.path, "r+b") as f:
                    f.truncate(keep)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write rows to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # shard processes may write the same file at once
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    """Read a JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from err


def shard_bounds(n: int, num_shards: int, shard: int) -> tuple[int, int]:
    """``[start, end)`` of shard ``shard`` when ``n`` items are cut into ``num_shards`` contiguous chunks.

    Chunks have ``ceil(n / num_shards)`` items (the last may be shorter or empty), as the reference's
    ``--num_chunks/--chunk_idx``.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    size = math.ceil(n / num_shards) if n else 0
    return min(shard * size, n), min((shard + 1) * size, n)


def shard_items(items: Sequence[T], num_shards: int, shard: int) -> list[T]:
    """The contiguous chunk of ``items`` that shard ``shard`` of ``num_shards`` processes."""
    start, end = shard_bounds(len(items), num_shards, shard)
    return list(items[start:end])
