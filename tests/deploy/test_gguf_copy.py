"""deploy.gguf_copy: what the chart's init container runs to put a GGUF on the models volume."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from deploy.gguf_copy import copy_gguf, main


def test_copies_a_packaged_model_and_keeps_an_existing_copy(tmp_path: Path, smollm2_gguf: str) -> None:
    target = copy_gguf("packaged:smollm2-135m-instruct-q4_1", tmp_path / "models" / "model.gguf")
    assert filecmp.cmp(target, smollm2_gguf, shallow=False)
    mtime = target.stat().st_mtime_ns
    assert copy_gguf("packaged:smollm2-135m-instruct-q4_1", target) == target
    assert target.stat().st_mtime_ns == mtime
    assert [p.name for p in target.parent.iterdir()] == ["model.gguf"]


def test_refuses_a_file_with_the_wrong_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.gguf"
    source.write_bytes(b"GGUF not really")
    assert main([str(source), str(tmp_path / "out.gguf"), "--sha256", "0" * 64]) == 1
    assert "sha256" in capsys.readouterr().err
    assert not (tmp_path / "out.gguf").exists()


def test_unknown_packaged_model_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packaged:no-such-model", str(tmp_path / "out.gguf")]) == 1
    assert "unknown packaged model" in capsys.readouterr().err
