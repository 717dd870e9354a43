"""GGUF files: assembled from parts, sha256-checked, refused when wrong."""

from __future__ import annotations

import hashlib

import pytest

from backends.gguf_store import (
    ModelFileError,
    PackagedModel,
    _assemble,
    resolve_gguf,
    resolve_packaged,
    verify,
)


def test_a_path_with_the_right_hash_resolves_and_a_wrong_one_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 100)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve_gguf(str(path), good) == path
    with pytest.raises(ModelFileError, match="corrupt"):
        resolve_gguf(str(path), "0" * 64)
    with pytest.raises(ModelFileError, match="not found"):
        verify(tmp_path / "absent.gguf", good)


def test_parts_are_assembled_in_order_and_checked(tmp_path):
    parts = []
    for n, data in enumerate([b"first-", b"second-", b"third"]):
        part = tmp_path / f"part{n}"
        part.write_bytes(data)
        parts.append(part)
    digest = hashlib.sha256(b"first-second-third").hexdigest()
    model = PackagedModel("t", digest, 18, lambda: parts, ("t==1",))
    target = _assemble(model, parts, tmp_path / "out" / "t.gguf")
    assert target.read_bytes() == b"first-second-third"
    wrong = PackagedModel("t", "0" * 64, 18, lambda: parts, ("t==1",))
    with pytest.raises(ModelFileError, match="reinstall"):
        _assemble(wrong, parts, tmp_path / "out" / "w.gguf")
    assert not (tmp_path / "out" / "w.gguf").exists()
    assert list((tmp_path / "out").glob("*.part")) == []


def test_unknown_packaged_model_names_the_known_ones():
    with pytest.raises(ModelFileError, match="smollm2-135m-instruct-q4_1"):
        resolve_packaged("nonexistent")


def test_the_packaged_smollm2_verifies(smollm2_gguf):
    assert smollm2_gguf.endswith(".gguf")
