"""`smallfleet plan --memory 1.6GB`: the fleet that fits a memory budget, explained (plan.py decides).

The table is a `fleet eval` (or merged `fleet report`) table.json. Tables written before fleet
eval recorded the KV-cache shape get it from the models' GGUF headers, found through the fleet
config (``--config``; resolving a packaged model may assemble or build its GGUF first).
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from pathlib import Path
from typing import Any

from fleet.models import load_eval_models
from fleet.plan import (
    DEFAULT_CONTEXT,
    DEFAULT_MAX_LOSS,
    DEFAULT_OVERHEAD_BYTES,
    RULE,
    Candidate,
    Choice,
    ModelFacts,
    Plan,
    PlanSettings,
    Rejection,
    candidates_from_table,
    make_plan,
    needs_facts,
)
from router._errors import DataError
from router.cli_support import guarded

# The committed measurement of the whole fleet (a merged `fleet report`).
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "fleet-eval-results"
DEFAULT_TABLE = RESULTS / "table.json"
# The routing benchmark's tasks, measured apart (another item count per task); planned together.
ROUTING_TABLE = RESULTS / "routing-tasks" / "table.json"


def default_tables() -> list[Path]:
    return [path for path in (DEFAULT_TABLE, ROUTING_TABLE) if path == DEFAULT_TABLE or path.exists()]
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}
_ENTRY_KEYS = ("model", "task", "accuracy", "n")  # what every table entry needs (plan.candidates_from_table)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in ``1.6GB``, ``1600MB``, ``1.5GiB``, ``800M`` (GB, MB, K: powers of 10; GiB, MiB, KiB: of 2)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 1.6GB, 1600MB, 1.5GiB or 800M, not {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def read_table(path: Path) -> list[dict[str, Any]]:
    """The table's entries, tasks in the order of its benchmarks."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such table; run `smallfleet fleet eval` (or `fleet report`) "
                        "and pass its table.json with --table") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("table"), list):
        raise DataError(f"{path}: not a fleet eval table.json")
    for index, entry in enumerate(document["table"]):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: table[{index}] is not an object")
        missing = [key for key in _ENTRY_KEYS if entry.get(key) is None]
        if missing:
            raise DataError(f"{path}: table[{index}] has no {', '.join(missing)}")
    order = {task: n for n, task in enumerate(document.get("benchmarks") or [])}
    return sorted(document["table"], key=lambda entry: order.get(entry.get("task"), len(order)))


def fleet_facts(names: list[str], config: Path | None) -> dict[str, ModelFacts]:
    """KV-cache bytes per token (from the GGUF header) and context length of the fleet's ``names``."""
    from backends.gguf_meta import read_kv_shape
    from backends.gguf_store import resolve_gguf

    ggufs = {m.name: m for m in load_eval_models(config) if m.gguf is not None}
    missing = [name for name in names if name not in ggufs]
    if missing:
        where = config or "the default fleet"
        raise DataError(f"the table has no KV-cache shape or context for {', '.join(missing)} and {where} "
                        "has no GGUF for it; pass the evaluated fleet with --config")
    found = {}
    for name in names:
        model = ggufs[name]
        shape = read_kv_shape(resolve_gguf(model.gguf or "", model.sha256))
        found[name] = ModelFacts(shape.kv_bytes_per_token, model.backend.context_length)
    return found


