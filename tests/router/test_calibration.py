"""Calibrated success: Platt maps fitted on out-of-fold predictions, the reliability tables,
and nested cross-validation that makes every choice inside its outer training folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router.artifact import ARRAYS, load_artifact
from router.calibration import (
    GRID,
    apply_calibration,
    fit_calibration,
    identity,
    reliability_markdown,
    reliability_table,
)
from router.fit import FitConfig
from router.nested_cv import nested_cross_validate, nested_markdown
from router.train import load_training_set


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions p whose true frequency is p**2 (a router that is too sure of itself)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, size=(n, 2))
    return p, (rng.uniform(0, 1, size=p.shape) < p**2).astype(float)


def test_platt_maps_bring_predictions_to_observed_frequencies():
    p, y = _overconfident()
    table = fit_calibration(p, y)
    before = reliability_table(p, y, ["a", "b"])
    after = reliability_table(apply_calibration(p, table), y, ["a", "b"])
    for model in ("a", "b"):
        assert after[model]["ece"] < before[model]["ece"] / 2
        assert after[model]["brier"] < before[model]["brier"]
    assert np.all(np.diff(table, axis=1) > 0)  # strictly increasing: a model's ranking is kept


def test_too_few_or_one_sided_scores_keep_the_raw_predictions():
    p, y = _overconfident(n=10)
    assert np.array_equal(fit_calibration(p, y), identity(2))
    assert np.array_equal(fit_calibration(p, np.ones_like(p)), identity(2))
    nothing_known = np.zeros((2000, 2), dtype=bool)
    assert np.array_equal(fit_calibration(*_overconfident(), known=nothing_known), identity(2))


def test_identity_changes_nothing_and_the_table_renders():
    p, y = _overconfident(n=50)
    assert np.allclose(apply_calibration(p, identity(2)), p)
    text = reliability_markdown(reliability_table(p, y, ["a", "b"]))
    assert "| a | 0.0-0.2 |" in text and "Brier" in text
    assert GRID[0] == 0.0 and GRID[-1] == 1.0


def test_a_trained_artifact_carries_its_calibration_and_reliability(small_artifact_dir: Path) -> None:
    artifact = load_artifact(small_artifact_dir)
    assert artifact.model.calibration.shape == (len(artifact.models), len(GRID))
    assert not np.array_equal(artifact.model.calibration, identity(len(artifact.models)))
    reliability = artifact.manifest["cv"]["reliability"]
    assert set(reliability) == {"raw", "calibrated"}
    assert set(reliability["raw"]) == set(artifact.models)


def test_an_artifact_written_before_calibration_loads_with_raw_predictions(artifact_copy: Path) -> None:
    with np.load(artifact_copy / ARRAYS) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "calibration"}
    np.savez(artifact_copy / ARRAYS, **arrays)
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    from router.data import file_sha256

    manifest["files"][ARRAYS] = file_sha256(artifact_copy / ARRAYS)
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    model = load_artifact(artifact_copy).model
    assert np.array_equal(model.calibration, identity(len(manifest["models"])))


def test_nested_cv_chooses_inside_each_outer_fold_and_reports_every_mode(small_data: dict[str, Path]) -> None:
    ts = load_training_set(small_data["rows"], small_data["models"], small_data["tasks"], lambda _: None)
    configs = [
        FitConfig(n_clusters=4, top_clusters=2),
        FitConfig(n_clusters=8, top_clusters=2, blend=(0.5, 0.5, 0, 0)),
    ]
    result = nested_cross_validate(ts, configs, outer=2, inner=2)
    assert len(result["folds"]) == 2
    assert all(fold["presets"]["quality"] == 1.0 for fold in result["folds"])
    modes = result["modes"]
    expected = {"preset quality", "preset cheap", "preset balanced", "alpha 0.5", "best single", "oracle"}
    assert expected <= set(modes)
    assert modes["best single"]["cost_vs_best_single"] == pytest.approx(1.0)
    assert modes["oracle"]["accuracy"] >= modes["preset quality"]["accuracy"]
    assert "Chosen inside each outer fold" in nested_markdown(result)
