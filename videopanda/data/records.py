"""Annotation files: reading LLaVA-format JSON / JSONL and validating every record up front.

A record (reference §6.1)::

    {"id": "v_abc", "video": "valley/abc.mp4",           # or "image": "...", or neither (text only)
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens?"}, {"from": "gpt", "value": "..."}]}

Validation finds, per record, with the file and the record (index and id, or the JSONL line) named:

* a record that is not an object, has no ``conversations`` or malformed turns (roles, alternation, no answer);
* both ``video`` and ``image`` (one medium per record), or a media value that is not a non-empty string;
* a media path that escapes its media root (absolute, or ``..`` leading out of it);
* a missing media file (when ``check_media``);
* a video/image record whose text has no placeholder, more placeholders than media, the other modality's
  placeholder, or a placeholder inside an answer; a text-only record with placeholders.

An optional ``"allow_flip": false`` marks a record whose answers a horizontal flip would falsify ("moves to the
left"); the training flip skips it.

Malformed JSON is reported with its line (and column); a JSONL file is read line by line, so one bad line is one
problem and the rest of the file still loads.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .conversation import _ASSISTANT_ROLES, count_placeholders, normalise_turns
from .errors import AnnotationError, DataError

logger = logging.getLogger(__name__)


@dataclass
class Record:
    """A validated annotation record."""

    file: str  # annotation file
    index: int  # position among the file's records (0-based)
    line: int | None  # 1-based line of a JSONL record
    id: str  # the record's "id", or "<file stem>:<index>" when it has none
    modality: str  # "video" | "image" | "text"
    media: Path | None  # resolved media path
    conversations: list  # the raw turns
    words: int  # whitespace-separated words over all turns (the sampler's length, reference §5.5)
    allow_flip: bool = True  # false when mirroring would change the answers (e.g. "moves to the left")

    @property
    def where(self) -> str:
        """``record 12 (id 'v_abc')`` or ``line 13 (id 'v_abc')``: how error messages name the record."""
        return _where(self.index, self.line, self.id)


@dataclass
class Problem:
    """One thing wrong with one record (or with a whole file, ``where == ""``)."""

    file: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where + ': ' if self.where else ''}{self.reason}"


@dataclass
class ValidationReport:
    """What validation found in one or more annotation files."""

    files: list[str] = field(default_factory=list)
    total: int = 0  # records read
    counts: Counter = field(default_factory=Counter)  # valid records per modality
    problems: list[Problem] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)  # tolerated quirks, e.g. a dropped leading assistant turn

    @property
    def valid(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: ValidationReport) -> None:
        self.files += other.files
        self.total += other.total
        self.counts.update(other.counts)
        self.problems += other.problems
        self.notes.update(other.notes)

    def format(self, max_problems: int = 20) -> str:
        """A human-readable report: counts per modality, then the first ``max_problems`` problems."""
        lines = [
            f"annotation files: {len(self.files)} ({', '.join(self.files)})" if self.files else "annotation files: 0",
            f"records: {self.total}  valid: {self.valid}  (videos {self.counts['video']}, images "
            f"{self.counts['image']}, text-only {self.counts['text']})  problems: {len(self.problems)}",
        ]
        for note, n in sorted(self.notes.items()):
            lines.append(f"note: {n} record(s): {note}")
        for problem in self.problems[:max_problems]:
            lines.append(f"  problem: {problem}")
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more problem(s)")
        return "\n".join(lines)


def _where(index: int, line: int | None, rid: object | None) -> str:
    place = f"line {line}" if line is not None else f"record {index}"
    return f"{place} (id {rid!r})" if rid is not None else place


def read_annotation_file(path: str | Path) -> tuple[list[tuple[int | None, object]], list[Problem]]:
    """Read a JSON list or a JSONL file.

    Returns:
        ``(entries, problems)``: ``entries`` are ``(jsonl_line or None, raw record)``; ``problems`` are bad JSONL
        lines.

    Raises:
        AnnotationError: the file is missing, or a JSON file is malformed or not a list (line and column named).
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "", "annotation file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl" or _looks_like_jsonl(text):
        entries, problems = [], []
        # "\n" only: str.splitlines() also breaks at U+2028/U+2029/U+0085, which JSON allows raw inside strings
        for lineno, raw_line in enumerate(text.split("\n"), start=1):
            if not raw_line.strip():
                continue
            try:
                entries.append((lineno, json.loads(raw_line)))
            except json.JSONDecodeError as err:
                problems.append(Problem(str(path), f"line {lineno}", f"malformed JSON: {err.msg} (column {err.colno})"))
        return entries, problems
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"line {err.lineno} column {err.colno}", f"malformed JSON: {err.msg}") from err
    if not isinstance(data, list):
        raise AnnotationError(path, "", f"expected a JSON list of records, got a {type(data).__name__}")
    return [(None, raw) for raw in data], []