def to_json(plan: Plan) -> dict[str, Any]:
    """The plan as plain data (what ``smallfleet plan --json`` prints)."""
    s = plan.settings

    def model(c: Candidate) -> dict[str, Any]:
        footprint = s.footprint(c)
        return {
            "name": c.name, "family": c.family, "params": c.params, "quant": c.quant,
            "bits_per_param": c.bits_per_param,
            "footprint": {"weights": footprint.weights, "kv_cache": footprint.kv_cache,
                          "overhead": footprint.overhead, "overhead_source": footprint.overhead_source,
                          "total": footprint.total},
            "accuracy": c.accuracy, "n": c.n, "measured_cost_per_query": c.cost,
            "measured_peak_memory": c.peak_memory_bytes, "eval_context": c.eval_context,
        }

    chosen = [
        {**model(x.candidate), "role": x.role, "tasks": list(x.tasks), "reason": x.reason,
         "reference": x.reference.name if x.reference else None, "loss_vs_reference": x.loss}
        for x in plan.chosen
    ]
    return {
        "budget": s.budget, "context": s.context, "max_loss": s.max_loss,
        "overhead_per_model": "measured" if s.overhead is None else s.overhead,
        "models": chosen, "assignment": plan.assignment, "total": plan.total, "free": s.budget - plan.total,
        "alternative": model(plan.alternative) if plan.alternative else None,
        "rejected": [{"model": r.model, "reason": r.reason} for r in plan.rejected],
        "rule": RULE,
    }


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def _params(c: Candidate) -> str:
    size = f"{c.params / 1e9:.2f}B params" if c.params else "params unknown"
    bits = f", {c.bits_per_param:.2f} file bits/param" if c.bits_per_param else ""
    return f"{size}, {c.quant or 'quant unknown'}{bits}"


def _accuracy(c: Candidate, tasks: list[str]) -> str:
    return "  ".join(f"{t} {c.accuracy[t]:.3f} (n={c.n.get(t, '?')})" for t in tasks if t in c.accuracy)


def _choice_lines(choice: Choice, plan: Plan) -> list[str]:
    c, f = choice.candidate, choice.footprint
    lines = [
        f"{c.name}  {choice.role}: {', '.join(choice.tasks) or '(no task left)'}",
        f"  {_params(c)}",
        f"  footprint {_mb(f.total)} = weights {_mb(f.weights)} + KV cache {_mb(f.kv_cache)} "
        f"+ overhead {_mb(f.overhead)} ({f.overhead_source})",
        f"  accuracy  {_accuracy(c, plan.tasks)}",
    ]
    if choice.reference is not None and choice.reference is not c:
        deltas = "  ".join(f"{t} {-v:+.3f}" for t, v in choice.loss.items())
        lines.append(f"  minus {choice.reference.name} ({choice.reference.quant}): {deltas}")
    if choice.role == "helper":
        primary = plan.chosen[0].candidate
        costs = "  ".join(f"{t} {c.cost[t]:.3g} vs {primary.cost[t]:.3g}" for t in choice.tasks)
        lines.append(f"  cost/query against {primary.name}: {costs}")
    lines.append(f"  why: {choice.reason}")
    if c.peak_memory_bytes and c.eval_context:
        lines.append(_peak_line(c, f.overhead_source == "measured"))
    return lines


def _peak_line(c: Candidate, measured: bool) -> str:
    peak, context = c.peak_memory_bytes or 0, c.eval_context or 0
    kv_cache = c.kv_bytes_per_token * context
    if measured:
        return (f"  overhead: the peak fleet eval measured, {_mb(peak)} at context {context}, "
                f"minus weights and that context's KV cache ({_mb(kv_cache)})")
    return (f"  fleet eval measured a peak of {_mb(peak)} at context {context}: weights + "
            f"KV cache {_mb(kv_cache)} + {_mb(peak - c.file_bytes - kv_cache)}")


