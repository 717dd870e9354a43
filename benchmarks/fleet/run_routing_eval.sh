#!/usr/bin/env bash
# Reproduce docs/fleet-eval-results/routing-tasks/: the default fleet's models and the 1.5B at
# Q3_K_M on 60 questions (seed 0) of each gradeable task of the routing benchmark
# (trivia_qa, natural_qa, commonsense_qa, openbook_qa, arc_challenge, mmlu, mbpp; see
# fleet/routing_tasks.py), then the Q3_K_M's GSM8K-200 merged into the precision table.
#
# Chunks (one model each) run two at a time with one llama.cpp thread each; a chunk whose
# table.json exists is skipped, so an interrupted run resumes.
#   usage: benchmarks/fleet/run_routing_eval.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs/routing}
PRECISION_RUNS=${PRECISION_RUNS:-runs/precision}
CONFIG=$RUNS/fleet-1-thread.yaml
mkdir -p "$RUNS" "$PRECISION_RUNS"
sed 's/^    price:/    threads: 1\n    price:/' benchmarks/fleet/precision_fleet.yaml > "$CONFIG"
.venv/bin/smallfleet prepare --config "$CONFIG"

chunk() {  # MODEL BENCHMARKS LIMIT OUT
    [ -f "$4/table.json" ] && return 0
    .venv/bin/smallfleet fleet eval --config "$CONFIG" --models "$1" --benchmarks "$2" \
        --limit "$3" --seed 0 --out "$4" --no-progress
}
export -f chunk
export CONFIG
printf '%s\n' \
    "qwen2.5-coder-0.5b routing 60 $RUNS/qwen2.5-coder-0.5b" \
    "smollm2-135m routing 60 $RUNS/smollm2-135m" \
    "qwen2.5-coder-1.5b routing 60 $RUNS/qwen2.5-coder-1.5b" \
    "qwen2.5-coder-1.5b-q3_k_m routing 60 $RUNS/qwen2.5-coder-1.5b-q3_k_m" \
    "qwen2.5-coder-1.5b-q3_k_m gsm8k 200 $PRECISION_RUNS/qwen2.5-coder-1.5b-q3_k_m--gsm8k" |
    xargs -P 2 -L 1 bash -c 'chunk "$@"' _
.venv/bin/smallfleet fleet report --runs "$RUNS"/smollm2-135m "$RUNS"/qwen2.5-coder-0.5b "$RUNS"/qwen2.5-coder-1.5b \
    "$RUNS"/qwen2.5-coder-1.5b-q3_k_m --out docs/fleet-eval-results/routing-tasks --config "$CONFIG"
# the Q3_K_M's GSM8K-200 joins the precision table (docs/params-vs-precision.md)
.venv/bin/smallfleet fleet report --runs docs/fleet-eval-results "$PRECISION_RUNS"/qwen2.5-coder-1.5b-q3_k_m--gsm8k \
    --out "$RUNS"/precision-merged --config benchmarks/fleet/precision_fleet.yaml
cp "$RUNS"/precision-merged/*.json "$RUNS"/precision-merged/table.md docs/fleet-eval-results/
