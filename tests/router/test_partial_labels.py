"""Rows that score only some models (logged feedback): unknown scores are masked, never 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router import DataError
from router.cv import cross_validate
from router.data import RoutingData, load_prices, load_rows, masked_mean
from router.fit import FitConfig, _fit_per_model, _smoothed_means, fit_router_model
from router.holdout import is_held_out, split_holdout
from router.train import _fallback_model, load_training_set, train

SMALL_CONFIG = FitConfig(n_clusters=8, top_clusters=2)


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_full_rows_load_without_a_mask(small_data: dict[str, Path]) -> None:
    rows = load_rows(small_data["rows"], list(load_prices(small_data["models"])))
    assert rows.known is None
    assert len(rows.full_rows()) == len(rows.questions)
    assert np.allclose(rows.mean_scores(), rows.scores.mean(axis=0))


def test_partial_rows_are_masked(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "rows.json",
        [
            {"question": "a", "scores": {"m1": 1.0, "m2": 0.0}},
            {"question": "b", "scores": {"m2": 1.0}},
        ],
    )
    rows = load_rows(path, ["m1", "m2"])
    assert rows.known is not None and rows.known.tolist() == [[True, True], [False, True]]
    assert rows.full_rows().tolist() == [0]
    assert rows.mean_scores().tolist() == [1.0, 0.5]  # m1's unknown score is not a 0
    assert rows.subset([1]).known is not None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"question": "a", "scores": {"m1": 1.0, "gpt-9": 1.0}}],
            "'gpt-9', which the models file does not list",
        ),
        ([{"question": "a", "scores": {}}], "non-empty object 'scores'"),
        ([{"question": "a", "scores": {"m1": "yes"}}], "non-numeric score for model 'm1'"),
        ([{"question": "a", "scores": {"m1": 1.0}}], "no row scores model(s) 'm2'"),
    ],
)
def test_bad_partial_rows_are_clear_errors(
    tmp_path: Path, rows: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_rows(_write(tmp_path / "rows.json", rows), ["m1", "m2"])


def test_per_model_statistics_ignore_unknown_scores() -> None:
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    known = np.array([[True, True], [False, True], [True, False]])
    assert masked_mean(scores, known).tolist() == [1.0, 0.5]
    means = _smoothed_means(np.array([0, 0, 1]), 2, scores, 2.0, known)
    assert means.tolist() == [[1.0, 0.5], [1.0, 0.5]]  # group 1 never scores m2: the prior
    # the masked fit equals a fit on only the rows that score each model
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(float)
    both = np.stack([y, 1 - y], axis=1)
    mask = np.ones_like(both, dtype=bool)
    mask[::3, 0] = False
    coef, intercept = _fit_per_model(x, both, 1.0, 0, mask)
    alone, alone_intercept = _fit_per_model(x[mask[:, 0]], both[mask[:, 0], :1], 1.0, 0)
    assert np.allclose(coef[0], alone[0]) and np.isclose(intercept[0], alone_intercept[0])


def test_masking_changes_nothing_when_every_score_is_known() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(80, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    formats = rng.normal(size=(80, 4))
    scores = (rng.random((80, 3)) > 0.5).astype(float)
    config = FitConfig(n_clusters=4, top_clusters=2)
    plain = fit_router_model(emb, formats, scores, np.ones(3), None, config)
    masked = fit_router_model(emb, formats, scores, np.ones(3), None, config, np.ones_like(scores, bool))
    for name in plain.array_names():
        assert np.allclose(getattr(plain, name), getattr(masked, name)), name


def test_cv_judges_rows_scoring_two_models_or_more_among_those_models(
    small_data: dict[str, Path], tmp_path: Path
) -> None:
    base = json.loads(small_data["rows"].read_text(encoding="utf-8"))[:120]
    logged = [
        {"question": f"log question {i} about python lists", "scores": {"gemma-2-9b-it": 1.0}}
        for i in range(30)
    ]
    path = _write(tmp_path / "mixed.json", base + logged)
    ts = load_training_set(path, small_data["models"], None, lambda _: None)
    assert ts.data.known is not None and len(ts.data.full_rows()) == 120
    report = cross_validate(ts, SMALL_CONFIG, 2)
    assert report.rows_per_fold == 60.0  # only the 120 full rows are judged: the others score one
    pairs = [
        {"question": f"paired question {i} on sorting", "scores": {"gemma-2-9b-it": 1.0, "codegemma-7b": 0.0}}
        for i in range(40)
    ]
    paired = load_training_set(_write(tmp_path / "paired.json", base + pairs), small_data["models"], None,
                               lambda _: None)
    report = cross_validate(paired, SMALL_CONFIG, 2)
    assert report.rows_per_fold == 80.0  # rows scoring two models are judged too
    # on them, every pick is one of the two: the oracle takes the right one of each pair
    oracle = report.baselines["oracle"]
    assert oracle.share["gemma-2-9b-it"] >= 40 / 160
    artifact = train(path, small_data["models"], tmp_path / "art", folds=0, config=SMALL_CONFIG)
    assert artifact.manifest["training_data"]["partial_rows"] == 30
    full_mean = np.mean([r["scores"]["gemma-2-9b-it"] for r in base])
    assert artifact.manifest["train_accuracy"]["gemma-2-9b-it"] == pytest.approx(
        (full_mean * 120 + 30) / 150, abs=1e-4
    )
    other = artifact.manifest["train_accuracy"]["codegemma-7b"]
    assert other == pytest.approx(np.mean([r["scores"]["codegemma-7b"] for r in base]), abs=1e-4)


def test_the_holdout_is_fixed_by_hash_and_skips_partial_rows() -> None:
    questions = [f"question {i}" for i in range(400)]
    scores = np.zeros((400, 2))
    known = np.ones((400, 2), dtype=bool)
    known[:200, 1] = False
    data = RoutingData(questions, ["a", "b"], scores, "x", known)
    kept, held = split_holdout(data, 0.2)
    assert len(kept) + len(held) == 400 and held.min() >= 200  # only full rows are held out
    assert all(is_held_out(questions[i], 0.2) for i in held)
    assert 20 <= len(held) <= 60
    assert set(split_holdout(data, 0.1)[1]) <= set(held)  # nested slices
    with pytest.raises(DataError, match="fraction"):
        split_holdout(data, 1.0)


def test_a_model_scored_on_one_group_only_is_not_predicted_to_succeed_on_others() -> None:
    # a composite route evaluated on maths only must not win other questions on its maths record
    rng = np.random.default_rng(2)
    centres = np.eye(8)[:2] * 3
    groups = np.repeat([0, 1], 40)
    emb = centres[groups] + rng.normal(scale=0.3, size=(80, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    formats = rng.normal(size=(80, 4))
    scores = np.stack([rng.random(80) > 0.5, np.ones(80)], axis=1).astype(float)
    known = np.ones_like(scores, dtype=bool)
    known[groups == 1, 1] = False  # model 1 (always right where scored) never ran on group 1
    model = fit_router_model(emb, formats, scores, np.ones(2), groups, SMALL_CONFIG, known)
    assert model.coverage.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    success = model.predict(emb, formats).success
    assert success[groups == 0, 1].min() > 0.6  # where it was measured: its record counts
    assert success[groups == 1, 1].max() < 0.05  # where it was not: no credit
    assert success[groups == 1, 0].mean() > 0.2  # the measured model is unaffected


def test_the_best_single_model_is_one_scored_on_every_row() -> None:
    # a route measured on maths only, better than the models there, is no single model to send
    # every question to: not the baseline "best single", not the default for unfamiliar questions
    scores = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    known = np.ones_like(scores, dtype=bool)
    known[2:, 2] = False  # "route" scored on the first two rows only
    data = RoutingData([f"q{i}" for i in range(5)], ["a", "b", "route"], scores, "x", known)
    assert data.comparable_means().tolist() == [1.0, 0.0, 1.0]  # on the full rows it ties the best
    assert data.single_model_means().tolist() == [1.0, 0.0, -np.inf]
    assert _fallback_model(data) == "a"
    # with no model scored everywhere (logged feedback), the comparable means stand
    sparse = RoutingData(["q0", "q1"], ["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]), "x",
                         np.array([[True, False], [False, True]]))
    assert sparse.single_model_means().tolist() == sparse.comparable_means().tolist()
