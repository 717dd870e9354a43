"""The versioned on-disk router artifact: manifest.json + model.npz.

Layout (format_version 2):
    manifest.json  format, format_version, kind, version, created, models, prices,
                   embedding {name, sha256, dim}, features, groups, training_data {sha256, rows},
                   alpha {default, presets}, ood {threshold, default_model}, fit_config,
                   cv (cross-validation metrics), files {name: sha256}
    model.npz      the RouterModel arrays (no pickles)
Loading verifies every recorded hash and shape; anything off raises ArtifactError.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from router._errors import ArtifactError
from router.calibration import identity
from router.data import file_sha256
from router.embedding import embedding_path
from router.features import FEATURE_NAMES
from router.model import RouterModel

ARTIFACT_FORMAT = "smallfleet-router"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
ARRAYS = "model.npz"


@dataclass(frozen=True)
class Artifact:
    manifest: dict[str, Any]
    model: RouterModel

    @property
    def models(self) -> list[str]:
        return list(self.manifest["models"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def new_version(arrays_sha256: str, created: datetime) -> str:
    return f"{created.strftime('%Y%m%dT%H%M%SZ')}-{arrays_sha256[:10]}"


def save_artifact(out: Path, model: RouterModel, manifest: dict[str, Any]) -> Artifact:
    """Write ``model`` and ``manifest`` (completed with format, hashes, version) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(model, name) for name in RouterModel.array_names()})
    blob = buffer.getvalue()
    (out / ARRAYS).write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    created = datetime.now(UTC).replace(microsecond=0)
    full = {
        "format": ARTIFACT_FORMAT,
        "format_version": FORMAT_VERSION,
        "version": new_version(digest, created),
        "created": created.isoformat(),
        **manifest,
        "files": {ARRAYS: digest},
    }
    (out / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return Artifact(full, model)


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not path.is_dir():
        raise ArtifactError(f"router artifact {path} does not exist or is not a directory")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"router artifact {path} has no {MANIFEST}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"router artifact {path}: {MANIFEST} is corrupt ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"router artifact {path}: {MANIFEST} is not a {ARTIFACT_FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"router artifact {path} has format_version {manifest.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}: retrain it with `smallfleet train`"
        )
    return manifest


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    required = ("version", "models", "prices", "embedding", "features", "alpha", "ood", "files")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise ArtifactError(f"router artifact {path}: manifest lacks {', '.join(missing)}")
    models = manifest["models"]
    if not isinstance(models, list) or not models or len(set(models)) != len(models):
        raise ArtifactError(f"router artifact {path}: 'models' must be a non-empty list of unique names")
    if list(manifest["features"]) != list(FEATURE_NAMES):
        raise ArtifactError(f"router artifact {path} was trained with other format features; retrain it")
    if manifest["ood"].get("default_model") not in models:
        raise ArtifactError(f"router artifact {path}: ood.default_model is not one of its models")


OPTIONAL_ARRAYS = ("coverage", "calibration")


def _load_arrays(path: Path, manifest: dict[str, Any]) -> RouterModel:
    file = path / ARRAYS
    expected = manifest["files"].get(ARRAYS)
    try:
        actual = file_sha256(file)
    except OSError:
        raise ArtifactError(f"router artifact {path} has no readable {ARRAYS}") from None
    if actual != expected:
        raise ArtifactError(f"router artifact {path}: {ARRAYS} is corrupt (sha256 mismatch)")
    try:
        with np.load(file, allow_pickle=False) as npz:
            # coverage and calibration are optional: artifacts written before them lack them
            arrays = {name: np.array(npz[name]) for name in RouterModel.array_names()
                      if name not in OPTIONAL_ARRAYS or name in npz}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"router artifact {path}: cannot read {ARRAYS} ({exc})") from None
    if "coverage" not in arrays:  # written before coverage existed: every model scored everywhere
        arrays["coverage"] = np.ones_like(arrays["group_success"])
    if "calibration" not in arrays:  # written before calibration existed: predictions as they are
        arrays["calibration"] = identity(arrays["prices"].shape[0])
    return RouterModel(**arrays)


def _check_embedding(path: Path, manifest: dict[str, Any], model: RouterModel) -> None:
    spec = manifest["embedding"]
    emb_file = embedding_path(str(spec.get("name", ""))) / "model.safetensors"
    if not emb_file.is_file():
        raise ArtifactError(f"router artifact {path} needs embedding {spec.get('name')!r}, not shipped here")
    if file_sha256(emb_file) != spec.get("sha256"):
        raise ArtifactError(
            f"router artifact {path} was trained with another build of embedding {spec.get('name')!r}"
        )
    try:
        model.check_shapes(len(manifest["models"]), int(spec.get("dim", -1)), len(FEATURE_NAMES))
    except ValueError as exc:
        raise ArtifactError(f"router artifact {path} does not match its manifest: {exc}") from None


def load_artifact(path: str | Path) -> Artifact:
    """Read and verify an artifact directory; raises ArtifactError with the reason.

    A symlinked directory (e.g. a router directory's ``current``) is resolved once, first, so
    an atomic swap of the link while loading cannot mix the files of two artifacts.
    """
    root = Path(path)
    if root.is_symlink():
        root = root.resolve()
    manifest = _read_manifest(root)
    _check_manifest(root, manifest)
    model = _load_arrays(root, manifest)
    _check_embedding(root, manifest, model)
    return Artifact(manifest, model)
