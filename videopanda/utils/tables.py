"""Markdown tables that the diagnostic scripts in ``benchmarks/`` print."""

from __future__ import annotations


def curve_table(columns: list[str], rows: list[tuple[int, float, list[float], float]]) -> str:
    """A training curve: one row per evaluation, ``(step, train loss, accuracies in [0, 1], seconds)``.

    Args:
        columns: the accuracy columns' headers (``%`` is appended).
        rows: the evaluations, each with one accuracy per column.

    Returns:
        The table, without a trailing newline.
    """
    lines = [
        "| step | train loss | " + " | ".join(f"{name} %" for name in columns) + " | seconds |",
        "|---|---|" + "---|" * len(columns) + "---|",
    ]
    for step, loss, accs, seconds in rows:
        if len(accs) != len(columns):
            raise ValueError(f"step {step}: {len(accs)} accuracies for {len(columns)} columns")
        lines.append(f"| {step} | {loss:.3f} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + f" | {seconds:.0f} |")
    return "\n".join(lines)
