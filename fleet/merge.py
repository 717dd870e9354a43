"""One fleet evaluation from several: `fleet eval` outputs run in chunks, merged.

A long evaluation runs in chunks (one model and some benchmarks per process). :func:`merge`
reads their output directories and rebuilds what one `fleet eval` over everything would have
written, by replaying every chunk's per-query records through the same report functions:

- the chunks must share seed, limit and cost rates (the same seed and limit give every model
  the same questions; the rates price every query alike);
- a question's text comes from its item id, re-derived from the installed benchmark data
  (fleet/benchmarks.py), and each chunk's rows.json must agree with it, so a chunk made
  from other data is refused rather than merged under the wrong question;
- a (model, item id) answered twice is an error unless the two records are identical;
- per model, file size, params, quant, context, KV-cache shape and whether it ran in process
  must agree across chunks; peak memory and load time are the largest seen (a single run holds
  the model through every benchmark);
- the table is recomputed from the queries, and each query's measured cost is recomputed with
  the model's merged peak memory, as a single run would have charged it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from backends.base import Backend
from backends.gguf_meta import KvShape
from fleet.benchmarks import BenchmarkItem, expand_names, load_benchmarks
from fleet.models import EvalModel
from fleet.runner import ModelRun, QueryResult
from fleet.tables import CostRates, training_rows, write_outputs
from router._errors import DataError

ItemLoader = Callable[[Sequence[str], int | None, int], list[BenchmarkItem]]
_SAME_ACROSS_CHUNKS = ("file_bytes", "params", "quant", "context_length", "in_process")
_SHAPE_FIELDS = ("n_layer", "n_head_kv", "head_dim", "kv_bytes_per_token")


@dataclass(frozen=True)
class EvalOutput:
    """One `fleet eval` output directory, as read from disk."""

    path: Path
    document: dict[str, Any]  # table.json
    queries: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    @property
    def settings(self) -> tuple[Any, Any, Any]:
        return self.document.get("seed"), self.document.get("limit"), self.document.get("rates")


@dataclass
class Merged:
    """The merged evaluation: runs to report, plus where they came from."""

    runs: list[ModelRun]
    rates: CostRates
    settings: dict[str, Any]
    sources: list[str] = field(default_factory=list)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def read_output(path: Path) -> EvalOutput:
    """A complete `fleet eval` output directory (its table.json is written last)."""
    if not (path / "table.json").is_file():
        raise DataError(f"{path}: no table.json (not a fleet eval output, or not finished yet)")
    document = _load_json(path / "table.json")
    if not isinstance(document, dict) or not isinstance(document.get("table"), list):
        raise DataError(f"{path / 'table.json'}: not a fleet eval table")
    return EvalOutput(path, document, _load_json(path / "queries.json"), _load_json(path / "rows.json"))


def _check_settings(outputs: Sequence[EvalOutput]) -> None:
    first = outputs[0]
    for name, index in (("seed", 0), ("limit", 1), ("rates", 2)):
        values = {json.dumps(o.settings[index], sort_keys=True) for o in outputs}
        if len(values) > 1:
            found = ", ".join(f"{o.path}: {json.dumps(o.settings[index])}" for o in outputs)
            raise DataError(f"the runs differ in {name} and cannot be merged ({found})")
    if first.settings[2] is None:
        raise DataError(f"{first.path / 'table.json'}: no cost rates")


def _benchmarks(outputs: Sequence[EvalOutput]) -> list[str]:
    seen: dict[str, None] = {}
    for output in outputs:
        seen.update(dict.fromkeys(output.document.get("benchmarks") or []))
    return list(seen)


def _model_facts(output: EvalOutput) -> dict[str, dict[str, Any]]:
    """Per model, the table's per-model fields (the same on every task row of a run)."""
    facts: dict[str, dict[str, Any]] = {}
    for entry in output.document["table"]:
        facts.setdefault(entry["model"], entry)
    return facts


def _agree(model: str, key: str, values: Iterable[tuple[Path, Any]]) -> Any:
    known = [(path, value) for path, value in values if value is not None]
    if len({repr(value) for _, value in known}) > 1:
        found = ", ".join(f"{path}: {value}" for path, value in known)
        raise DataError(f"{model}: {key} differs between runs ({found})")
    return known[0][1] if known else None


