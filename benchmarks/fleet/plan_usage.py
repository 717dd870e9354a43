"""How often a plan_solve route's planner gives a usable plan, and why it does not.

    .venv/bin/python benchmarks/fleet/plan_usage.py --route plan-solve-0.5b --benchmark gsm8k --limit 50

Asks only the planner (the route's own `plan()` step: its prompt, token limit, parser and
checks) for the benchmark's first --limit items (the same seed-0 sample `fleet eval` uses),
and prints how many plans the solver would get and the fallback reasons of the rest. A route
whose plans are mostly dropped answers like its solver alone.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path

from fleet.benchmarks import load_benchmarks
from fleet.config import default_fleet, load_fleet
from fleet.models import route_eval_model
from fleet.runner import request_for


async def plan_outcomes(
    config_path: Path | None, route_name: str, benchmark: str, limit: int
) -> Counter[str]:
    config = load_fleet(config_path) if config_path else default_fleet()
    route = next((r for r in config.routes if r.name == route_name), None)
    if route is None or route.type != "plan_solve":
        raise SystemExit(f"no plan_solve route {route_name!r} in the fleet")
    model = route_eval_model(config, route)
    backend = model.backend
    await backend.start()  # type: ignore[attr-defined]
    outcomes: Counter[str] = Counter()
    try:
        for item in load_benchmarks([benchmark], limit, seed=0):
            plan = await backend.route.plan(request_for(item, 384, 0))  # type: ignore[attr-defined]
            outcomes[plan.fallback or "plan used"] += 1
    finally:
        await backend.aclose()  # type: ignore[attr-defined]
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--route", default="plan-solve-0.5b")
    parser.add_argument("--config", type=Path, help="fleet YAML (default: the embedded default fleet)")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    outcomes = asyncio.run(plan_outcomes(args.config, args.route, args.benchmark, args.limit))
    total = sum(outcomes.values())
    print(f"{args.route} on the first {total} {args.benchmark} items (seed 0):")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome}: {count} ({count / total:.0%})")


if __name__ == "__main__":
    main()
