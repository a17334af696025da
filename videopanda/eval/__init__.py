"""Evaluation: zero-shot VideoQA inference, the LLM judge, and the results table (reference §7).

Three resumable stages over JSONL files (``python -m videopanda.eval --help``):

1. ``generate`` (:mod:`.generate`): a model answers a task's questions -> ``predictions.jsonl``, keyed by question id.
2. ``judge`` (:mod:`.judge`): a pinned LLM judge (or the offline exact judge) scores them -> ``judgments.jsonl``.
3. ``aggregate`` (:mod:`.aggregate`): accuracy, mean score and counts per task -> ``results.json/.md/.csv``.

Tasks live in :mod:`.tasks`; :mod:`.fake_server` is a loopback OpenAI-compatible judge for tests and dry runs.
Importing this package imports neither torch nor openai.
"""
