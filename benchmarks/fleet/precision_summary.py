"""Summarise a fleet eval table for docs/params-vs-precision.md: one row per model.

    .venv/bin/python benchmarks/fleet/precision_summary.py docs/fleet-eval-results/table.json

Columns: parameters, GGUF type, file size, bits per parameter (file bits / params), peak memory,
accuracy per task with a 95% interval half-width (normal approximation), the mean over tasks,
seconds per query and measured cost per query over all of the model's queries. Routes (no GGUF
of their own) are left out: benchmarks/fleet/routes_summary.py compares them with their members.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path


def half_width(accuracy: float, n: int) -> float:
    return 1.96 * math.sqrt(accuracy * (1 - accuracy) / n) if n else 0.0


def summary(table: dict) -> str:
    # the tasks in the order of the settings' benchmarks ("routing" stands for its seven tasks)
    present = list(dict.fromkeys(e["task"] for e in table["table"] if e["task"] != "all"))
    tasks = [t for b in table["benchmarks"] for t in present if t == b or t.startswith(f"{b}:")]
    by_model: dict[str, dict[str, dict]] = defaultdict(dict)
    for entry in table["table"]:
        if entry["file_bytes"]:  # a GGUF of its own: not a route or a remote model
            by_model[entry["model"]][entry["task"]] = entry
    head = "| model | params | type | file MB | bits/param | peak MB | " + " | ".join(tasks)
    head += " | mean | s/query | measured cost/query |\n"
    head += "|---|---:|---|---:|---:|---:|" + "---:|" * len(tasks) + "---:|---:|---:|\n"
    lines = []
    order = sorted(by_model, key=lambda m: next(iter(by_model[m].values()))["file_bytes"])
    for model in order:
        entries = by_model[model]
        first = next(iter(entries.values()))
        overall = entries.get("all") or first
        cells, accuracies = [], []
        for task in tasks:
            entry = entries.get(task)
            if entry is None:
                cells.append("-")
                continue
            accuracies.append(entry["accuracy"])
            accuracy, n = entry["accuracy"], entry["n"]
            cells.append(f"{accuracy:.3f} ±{half_width(accuracy, n):.3f} (n={n})")
        mean = f"{sum(accuracies) / len(accuracies):.3f}" if len(accuracies) == len(tasks) else "-"
        bits = first["file_bytes"] * 8 / first["params"] if first["file_bytes"] and first["params"] else None
        size, peak = first["file_bytes"] / 1e6, (first["peak_memory_bytes"] or 0) / 1e6
        lines.append(
            f"| {model} | {first['params'] / 1e9:.2f}B | {first['quant']} | {size:,.0f} | "
            f"{bits:.2f} | {peak:,.0f} | " + " | ".join(cells)
            + f" | {mean} | {overall['seconds_per_query']:.2f} | {overall['measured_cost_per_query']:.2e} |"
        )
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summary(json.loads(Path(sys.argv[1]).read_text())))
