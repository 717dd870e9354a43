"""Lower a GGUF's precision with llama.cpp's own quantizer.

``quantize(src, dst, "Q2_K")`` calls ``llama_model_quantize`` with
``allow_requantize`` so an already-quantized file (e.g. Q4_K_M) can be taken
lower. The output is written next to ``dst`` and renamed into place, so a
crash never leaves a half-written model under the final name. For a given
input and llama.cpp version the result is byte-identical whatever the thread
count, which is what lets :mod:`backends.gguf_store` pin its sha256.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path

from backends.errors import SmallfleetError


class QuantizeError(SmallfleetError):
    """llama.cpp could not quantize a model (unknown type, unreadable input, disk full)."""


def known_types() -> list[str]:
    """GGUF types llama.cpp can quantize to, e.g. ``Q4_K_M``, ``Q3_K_M``, ``Q2_K``."""
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    return sorted(name[len(prefix) :] for name in dir(llama_cpp) if name.startswith(prefix))


def quantize(src: Path, dst: Path, gguf_type: str, threads: int | None = None) -> Path:
    """Write ``src`` quantized to ``gguf_type`` at ``dst`` (atomically) and return ``dst``."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{gguf_type.upper()}", None)
    if ftype is None:
        raise QuantizeError(f"unknown GGUF type {gguf_type!r}; known: {', '.join(known_types())}")
    if not Path(src).is_file():
        raise QuantizeError(f"model file not found: {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = threads or 0  # 0: llama.cpp picks the hardware thread count
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, suffix=".quantizing")
    os.close(fd)
    try:
        status = llama_cpp.llama_model_quantize(
            str(src).encode(), tmp_name.encode(), ctypes.byref(params)
        )
        if status != 0:
            raise QuantizeError(f"llama.cpp failed to quantize {src} to {gguf_type} (status {status})")
        os.replace(tmp_name, dst)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dst
