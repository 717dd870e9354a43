"""Nested cross-validation: what the router's figures are on queries it never saw.

Plain K-fold CV (router/cv.py) reports the curve of a configuration and presets that were
themselves chosen by looking at those same folds; the maximum of several noisy estimates is
biased upwards. Here every choice is made inside each outer training fold, by an inner CV on
those rows only: which hyper-parameters (a list of :class:`FitConfig` candidates), which alpha
each preset means, and the calibration map. The router so chosen is then fitted on the outer
training rows and judged once on the outer test rows, which took no part in any choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from router.cv import allowed_among, cross_validate, fold_indices
from router.data import query_costs
from router.evaluate import baseline_picks, mean_summary, summarize
from router.fit import FitConfig, fit_router_model
from router.scoring import pick

if TYPE_CHECKING:
    from router.training_set import TrainingSet

Progress = Callable[[str], None]


def describe(config: FitConfig) -> str:
    return f"K={config.n_clusters} blend={list(config.blend)} model_c={config.model_c}"


def nested_cross_validate(
    ts: TrainingSet,
    configs: Sequence[FitConfig],
    outer: int = 5,
    inner: int = 4,
    fixed_alphas: Sequence[float] = (0.5,),
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Per outer fold and on average: accuracy, cost and cost relative to the best single model
    (chosen on the outer training rows) of the quality preset, every other preset chosen inside
    the fold, each of ``fixed_alphas``, and the baselines; plus which configuration won."""
    from router.train import choose_presets

    seed = configs[0].seed
    splits = fold_indices(len(ts.data.questions), ts.groups, outer, seed)
    judged = np.zeros(len(ts.data.questions), dtype=bool)
    judged[ts.data.judged_rows()] = True
    known_all = ts.data.known_mask()
    folds: list[dict[str, Any]] = []
    summaries: dict[str, list[Any]] = {}
    for number, (tr, te) in enumerate(splits, start=1):
        train = ts.subset(tr)
        reports = []
        for config in configs:
            progress(f"outer fold {number}/{outer}: inner CV of {describe(config)}")
            reports.append(cross_validate(train, config, inner))
        best = int(np.argmax([r.at(1.0).accuracy for r in reports]))
        config, report = configs[best], reports[best]
        presets = choose_presets(report)
        model = fit_router_model(
            train.embeddings, train.formats, train.data.scores, ts.prices, train.groups, config,
            train.data.known,
        )
        if report.calibration is not None:
            model = replace(model, calibration=report.calibration)
        te = te[judged[te]]
        prediction = model.predict(ts.embeddings[te], ts.formats[te])
        scores, known = ts.data.scores[te], known_all[te]
        costs = query_costs([ts.data.questions[i] for i in te], ts.prices)
        modes = {f"preset {name}": alpha for name, alpha in presets.items()}
        modes.update({f"alpha {a:g}": float(a) for a in fixed_alphas})
        fold: dict[str, Any] = {"config": describe(config), "presets": presets, "rows": int(len(te))}
        for mode, alpha in modes.items():
            picked = pick(prediction.success, costs, alpha, allowed_among(prediction.eligible, known))
            summaries.setdefault(mode, []).append(summarize(picked, scores, costs, ts.data.models))
        train_acc = train.data.single_model_means()
        mask = None if ts.data.known is None else known
        for name, picked in baseline_picks(train_acc, ts.prices, scores, costs, seed, mask).items():
            summaries.setdefault(name, []).append(summarize(picked, scores, costs, ts.data.models))
        folds.append(fold)
    best_single_cost = mean_summary(summaries["best single"]).cost
    result: dict[str, Any] = {"outer_folds": outer, "inner_folds": inner, "folds": folds, "modes": {}}
    for mode, values in summaries.items():
        mean = mean_summary(values)
        accuracies = [v.accuracy for v in values]
        result["modes"][mode] = {
            "accuracy": round(mean.accuracy, 4),
            "accuracy_sd_over_folds": round(float(np.std(accuracies)), 4),
            "cost": round(mean.cost, 6),
            "cost_vs_best_single": round(mean.cost / best_single_cost, 4) if best_single_cost else None,
            "share": {m: round(v, 4) for m, v in mean.share.items()},
        }
    return result


def nested_markdown(result: dict[str, Any]) -> str:
    lines = ["| mode | accuracy (sd over folds) | cost vs best single |", "|---|---:|---:|"]
    for mode, entry in result["modes"].items():
        share = entry["cost_vs_best_single"]
        lines.append(f"| {mode} | {entry['accuracy']:.3f} ({entry['accuracy_sd_over_folds']:.3f}) | "
                     f"{'' if share is None else f'{share:.0%}'} |")
    chosen = ", ".join(
        f"{i}: {f['config']}; presets {f['presets']}" for i, f in enumerate(result["folds"], 1)
    )
    return "\n".join(lines) + f"\n\nChosen inside each outer fold: {chosen}\n"
