from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from router.fit import FitConfig
from router.train import train

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "router" / "data"
SMALL_ROWS = 400
SMALL_CONFIG = FitConfig(n_clusters=8, top_clusters=2)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 400-row slice of the shipped benchmark (every 14th row, so all tasks appear)."""
    root = tmp_path_factory.mktemp("data")
    rows = json.loads((DATA / "train.json").read_text(encoding="utf-8"))[::14][:SMALL_ROWS]
    (root / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    (root / "models.json").write_bytes((DATA / "models.json").read_bytes())
    (root / "tasks.jsonl").write_bytes((DATA / "tasks.jsonl").read_bytes())
    return {"rows": root / "rows.json", "models": root / "models.json", "tasks": root / "tasks.jsonl"}


@pytest.fixture(scope="session")
def small_artifact_dir(small_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A router trained once per session on the small slice (2-fold CV recorded)."""
    out = tmp_path_factory.mktemp("artifact") / "small"
    train(
        small_data["rows"], small_data["models"], out, tasks=small_data["tasks"], folds=2, config=SMALL_CONFIG
    )
    return out


@pytest.fixture()
def artifact_copy(small_artifact_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the small artifact that a test may damage."""
    target = tmp_path / "artifact"
    shutil.copytree(small_artifact_dir, target)
    return target
