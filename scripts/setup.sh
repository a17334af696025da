#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install videopanda with every CPU extra.
# Usage: bash scripts/setup.sh            (idempotent: a second run only checks the install)
# Env:   VENV=path to use another venv folder; PYTHON=python3.11 to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.videopanda-installed"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "[setup] installing videopanda and its dependencies (about a minute on a fresh machine)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch is pinned exactly: an unpinned torch would pull a multi-GB CUDA build.
  # DeepSpeed's CUDA ops cannot build on CPU machines: install it without prebuilt ops (they JIT on use).
  DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install -q -e ".[train,video,eval,plot,dev]"
  # A LLaMA-layout sentencepiece tokenizer for tests; --no-deps because its own deps downgrade numpy.
  "$VENV/bin/python" -m pip install -q --no-deps mistral-common==1.13.1
  touch "$stamp"
fi
echo "[setup] ready: $VENV"
