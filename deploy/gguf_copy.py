"""Copy a fleet model's GGUF to a path: the Helm chart's init container for llama.cpp model servers.

    python -m deploy.gguf_copy packaged:smollm2-135m-instruct-q4_1 /models/model.gguf

The source is a ``gguf:`` value of the fleet config (``packaged:<name>`` or a path) and is
sha256-checked first (packaged models always; paths when ``--sha256`` is given). The copy is
written next to the destination and renamed into place, so a reader never sees half a file;
an existing destination of the same size is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def copy_gguf(reference: str, destination: str | Path, *, sha256: str | None = None) -> Path:
    """Resolve and verify ``reference``, then copy it to ``destination``; returns the destination."""
    from backends.gguf_store import resolve_gguf

    source = resolve_gguf(reference, sha256)
    target = Path(destination)
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, length=1 << 22)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.gguf_copy", description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="packaged:<name> or a path to a GGUF file")
    parser.add_argument("destination", help="where the GGUF should end up")
    parser.add_argument("--sha256", help="expected sha256 of a GGUF given by path")
    args = parser.parse_args(argv)
    from backends.gguf_store import ModelFileError

    try:
        target = copy_gguf(args.reference, args.destination, sha256=args.sha256)
    except (ModelFileError, OSError) as exc:
        print(f"gguf_copy: {exc}", file=sys.stderr)
        return 1
    print(f"gguf_copy: {args.reference} -> {target} ({target.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