def _looks_like_jsonl(text: str) -> bool:
    """A ``.json`` file whose first line is a complete object and that has a second one is JSON Lines."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2 or not lines[0].lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(lines[0]), dict) and isinstance(json.loads(lines[1]), dict)
    except json.JSONDecodeError:
        return False


def check_media_path(value: object, media_root: Path) -> tuple[Path | None, str | None]:
    """Resolve a record's media path under ``media_root``; ``(path, None)`` or ``(None, reason)``."""
    if not isinstance(value, str) or not value.strip():
        return None, f"media path must be a non-empty string, got {value!r}"
    rel = Path(value)
    if rel.is_absolute() or value.startswith(("/", "\\")):
        return None, f"media path {value!r} is absolute; it must be relative to the media root {str(media_root)!r}"
    if os.path.normpath(value).replace("\\", "/").split("/")[0] == "..":
        return None, f"media path {value!r} escapes its media root {str(media_root)!r} (leads out with '..')"
    return media_root / rel, None


def validate_record(
    raw: object, file: str, index: int, line: int | None, media_root: Path, check_media: bool = True
) -> tuple[Record | None, list[str], list[str]]:
    """Validate one raw record.

    Returns:
        ``(record or None, problems, notes)``: the record is None when there are problems.
    """
    if not isinstance(raw, dict):
        return None, [f"a record must be a JSON object, got {type(raw).__name__}"], []
    problems: list[str] = []
    notes: list[str] = []
    turns = raw.get("conversations")
    if turns is None:
        problems.append("no 'conversations' key")
    elif not isinstance(turns, list) or not turns:
        problems.append("'conversations' must be a non-empty list of turns")
    else:
        try:
            normalise_turns(turns)
            first = turns[0]
            if isinstance(first, dict) and str(first.get("from", "")).lower() in _ASSISTANT_ROLES:
                notes.append("first turn is not from the human: dropped (reference behaviour)")
        except DataError as err:
            problems.append(f"conversations: {err}")
    has_video, has_image = "video" in raw, "image" in raw
    media = None
    modality = "video" if has_video else "image" if has_image else "text"
    if has_video and has_image:
        problems.append("has both 'video' and 'image'; one medium per record is supported")
    elif modality != "text":
        media, reason = check_media_path(raw[modality], media_root)
        if reason:
            problems.append(reason)
        elif check_media and not media.exists():
            problems.append(f"{modality} file not found: {media}")
    if isinstance(turns, list) and not (has_video and has_image):
        problems += _placeholder_problems(turns, modality)
    allow_flip = raw.get("allow_flip", True)
    if not isinstance(allow_flip, bool):
        problems.append(f"'allow_flip' must be true or false, got {allow_flip!r}")
    rid = raw.get("id")
    record_id = str(rid) if rid is not None else f"{Path(file).stem}:{index}"
    if problems:
        return None, problems, notes
    words = sum(len(str(t.get("value", "")).split()) for t in turns if isinstance(t, dict))
    return Record(file, index, line, record_id, modality, media, turns, words, allow_flip), problems, notes


def _placeholder_problems(turns: list, modality: str) -> list[str]:
    user, assistant = Counter(), Counter()
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            continue
        target = assistant if str(turn.get("from", "")).lower() in _ASSISTANT_ROLES else user
        target.update(count_placeholders(turn["value"]))
    problems = []
    if sum(assistant.values()):
        problems.append("an assistant turn holds a visual placeholder")
    other = {"video": "image", "image": "video"}.get(modality)
    if modality == "text":
        if sum(user.values()):
            found = ", ".join(f"{n} <{k}>" for k, n in sorted(user.items()) if n)
            problems.append(f"text holds {found} placeholder(s) but the record has no 'video' or 'image' key")
        return problems
    n = user[modality]
    if n == 0:
        problems.append(f"no <{modality}> placeholder in the conversation: the {modality} would never be shown")
    elif n > 1:
        problems.append(f"{n} <{modality}> placeholders for one {modality}: more placeholders than media")
    if user[other]:
        problems.append(f"a {modality} record holds {user[other]} <{other}> placeholder(s)")
    return problems


def load_records(
    path: str | Path, media_root: str | Path | None = None, check_media: bool = True
) -> tuple[list[Record], ValidationReport]:
    """Read and validate one annotation file.

    Args:
        path: JSON list or JSONL file.
        media_root: folder the media paths are relative to; default: the file's folder.
        check_media: stat every media file and report missing ones.

    Returns:
        ``(valid records, report)``; invalid records are listed in ``report.problems``.

    Raises:
        AnnotationError: the file is missing or is malformed JSON / not a list (see :func:`read_annotation_file`).
    """
    path = Path(path)
    root = Path(media_root) if media_root else path.parent
    entries, problems = read_annotation_file(path)
    report = ValidationReport(files=[str(path)], total=len(entries) + len(problems), problems=problems)
    records = []
    for index, (line, raw) in enumerate(entries):
        record, record_problems, notes = validate_record(raw, str(path), index, line, root, check_media)
        rid = raw.get("id") if isinstance(raw, dict) else None
        for reason in record_problems:
            report.problems.append(Problem(str(path), _where(index, line, rid), reason))
        report.notes.update(notes)
        if record is not None:
            records.append(record)
            report.counts[record.modality] += 1
    return records, report
