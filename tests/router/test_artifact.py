from __future__ import annotations

import json
from pathlib import Path

import pytest

from router import ArtifactError, load_router
from router.artifact import FORMAT_VERSION, load_artifact


def _edit_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_round_trip_keeps_models_version_and_metadata(small_artifact_dir: Path) -> None:
    router = load_router(small_artifact_dir)
    manifest = json.loads((small_artifact_dir / "manifest.json").read_text(encoding="utf-8"))
    assert router.models == manifest["models"]
    assert len(router.models) == 9
    assert router.version == manifest["version"]
    assert manifest["format_version"] == FORMAT_VERSION
    assert len(manifest["training_data"]["sha256"]) == 64
    assert manifest["cv"]["folds"] == 2
    assert manifest["created"]
    assert set(manifest["alpha"]["presets"]) == {"quality", "balanced", "cheap"}


def test_reloaded_router_routes_identically(small_artifact_dir: Path) -> None:
    first, second = load_router(small_artifact_dir), load_router(small_artifact_dir)
    question = "Write a function to find the maximum of three numbers."
    assert first.route(question) == second.route(question)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_router(tmp_path / "nowhere")


def test_missing_manifest_is_refused(artifact_copy: Path) -> None:
    (artifact_copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_router(artifact_copy)


def test_garbled_manifest_is_refused(artifact_copy: Path) -> None:
    (artifact_copy / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_router(artifact_copy)


def test_corrupt_arrays_are_refused(artifact_copy: Path) -> None:
    blob = bytearray((artifact_copy / "model.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (artifact_copy / "model.npz").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_router(artifact_copy)


def test_other_format_version_is_refused(artifact_copy: Path) -> None:
    _edit_manifest(artifact_copy, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ArtifactError, match="format_version"):
        load_router(artifact_copy)


def test_model_list_not_matching_arrays_is_refused(artifact_copy: Path) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text(encoding="utf-8"))
    _edit_manifest(artifact_copy, models=manifest["models"][:-1])
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(artifact_copy)


def test_other_embedding_build_is_refused(artifact_copy: Path) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text(encoding="utf-8"))
    _edit_manifest(artifact_copy, embedding={**manifest["embedding"], "sha256": "0" * 64})
    with pytest.raises(ArtifactError, match="another build"):
        load_router(artifact_copy)


def test_unknown_router_kind_is_refused(artifact_copy: Path) -> None:
    _edit_manifest(artifact_copy, kind="telepathy")
    with pytest.raises(ArtifactError, match="unknown kind"):
        load_router(artifact_copy)
