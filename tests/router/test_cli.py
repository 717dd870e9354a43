from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from router.cli import main


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def test_train_writes_a_loadable_artifact(
    small_data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "art"
    code = _run(
        [
            "train",
            "--data",
            str(small_data["rows"]),
            "--models",
            str(small_data["models"]),
            "--out",
            str(out),
            "--folds",
            "0",
            "--clusters",
            "6",
        ],
        monkeypatch,
    )
    assert code == 0
    assert (out / "manifest.json").is_file() and (out / "model.npz").is_file()
    captured = capsys.readouterr()
    assert "written to" in captured.out
    assert "embedding questions" in captured.err  # progress goes to stderr


def test_route_keeps_order_and_shape(
    small_artifact_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = [
        "What is 7 times 8?",
        "Write a function to sort a list.",
        "who wrote the song hotel california",
    ]
    stdin = "".join(json.dumps({"question": q}) + "\n" for q in questions)
    assert _run(["route", "--artifact", str(small_artifact_dir), "--alpha", "0"], monkeypatch, stdin) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    assert [line["alpha"] for line in lines] == [0.0] * 3
    assert all(line["model"] == "gemma-2-9b-it" or line["out_of_distribution"] for line in lines)
    assert lines[1]["model"] == "gemma-2-9b-it"


def test_route_with_preset_and_candidates(
    small_artifact_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = json.dumps({"question": "What is 7 times 8?"}) + "\n"
    argv = [
        "route",
        "--artifact",
        str(small_artifact_dir),
        "--preset",
        "quality",
        "--candidates",
        "codegemma-7b,mistral-7b-instruct-v0.3",
    ]
    assert _run(argv, monkeypatch, stdin) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["model"] in {"codegemma-7b", "mistral-7b-instruct-v0.3"} and line["alpha"] == 1.0


def test_eval_prints_table_and_writes_png(
    small_artifact_dir: Path,
    small_data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    png, report = tmp_path / "curve.png", tmp_path / "eval.json"
    argv = [
        "eval",
        "--artifact",
        str(small_artifact_dir),
        "--data",
        str(small_data["rows"]),
        "--models",
        str(small_data["models"]),
        "--out-png",
        str(png),
        "--json",
        str(report),
    ]
    assert _run(argv, monkeypatch) == 0
    out = capsys.readouterr().out
    for label in ("alpha=0.00", "alpha=1.00", "random", "cheapest", "best single", "oracle"):
        assert label in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads(report.read_text(encoding="utf-8"))
    assert figures["baselines"]["oracle"]["accuracy"] >= figures["baselines"]["best single"]["accuracy"]


def test_eval_cross_validation(
    small_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "eval",
        "--cv",
        "--folds",
        "2",
        "--data",
        str(small_data["rows"]),
        "--models",
        str(small_data["models"]),
    ]
    assert _run(argv, monkeypatch) == 0
    assert "2-fold CV" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["route", "--artifact", "/nonexistent/artifact"], "", "does not exist"),
        (["eval", "--data", "x.json", "--models", "y.json"], "", "exactly one of"),
    ],
)
def test_bad_input_is_a_clear_error(
    argv: list[str],
    stdin: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(argv, monkeypatch, stdin) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_route_line_is_a_clear_error(
    small_artifact_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["route", "--artifact", str(small_artifact_dir)], monkeypatch, '{"q": 1}\n') == 2
    assert "input line 1" in capsys.readouterr().err


def test_bad_training_rows_are_a_clear_error(
    small_data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"question": "hi", "scores": {"gemma-2-9b-it": 1.0}}]), encoding="utf-8")
    argv = ["train", "--data", str(rows), "--models", str(small_data["models"]), "--out", str(tmp_path / "a")]
    assert _run(argv, monkeypatch) == 2  # a row may score some models, but every model needs a score
    assert "no row scores model(s) 'codegemma-7b'" in capsys.readouterr().err
    rows.write_text(json.dumps([{"question": "hi", "scores": {"gpt-9": 1.0}}]), encoding="utf-8")
    assert _run(argv, monkeypatch) == 2
    assert "'gpt-9', which the models file does not list" in capsys.readouterr().err
    assert _run(["train", "--out", str(tmp_path / "a")], monkeypatch) == 2
    assert "train needs --data ROWS.json and --models MODELS.json" in capsys.readouterr().err
