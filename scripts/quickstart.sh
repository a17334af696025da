#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the main job: `videopanda quickstart` (arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/videopanda" quickstart "$@"
