"""Logging set-up for entry points (library modules only create loggers; they never configure them)."""

from __future__ import annotations

import logging
import os


def setup_logging(level: int | str = logging.INFO, rank: int | None = None) -> None:
    """Send ``videopanda`` logs to stderr; on ranks other than 0 only warnings and errors.

    Args:
        level: level on rank 0.
        rank: process rank; defaults to the ``RANK`` set by torchrun / accelerate / deepspeed launchers.
    """
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    handler = logging.StreamHandler()
    prefix = f"[rank{rank}] " if rank else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("videopanda")
    root.handlers[:] = [handler]
    root.setLevel(level if rank == 0 else logging.WARNING)
    root.propagate = False
