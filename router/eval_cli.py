"""`eval`: report a router's accuracy/cost against the baselines (artifact or cross-validation)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from router._errors import DataError
from router.cli_support import progress
from router.evaluate import DEFAULT_ALPHAS, Summary, baseline_picks, summarize, sweep
from router.report import format_table, plot_curve


def _summary_dict(s: Summary) -> dict[str, Any]:
    return {"accuracy": round(s.accuracy, 4), "cost": round(s.cost, 5), "share": s.share}


def _finish(
    args: argparse.Namespace,
    title: str,
    curve: list[tuple[float, Summary]],
    baselines: dict[str, Summary],
    extra: dict[str, Any],
) -> int:
    print(title)
    print(format_table(curve, baselines))
    if args.out_png:
        print(f"plot written to {plot_curve(curve, baselines, args.out_png, title)}")
    if args.json:
        payload = {
            "curve": [{"alpha": a, **_summary_dict(s)} for a, s in curve],
            "baselines": {k: _summary_dict(v) for k, v in baselines.items()},
            **extra,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def _eval_artifact(args: argparse.Namespace) -> int:
    from router.data import load_prices, load_rows, query_costs
    from router.routing import load_router

    router = load_router(args.artifact)
    prices = load_prices(args.models)
    if sorted(prices) != sorted(router.models):
        raise DataError(
            f"{args.models} lists models {sorted(prices)}, the artifact knows {sorted(router.models)}"
        )
    rows = load_rows(args.data, router.models)
    full = rows.full_rows()
    if len(full) < len(rows.questions):
        skipped = len(rows.questions) - len(full)
        print(f"evaluating the {len(full)} rows that score every model; skipping {skipped}")
        if not len(full):
            raise DataError(f"{args.data}: no row scores every model the artifact knows")
        rows = rows.subset(full)
    price_vec = np.array([prices[m] for m in router.models])
    costs = query_costs(rows.questions, price_vec)
    prediction = router.predict(rows.questions)
    success, eligible = prediction.success, prediction.eligible
    curve = sweep(success, rows.scores, costs, router.models, DEFAULT_ALPHAS, eligible)
    swept = {round(a, 6) for a, _ in curve}
    for _name, alpha in sorted(router.presets.items()):
        if round(alpha, 6) in swept:
            continue  # already a row of the sweep
        chosen = _picks(success, costs, alpha, eligible)
        curve.append((alpha, summarize(chosen, rows.scores, costs, router.models)))
    curve.sort(key=lambda item: item[0])
    train_acc = np.array([router.manifest.get("train_accuracy", {}).get(m, np.nan) for m in router.models])
    if np.isnan(train_acc).any():
        train_acc = rows.scores.mean(axis=0)
    picks = baseline_picks(train_acc, price_vec, rows.scores, costs, args.seed)
    baselines = {k: summarize(p, rows.scores, costs, router.models) for k, p in picks.items()}
    title = f"router {router.version} on {args.data} ({len(rows.questions)} rows; cost summed)"
    return _finish(args, title, curve, baselines, {"artifact": router.version, "presets": router.presets})


def _picks(success: np.ndarray, costs: np.ndarray, alpha: float, eligible: np.ndarray) -> np.ndarray:
    from router.scoring import pick

    return pick(success, costs, alpha, eligible)


def _eval_cv(args: argparse.Namespace) -> int:
    from router.cv import cross_validate
    from router.fit import FitConfig
    from router.train import choose_presets, load_training_set

    say = progress(time.monotonic())
    ts = load_training_set(args.data, args.models, args.tasks, say)
    report = cross_validate(ts, FitConfig(seed=args.seed), args.folds, say)
    presets = choose_presets(report)
    keep = set(DEFAULT_ALPHAS) | set(presets.values())
    curve = [(a, s) for a, s in report.curve if any(abs(a - k) < 1e-9 for k in keep)]
    named = ", ".join(f"{name} alpha={alpha:g}" for name, alpha in presets.items())
    title = (
        f"{args.folds}-fold CV on {args.data} (~{report.rows_per_fold:.0f} rows per fold; "
        f"cost summed per fold); presets: {named}"
    )
    return _finish(args, title, curve, report.baselines, {"presets": presets, "folds": args.folds})


def print_cv_summary(manifest: dict[str, Any]) -> None:
    """One paragraph of the cross-validation figures stored in a manifest."""
    cv = manifest["cv"]
    best = cv["baselines"]["best single"]
    curve = {round(row["alpha"], 2): row for row in cv["curve"]}
    lines = [f"{cv['folds']}-fold CV (cost summed per fold of ~{cv['rows_per_fold']:.0f} rows):"]
    for name, alpha in manifest["alpha"]["presets"].items():
        row = curve.get(round(alpha, 2))
        if row:
            lines.append(
                f"  {name:8s} alpha={alpha:<5g} accuracy {row['accuracy']:.4f} cost {row['cost']:.4f}"
                f" ({row['cost'] / best['cost']:.0%} of best single)"
            )
    for name, row in cv["baselines"].items():
        lines.append(f"  {name:<20s} accuracy {row['accuracy']:.4f} cost {row['cost']:.4f}")
    print("\n".join(lines), file=sys.stdout)


def _eval_compare(args: argparse.Namespace) -> int:
    from router import promote

    if args.holdout is not None:
        from router.holdout import check_fraction

        check_fraction(args.holdout)
    comparison = promote.compare(args.artifact, args.compare, args.data, args.models, args.holdout)
    print(promote.format_comparison(comparison))
    payload: dict[str, Any] = {"rows": comparison.rows}
    for label, side in (("candidate", comparison.candidate), ("current", comparison.current)):
        payload[label] = {
            "version": side.version,
            "trained_on_these_rows": side.saw_rows,
            "presets": {n: {"alpha": a, **_summary_dict(s)} for n, (a, s) in side.presets.items()},
        }
    if args.tolerance is not None:
        decision = promote.decide(comparison, args.tolerance)
        print(f"promotion rule: {'promote' if decision.promote else 'keep current'} ({decision.reason})")
        payload["decision"] = {"promote": decision.promote, "reason": decision.reason}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if args.cv == (args.artifact is not None):
        raise DataError("eval needs exactly one of --artifact DIR or --cv")
    if args.cv and args.folds < 2:
        raise DataError("--folds must be at least 2")
    if args.compare is not None:
        if args.cv:
            raise DataError("--compare needs --artifact (the candidate), not --cv")
        return _eval_compare(args)
    if args.holdout is not None or args.tolerance is not None:
        raise DataError("--holdout and --tolerance go with --compare")
    return _eval_cv(args) if args.cv else _eval_artifact(args)
