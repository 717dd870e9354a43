"""How cheap could any cascade be? Lower bounds on a cascade's cost at a target accuracy.

    .venv/bin/python benchmarks/fleet/cascade_bounds.py docs/fleet-eval-results/routing-tasks \
        --first smollm2-135m --then qwen2.5-coder-1.5b --tolerance 0.047

`cascade_calibration.py` chooses one threshold and judges it by cross-validation. This script
asks a different question of the same measured answers: at the target accuracy (the second
model's minus ``--tolerance``), what is the least a cascade could cost if its escalation rule
were as good as it can be, from the most favourable to the least? Each figure is chosen on the
very rows it is judged on (in-sample), so each is optimistic: a rule learnt on other questions
can only do worse. If even a bound misses a cost target, no rule of that kind can reach it.

- ``oracle``: escalates exactly the questions the second model gets right and the first wrong,
  the cheapest of them first, until the target is reached. No signal can do better.
- ``per-task threshold``: one log-probability threshold per task (including "always" and
  "never" escalate), the cheapest combination that reaches the target (exact, by dynamic
  programming over the tasks). A rule that knew the kind of question and the first answer's
  confidence.
- ``one threshold``: a single threshold for every question, the route as it is built.
- ``per-task, no cascade``: each task sent to one model alone (what a router can do), for
  comparison.

Costs are relative to the second model's measured cost on the same questions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cascade_calibration as calibration  # noqa: E402
from routes_summary import read_queries  # noqa: E402

Option = tuple[int, float, str]  # (correct answers, cost, what was chosen)


def oracle(items: list[dict[str, Any]], target: int) -> tuple[int, float] | None:
    """The cheapest cascade that reaches ``target`` correct answers, knowing every answer's score."""
    correct = sum(item["first_score"] for item in items)
    cost = sum(item["first_cost"] for item in items)
    gains = sorted(item["then_cost"] for item in items if item["then_score"] > item["first_score"])
    for then_cost in gains:
        if correct >= target:
            break
        correct += 1
        cost += then_cost
    return (correct, cost) if correct >= target else None


def threshold_options(items: list[dict[str, Any]], signal: str) -> list[Option]:
    """Every distinct threshold's outcome on these items (never and always escalating included)."""
    calibration.SIGNAL = signal
    options = []
    for threshold in calibration.candidates(items):
        result = calibration.outcome(items, threshold)
        label = "never" if threshold <= -1e9 else f"{threshold:.4g}"
        options.append((sum(result["outcomes"]), result["cost"], label))
    always = calibration.outcome(items, 1.0)
    options.append((sum(always["outcomes"]), always["cost"], "always"))
    return options


def single_model_options(items: list[dict[str, Any]]) -> list[Option]:
    return [
        (sum(item["first_score"] for item in items), sum(item["first_cost"] for item in items), "first"),
        (sum(item["then_score"] for item in items), sum(item["then_cost"] for item in items), "then"),
    ]


Combination = tuple[int, float, dict[str, str]]  # (correct answers, cost, each task's choice)


def cheapest_combination(per_task: dict[str, list[Option]], target: int) -> Combination | None:
    """One option per task, at least ``target`` correct in all, at the least total cost (exact)."""
    # best[k] = (cost, choices) of the cheapest way to get exactly k correct over the tasks so far
    best: dict[int, tuple[float, dict[str, str]]] = {0: (0.0, {})}
    for task, options in sorted(per_task.items()):
        step: dict[int, tuple[float, dict[str, str]]] = {}
        for correct, (cost, chosen) in best.items():
            for option_correct, option_cost, label in options:
                k, total = correct + option_correct, cost + option_cost
                if k not in step or total < step[k][0]:
                    step[k] = (total, {**chosen, task: label})
        best = step
    reachable = [(cost, k, chosen) for k, (cost, chosen) in best.items() if k >= target]
    if not reachable:
        return None
    cost, k, chosen = min(reachable, key=lambda entry: entry[0])
    return k, cost, chosen


def cheapest_single(options: list[Option], target: int) -> Option | None:
    reachable = [option for option in options if option[0] >= target]
    return min(reachable, key=lambda option: option[1]) if reachable else None


def bounds(items: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    n = len(items)
    then_correct = sum(item["then_score"] for item in items)
    then_cost = sum(item["then_cost"] for item in items)
    target = then_correct - int(tolerance * n)  # whole answers: within `tolerance` of the second model
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_task[item["task"]].append(item)

    def row(name: str, found: tuple[int, float] | None, detail: Any = None) -> dict[str, Any]:
        if found is None:
            return {"rule": name, "reaches_target": False}
        return {"rule": name, "reaches_target": True, "accuracy": found[0] / n,
                "cost_ratio": found[1] / then_cost, "detail": detail}

    rows = [row("oracle", oracle(items, target))]
    for signal in ("mean", "min"):
        per_task = {task: threshold_options(part, signal) for task, part in by_task.items()}
        combined = cheapest_combination(per_task, target)
        rows.append(row(f"per-task threshold ({signal})", combined and combined[:2],
                        combined and combined[2]))
        single = cheapest_single(threshold_options(items, signal), target)
        rows.append(row(f"one threshold ({signal})", single and single[:2], single and single[2]))
    single_models = {task: single_model_options(part) for task, part in by_task.items()}
    routed = cheapest_combination(single_models, target)
    rows.append(row("per-task, no cascade", routed and routed[:2], routed and routed[2]))
    return {"items": n, "target_accuracy": target / n, "then_accuracy": then_correct / n,
            "first_accuracy": sum(item["first_score"] for item in items) / n,
            "first_cost_ratio": sum(item["first_cost"] for item in items) / then_cost, "bounds": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="fleet eval / report output directories")
    parser.add_argument("--first", required=True)
    parser.add_argument("--then", required=True)
    parser.add_argument("--tolerance", type=float, default=0.047,
                        help="the target is the second model's accuracy minus this")
    parser.add_argument("--cost", choices=("measured", "config"), default="measured")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    queries = read_queries(args.results)
    items = calibration.paired(queries, args.first, args.then, args.cost)
    if not items:
        raise SystemExit("no item answered by both models")
    result = {"first": args.first, "then": args.then, "tolerance": args.tolerance,
              **bounds(items, args.tolerance)}
    print(f"{result['items']} items; {args.first} then {args.then}; {args.cost} cost")
    print(f"target accuracy {result['target_accuracy']:.3f} ({args.then} {result['then_accuracy']:.3f} "
          f"- {args.tolerance}); {args.first} alone {result['first_accuracy']:.3f} at "
          f"{result['first_cost_ratio']:.0%} of {args.then}'s cost\n")
    print("| rule (chosen in-sample: a bound) | accuracy | cost vs the second model |")
    print("|---|---:|---:|")
    for entry in result["bounds"]:
        if entry["reaches_target"]:
            print(f"| {entry['rule']} | {entry['accuracy']:.3f} | {entry['cost_ratio']:.0%} |")
        else:
            print(f"| {entry['rule']} | target not reached | |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
