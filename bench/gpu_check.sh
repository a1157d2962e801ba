#!/usr/bin/env bash
# The one prepared device check, for a session lent a GPU (torch + transformers preinstalled; no vLLM,
# no hub, no package index). Run from the repo root, carrying .whl/ (`make wheels` fills it with
# math-verify and its two small dependencies, ~0.4 MB):  bash bench/gpu_check.sh
# It runs bench/gpu_step.py (two RL steps of the `seed` batch per Qwen2.5 shape) and writes under $OUT;
# BENCH=gpu_update runs bench/gpu_update.py instead (the update alone at a profile's full batch).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --no-index --find-links .whl "math-verify==0.9.0" latex2sympy2_extended "antlr4-python3-runtime==4.13.2"
nvidia-smi --query-gpu=name,memory.total --format=csv || true
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
# offline: the device reaches nothing, and a hub lookup there may wait for a timeout instead of failing.
# Unbuffered and line-buffered, so a run cut off by its limit still shows how far each model got.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# BENCH=gpu_update: the update alone at a profile's full batch (memory against the plan, no sampling).
# NAME: another name for another run's rows, e.g. NAME=paper BENCH=gpu_update bash bench/gpu_check.sh
BENCH=${BENCH:-gpu_step}
NAME=${NAME:-$BENCH}
PYTHONPATH=. python bench/$BENCH.py --out "$OUT/$NAME.json" "$@" 2>&1 | grep --line-buffered -v "Loading weights\|Writing model" | tee "$OUT/$NAME.log"
