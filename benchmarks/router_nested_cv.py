"""Nested cross-validation of the router: figures for queries it never saw, beside plain CV's.

    python benchmarks/router_nested_cv.py [--data DIR] [--outer 5] [--inner 4] [--grid small|fleet]
        [--json OUT.json]

``--data`` is a directory with rows.json (or train.json), models.json and tasks.jsonl: by
default the shipped 9-model routing benchmark (router/data); ``router/artifacts/default-fleet/training``
is the default fleet's. Inside each outer training fold, an inner CV chooses the hyper-parameters
among the grid, the presets' alphas and the calibration map; the fold's test rows judge the result.
Plain CV (router/cv.py) of the shipped configuration on all rows is printed beside it: its
presets were chosen on the very folds it reports, so the gap between the two is the optimism of
choosing on the data you report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Hyper-parameter candidates. "benchmark": the 9-model data (5,608 rows; the shipped defaults and
# three neighbours); "fleet": a few hundred rows of a small fleet (fewer clusters).
GRIDS = {
    "benchmark": [
        {},
        {"n_clusters": 30},
        {"blend": (0.5, 0.5, 0.0, 0.0)},
        {"model_c": 1.0},
    ],
    "fleet": [
        {"n_clusters": 12},
        {"n_clusters": 12, "blend": (0.5, 0.5, 0.0, 0.0)},
        {"n_clusters": 20, "model_c": 1.0},
        {"n_clusters": 8, "blend": (0.0, 0.5, 0.25, 0.25)},
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "router" / "data")
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=4)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from router.calibration import reliability_markdown
    from router.cv import cross_validate
    from router.fit import FitConfig
    from router.nested_cv import describe, nested_cross_validate, nested_markdown
    from router.train import choose_presets, load_training_set

    rows = args.data / "rows.json" if (args.data / "rows.json").exists() else args.data / "train.json"
    start = time.monotonic()
    ts = load_training_set(rows, args.data / "models.json", args.data / "tasks.jsonl", lambda _: None)
    configs = [FitConfig(seed=args.seed, **overrides) for overrides in GRIDS[args.grid]]  # type: ignore[arg-type]
    plain = cross_validate(ts, configs[0], args.outer)
    presets = choose_presets(plain)
    best = plain.baselines["best single"]
    print(f"{rows}: {len(ts.data.questions)} rows, {len(ts.data.models)} models\n")
    print(f"Plain {args.outer}-fold CV of {describe(configs[0])}, presets chosen on the same folds:\n")
    print("| mode | accuracy | cost vs best single |\n|---|---:|---:|")
    for name, alpha in presets.items():
        s = plain.at(alpha)
        print(f"| preset {name} (alpha {alpha:g}) | {s.accuracy:.3f} | {s.cost / best.cost:.0%} |")
    s = plain.at(0.5)
    print(f"| alpha 0.5 | {s.accuracy:.3f} | {s.cost / best.cost:.0%} |")
    for name, s in plain.baselines.items():
        print(f"| {name} | {s.accuracy:.3f} | {s.cost / best.cost:.0%} |")
    nested = nested_cross_validate(
        ts, configs, args.outer, args.inner, progress=lambda m: print(m, file=sys.stderr, flush=True)
    )
    print(f"\nNested CV ({args.outer} outer folds, {args.inner} inner; grid: "
          f"{'; '.join(describe(c) for c in configs)}):\n")
    print(nested_markdown(nested))
    assert plain.reliability is not None
    print("Reliability of the out-of-fold predicted success (plain CV), raw:\n")
    print(reliability_markdown(plain.reliability["raw"]))
    print("and calibrated (Platt, cross-fitted):\n")
    print(reliability_markdown(plain.reliability["calibrated"]))
    print(f"({time.monotonic() - start:.0f} s)")
    if args.json:
        plain_figures = {
            name: {"alpha": alpha, "accuracy": plain.at(alpha).accuracy,
                   "cost_vs_best_single": plain.at(alpha).cost / best.cost}
            for name, alpha in presets.items()
        }
        args.json.write_text(json.dumps({
            "data": str(rows.relative_to(REPO)) if rows.is_relative_to(REPO) else str(rows),
            "plain_cv": plain_figures, "nested_cv": nested, "reliability": plain.reliability,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
