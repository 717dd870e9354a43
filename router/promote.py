"""Comparing a candidate router with the current one, and promoting it if it is not worse.

A router directory holds every trained artifact and a pointer to the one in use:

    ROUTER_DIR/versions/<version>/   manifest.json + model.npz, one directory per training run
    ROUTER_DIR/current -> versions/<version>   a relative symlink, swapped atomically

The gateway's ``router.artifact`` names ``ROUTER_DIR/current``; loading resolves the link
once, so a swap never mixes two artifacts' files, and ``POST /admin/router/reload`` picks
up the new target.

Promotion rule: the candidate replaces ``current`` when there is no current artifact, or
when its accuracy at the quality preset on the evaluation rows is not lower than the
current artifact's by more than ``tolerance``. The evaluation rows are the hash-chosen
held-out slice (router.holdout) of the training rows, which the candidate never saw; a
current artifact trained without that slice held out has seen them, which favours keeping
it (the report says so).
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router._errors import DataError
from router.data import RoutingData, load_prices, load_rows, query_costs
from router.evaluate import Summary, baseline_picks, summarize
from router.holdout import split_holdout

VERSIONS = "versions"
CURRENT = "current"
QUALITY = "quality"
DEFAULT_TOLERANCE = 0.01
DEFAULT_HOLDOUT = 0.1


@dataclass(frozen=True)
class Side:
    """One artifact's figures on the evaluation rows: (alpha, summary) per preset."""

    version: str
    presets: dict[str, tuple[float, Summary]]
    saw_rows: bool  # trained on (some of) the evaluation rows

    def accuracy(self, preset: str = QUALITY) -> float:
        return self.presets[preset][1].accuracy


@dataclass(frozen=True)
class Comparison:
    rows: int
    candidate: Side
    current: Side
    baselines: dict[str, Summary]


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def evaluation_rows(data: Path, models: Path, holdout: float | None) -> tuple[RoutingData, dict[str, float]]:
    """Rows of ``data`` that score every model (only the held-out slice when ``holdout``)."""
    prices = load_prices(models)
    rows = load_rows(data, list(prices))
    index = split_holdout(rows, holdout)[1] if holdout else rows.full_rows()
    if not len(index):
        where = f"in the held-out slice ({holdout:g})" if holdout else ""
        raise DataError(f"{data}: no rows that score every model {where}".rstrip())
    return rows.subset(index), prices


def _columns(router: Any, rows: RoutingData) -> np.ndarray:
    missing = [m for m in router.models if m not in rows.models]
    if missing:
        raise DataError(f"router {router.version} knows models the data does not score: {missing}")
    return np.array([rows.models.index(m) for m in router.models])


def _saw_rows(manifest: dict[str, Any], holdout: float | None) -> bool:
    held = (manifest.get("training_data") or {}).get("holdout") or {}
    return not holdout or float(held.get("fraction", 0.0)) < holdout


def evaluate_side(router: Any, rows: RoutingData, prices: dict[str, float], holdout: float | None) -> Side:
    """Accuracy and cost of ``router`` at each of its presets (quality at least) on ``rows``."""
    from router.scoring import pick

    cols = _columns(router, rows)
    scores = rows.scores[:, cols]
    costs = query_costs(rows.questions, np.array([prices[m] for m in router.models]))
    prediction = router.predict(rows.questions)
    success, eligible = prediction.success, prediction.eligible
    presets = {QUALITY: 1.0, **router.presets}
    figures = {
        name: (alpha, summarize(pick(success, costs, alpha, eligible), scores, costs, router.models))
        for name, alpha in presets.items()
    }
    return Side(router.version, figures, _saw_rows(router.manifest, holdout))


