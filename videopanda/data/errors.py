"""Errors of the data pipeline. Every one names the file (and the record, where there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Base class of every data error: bad media, bad annotation records, bad configuration of the data."""


class VideoReadError(DataError):
    """A video (file, GIF or folder of frames) could not be read.

    Attributes:
        path: the video that failed.
        reason: what is wrong with it, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read video: {reason}")


class ImageReadError(DataError):
    """An image could not be read (missing, empty, truncated or not an image)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read image: {reason}")


class AnnotationError(DataError):
    """An annotation file or one of its records is malformed.

    Attributes:
        file: the annotation file.
        where: the record (``record 12 (id 'v_abc')``) or line (``line 7``) concerned, or ``""`` for the file.
        reason: what is wrong.
    """

    def __init__(self, file: str | Path, where: str, reason: str) -> None:
        self.file = str(file)
        self.where = where
        self.reason = reason
        super().__init__(f"{self.file}: {where + ': ' if where else ''}{reason}")


class SampleError(DataError):
    """A record passed validation but its sample could not be built (its media failed to load, or it is too long).

    Attributes:
        file: annotation file of the record.
        where: the record (``record 12 (id 'v_abc')``).
        cause: the underlying error (e.g. a :class:`VideoReadError`).
    """

    def __init__(self, file: str | Path, where: str, cause: Exception | str) -> None:
        self.file = str(file)
        self.where = where
        self.cause = cause
        super().__init__(f"{self.file}: {where}: {cause}")
