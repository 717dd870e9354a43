"""Where `auto` sends everyday prompts: the default fleet's router on twelve prompts a new user
types, at each preset and at alpha 0.5, with the predicted success of every candidate.

    .venv/bin/python benchmarks/everyday_routing.py [--artifact router/artifacts/default-fleet] [--json]

Not a measurement of accuracy (these prompts have no labels): it shows what the router
decides for kinds of questions outside the benchmarks' formats, and which measured kinds of
question each prompt resembles.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# kind -> prompt
EVERYDAY = [
    ("chat", "Hi! How are you today?"),
    ("chat", "Thanks, that was helpful. Can you say it more briefly?"),
    ("factual", "What is the capital of Australia?"),
    ("factual", "Who wrote the play Hamlet?"),
    ("factual", "What is the chemical symbol for gold?"),
    ("commonsense", "Where would you put a wet umbrella when you come home?"),
    ("translation", "Translate 'Where is the train station?' into French."),
    ("explanation", "Explain the difference between TCP and UDP."),
    ("code", "Write a Python function that returns the nth Fibonacci number."),
    ("code", "How do I reverse a list in Python?"),
    ("arithmetic", "What is 17 * 23?"),
    ("word problem", "I buy 3 books at $12 each and pay with a $50 note. How much change do I get?"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, default=REPO / "router" / "artifacts" / "default-fleet")
    parser.add_argument("--json", action="store_true", help="every decision as a JSON line")
    args = parser.parse_args()
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from router.routing import load_router

    router = load_router(args.artifact)
    modes = {**{f"auto:{name}": alpha for name, alpha in router.presets.items()},
             "auto (default)": router.default_alpha, "alpha 0.5": 0.5}
    print(f"artifact {router.version}; presets {router.presets}; default alpha {router.default_alpha:g}\n")
    print("| prompt | kind | " + " | ".join(modes) + " | predicted success |")
    print("|---|---|" + "---|" * len(modes) + "---|")
    counts: dict[str, Counter[str]] = {mode: Counter() for mode in modes}
    for kind, prompt in EVERYDAY:
        picks = []
        for mode, alpha in modes.items():
            decision = router.route(prompt, alpha=alpha)
            counts[mode][decision.model] += 1
            picks.append(decision.model + (" (ood)" if decision.out_of_distribution else ""))
            if args.json:
                print(json.dumps({"prompt": prompt, "mode": mode, **decision.to_dict()}), file=sys.stderr)
        success = router.route(prompt, alpha=1.0).success
        shown = ", ".join(f"{m} {p:.2f}" for m, p in sorted(success.items(), key=lambda kv: -kv[1]))
        print(f"| {prompt} | {kind} | " + " | ".join(picks) + f" | {shown} |")
    print("\nShare of the twelve prompts per model:\n")
    for mode, counter in counts.items():
        print(f"- {mode}: " + ", ".join(f"{m} {n}" for m, n in counter.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
