"""`smallfleet prepare`: every llama_cpp GGUF of a fleet resolved and verified before serving."""

from __future__ import annotations

from gateway.cli import main


def test_prepare_resolves_the_fleets_ggufs(tmp_path, smollm2_gguf, capsys):
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models:\n"
        "  - {name: tiny, backend: llama_cpp, gguf: packaged:smollm2-135m-instruct-q4_1}\n"
        "  - {name: remote, backend: openai, base_url: http://127.0.0.1:9/v1}\n"
    )
    assert main(["prepare", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"tiny: {smollm2_gguf} (98 MB" in out
    assert "remote" not in out


def test_prepare_names_a_bad_model_file(tmp_path, capsys):
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models:\n"
        "  - name: broken\n"
        "    backend: llama_cpp\n"
        f"    gguf: {tmp_path / 'absent.gguf'}\n"
    )
    assert main(["prepare", "--config", str(config)]) == 2
    assert "model file not found" in capsys.readouterr().err