def _alternative_lines(plan: Plan) -> list[str]:
    alt, primary = plan.alternative, plan.chosen[0].candidate
    if alt is None:
        return ["Params against precision: no smaller family fits to compare with."]
    shared = [t for t in plan.tasks if t in alt.accuracy and t in primary.accuracy]
    wins = sum(primary.accuracy[t] > alt.accuracy[t] for t in shared)
    pairs = ", ".join(f"{t} {primary.accuracy[t]:.3f} vs {alt.accuracy[t]:.3f}" for t in shared)
    means = f"mean {primary.mean_accuracy():.3f} vs {alt.mean_accuracy():.3f}"
    lower = (primary.bits_per_param or 0) < (alt.bits_per_param or 0)
    return [
        "Params against precision (the next-smaller family at its highest precision that fits):",
        f"  {primary.name} ({_params(primary)}, {_mb(plan.settings.footprint(primary).total)})",
        f"  against {alt.name} ({_params(alt)}, {_mb(plan.settings.footprint(alt).total)}):",
        f"  {pairs}; {means}",
        f"  The model with more parameters, at {'lower' if lower else 'higher'} precision, "
        f"is ahead on {wins} of {len(shared)} tasks.",
        *([f"  Note: {alt.name} has the higher mean accuracy in less memory; the rule prefers parameters, "
           "this measurement does not."] if alt.mean_accuracy() > primary.mean_accuracy() else []),
    ]


def render_text(plan: Plan) -> str:
    s = plan.settings
    overhead = "measured per model" if s.overhead is None else f"{_mb(s.overhead)} per model"
    lines = [
        f"Fleet for {_mb(s.budget)} at context {s.context} tokens (max loss {s.max_loss:g} per task, "
        f"overhead {overhead})",
        "",
    ]
    for choice in plan.chosen:
        lines += [*_choice_lines(choice, plan), ""]
    assignment = ", ".join(f"{task} -> {model}" for task, model in plan.assignment.items())
    lines += [f"Tasks: {assignment}",
              f"Total {_mb(plan.total)} of {_mb(s.budget)}; {_mb(s.budget - plan.total)} free.", ""]
    lines += [*_alternative_lines(plan), ""]
    if plan.rejected:
        lines += ["Not chosen:", *(f"  {r.model}: {r.reason}" for r in plan.rejected), ""]
    lines += textwrap.wrap(f"Rule: {RULE}", width=100)
    return "\n".join(lines)


def run_plan(args: argparse.Namespace) -> int:
    if args.context < 1 or args.max_loss < 0 or args.memory < 1 or (args.overhead or 0) < 0:
        raise DataError("--memory and --context must be positive and --max-loss at least 0")
    entries = [entry for path in args.table for entry in read_table(path)]
    lacking = list(dict.fromkeys(e["model"] for e in entries if needs_facts(e)))
    facts = fleet_facts(lacking, args.config) if lacking else {}
    found, skipped = candidates_from_table(entries, facts)
    settings = PlanSettings(args.memory, args.context, args.max_loss, args.overhead)
    plan = make_plan(found, settings)
    plan.rejected += [Rejection(r.model, r.reason) for r in skipped]
    print(json.dumps(to_json(plan), indent=2) if args.json else render_text(plan))
    return 0


def add_plan_command(subparsers: Any) -> None:

    p = subparsers.add_parser(
        "plan", help="propose the fleet that fits a memory budget, from measured quality", description=RULE,
    )
    p.add_argument("--memory", type=parse_size, required=True, help="budget: 1.6GB, 1600MB, 1.5GiB, 800M")
    p.add_argument("--context", type=int, default=DEFAULT_CONTEXT, help="tokens of KV cache per model")
    p.add_argument("--table", type=Path, nargs="+", default=default_tables(), metavar="TABLE",
                   help="fleet eval table.json files, their tasks taken together (default: "
                   "docs/fleet-eval-results/table.json and routing-tasks/table.json)")
    p.add_argument("--max-loss", type=float, default=DEFAULT_MAX_LOSS,
                   help="accuracy a lower precision (or a smaller helper) may lose, per task")
    p.add_argument("--overhead", type=parse_size,
                   help="memory per model beyond weights and KV cache (default: each model's measured "
                   "peak minus weights and KV cache at the eval context; unmeasured: "
                   f"{DEFAULT_OVERHEAD_BYTES / 1e6:g}MB)")
    p.add_argument("--config", type=Path,
                   help="fleet YAML whose GGUFs give the KV-cache shape when the table lacks it")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=guarded(run_plan))
