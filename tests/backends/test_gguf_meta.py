"""The GGUF header reader: the real SmolLM2 file against llama.cpp's own reading, and edge cases."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backends.gguf_meta import (
    MAX_ARRAY_READ,
    GgufFormatError,
    SkippedArray,
    kv_shape,
    read_kv_shape,
    read_metadata,
)


def _as_llama_cpp_string(value: Any) -> str:
    """How llama.cpp prints a metadata value (llama_model_meta_val_str)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:f}"
    return str(value)


# llama_cpp opens os.devnull at import and never closes it; a child process keeps that warning
# out of the test session.
_LLAMA_CPP_METADATA = """
import json, sys
import llama_cpp
llama = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
print(json.dumps(llama.metadata))
llama.close()
"""


def test_smollm2_metadata_matches_llama_cpp(smollm2_gguf: str) -> None:
    child = subprocess.run([sys.executable, "-W", "ignore", "-c", _LLAMA_CPP_METADATA, smollm2_gguf],
                           capture_output=True, text=True, check=True, timeout=120)
    expected = json.loads(child.stdout)
    ours = read_metadata(smollm2_gguf)
    assert expected, "llama.cpp read no metadata"
    for key, value in expected.items():
        assert _as_llama_cpp_string(ours[key]) == value, key
    vocab = ours["tokenizer.ggml.tokens"]
    assert isinstance(vocab, SkippedArray) and vocab.length == int(expected["llama.vocab_size"])


def test_smollm2_kv_shape(smollm2_gguf: str) -> None:
    shape = read_kv_shape(smollm2_gguf)
    # 30 layers, 3 KV heads of 64 (576 / 9 heads), K and V at 2 bytes each
    assert (shape.architecture, shape.n_layer, shape.n_head_kv, shape.head_dim) == ("llama", 30, 3, 64)
    assert shape.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2
    assert shape.kv_cache_bytes(4096) == 94_371_840
    assert shape.n_ctx_train == 8192


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, kind: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", kind) + payload


def _gguf(pairs: list[bytes], version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, 0, len(pairs)) + b"".join(pairs)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data + b"\0" * 64)  # tensor data would follow; never read
    return path


def test_arrays_are_read_when_short_and_skipped_when_long(tmp_path: Path) -> None:
    words = [f"w{n}" for n in range(MAX_ARRAY_READ + 5)]
    long_strings = struct.pack("<IQ", 8, len(words)) + b"".join(_string(w) for w in words)
    long_floats = struct.pack("<IQ", 6, 10_000) + b"\0" * 40_000
    per_layer = struct.pack("<IQ", 4, 3) + _u32(2) + _u32(4) + _u32(2)
    path = _write(tmp_path, _gguf([
        _kv("general.architecture", 8, _string("toy")),
        _kv("tokenizer.tokens", 9, long_strings),
        _kv("toy.scores", 9, long_floats),
        _kv("toy.block_count", 4, _u32(3)),
        _kv("toy.embedding_length", 4, _u32(512)),
        _kv("toy.attention.head_count", 4, _u32(8)),
        _kv("toy.attention.head_count_kv", 9, per_layer),
        _kv("toy.attention.key_length", 4, _u32(96)),
        _kv("toy.flag", 7, b"\1"),
        _kv("toy.rope", 12, struct.pack("<d", 0.5)),
    ]))
    metadata = read_metadata(path)
    assert metadata["tokenizer.tokens"] == SkippedArray(8, MAX_ARRAY_READ + 5)
    assert metadata["toy.scores"] == SkippedArray(6, 10_000)
    assert metadata["toy.attention.head_count_kv"] == [2, 4, 2]
    assert metadata["toy.flag"] is True and metadata["toy.rope"] == 0.5
    shape = kv_shape(metadata)
    # key_length 96 given, value_length defaults to it; heads summed over layers
    assert (shape.n_layer, shape.n_head_kv, shape.head_dim) == (3, 4, 96)
    assert shape.kv_bytes_per_token == (2 + 4 + 2) * (96 + 96) * 2
    assert shape.n_ctx_train is None


def test_head_dim_defaults_to_embedding_over_heads_and_kv_heads_to_heads() -> None:
    metadata = {"general.architecture": "a", "a.block_count": 2, "a.embedding_length": 256,
                "a.attention.head_count": 4, "a.context_length": 1024}
    shape = kv_shape(metadata)
    assert (shape.n_head_kv, shape.head_dim, shape.kv_bytes_per_token) == (4, 64, 2 * 4 * 64 * 2 * 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGML" + b"\0" * 40, "not a GGUF file"),
        (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1 is not supported"),
        (_gguf([_kv("general.architecture", 8, _string("toy"))])[:-2], "header ends early"),
        (_gguf([_kv("x", 42, b"")]), "unknown value type 42"),
        (_gguf([_string("x") + _u32(8) + struct.pack("<Q", 1 << 40)]), "the header is corrupt"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GgufFormatError, match=message):
        read_metadata(path)


def test_missing_architecture_keys_are_named() -> None:
    with pytest.raises(GgufFormatError, match="no general.architecture"):
        kv_shape({})
    with pytest.raises(GgufFormatError, match="no a.block_count"):
        kv_shape({"general.architecture": "a"})
