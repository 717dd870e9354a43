"""`smallfleet fleet eval`: labelled benchmarks through every fleet model; rows and tables out.

`smallfleet fleet report`: several eval outputs (run in chunks) merged into one (merge.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from fleet.models import load_eval_models
from fleet.sandbox import DEFAULT_TIMEOUT as SANDBOX_TIMEOUT
from router._errors import DataError
from router.cli_support import guarded, progress


def _max_tokens(text: str) -> dict[str, int]:
    """``256`` (every task) or ``mmlu=32,gsm8k=256``."""
    from fleet.benchmarks import LOADERS

    try:
        if "=" not in text:
            return dict.fromkeys(LOADERS, int(text))
        pairs = (part.split("=", 1) for part in text.split(",") if part)
        return {task.strip(): int(value) for task, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or task=N,...: {text!r}") from None


def _shard(text: str) -> tuple[int, int]:
    """``1/6`` -> (1, 6): items at positions 1, 7, 13, ... of each benchmark's sample."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N: {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N: {text!r}")
    return index, count


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_fleet_commands(subparsers: Any) -> None:
    """Register ``fleet eval``, ``fleet report`` and ``fleet router``."""
    from fleet.tables import DEFAULT_CPU_SECOND_PRICE, DEFAULT_GB_SECOND_PRICE

    fleet = subparsers.add_parser("fleet", help="measure the fleet's models on labelled benchmarks")
    commands = fleet.add_subparsers(dest="fleet_command", required=True)
    p = commands.add_parser("eval", help="run benchmarks through each model; write rows.json and tables")
    p.add_argument("--config", type=Path, help="fleet YAML (default: the embedded default fleet)")
    p.add_argument("--models", type=_names, help="comma-separated model names (default: all)")
    p.add_argument("--benchmarks", type=_names, default=["mmlu", "gsm8k", "humaneval"])
    p.add_argument("--limit", type=int, help="items per benchmark (default: all)")
    p.add_argument("--shard", type=_shard, metavar="I/N",
                   help="only every N-th of the sampled items, from the I-th (0-based): a check of a "
                   "route on some of the questions a full run answered")
    p.add_argument("--out", type=Path, required=True, help="directory for rows.json, table.md, table.json")
    p.add_argument("--seed", type=int, default=0, help="sampling of items and generation seed")
    p.add_argument("--max-tokens", type=_max_tokens, help="N, or per task: mmlu=64,gsm8k=384,humaneval=384")
    p.add_argument("--timeout", type=float, default=SANDBOX_TIMEOUT, help="seconds per HumanEval test run")
    p.add_argument("--price-cpu-second", type=float, default=DEFAULT_CPU_SECOND_PRICE)
    p.add_argument("--price-gb-second", type=float, default=DEFAULT_GB_SECOND_PRICE)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=guarded(run_fleet_eval))
    _add_report(commands)
    _add_router(commands)


def _add_report(commands: Any) -> None:

    p = commands.add_parser(
        "report", help="merge fleet eval outputs run in chunks into one rows.json, queries.json and table"
    )
    p.add_argument("--runs", type=Path, nargs="+", required=True, metavar="DIR",
                   help="fleet eval output directories (same seed, limit and rates)")
    p.add_argument("--out", type=Path, required=True, help="directory for the merged files")
    p.add_argument("--config", type=Path,
                   help="the evaluated fleet: fills in a KV-cache shape and context the runs lack")
    p.set_defaults(func=guarded(run_fleet_report))


def _add_router(commands: Any) -> None:
    from fleet.fleet_router import COST_SOURCES, DEFAULT_CLUSTERS, DEFAULT_COST, DEFAULT_FOLDS

    p = commands.add_parser(
        "router", help="train a router artifact for the fleet from its own fleet eval (or report) output"
    )
    p.add_argument("--results", type=Path, nargs="+", required=True, metavar="DIR",
                   help="fleet eval or fleet report output directories, taken together")
    p.add_argument("--out", type=Path, required=True, help="artifact directory (its inputs go in training/)")
    p.add_argument("--models", type=_names, help="comma-separated models to route between (default: all)")
    p.add_argument("--cost", choices=COST_SOURCES, default=DEFAULT_COST,
                   help="price models by measured cost (CPU seconds, memory held) or configured price")
    p.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                   help="cross-validation folds for the manifest (0: none)")
    p.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--default-alpha", metavar="PRESET|ALPHA",
                   help="what plain `auto` uses: quality (default), balanced, cheap, or 0..1")
    p.set_defaults(func=guarded(run_fleet_router))


def run_fleet_router(args: argparse.Namespace) -> int:
    import time

    from fleet.fleet_router import build_fleet_router
    from router.eval_cli import print_cv_summary

    artifact = build_fleet_router(
        args.results, args.out, models=args.models, cost=args.cost, folds=args.folds,
        clusters=args.clusters, seed=args.seed, default_alpha=args.default_alpha,
        progress=progress(time.monotonic()),
    )
    if artifact.manifest.get("cv"):
        print_cv_summary(artifact.manifest)
    print(f"artifact {artifact.version} written to {args.out}")
    return 0


def run_fleet_report(args: argparse.Namespace) -> int:
    from fleet.merge import merge_directories

    fleet = load_eval_models(args.config) if args.config else None
    print(merge_directories(args.runs, args.out, fleet=fleet))
    return 0


def run_fleet_eval(args: argparse.Namespace) -> int:
    from fleet.benchmarks import load_benchmarks, shard_items
    from fleet.runner import evaluate_model
    from fleet.tables import CostRates, write_outputs

    if args.limit is not None and args.limit < 1:
        raise DataError("--limit must be at least 1")
    models = load_eval_models(args.config)
    if args.models:
        unknown = sorted(set(args.models) - {m.name for m in models})
        if unknown:
            raise DataError(f"--models: not in the fleet: {', '.join(unknown)}")
        models = [m for m in models if m.name in args.models]
    if not models:
        raise DataError("no llama_cpp or openai model to evaluate")
    items = load_benchmarks(args.benchmarks, args.limit, args.seed)
    if args.shard:
        items = shard_items(items, *args.shard)
    runs = []
    for model in models:
        print(f"{model.name}: {len(items)} queries", file=sys.stderr, flush=True)
        runs.append(asyncio.run(evaluate_model(
            model, items, max_tokens=args.max_tokens, seed=args.seed, timeout=args.timeout,
            progress=not args.no_progress,
        )))
    rates = CostRates(cpu_second=args.price_cpu_second, gb_second=args.price_gb_second)
    settings = {"benchmarks": args.benchmarks, "limit": args.limit, "seed": args.seed}
    if args.shard:
        settings["shard"] = "/".join(map(str, args.shard))
    print(write_outputs(args.out, runs, rates, settings))
    return 0
