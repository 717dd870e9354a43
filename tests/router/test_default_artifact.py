from __future__ import annotations

import json

from router import DEFAULT_ARTIFACT, load_router
from router.data import file_sha256


def test_default_artifact_loads_and_routes() -> None:
    router = load_router(DEFAULT_ARTIFACT)
    assert len(router.models) == 9
    code = router.route("Write a python function to remove duplicates from a list.", alpha=1.0)
    assert code.model in router.models and not code.out_of_distribution
    cheap = router.route("Write a python function to remove duplicates from a list.", alpha=0.0)
    assert cheap.model == "gemma-2-9b-it"


def test_default_artifact_records_its_training_data_and_cv() -> None:
    manifest = json.loads((DEFAULT_ARTIFACT / "manifest.json").read_text(encoding="utf-8"))
    shipped = DEFAULT_ARTIFACT.parents[1] / "data" / "train.json"
    assert manifest["training_data"]["sha256"] == file_sha256(shipped)
    assert manifest["training_data"]["rows"] == 5608
    assert manifest["cv"]["folds"] == 5
    quality = next(row for row in manifest["cv"]["curve"] if row["alpha"] == 1.0)
    assert quality["accuracy"] > manifest["cv"]["baselines"]["best single"]["accuracy"]
