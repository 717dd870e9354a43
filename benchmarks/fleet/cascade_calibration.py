"""Calibrate a cascade's escalation threshold on fleet-eval rows, and judge it by cross-validation.

    .venv/bin/python benchmarks/fleet/cascade_calibration.py docs/fleet-eval-results/routing-tasks \
        --first qwen2.5-coder-0.5b --then qwen2.5-coder-1.5b [--tolerance 0.01] [--folds 5]

A cascade (backends/composite/cascade.py) keeps the first model's greedy answer when its mean
token log-probability is at least the threshold (and it was not cut at max_tokens), else asks
the second model. Both answers are in the rows already (greedy, same items), so the cascade's
outcome on every question follows from them exactly: correct = the first's score where it
stands, else the second's; cost = the first's cost plus the second's where escalated.

The threshold is chosen as the cheapest one whose accuracy on the calibration rows stays within
``--tolerance`` of the second model's. Its quality is judged by K-fold cross-validation (the
threshold chosen on the other folds, applied to each fold), stratified by task; the shipped
threshold is the one chosen on every row. Prints the cross-validated figures, the per-task
breakdown, McNemar's test against the second model and the threshold to put in the fleet YAML.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes_summary import half_width, mcnemar_p, read_queries  # noqa: E402

from backends.composite.cascade import escalation_reason  # noqa: E402


def questions_of(results: list[Path]) -> dict[str, str]:
    """Item id -> question text, re-derived from each output's settings and the installed data."""
    from fleet.benchmarks import load_benchmarks

    questions: dict[str, str] = {}
    for path in results:
        document = json.loads((path / "table.json").read_text())
        for item in load_benchmarks(document["benchmarks"], document["limit"], document["seed"]):
            questions[item.id] = item.question
    return questions


def write_rows(out: Path, name: str, items: list[dict[str, Any]], threshold: float,
               by_id: dict[str, dict[str, dict[str, Any]]], questions: dict[str, str]) -> None:
    """The route's rows and queries as its members' measured answers give them under its rule."""
    rows, queries = [], []
    for item in items:
        first, then = by_id[item["id"]]["first"], by_id[item["id"]]["then"]
        up = escalation_reason(item["logprobs"], threshold, SIGNAL) is not None
        chosen = then if up else first
        score = chosen["score"]
        rows.append({"question": questions[item["id"]], "task": item["task"], "scores": {name: score}})
        record = {key: first[key] + (then[key] if up else 0)
                  for key in ("seconds", "cpu_seconds", "prompt_tokens", "completion_tokens",
                              "config_cost", "measured_cost")}
        queries.append({
            "model": name, "id": item["id"], "task": item["task"], "score": score,
            "note": f"replayed: {'escalated' if up else 'first answer stood'}; {chosen['note']}",
            "finish_reason": chosen["finish_reason"], "answer": chosen.get("answer", ""), **record,
        })
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    (out / "queries.json").write_text(json.dumps(queries, indent=1))


def paired(queries: list[dict[str, Any]], first: str, then: str, cost: str) -> list[dict[str, Any]]:
    """One record per item both models answered: task, scores, costs, the first's logprobs."""
    by: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for query in queries:
        by[query["model"]][query["id"]] = query
    missing = [name for name in (first, then) if name not in by]
    if missing:
        raise SystemExit(f"no queries of {', '.join(missing)}")
    items = []
    for item_id, a in by[first].items():
        b = by[then].get(item_id)
        if b is None:
            continue
        if not a.get("token_logprobs") and a.get("completion_tokens"):
            raise SystemExit(f"{first} has no token_logprobs for {item_id}: rerun its fleet eval")
        items.append({
            "id": item_id, "task": a["task"], "first_score": a["score"], "then_score": b["score"],
            "first_cost": a[f"{cost}_cost"], "then_cost": b[f"{cost}_cost"],
            "logprobs": a.get("token_logprobs") or [], "finish_reason": a["finish_reason"],
        })
    return items


SIGNAL = "mean"  # set from --signal


