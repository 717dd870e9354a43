"""Compare a fleet's composite routes with the models they are built from, on one benchmark.

    .venv/bin/python benchmarks/fleet/routes_summary.py docs/fleet-eval-results \
        --task gsm8k --also qwen2.5-coder-1.5b

Reads `fleet eval` (or `fleet report`) output directories' queries.json and the fleet config
(the embedded default fleet unless --config) for each route's members. Prints two markdown
tables for docs/composite-routes.md:

1. per route, its members and any --also models: accuracy with a 95% interval half-width
   (normal approximation), mean wall seconds per query, completion tokens per query (all inner
   calls for a route) and configured and measured cost per query;
2. per route and member, the paired outcome on the questions both answered (route right and
   member wrong, the reverse) with McNemar's exact two-sided p-value, and a verdict: the route
   wins or loses where p < 0.05, else no measurable difference.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from fleet.composites import member_names
from fleet.config import default_fleet, load_fleet

SIGNIFICANCE = 0.05


def half_width(accuracy: float, n: int) -> float:
    return 1.96 * math.sqrt(accuracy * (1 - accuracy) / n) if n else 0.0


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: discordant pairs against a fair coin."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    low = min(only_first, only_second)
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def read_queries(results: list[Path]) -> list[dict[str, Any]]:
    """Every query record of these `fleet eval` / `fleet report` output directories, in order."""
    return [q for path in results for q in json.loads((path / "queries.json").read_text(encoding="utf-8"))]


def by_model(queries: list[dict[str, Any]], task: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {item id: query record}}`` for one task."""
    result: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for query in queries:
        if query["task"] == task:
            result[query["model"]][query["id"]] = query
    return result


def _mean(records: list[dict[str, Any]], key: str) -> float:
    return sum(float(r.get(key) or 0.0) for r in records) / len(records)


def figures_row(name: str, kind: str, records: dict[str, dict[str, Any]]) -> str:
    rows = list(records.values())
    accuracy, n = _mean(rows, "score"), len(rows)
    return (
        f"| {name} | {kind} | {accuracy:.3f} ±{half_width(accuracy, n):.3f} (n={n}) | "
        f"{_mean(rows, 'seconds'):.1f} | {_mean(rows, 'completion_tokens'):.0f} | "
        f"{_mean(rows, 'config_cost'):.2e} | {_mean(rows, 'measured_cost'):.2e} |"
    )


def paired_row(route: str, member: str, first: dict[str, Any], second: dict[str, Any]) -> str:
    shared = sorted(set(first) & set(second))
    route_only = sum(first[i]["score"] >= 0.5 > second[i]["score"] for i in shared)
    member_only = sum(second[i]["score"] >= 0.5 > first[i]["score"] for i in shared)
    p = mcnemar_p(route_only, member_only)
    if p >= SIGNIFICANCE:
        verdict = "no measurable difference"
    else:
        verdict = "route wins" if route_only > member_only else "route loses"
    cost_ratio = _mean([first[i] for i in shared], "measured_cost") / max(
        _mean([second[i] for i in shared], "measured_cost"), 1e-12
    )
    return (
        f"| {route} | {member} | {len(shared)} | {route_only} | {member_only} | {p:.3f} | "
        f"{cost_ratio:.1f}x | {verdict} |"
    )


def summary(results: Path | list[Path], config: Any, task: str, also: list[str]) -> str:
    """The two tables, from one output directory or several (e.g. a route's shards beside the
    members' own output: each directory's queries are read, in order)."""
    paths = [results] if isinstance(results, Path) else results
    models = by_model(read_queries(paths), task)
    routes = [route for route in config.routes if route.name in models]
    if not routes:
        raise SystemExit(f"{', '.join(map(str, paths))}: no route of the fleet was evaluated on {task}")
    figures = [
        f"### {task}: routes and their members\n",
        "| model or route | kind | accuracy | s/query | completion tokens/query | "
        "config cost/query | measured cost/query |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    paired = [
        f"\n### {task}: each route against each member, on the same questions\n",
        "| route | member | questions | only route right | only member right | McNemar p | "
        "measured cost ratio | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    listed: set[str] = set()
    for route in routes:
        figures.append(figures_row(route.name, f"{route.type} route", models[route.name]))
        for member in member_names(route):
            if member not in models:
                paired.append(f"| {route.name} | {member} | not evaluated on {task} | | | | | |")
                continue
            if member not in listed:
                figures.append(figures_row(member, "model (member)", models[member]))
                listed.add(member)
            paired.append(paired_row(route.name, member, models[route.name], models[member]))
        for other in also:
            if other in models:
                paired.append(paired_row(route.name, other, models[route.name], models[other]))
    for other in also:
        if other in models and other not in listed:
            figures.append(figures_row(other, "model (reference)", models[other]))
            listed.add(other)
    return "\n".join(figures + paired) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="fleet eval or fleet report output directories")
    parser.add_argument("--config", type=Path, help="fleet YAML with the routes (default: embedded)")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--also", default="", help="comma-separated models to compare against too")
    args = parser.parse_args()
    config = load_fleet(args.config) if args.config else default_fleet()
    also = [name for name in args.also.split(",") if name]
    print(summary(args.results, config, args.task, also))


if __name__ == "__main__":
    main()
