#!/usr/bin/env bash
# Reproduce docs/params-vs-precision.md: every model of benchmarks/fleet/precision_fleet.yaml on
# 200 MMLU, 200 GSM8K and all 164 HumanEval items (seed 0), then one merged table.
#
# The work is cut into chunks (one model, some benchmarks) run two at a time with one llama.cpp
# thread each: on a 2-core machine that gave more queries per second than one process with two
# threads. A chunk whose table.json exists is skipped, so an interrupted run resumes.
#   usage: benchmarks/fleet/run_precision_eval.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs/precision}
OUT=${2:-docs/fleet-eval-results}
CONFIG=$RUNS/fleet-1-thread.yaml
mkdir -p "$RUNS"
sed 's/^    price:/    threads: 1\n    price:/' benchmarks/fleet/precision_fleet.yaml > "$CONFIG"
.venv/bin/smallfleet prepare --config "$CONFIG"

chunks() {
    for chunk in "$@"; do
        model=${chunk%%:*}; benchmarks=${chunk#*:}
        out=$RUNS/$model--${benchmarks//,/-}
        [ -f "$out/table.json" ] && continue
        .venv/bin/smallfleet fleet eval --config "$CONFIG" --models "$model" --benchmarks "$benchmarks" \
            --limit 200 --seed 0 --max-tokens mmlu=64,gsm8k=384,humaneval=384 --out "$out" --no-progress
    done
}
chunks qwen2.5-coder-0.5b:mmlu,humaneval qwen2.5-coder-0.5b:gsm8k smollm2-135m:mmlu,humaneval,gsm8k \
    qwen2.5-coder-1.5b-q3_k_m:mmlu,humaneval qwen2.5-coder-1.5b-q3_k_m:gsm8k &
first=$!
chunks qwen2.5-coder-1.5b-q2_k:mmlu,humaneval qwen2.5-coder-1.5b:mmlu,humaneval \
    qwen2.5-coder-1.5b-q2_k:gsm8k qwen2.5-coder-1.5b:gsm8k &
wait "$first" && wait $!
.venv/bin/smallfleet fleet report --runs "$RUNS"/*/ --out "$OUT" --config "$CONFIG"