def _shape(facts: dict[str, Any]) -> KvShape | None:
    if any(facts.get(key) is None for key in _SHAPE_FIELDS):
        return None
    n_layer, n_head_kv, head_dim, per_token = (int(facts[key]) for key in _SHAPE_FIELDS)
    return KvShape("", n_layer, n_head_kv, head_dim, per_token, n_ctx_train=None)


def _replayed_model(name: str, params: float | None, quant: str | None, in_process: bool) -> EvalModel:
    """A model as the table code sees it. A replayed run is never asked anything: no backend."""
    return EvalModel(name, cast(Backend, None), params=params, quant=quant, in_process=in_process)


def _in_process(entry: dict[str, Any], queries: Sequence[dict[str, Any]], rates: dict[str, float]) -> bool:
    """Whether the model ran in process (its CPU time is its compute): from the table, or else
    from which compute reproduces the measured cost the chunk recorded (tables before the field)."""
    if entry.get("in_process") is not None:
        return bool(entry["in_process"])
    memory_gb = (entry.get("peak_memory_bytes") or entry.get("file_bytes") or 0) / 1e9
    for query in queries:
        if query["cpu_seconds"] != query["seconds"]:
            held = memory_gb * query["seconds"] * rates["gb_second"]
            as_cpu = query["cpu_seconds"] * rates["cpu_second"] + held
            as_wall = query["seconds"] * rates["cpu_second"] + held
            return abs(query["measured_cost"] - as_cpu) <= abs(query["measured_cost"] - as_wall)
    return entry.get("file_bytes") is not None


def _empty_run(model: str, entry: dict[str, Any], in_process: bool) -> ModelRun:
    """A chunk's run of ``model`` before its queries are replayed: the footprint from its table entry."""
    file_bytes = entry.get("file_bytes")
    return ModelRun(
        _replayed_model(model, entry.get("params"), entry.get("quant"), in_process),
        load_seconds=float(entry.get("load_seconds") or 0.0), file_bytes=file_bytes,
        peak_memory_bytes=entry.get("peak_memory_bytes"), kv_shape=_shape(entry),
        context_length=entry.get("context_length"),
    )


def _result(query: dict[str, Any], item: BenchmarkItem) -> QueryResult:
    return QueryResult(
        item.id, item.task, item.question, int(query["score"]), str(query["note"]), float(query["seconds"]),
        float(query["cpu_seconds"]), int(query["prompt_tokens"]), int(query["completion_tokens"]),
        str(query["finish_reason"]), float(query["config_cost"]), str(query.get("answer", "")),
        tuple(float(x) for x in query.get("token_logprobs", ())), tuple(query.get("samples", ())),
    )


def _chunk_runs(output: EvalOutput, items: dict[str, tuple[int, BenchmarkItem]]) -> list[ModelRun]:
    """The chunk's runs, replayed from its records; its rows.json must agree with them."""
    facts = _model_facts(output)
    runs: dict[str, ModelRun] = {}
    for query in output.queries:
        model = query["model"]
        if model not in facts:
            raise DataError(f"{output.path}: queries.json has {model!r}, table.json does not")
        if query["id"] not in items or items[query["id"]][1].task != query["task"]:
            raise DataError(f"{output.path}: item {query['id']!r} is not in the installed benchmark data")
        if model not in runs:
            mine = [q for q in output.queries if q["model"] == model]
            runs[model] = _empty_run(model, facts[model], _in_process(facts[model], mine, output.settings[2]))
        runs[model].results.append(_result(query, items[query["id"]][1]))
    if training_rows(list(runs.values())) != output.rows:
        raise DataError(
            f"{output.path}: rows.json does not match its queries with the questions of the installed "
            "benchmark data (evaluated on other data?)"
        )
    return list(runs.values())


def _fact(run: ModelRun, key: str) -> Any:
    return getattr(run.model, key) if key in ("params", "quant", "in_process") else getattr(run, key)


def _merge_model(name: str, chunks: list[tuple[Path, ModelRun]], order: dict[str, int]) -> ModelRun:
    """One model's chunks as one run: results in single-run order, footprint across chunks."""
    facts = {key: _agree(name, key, [(path, _fact(run, key)) for path, run in chunks])
             for key in _SAME_ACROSS_CHUNKS}
    peaks = [run.peak_memory_bytes for _, run in chunks if run.peak_memory_bytes is not None]
    merged = ModelRun(
        _replayed_model(name, facts["params"], facts["quant"], facts["in_process"]),
        load_seconds=max(run.load_seconds for _, run in chunks),
        file_bytes=facts["file_bytes"],
        peak_memory_bytes=max(peaks, default=None),
        kv_shape=_agree(name, "KV-cache shape", [(path, run.kv_shape) for path, run in chunks]),
        context_length=facts["context_length"],
    )
    seen: dict[str, tuple[Path, QueryResult]] = {}
    for path, run in chunks:
        for result in run.results:
            if result.item_id not in seen:
                seen[result.item_id] = (path, result)
            elif seen[result.item_id][1] != result:
                raise DataError(f"{name} answered {result.item_id} in {seen[result.item_id][0]} and "
                                f"again, differently, in {path}")
    merged.results = sorted((result for _, result in seen.values()), key=lambda r: order[r.item_id])
    return merged