def outcome(items: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    correct, cost, escalated, outcomes = 0, 0.0, 0, []
    for item in items:
        up = escalation_reason(item["logprobs"], threshold, SIGNAL) is not None
        score = item["then_score"] if up else item["first_score"]
        outcomes.append(score)
        correct += score
        cost += item["first_cost"] + (item["then_cost"] if up else 0.0)
        escalated += up
    n = max(1, len(items))
    return {"accuracy": correct / n, "cost": cost, "escalated": escalated / n, "outcomes": outcomes}


def candidates(items: list[dict[str, Any]]) -> list[float]:
    """Every distinct confidence seen (each splits the rows differently), plus 'never escalate'."""
    from backends.composite.cascade import confidence

    seen = {round(c, 6) for item in items if (c := confidence(item["logprobs"], SIGNAL)) is not None}
    return sorted({*seen, 0.0, -1e9})


def choose(items: list[dict[str, Any]], tolerance: float) -> float:
    """The cheapest threshold whose accuracy is within ``tolerance`` of the second model's."""
    target = sum(i["then_score"] for i in items) / max(1, len(items)) - tolerance
    best: tuple[float, float] | None = None
    for threshold in candidates(items):
        result = outcome(items, threshold)
        if result["accuracy"] >= target and (best is None or result["cost"] < best[0]):
            best = (result["cost"], threshold)
    return 0.0 if best is None else best[1]  # 0.0: escalate (almost) everything


def folds(items: list[dict[str, Any]], k: int, seed: int) -> list[list[int]]:
    """Item indices in ``k`` folds, each task spread evenly."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_task[item["task"]].append(index)
    assigned: list[list[int]] = [[] for _ in range(k)]
    rng = random.Random(seed)
    position = 0
    for task in sorted(by_task):
        indices = by_task[task]
        rng.shuffle(indices)
        for index in indices:
            assigned[position % k].append(index)
            position += 1
    return assigned


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="fleet eval / report output directories")
    parser.add_argument("--first", required=True)
    parser.add_argument("--then", required=True)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--signal", choices=("mean", "min"), default="mean",
                        help="the route's confidence: mean or lowest token log-probability")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost", choices=("measured", "config"), default="measured")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--name", default="cascade", help="the route's name, for --write-rows")
    parser.add_argument("--write-rows", type=Path, metavar="DIR",
                        help="write the route's replayed rows.json and queries.json here (every item "
                        "both models answered, at the shipped threshold), for `smallfleet fleet router`")
    args = parser.parse_args()
    global SIGNAL
    SIGNAL = args.signal
    queries = read_queries(args.results)
    items = paired(queries, args.first, args.then, args.cost)
    if not items:
        raise SystemExit("no item answered by both models")
    by_id: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for query in queries:
        if query["model"] in (args.first, args.then):
            by_id[query["id"]]["first" if query["model"] == args.first else "then"] = query
    cv_outcomes = [0] * len(items)
    cv_cost, cv_escalated, thresholds = 0.0, 0, []
    for fold in folds(items, args.folds, args.seed):
        held = set(fold)
        threshold = choose([it for i, it in enumerate(items) if i not in held], args.tolerance)
        thresholds.append(threshold)
        part = [items[i] for i in fold]
        result = outcome(part, threshold)
        for i, score in zip(fold, result["outcomes"], strict=True):
            cv_outcomes[i] = score
        cv_cost += result["cost"]
        cv_escalated += round(result["escalated"] * len(part))
    n = len(items)
    then_acc = sum(i["then_score"] for i in items) / n
    first_acc = sum(i["first_score"] for i in items) / n
    then_cost = sum(i["then_cost"] for i in items)
    first_cost = sum(i["first_cost"] for i in items)
    cv_acc = sum(cv_outcomes) / n
    only_cascade = sum(1 for c, i in zip(cv_outcomes, items, strict=True) if c and not i["then_score"])
    only_then = sum(1 for c, i in zip(cv_outcomes, items, strict=True) if i["then_score"] and not c)
    shipped = choose(items, args.tolerance)
    full = outcome(items, shipped)
    print(f"{n} items; signal {args.signal}; tolerance {args.tolerance}; {args.cost} cost\n")
    print("| system | accuracy | 95% half-width | cost vs second | escalated |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {args.first} | {first_acc:.3f} | {half_width(first_acc, n):.3f} | "
          f"{first_cost / then_cost:.0%} | |")
    print(f"| {args.then} | {then_acc:.3f} | {half_width(then_acc, n):.3f} | 100% | |")
    print(f"| cascade, {args.folds}-fold CV | {cv_acc:.3f} | {half_width(cv_acc, n):.3f} | "
          f"{cv_cost / then_cost:.0%} | {cv_escalated / n:.0%} |")
    print(f"| cascade, threshold {shipped:.4f} on all rows | {full['accuracy']:.3f} | | "
          f"{full['cost'] / then_cost:.0%} | {full['escalated']:.0%} |")
    print(f"\nthresholds chosen per fold: {', '.join(f'{t:.4f}' for t in thresholds)}")
    print(f"paired vs {args.then} (CV): cascade right and it wrong {only_cascade}, "
          f"the reverse {only_then}, "
          f"McNemar p = {mcnemar_p(only_cascade, only_then):.3f}")
    print("\n| task | n | first | second | cascade (CV) | escalated (all-rows threshold) |")
    print("|---|---:|---:|---:|---:|---:|")
    by_task: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_task[item["task"]].append(index)
    for task, indices in sorted(by_task.items()):
        sub = [items[i] for i in indices]
        k = len(sub)
        cascade = sum(cv_outcomes[i] for i in indices) / k
        print(f"| {task} | {k} | {sum(i['first_score'] for i in sub) / k:.3f} | "
              f"{sum(i['then_score'] for i in sub) / k:.3f} | {cascade:.3f} | "
              f"{outcome(sub, shipped)['escalated']:.0%} |")
    if args.write_rows:
        write_rows(args.write_rows, args.name, items, shipped, by_id, questions_of(args.results))
        print(f"\nreplayed rows of {args.name} written to {args.write_rows}")
    if args.json:
        args.json.write_text(json.dumps({
            "first": args.first, "then": args.then, "items": n, "tolerance": args.tolerance,
            "signal": args.signal,
            "cost": args.cost, "first_accuracy": first_acc, "then_accuracy": then_acc, "cv_accuracy": cv_acc,
            "cv_cost_vs_then": cv_cost / then_cost, "cv_escalated": cv_escalated / n,
            "threshold": shipped, "fold_thresholds": thresholds,
            "mcnemar": {"cascade_only": only_cascade, "then_only": only_then,
                        "p": mcnemar_p(only_cascade, only_then)},
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
