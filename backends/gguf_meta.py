"""A GGUF file's header: its metadata key/values, read without touching the tensors.

GGUF (v2, v3; little-endian) starts with ``GGUF``, a version, the tensor and key/value counts,
then the key/values: a length-prefixed UTF-8 key, a value type, the value. Arrays of strings
(the tokenizer's vocabulary) are skipped length by length; other long arrays in one seek, so
reading a header costs a few milliseconds whatever the file's size. :func:`read_kv_shape` turns
the metadata into what sizing the KV cache needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from backends.gguf_store import ModelFileError

MAGIC = b"GGUF"
MAX_ARRAY_READ = 4096  # longer arrays are skipped and stand as a SkippedArray
_MAX_STRING = 1 << 26  # a longer string means a corrupt header
F16_BYTES = 2  # llama.cpp's default KV cache type
# GGUF value types: 0-7 and 10-12 are fixed-size scalars, 8 a string, 9 an array.
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9


class GgufFormatError(ModelFileError):
    """A file is not a GGUF this reader understands, or its header is cut short."""


@dataclass(frozen=True)
class SkippedArray:
    """An array too long to be worth reading (a vocabulary): only its element type and length."""

    item_type: int
    length: int


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise GgufFormatError(f"{handle.name}: header ends early")
    return data


def _unpack(handle: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))[0]


def _string(handle: BinaryIO) -> str:
    length = _unpack(handle, "<Q")
    if length > _MAX_STRING:
        raise GgufFormatError(f"{handle.name}: a string of {length} bytes; the header is corrupt")
    return _read(handle, length).decode("utf-8", "replace")


def _value(handle: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _unpack(handle, _SCALARS[kind])
    if kind == _STRING:
        return _string(handle)
    if kind != _ARRAY:
        raise GgufFormatError(f"{handle.name}: unknown value type {kind}")
    item_type, length = _unpack(handle, "<I"), _unpack(handle, "<Q")
    if length <= MAX_ARRAY_READ:
        return [_value(handle, item_type) for _ in range(length)]
    if item_type in _SCALARS:
        handle.seek(length * struct.calcsize(_SCALARS[item_type]), 1)
    elif item_type == _STRING:
        for _ in range(length):
            handle.seek(_unpack(handle, "<Q"), 1)
    else:
        raise GgufFormatError(f"{handle.name}: an array of type {item_type} is not supported")
    return SkippedArray(item_type, length)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Every metadata key/value of the GGUF at ``path`` (long arrays as :class:`SkippedArray`)."""
    with open(path, "rb") as handle:
        if _read(handle, 4) != MAGIC:
            raise GgufFormatError(f"{path}: not a GGUF file")
        version = _unpack(handle, "<I")
        if version not in (2, 3):
            raise GgufFormatError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        _tensors, count = _unpack(handle, "<Q"), _unpack(handle, "<Q")
        return {_string(handle): _value(handle, _unpack(handle, "<I")) for _ in range(count)}


@dataclass(frozen=True)
class KvShape:
    """What a model's KV cache size depends on: per token, ``kv_bytes_per_token`` at f16.

    ``n_head_kv`` may vary by layer in some models; it is then the largest, and
    ``kv_bytes_per_token`` sums the layers.
    """

    architecture: str
    n_layer: int
    n_head_kv: int
    head_dim: int  # key length; the value length is usually the same
    kv_bytes_per_token: int
    n_ctx_train: int | None

    def kv_cache_bytes(self, n_ctx: int) -> int:
        return self.kv_bytes_per_token * n_ctx


def kv_shape(metadata: dict[str, Any], bytes_per_element: int = F16_BYTES) -> KvShape:
    """The :class:`KvShape` of a model from its GGUF metadata."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise GgufFormatError("GGUF metadata has no general.architecture")

    def get(key: str, default: Any = None) -> Any:
        value = metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise GgufFormatError(f"GGUF metadata has no {arch}.{key}")
        return value

    n_layer, n_head = int(get("block_count")), get("attention.head_count")
    n_head = max(n_head) if isinstance(n_head, list) else int(n_head)
    head_dim_default = int(get("embedding_length")) // n_head
    key_length = int(get("attention.key_length", head_dim_default))
    value_length = int(get("attention.value_length", key_length))
    heads_kv = get("attention.head_count_kv", n_head)
    per_layer = [int(h) for h in heads_kv] if isinstance(heads_kv, list) else [int(heads_kv)] * n_layer
    per_token = sum(per_layer) * (key_length + value_length) * bytes_per_element
    n_ctx_train = metadata.get(f"{arch}.context_length")
    return KvShape(arch, n_layer, max(per_layer), key_length, per_token,
                   int(n_ctx_train) if n_ctx_train is not None else None)


def read_kv_shape(path: str | Path) -> KvShape:
    """:func:`kv_shape` of the GGUF at ``path``."""
    return kv_shape(read_metadata(path))
