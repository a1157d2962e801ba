#!/usr/bin/env bash
# The one prepared device check, for a session lent a GPU (torch + transformers preinstalled; no vLLM, no hub, no
# package index). Run from the repo root, carrying .whl/ (`make wheels` fills it with math-verify and its two small
# dependencies, ~0.4 MB):  bash bench/gpu_check.sh
# By default it runs bench/gpu_smoke.py, each stage in a process of its own (one engine a process, as a grid cell):
# health; a 0.5B-shaped engine with sleep mode (sync, stale, the wake's reload, memory while asleep, finish
# reasons); two `paper` GRPO steps of the 3B shape at 3072 tokens with memory by phase against the plan; one table
# at the end (docs/gpu.md says how to read it). vLLM runs where installed, else the HF engine (its rows say so).
# BENCH=gpu_step or BENCH=gpu_update run the longer measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --no-index --find-links .whl "math-verify==0.9.0" latex2sympy2_extended "antlr4-python3-runtime==4.13.2"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
# offline: the device reaches nothing, and a hub lookup there may wait for a timeout instead of failing.
# Unbuffered and line-buffered, so a run cut off by its limit still shows how far it got.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
BENCH=${BENCH:-gpu_smoke}
NAME=${NAME:-$BENCH}
PYTHONPATH=.:bench python bench/$BENCH.py --out "$OUT/$NAME.json" "$@" 2>&1 | grep --line-buffered -v "Loading weights\|Writing model" | tee "$OUT/$NAME.log"
