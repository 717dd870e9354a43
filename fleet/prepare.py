"""``smallfleet prepare``: make every GGUF of a fleet ready before serving it.

Serving resolves each model's GGUF on start: packaged models are assembled from their
parts and derived ones are quantized (tens of seconds for the 1.5B), then sha256-checked.
Running this once at install or image-build time moves that work out of the first start.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from backends.gguf_store import ModelFileError, resolve_gguf
from backends.quantize import QuantizeError
from fleet.config import ConfigError, FleetConfig, LlamaCppModel, default_fleet, load_fleet


def prepare(config: FleetConfig) -> list[tuple[str, Path, float]]:
    """Resolve (assemble, quantize, verify) each llama_cpp model's GGUF; (name, path, seconds)."""
    ready = []
    for model in config.models:
        if isinstance(model, LlamaCppModel):
            start = time.monotonic()
            path = resolve_gguf(model.gguf, model.sha256)
            ready.append((model.name, path, time.monotonic() - start))
    return ready


def run_prepare(args: argparse.Namespace) -> int:
    try:
        config = load_fleet(args.config) if args.config else default_fleet()
        for name, path, seconds in prepare(config):
            print(f"{name}: {path} ({path.stat().st_size / 1e6:,.0f} MB, ready in {seconds:.1f} s)")
    except (ConfigError, ModelFileError, QuantizeError) as exc:
        print(f"smallfleet: {exc}", file=sys.stderr)
        return 2
    return 0


def add_prepare_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("prepare", help="assemble, quantize and verify the fleet's GGUF files")
    p.add_argument("--config", help="fleet YAML (default: the embedded default fleet)")
    p.set_defaults(func=run_prepare)
