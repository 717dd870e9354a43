"""Fleet YAML validation: good files load, bad ones are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import ConfigError, LlamaCppModel, OpenAIModel, default_fleet, load_fleet


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_default_fleet_serves_smollm2_and_two_qwen_coders():
    fleet = default_fleet()
    names = [m.name for m in fleet.models]
    assert names == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert all(isinstance(m, LlamaCppModel) and m.gguf.startswith("packaged:") for m in fleet.models)


def test_a_valid_file_loads_with_relative_paths_resolved(tmp_path):
    path = write(
        tmp_path,
        """
models:
  - name: local
    backend: llama_cpp
    gguf: models/tiny.gguf
    params: 135e6
    quant: Q4_1
    price: {input: 0.01, output: 0.02}
  - name: remote
    backend: openai
    base_url: http://127.0.0.1:9100/v1
    timeouts: {read: 5}
""",
    )
    fleet = load_fleet(path)
    local, remote = fleet.models
    assert isinstance(local, LlamaCppModel) and local.gguf == str(tmp_path / "models/tiny.gguf")
    assert local.price.cost(1_000_000, 500_000) == pytest.approx(0.02)
    assert isinstance(remote, OpenAIModel) and remote.timeouts.read == 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models:\n  - name: a\n    backend: llama_cpp\n", "models[0].gguf: Field required"),
        (
            "models:\n  - name: a\n    backend: openai\n    base_url: http://x/v1\n    colour: red\n",
            "models[0].colour",
        ),
        ("models:\n  - name: a\n    backend: tpu\n", "models[0]"),
        (
            "models:\n  - {name: a, backend: openai, base_url: 'http://x'}\n  - {name: a, backend: openai, base_url: 'http://y'}\n",
            "duplicate model name 'a'",
        ),
        (
            "models:\n  - {name: a, backend: llama_cpp, gguf: x.gguf, context_length: many}\n",
            "models[0].context_length",
        ),
        ("models:\n  - {name: a, backend: openai, base_url: 'ftp://x'}\n", "models[0].base_url"),
        ("models:\n  - {name: auto, backend: openai, base_url: 'http://x'}\n", "reserved"),
        ("models: []\n", "models"),
        ("- just a list\n", "mapping"),
        ("models: [\n", "not valid YAML"),
        (
            "models:\n  - {name: a, backend: openai, base_url: 'http://x', price: {input: -1}}\n",
            "models[0].price.input",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(tmp_path, text, needle):
    with pytest.raises(ConfigError) as caught:
        load_fleet(write(tmp_path, text))
    assert needle in str(caught.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_fleet(tmp_path / "absent.yaml")
