"""llama.cpp's quantizer: deterministic output, clear errors, derived models pinned by sha256."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends import gguf_store
from backends.gguf_store import DerivedModel, ModelFileError, resolve_gguf, sha256_of
from backends.quantize import QuantizeError, known_types, quantize


def test_requantizing_a_real_model_gives_the_same_bytes_whatever_the_threads(smollm2_gguf, tmp_path):
    one = quantize(Path(smollm2_gguf), tmp_path / "one.gguf", "Q4_0", threads=1)
    two = quantize(Path(smollm2_gguf), tmp_path / "two.gguf", "q4_0", threads=2)
    assert one.stat().st_size > 0
    assert sha256_of(one) == sha256_of(two)
    assert sha256_of(one) != sha256_of(Path(smollm2_gguf))
    assert list(tmp_path.glob("*.quantizing")) == []


def test_unknown_type_and_missing_input_are_named(smollm2_gguf, tmp_path):
    assert {"Q2_K", "Q3_K_M", "Q4_K_M"} <= set(known_types())
    with pytest.raises(QuantizeError, match="unknown GGUF type 'Q9_Z'"):
        quantize(Path(smollm2_gguf), tmp_path / "x.gguf", "Q9_Z")
    with pytest.raises(QuantizeError, match="not found"):
        quantize(tmp_path / "absent.gguf", tmp_path / "x.gguf", "Q4_0")


@pytest.fixture
def smollm2_q4_0(smollm2_gguf, tmp_path, monkeypatch) -> DerivedModel:
    """A derived model of the packaged SmolLM2, its hash learnt from a first quantization."""
    reference = quantize(Path(smollm2_gguf), tmp_path / "reference.gguf", "Q4_0")
    model = DerivedModel(
        name="smollm2-test-q4_0",
        source="smollm2-135m-instruct-q4_1",
        gguf_type="Q4_0",
        sha256=sha256_of(reference),
        size=reference.stat().st_size,
    )
    monkeypatch.setitem(gguf_store.DERIVED_MODELS, model.name, model)
    monkeypatch.setenv("SMALLFLEET_CACHE", str(tmp_path / "cache"))
    return model


def test_a_derived_model_is_built_on_first_use_then_reused(smollm2_q4_0):
    path = resolve_gguf(f"packaged:{smollm2_q4_0.name}")
    assert sha256_of(path) == smollm2_q4_0.sha256
    built = path.stat().st_mtime_ns
    assert resolve_gguf(f"packaged:{smollm2_q4_0.name}") == path
    assert path.stat().st_mtime_ns == built


def test_a_derived_model_whose_bytes_differ_is_refused_and_removed(smollm2_q4_0, monkeypatch):
    wrong = DerivedModel(**{**smollm2_q4_0.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(gguf_store.DERIVED_MODELS, wrong.name, wrong)
    with pytest.raises(ModelFileError, match="quantizer of this llama-cpp-python build"):
        resolve_gguf(f"packaged:{wrong.name}")
    assert not (gguf_store.cache_dir() / f"{wrong.name}.gguf").exists()


def test_every_pinned_derived_model_comes_from_a_packaged_one():
    for model in gguf_store.DERIVED_MODELS.values():
        assert model.source in gguf_store.PACKAGED_MODELS
        assert model.gguf_type in known_types()