def merge(outputs: Sequence[EvalOutput], load_items: ItemLoader = load_benchmarks) -> Merged:
    """The evaluation one `fleet eval` over every model and benchmark of ``outputs`` would give."""
    if not outputs:
        raise DataError("no runs to merge")
    _check_settings(outputs)
    seed, limit, rates = outputs[0].settings
    benchmarks = _benchmarks(outputs)
    loaded = load_items(benchmarks, limit, seed)
    items = {item.id: (position, item) for position, item in enumerate(loaded)}
    order = {item_id: position for item_id, (position, _) in items.items()}
    per_model: dict[str, list[tuple[Path, ModelRun]]] = {}
    sources = []
    for output in outputs:
        chunk = _chunk_runs(output, items)
        for run in chunk:
            per_model.setdefault(run.model.name, []).append((output.path, run))
        sources.append(f"{output.path}: " + ", ".join(_describe(run) for run in chunk))
    runs = [_merge_model(name, chunks, order) for name, chunks in per_model.items()]
    settings = {"benchmarks": benchmarks, "limit": limit, "seed": seed}
    return Merged(runs, CostRates(**rates), settings, sources)


def _describe(run: ModelRun) -> str:
    tasks = ", ".join(dict.fromkeys(r.task for r in run.results))
    return f"{run.model.name} ({tasks}; {len(run.results)} queries)"


def sources_markdown(merged: Merged) -> str:
    """The list of merged chunks, and the tasks a model was not evaluated on."""
    count = len(merged.sources)
    lines = ["", f"Merged from {count} run{'' if count == 1 else 's'}:"]
    lines += [f"- {source}" for source in merged.sources]
    benchmarks = expand_names(merged.settings["benchmarks"])
    for run in merged.runs:
        missing = [task for task in benchmarks if task not in {r.task for r in run.results}]
        if missing:
            lines.append(f"- {run.model.name} was not evaluated on {', '.join(missing)}")
    return "\n".join(lines) + "\n"


def write_merged(merged: Merged, out: Path) -> str:
    """Write rows.json, queries.json, table.json and table.md into ``out``; the table.md text."""
    return write_outputs(out, merged.runs, merged.rates, merged.settings, sources_markdown(merged))


def fill_architecture(merged: Merged, models: Sequence[EvalModel]) -> list[str]:
    """Give runs recorded before tables carried it the KV-cache shape and context of ``models``
    (the evaluated fleet, read from their GGUF headers); the names filled in."""
    from backends.gguf_meta import read_kv_shape
    from backends.gguf_store import resolve_gguf

    by_name = {model.name: model for model in models}
    filled = []
    for run in merged.runs:
        model = by_name.get(run.model.name)
        if model is None or model.gguf is None or (run.kv_shape and run.context_length):
            continue
        run.kv_shape = run.kv_shape or read_kv_shape(resolve_gguf(model.gguf, model.sha256))
        run.context_length = run.context_length or model.backend.context_length
        filled.append(run.model.name)
    return filled


def merge_directories(
    runs: Sequence[Path],
    out: Path,
    load_items: ItemLoader = load_benchmarks,
    fleet: Sequence[EvalModel] | None = None,
) -> str:
    """`smallfleet fleet report`: merge the eval outputs ``runs`` into ``out``; the table.md text.

    With ``fleet`` (the evaluated fleet's models), a model whose runs lack the KV-cache shape or
    context gets them from its GGUF, so `smallfleet plan` can read the table on its own.
    """
    resolved_out = out.resolve()
    if any(path.resolve() == resolved_out for path in runs):
        raise DataError(f"--out {out} is one of the --runs; write the merge elsewhere")
    merged = merge([read_output(path) for path in runs], load_items)
    if fleet is not None:
        fill_architecture(merged, fleet)
    return write_merged(merged, out)
