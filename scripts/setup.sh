#!/usr/bin/env bash
# Create (or reuse) .venv and install bench with everything its tests need.
# torch is pinned to the CPU build 2.13.0 on machines of this kind; elsewhere pyproject's range applies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,postgres,survival]"
# medmnist's metadata (flags, URLs, MD5s); --no-deps: its requirements pull torchvision, which fails beside CPU torch
.venv/bin/python -m pip install -q --no-deps "medmnist==3.0.2"
