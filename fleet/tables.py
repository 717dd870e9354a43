"""What a fleet evaluation writes: router training rows and a per-model, per-task table.

Rows are the router's training format, one per question, every evaluated model scored:
``{"question": str, "task": str, "scores": {model: 0 or 1}}``.

Two costs per query show side by side:
- configured: ``(price.input * prompt_tokens + price.output * completion_tokens) / 1e6``;
- measured (self-hosted): ``compute_seconds * cpu_second + memory_gb * wall_seconds * gb_second``,
  where compute_seconds is the CPU time this process spent on the query for an in-process model
  (all its threads) and the wall time for a remote one, and memory_gb is the model's peak
  resident memory (its GGUF file size when that was not measured), held for the query's wall
  time. The two rates default to a general-purpose cloud VM's on-demand price in USD.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.runner import ModelRun, QueryResult

# About GCP e2-standard on-demand prices: 0.021811 USD per vCPU-hour, 0.002923 per GB-hour.
DEFAULT_CPU_SECOND_PRICE = 0.021811 / 3600
DEFAULT_GB_SECOND_PRICE = 0.002923 / 3600
_GB = 1e9


@dataclass(frozen=True)
class CostRates:
    cpu_second: float = DEFAULT_CPU_SECOND_PRICE
    gb_second: float = DEFAULT_GB_SECOND_PRICE


def memory_bytes(run: ModelRun) -> int:
    """The memory a query is charged for: measured peak, else the GGUF size, else 0."""
    return run.peak_memory_bytes or run.file_bytes or 0


def measured_cost(run: ModelRun, result: QueryResult, rates: CostRates) -> float:
    compute = result.cpu_seconds if run.model.in_process else result.seconds
    return compute * rates.cpu_second + memory_bytes(run) / _GB * result.seconds * rates.gb_second


def training_rows(runs: Sequence[ModelRun]) -> list[dict[str, Any]]:
    """One row per question, in first-seen order, scoring every model that answered it."""
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        for result in run.results:
            fresh = {"question": result.question, "task": result.task, "scores": {}}
            row = rows.setdefault(result.question, fresh)
            row["scores"][run.model.name] = result.score
    return list(rows.values())


def architecture_fields(run: ModelRun) -> dict[str, int | None]:
    """The context the model ran with and, from its GGUF header, what sizes its KV cache (plan reads them)."""
    shape = run.kv_shape
    return {
        "context_length": run.context_length,
        "n_layer": shape.n_layer if shape else None,
        "n_head_kv": shape.n_head_kv if shape else None,
        "head_dim": shape.head_dim if shape else None,
        "kv_bytes_per_token": shape.kv_bytes_per_token if shape else None,
    }


def _mean(values: Iterable[float]) -> float:
    listed = list(values)
    return sum(listed) / len(listed) if listed else 0.0


def table(runs: Sequence[ModelRun], rates: CostRates = CostRates()) -> list[dict[str, Any]]:
    """One entry per model and task (and an ``all`` task per model)."""
    entries = []
    for run in runs:
        tasks = sorted({r.task for r in run.results})
        for task in [*tasks, "all"] if len(tasks) > 1 else tasks:
            results = [r for r in run.results if task in ("all", r.task)]
            seconds = sum(r.seconds for r in results)
            entries.append({
                "model": run.model.name,
                "task": task,
                "n": len(results),
                "accuracy": _mean(r.score for r in results),
                "tokens_per_second": sum(r.completion_tokens for r in results) / seconds if seconds else 0.0,
                "seconds_per_query": _mean(r.seconds for r in results),
                "errors": sum(r.finish_reason == "error" for r in results),
                "file_bytes": run.file_bytes,
                "peak_memory_bytes": run.peak_memory_bytes,
                "load_seconds": run.load_seconds,
                "params": run.model.params,
                "quant": run.model.quant,
                "in_process": run.model.in_process,
                **architecture_fields(run),
                "config_cost_per_query": _mean(r.config_cost for r in results),
                "measured_cost_per_query": _mean(measured_cost(run, r, rates) for r in results),
            })
    return entries


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.0f}"


def markdown(entries: Sequence[dict[str, Any]], rates: CostRates = CostRates()) -> str:
    header = (
        "| model | task | n | accuracy | tokens/s | s/query | file MB | peak MB | "
        "cost/query (config) | cost/query (measured) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {e['model']} | {e['task']} | {e['n']} | {e['accuracy']:.3f} | {e['tokens_per_second']:.1f} | "
        f"{e['seconds_per_query']:.2f} | {_mb(e['file_bytes'])} | {_mb(e['peak_memory_bytes'])} | "
        f"{e['config_cost_per_query']:.3g} | {e['measured_cost_per_query']:.3g} |"
        for e in entries
    ]
    note = (
        f"\nMeasured cost = compute s x {rates.cpu_second:.3g} + memory GB x wall s x {rates.gb_second:.3g} "
        "(see docs/fleet-eval.md); config cost from each model's price per 1M tokens.\n"
    )
    return header + "\n".join(lines) + "\n" + note


def table_json(entries: Sequence[dict[str, Any]], rates: CostRates, settings: dict[str, Any]) -> str:
    document = {"rates": {"cpu_second": rates.cpu_second, "gb_second": rates.gb_second}, **settings}
    return json.dumps({**document, "table": list(entries)}, indent=2)


def query_log(runs: Sequence[ModelRun], rates: CostRates) -> list[dict[str, Any]]:
    """Every query of every model with its timing, tokens, costs and scorer note."""
    return [
        {
            "model": run.model.name, "id": r.item_id, "task": r.task, "score": r.score, "note": r.note,
            "seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "finish_reason": r.finish_reason,
            "config_cost": r.config_cost, "measured_cost": measured_cost(run, r, rates),
            "answer": r.answer, "token_logprobs": list(r.token_logprobs),
            **({"samples": list(r.samples)} if r.samples else {}),
        }
        for run in runs
        for r in run.results
    ]


def write_outputs(
    out: Path, runs: Sequence[ModelRun], rates: CostRates, settings: dict[str, Any], notes: str = ""
) -> str:
    """Write rows.json, queries.json, table.json and table.md (the table, then ``notes``); its text."""
    entries = table(runs, rates)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(training_rows(runs), indent=1))
    (out / "queries.json").write_text(json.dumps(query_log(runs, rates), indent=1))
    (out / "table.json").write_text(table_json(entries, rates, settings))
    text = markdown(entries, rates) + notes
    (out / "table.md").write_text(text)
    return text