def compare(
    candidate: Path, current: Path, data: Path, models: Path, holdout: float | None = None
) -> Comparison:
    """Both artifacts on the same rows of ``data`` (the held-out slice when ``holdout``)."""
    from router.routing import load_router

    rows, prices = evaluation_rows(data, models, holdout)
    sides = [evaluate_side(load_router(p), rows, prices, holdout) for p in (candidate, current)]
    price_vec = np.array([prices[m] for m in rows.models])
    costs = query_costs(rows.questions, price_vec)
    picks = baseline_picks(rows.scores.mean(axis=0), price_vec, rows.scores, costs)
    baselines = {k: summarize(picks[k], rows.scores, costs, rows.models) for k in ("best single", "oracle")}
    return Comparison(len(rows.questions), sides[0], sides[1], baselines)


def decide(comparison: Comparison | None, tolerance: float = DEFAULT_TOLERANCE) -> Decision:
    """The promotion rule (see the module docstring)."""
    if comparison is None:
        return Decision(True, "there is no current artifact")
    new, old = comparison.candidate.accuracy(), comparison.current.accuracy()
    figures = (
        f"quality-preset accuracy {new:.4f} vs {old:.4f} on {comparison.rows} evaluation rows "
        f"(tolerance {tolerance:g})"
    )
    if new >= old - tolerance:
        return Decision(True, f"not worse: {figures}")
    return Decision(False, f"worse: {figures}")


def format_comparison(c: Comparison) -> str:
    """Side-by-side table: accuracy and cost per preset, and the reference baselines."""
    head = f"{'preset':<10} {'candidate':>28} {'current':>28} {'accuracy':>9}"
    sub = f"{'':<10} {'alpha  accuracy      cost':>28} {'alpha  accuracy      cost':>28} {'change':>9}"
    lines = [f"candidate {c.candidate.version} vs current {c.current.version} on {c.rows} rows", head, sub]
    for name in sorted(set(c.candidate.presets) | set(c.current.presets), key=_preset_order):
        cells = [_cell(side, name) for side in (c.candidate, c.current)]
        change = ""
        if name in c.candidate.presets and name in c.current.presets:
            change = f"{c.candidate.accuracy(name) - c.current.accuracy(name):+9.4f}"
        lines.append(f"{name:<10} {cells[0]:>28} {cells[1]:>28} {change:>9}")
    for name, s in c.baselines.items():
        lines.append(f"{name:<12} accuracy {s.accuracy:.4f}  cost {s.cost:.4f}")
    for side, label in ((c.candidate, "candidate"), (c.current, "current")):
        if side.saw_rows:
            lines.append(f"note: the {label} was trained on these rows; its figures are optimistic")
    return "\n".join(lines)


def _preset_order(name: str) -> tuple[int, str]:
    order = {"quality": 0, "balanced": 1, "cheap": 2}
    return order.get(name, 3), name


def _cell(side: Side, name: str) -> str:
    if name not in side.presets:
        return "-"
    alpha, s = side.presets[name]
    return f"{alpha:5.3f}  {s.accuracy:8.4f}  {s.cost:8.4f}"


# -- the router directory -----------------------------------------------------------------


def current_artifact(router_dir: Path) -> Path | None:
    """The artifact ``ROUTER_DIR/current`` points at, or None when there is none yet."""
    link = router_dir / CURRENT
    if not link.exists():
        return None
    return link.resolve()


def staging_dir(router_dir: Path) -> Path:
    """A fresh directory under ``versions/`` to train into (renamed by :func:`keep_version`)."""
    versions = router_dir / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    return versions / f".staging-{uuid.uuid4().hex}"


def keep_version(staging: Path, version: str) -> Path:
    """Move a trained artifact to ``versions/<version>``; an identical one there already wins."""
    final = staging.parent / version
    if final.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    return final


def point_current(router_dir: Path, artifact: Path) -> None:
    """Atomically make ``ROUTER_DIR/current`` a relative symlink to ``artifact``."""
    link = router_dir / CURRENT
    if link.exists() and not link.is_symlink():
        raise DataError(f"{link} exists and is not a symlink; move it into {router_dir / VERSIONS}/")
    temporary = router_dir / f".{CURRENT}-{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(artifact.resolve(), router_dir.resolve()), temporary)
    try:
        os.replace(temporary, link)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
