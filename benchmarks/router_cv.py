"""5-fold cross-validation of the router on the shipped routing benchmark, against the targets.

    python benchmarks/router_cv.py [--folds 5] [--seed 0] [--out-png router_cv.png]

Trains a fresh router on each fold of router/data/train.json (task groups from tasks.jsonl),
prints the alpha sweep beside the baselines, then the figures for each target:
quality mode (alpha=1) accuracy, and cheap mode accuracy at <= 20% of the best single
model's cost. Costs are summed per fold (~1,122 rows) and averaged over folds; the held-out
reference split is about a third of that size, so compare cost *ratios*, not raw costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "router" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-png", type=Path)
    parser.add_argument("--skip-recipe", action="store_true", help="skip the clusters-only comparison run")
    args = parser.parse_args()
    if str(REPO) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(REPO))
    from router.cv import cross_validate
    from router.fit import FitConfig
    from router.report import format_table, plot_curve
    from router.train import PRESET_COST_FRACTIONS, choose_presets, load_training_set

    start = time.monotonic()
    ts = load_training_set(DATA / "train.json", DATA / "models.json", DATA / "tasks.jsonl", lambda _: None)
    report = cross_validate(ts, FitConfig(seed=args.seed), args.folds)
    presets = choose_presets(report)
    print(f"{args.folds}-fold CV of the router on {DATA / 'train.json'} ({time.monotonic() - start:.0f} s)")
    keep = {round(a / 10, 1) for a in range(11)} | set(presets.values())
    print(format_table([(a, s) for a, s in report.curve if a in keep], report.baselines))
    best = report.baselines["best single"]
    print("\ntargets (held-out goals: quality >= 0.66; cheap >= 0.597 at <= 20% of best single's cost)")
    for name, alpha in presets.items():
        s = report.at(alpha)
        cap = PRESET_COST_FRACTIONS.get(name)
        limit = f" (cap {cap:.0%})" if cap else ""
        print(
            f"  {name:9s} alpha={alpha:<6g} accuracy {s.accuracy:.4f}  cost {s.cost:.4f} = "
            f"{s.cost / best.cost:.1%} of best single{limit}"
        )
    if not args.skip_recipe:
        recipe = cross_validate(ts, FitConfig(seed=args.seed, blend=(1.0, 0.0, 0.0)), args.folds).at(1.0)
        print(
            f"  clusters only (K=60, top 3; Avengers-Pro recipe), alpha=1: accuracy {recipe.accuracy:.4f}  "
            f"cost {recipe.cost:.4f} = {recipe.cost / best.cost:.1%} of best single"
        )
    for name, s in report.baselines.items():
        print(f"  {name:20s} accuracy {s.accuracy:.4f}  cost {s.cost:.4f}")
    if args.out_png:
        plot_curve(report.curve, report.baselines, args.out_png, f"{args.folds}-fold CV, routing benchmark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
