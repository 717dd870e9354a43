"""`smallfleet fleet eval` end to end on the real SmolLM2 GGUF (packaged, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main

pytestmark = pytest.mark.slow


def test_fleet_eval_on_smollm2(tmp_path: Path) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models:\n"
        "  - name: smollm2-135m\n"
        "    backend: llama_cpp\n"
        "    gguf: packaged:smollm2-135m-instruct-q4_1\n"
        "    context_length: 2048\n"
        "    price: {input: 0.01, output: 0.01}\n"
    )
    out = tmp_path / "out"
    argv = ["fleet", "eval", "--config", str(config), "--limit", "2", "--out", str(out),
            "--max-tokens", "mmlu=16,gsm8k=64,humaneval=96", "--no-progress"]
    assert main(argv) == 0
    rows = json.loads((out / "rows.json").read_text())
    assert len(rows) == 6
    assert all(set(r["scores"]) == {"smollm2-135m"} and r["scores"]["smollm2-135m"] in (0, 1) for r in rows)
    entries = json.loads((out / "table.json").read_text())["table"]
    mmlu = next(e for e in entries if e["task"] == "mmlu")
    assert mmlu["file_bytes"] == 98_362_432
    assert mmlu["peak_memory_bytes"] > 0 and mmlu["tokens_per_second"] > 0
    assert mmlu["measured_cost_per_query"] > 0 and mmlu["config_cost_per_query"] > 0
    queries = json.loads((out / "queries.json").read_text())
    assert all(q["finish_reason"] != "error" for q in queries)
