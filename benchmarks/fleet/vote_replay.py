"""Replay a diverse route's vote from its measured samples: fewer samples, or stopping early.

    .venv/bin/python benchmarks/fleet/vote_replay.py RESULTS_DIR [RESULTS_DIR ...] --route vote-1.5b

`fleet eval` keeps each sample of a diverse route's answer in queries.json, scored as if it had
answered alone (``samples``: model, temperature, score, final answer, tokens). The vote over the
first ``k`` of them, and a vote that stops drawing once its first ``m`` samples agree, follow
from those records exactly (every sample votes, most votes win, a tie goes to the answer seen
first: the route's rule with ``count_duplicates: true``), so their accuracy and token cost can
be compared on the same questions without running the models again. Each is paired with the
route's first sample alone (with a greedy first sample, the model's own answer) by McNemar's
exact test, as is the route's own answer as it ran ("the route as run": for a route that stops
early, its records keep only the samples it drew; the replayed rules then need every sample and
are left out when some question has fewer). A question in several of the directories (by its
``id``) counts once, as first read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routes_summary import half_width, mcnemar_p, read_queries  # noqa: E402


def vote(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The sample whose answer wins: most votes, a tie to the answer seen first; None if none answered."""
    answered = [s for s in samples if "answer" in s]
    if not answered:
        return None
    counts = Counter(s["answer"] for s in answered)
    best = max(counts.values())
    return next(s for s in answered if counts[s["answer"]] == best)


def first_k(samples: list[dict[str, Any]], k: int) -> tuple[int, int]:
    """(score, completion tokens) of a vote over the first ``k`` samples."""
    drawn = samples[:k]
    winner = vote(drawn)
    return (winner["score"] if winner else 0), sum(s.get("completion_tokens", 0) for s in drawn)


def stop_when_agreed(samples: list[dict[str, Any]], m: int) -> tuple[int, int]:
    """Draw ``m`` samples; if they all give the same definite answer, stop there (the diverse
    route's ``stop_when_agreed``), else draw the rest and vote."""
    head = samples[:m]
    answers = {s.get("answer") for s in head}
    definite = all(s.get("definite", True) for s in head)  # a number or a letter (the route's rule)
    if len(answers) == 1 and None not in answers and definite:
        return head[0]["score"], sum(s.get("completion_tokens", 0) for s in head)
    return first_k(samples, len(samples))


def replay(queries: list[dict[str, Any]], route: str) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for q in queries:  # a question measured in several runs (e.g. two seeds' samples) counts once
        if q["model"] == route and q.get("samples") and q.get("id", id(q)) not in seen:
            seen.add(q.get("id", id(q)))
            records.append(q)
    if not records:
        raise SystemExit(f"no queries of {route!r} with samples (re-run its fleet eval)")
    size = min(len(q["samples"]) for q in records)
    full = size == max(len(q["samples"]) for q in records)  # every sample of every question kept
    base = [q["samples"][0]["score"] for q in records]
    base_tokens = sum(q["samples"][0].get("completion_tokens", 0) for q in records)
    rules: list[tuple[str, list[tuple[int, int]]]] = [
        ("the route as run", [(q["score"], q.get("completion_tokens", 0)) for q in records]),
    ]
    for k in range(1, size + 1 if full else 2):
        name = "first sample alone" if k == 1 else f"vote over the first {k}"
        rules.append((name, [first_k(q["samples"], k) for q in records]))
    for m in range(2, size if full else 2):
        name = f"stop once the first {m} agree, else all {size}"
        rules.append((name, [stop_when_agreed(q["samples"], m) for q in records]))
    n = len(records)
    rows = []
    for name, outcomes in rules:
        scores = [score for score, _ in outcomes]
        only_rule = sum(1 for s, b in zip(scores, base, strict=True) if s and not b)
        only_base = sum(1 for s, b in zip(scores, base, strict=True) if b and not s)
        tokens = sum(t for _, t in outcomes)
        rows.append({
            "rule": name, "accuracy": sum(scores) / n, "half_width": half_width(sum(scores) / n, n),
            "only_rule_right": only_rule, "only_first_right": only_base, "p": mcnemar_p(only_rule, only_base),
            "tokens_vs_first": tokens / base_tokens if base_tokens else None,
        })
    by_temperature: dict[str, list[int]] = {}
    for q in records:
        for s in q["samples"]:
            by_temperature.setdefault(f"{s['model']} at {s['temperature']}", []).append(s["score"])
    samples = {key: sum(v) / len(v) for key, v in by_temperature.items()}
    drawn = dict(sorted(Counter(len(q["samples"]) for q in records).items()))
    return {"route": route, "questions": n, "samples_per_question": size if full else drawn,
            "rules": rows, "sample_accuracy": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="fleet eval / report output directories")
    parser.add_argument("--route", required=True)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    queries = read_queries(args.results)
    result = replay(queries, args.route)
    drawn = result["samples_per_question"]
    each = (f"{drawn} samples each" if isinstance(drawn, int)
            else "samples drawn: " + ", ".join(f"{k} on {v}" for k, v in drawn.items()))
    print(f"{result['route']}: {result['questions']} questions, {each}\n")
    print("| rule | accuracy | only the rule right | only the first sample right | McNemar p "
          "| tokens vs the first |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in result["rules"]:
        tokens = f"{row['tokens_vs_first']:.2f}x" if row["tokens_vs_first"] is not None else ""
        print(f"| {row['rule']} | {row['accuracy']:.3f} ±{row['half_width']:.3f} | "
              f"{row['only_rule_right']} | {row['only_first_right']} | {row['p']:.3g} | {tokens} |")
    alone = ", ".join(f"{key} {value:.3f}" for key, value in result["sample_accuracy"].items())
    print(f"\nEach sample alone: {alone}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
