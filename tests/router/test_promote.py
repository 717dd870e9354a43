"""A router directory: versions/<version>/ and an atomically swapped `current`, promoted only
when the candidate is not worse on the held-out rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from router import DataError, load_router
from router.cli import main
from router.evaluate import Summary
from router.holdout import is_held_out
from router.promote import Comparison, Side, current_artifact, decide, point_current


def _train(rows: Path, models: Path, out: Path, *extra: str) -> int:
    argv = ["train", "--data", str(rows), "--models", str(models), "--out", str(out)]
    return main([*argv, "--folds", "0", "--clusters", "8", "--promote", *extra])


def _side(version: str, accuracy: float) -> Side:
    return Side(version, {"quality": (1.0, Summary(accuracy, 1.0, {}))}, saw_rows=False)


@pytest.fixture(scope="module")
def garbage_rows(small_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small slice with every training score inverted (a router trained on it picks the worst
    model) but the held-out rows intact, so the comparison is honest."""
    rows = json.loads(small_data["rows"].read_text(encoding="utf-8"))
    flipped = [
        r
        if is_held_out(r["question"], 0.1)
        else {**r, "scores": {m: 1.0 - s for m, s in r["scores"].items()}}
        for r in rows
    ]
    path = tmp_path_factory.mktemp("garbage") / "rows.json"
    path.write_text(json.dumps(flipped), encoding="utf-8")
    return path


def test_the_rule() -> None:
    assert decide(None).promote
    better = decide(Comparison(40, _side("new", 0.70), _side("old", 0.65), {}), 0.01)
    equal = decide(Comparison(40, _side("new", 0.65), _side("old", 0.65), {}), 0.0)
    within = decide(Comparison(40, _side("new", 0.645), _side("old", 0.65), {}), 0.01)
    worse = decide(Comparison(40, _side("new", 0.60), _side("old", 0.65), {}), 0.01)
    assert better.promote and equal.promote and within.promote
    assert not worse.promote and "0.6000 vs 0.6500 on 40 evaluation rows" in worse.reason


def test_point_current_swaps_a_relative_symlink(tmp_path: Path) -> None:
    a, b = tmp_path / "versions" / "a", tmp_path / "versions" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    assert current_artifact(tmp_path) is None
    point_current(tmp_path, a)
    point_current(tmp_path, b)
    assert os.readlink(tmp_path / "current") == os.path.join("versions", "b")
    assert current_artifact(tmp_path) == b.resolve()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    plain = tmp_path / "other"
    (plain / "current").mkdir(parents=True)
    with pytest.raises(DataError, match="not a symlink"):
        point_current(plain, a)


def test_promotion_both_ways(
    small_data: dict[str, Path], garbage_rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, models, out = small_data["rows"], small_data["models"], tmp_path / "router"
    assert _train(rows, models, out) == 0
    first = current_artifact(out)
    assert first is not None and first.parent == (out / "versions").resolve()
    assert "there is no current artifact" in capsys.readouterr().out
    manifest = load_router(out / "current").manifest
    assert manifest["training_data"]["holdout"]["fraction"] == 0.1

    assert _train(rows, models, out, "--tolerance", "0") == 0  # the same arrays again: equal is not worse
    assert "promoted" in capsys.readouterr().out
    first = current_artifact(out)
    assert first is not None and first.name.endswith(manifest["version"][-10:])

    assert _train(garbage_rows, models, out, "--tolerance", "0.01") == 0
    printed = capsys.readouterr().out
    assert "kept current" in printed and "worse: quality-preset accuracy" in printed
    assert "candidate" in printed and "current" in printed  # the side-by-side table
    assert current_artifact(out) == first
    assert len(list((out / "versions").iterdir())) >= 2  # the refused candidate is kept for inspection

    assert _train(garbage_rows, models, out, "--tolerance", "1") == 0
    assert "promoted" in capsys.readouterr().out
    assert current_artifact(out) != first


def test_eval_compare_prints_both_on_the_same_rows(
    small_data: dict[str, Path], garbage_rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    assert _train(small_data["rows"], small_data["models"], good) == 0
    assert _train(garbage_rows, small_data["models"], bad) == 0
    capsys.readouterr()
    report = tmp_path / "compare.json"
    argv = ["eval", "--artifact", str(bad / "current"), "--compare", str(good / "current")]
    argv += ["--data", str(small_data["rows"]), "--models", str(small_data["models"])]
    assert main([*argv, "--holdout", "0.1", "--tolerance", "0.01", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "quality" in printed and "promotion rule: keep current" in printed
    figures = json.loads(report.read_text(encoding="utf-8"))
    assert (
        figures["candidate"]["presets"]["quality"]["accuracy"]
        < figures["current"]["presets"]["quality"]["accuracy"]
    )
    assert not figures["current"]["trained_on_these_rows"]
    assert main([*argv]) == 0  # every row: both artifacts saw most of them, and the table says so
    assert "trained on these rows" in capsys.readouterr().out
    assert main(["eval", "--cv", "--compare", str(good), *argv[5:]]) == 2
