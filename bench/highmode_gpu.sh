#!/usr/bin/env bash
# High-mode speed on a CUDA machine: bench/highmode.py with the released XTTS v2 sizes
# (random weights, built in the run) on the GPU, next to Piper on the CPU for the same texts.
#
# Needs: the high-mode environment (its PyPI torch 2.11.0 is a CUDA 13 build), made by
#   python3.11 scripts/dev.py setup --high
# then:   PYTHON=.venv-high/bin/python bash bench/highmode_gpu.sh [LINES]
# Takes a few minutes on one GPU: ~1 min to build and save the 1.9 GB random checkpoint,
# ~20 s to load it, then seconds per line (default 8 lines). Writes $OUT/highmode_gpu.json
# (OUT defaults to ./bench-out) and prints one JSON line per line plus the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv-high/bin/python}"
LINES="${1:-8}"
OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
"$PYTHON" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible: run this on the GPU machine"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
timeout 540 "$PYTHON" bench/highmode.py --device cuda --lines "$LINES" --json "$OUT/highmode_gpu.json"
