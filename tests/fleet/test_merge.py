"""`fleet report`: eval outputs run in chunks merge into what one run over everything writes.

The fixtures are written by the real table code (tables.write_outputs, as `fleet eval` does)
from synthetic runs over real benchmark items, so the merge is checked against the very files a
single evaluation would have produced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from backends.base import Backend
from backends.gguf_meta import KvShape
from fleet.benchmarks import BenchmarkItem, load_benchmarks
from fleet.merge import merge, merge_directories, read_output
from fleet.models import EvalModel
from fleet.runner import ModelRun, QueryResult
from fleet.tables import CostRates, write_outputs
from gateway.cli import main
from router._errors import DataError

BENCHMARKS = ["mmlu", "humaneval", "gsm8k"]
SEED, LIMIT = 3, 2
RATES = CostRates(cpu_second=1e-5, gb_second=2e-6)
SHAPE = KvShape("qwen2", 24, 2, 64, 12_288, 32_768)


@pytest.fixture(scope="module")
def items() -> list[BenchmarkItem]:
    return load_benchmarks(BENCHMARKS, LIMIT, SEED)


def _result(item: BenchmarkItem, n: int, model: str) -> QueryResult:
    seconds = 0.5 + n * 0.25 + len(model) * 0.01
    return QueryResult(item.id, item.task, item.question, (n + len(model)) % 2, f"note {n}", seconds,
                       seconds * 1.5, 40 + n, 10 + n, "stop", (50 + 2 * n) * 1e-8)


def _run(name: str, items: Sequence[BenchmarkItem], *, local: bool = True, peak: int | None = None,
         load: float = 1.0) -> ModelRun:
    model = EvalModel(name, cast(Backend, None), params=494e6 if local else None,
                      quant="Q4_K_M" if local else None, in_process=local)
    results = [_result(item, n, name) for n, item in enumerate(items)]
    return ModelRun(model, results, load_seconds=load, file_bytes=491_400_064 if local else None,
                    peak_memory_bytes=peak, kv_shape=SHAPE if local else None,
                    context_length=4096 if local else None)


def _write(out: Path, runs: Sequence[ModelRun], benchmarks: Sequence[str], **settings: Any) -> Path:
    rates = settings.pop("rates", RATES)
    document = {"benchmarks": list(benchmarks), "limit": LIMIT, "seed": SEED, **settings}
    write_outputs(out, runs, rates, document)
    return out


def _only(items: Sequence[BenchmarkItem], *tasks: str) -> list[BenchmarkItem]:
    return [item for item in items if item.task in tasks]


def _subset(run: ModelRun, *tasks: str, **changes: Any) -> ModelRun:
    """The part of ``run`` on ``tasks``, as a chunk that evaluated only those would have measured it."""
    return replace(run, results=[r for r in run.results if r.task in tasks], **changes)


@pytest.fixture
def chunks(tmp_path: Path, items: list[BenchmarkItem]) -> tuple[list[Path], Path]:
    """Three chunks (a on mmlu+humaneval, a on gsm8k, b on everything) and the single run they equal."""
    a = _run("a", items, peak=900_000_000, load=2.5)
    b = _run("b", items, local=False)
    single = _write(tmp_path / "single", [a, b], BENCHMARKS)
    first = _write(tmp_path / "a-mh", [_subset(a, "mmlu", "humaneval", load_seconds=1.0)], ["mmlu", "humaneval"])
    second = _write(tmp_path / "a-g", [_subset(a, "gsm8k", peak_memory_bytes=800_000_000)], ["gsm8k"])
    third = _write(tmp_path / "b", [b], BENCHMARKS)
    return [first, second, third], single


def _files(directory: Path) -> dict[str, str]:
    return {name: (directory / name).read_text() for name in ("rows.json", "queries.json", "table.json")}


def test_merged_chunks_equal_one_run_over_everything(chunks: tuple[list[Path], Path], tmp_path: Path) -> None:
    runs, single = chunks
    text = merge_directories(runs, tmp_path / "merged")
    assert _files(tmp_path / "merged") == _files(single)
    expected_table = (single / "table.md").read_text()
    assert text == (tmp_path / "merged" / "table.md").read_text()
    assert text.startswith(expected_table)
    sources = text[len(expected_table):]
    assert "Merged from 3 runs:" in sources
    assert f"- {runs[0]}: a (mmlu, humaneval; 4 queries)" in sources
    assert f"- {runs[2]}: b (mmlu, humaneval, gsm8k; 6 queries)" in sources
    assert "not evaluated" not in sources


def test_chunk_order_does_not_matter_and_identical_repeats_are_dropped(
    chunks: tuple[list[Path], Path], tmp_path: Path
) -> None:
    runs, single = chunks
    merge_directories([runs[2], runs[1], runs[0], runs[1]], tmp_path / "merged")
    merged, expected = _files(tmp_path / "merged"), _files(single)
    # the models come in the order the chunks name them (b first now); each model's queries as before
    queries = json.loads(merged["queries.json"])
    assert [q["model"] for q in queries] == ["b"] * 6 + ["a"] * 6
    assert sorted(queries, key=lambda q: q["model"]) == json.loads(expected["queries.json"])
    document = json.loads(merged["table.json"])
    assert document["benchmarks"] == ["mmlu", "humaneval", "gsm8k"]
    assert document["table"][4:] == json.loads(expected["table.json"])["table"][:4]


def test_merged_table_takes_the_largest_peak_and_keeps_the_kv_shape(
    chunks: tuple[list[Path], Path], tmp_path: Path
) -> None:
    merge_directories(chunks[0], tmp_path / "merged")
    entry = json.loads((tmp_path / "merged" / "table.json").read_text())["table"][0]
    assert entry["peak_memory_bytes"] == 900_000_000 and entry["load_seconds"] == 2.5
    assert (entry["n_layer"], entry["kv_bytes_per_token"], entry["context_length"]) == (24, 12_288, 4096)


def test_a_route_runs_in_process_without_a_gguf_even_in_tables_from_before_the_field(
    tmp_path: Path, items: list[BenchmarkItem]
) -> None:
    route = _run("route", items, local=False, peak=1_200_000_000)
    route.model = replace(route.model, in_process=True)  # its members are llama.cpp models
    single = _write(tmp_path / "single", [route], BENCHMARKS)
    parts = [_write(tmp_path / "mh", [_subset(route, "mmlu", "humaneval")], ["mmlu", "humaneval"]),
             _write(tmp_path / "g", [_subset(route, "gsm8k")], ["gsm8k"])]
    for part in parts:  # as fleet eval wrote table.json before it recorded in_process
        document = json.loads((part / "table.json").read_text())
        for entry in document["table"]:
            del entry["in_process"]
        (part / "table.json").write_text(json.dumps(document))
    merge_directories(parts, tmp_path / "merged")
    assert _files(tmp_path / "merged") == _files(single)
    assert json.loads((single / "table.json").read_text())["table"][0]["in_process"] is True


def test_a_model_missing_a_task_is_named(chunks: tuple[list[Path], Path], tmp_path: Path) -> None:
    text = merge_directories([chunks[0][0], chunks[0][2]], tmp_path / "merged")
    assert "- a was not evaluated on gsm8k" in text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"seed": SEED + 1}, "differ in seed"),
        ({"limit": LIMIT + 1}, "differ in limit"),
        ({"rates": CostRates(cpu_second=1.0)}, "differ in rates"),
    ],
)
def test_runs_with_other_settings_are_refused(
    chunks: tuple[list[Path], Path], tmp_path: Path, items: list[BenchmarkItem], settings: dict[str, Any],
    message: str,
) -> None:
    other = load_benchmarks(["gsm8k"], settings.get("limit", LIMIT), settings.get("seed", SEED))
    odd = _write(tmp_path / "odd", [_run("c", other)], ["gsm8k"], **settings)
    with pytest.raises(DataError, match=message):
        merge([read_output(path) for path in [*chunks[0], odd]])


def test_the_same_query_answered_differently_is_refused(
    chunks: tuple[list[Path], Path], tmp_path: Path, items: list[BenchmarkItem]
) -> None:
    again = _run("a", _only(items, "gsm8k"), peak=800_000_000)
    again.results[0] = replace(again.results[0], score=1 - again.results[0].score)
    path = _write(tmp_path / "again", [again], ["gsm8k"])
    with pytest.raises(DataError, match=r"a answered gsm8k/\d+ in .* and again, differently, in .*again"):
        merge_directories([*chunks[0], path], tmp_path / "merged")


def test_a_model_with_another_gguf_is_refused(
    chunks: tuple[list[Path], Path], tmp_path: Path, items: list[BenchmarkItem]
) -> None:
    other = replace(_run("a", _only(items, "gsm8k")), file_bytes=1)
    path = _write(tmp_path / "other", [other], ["gsm8k"])
    with pytest.raises(DataError, match="a: file_bytes differs between runs"):
        merge_directories([chunks[0][0], path], tmp_path / "merged")


def test_rows_that_do_not_match_the_benchmark_data_are_refused(
    chunks: tuple[list[Path], Path], tmp_path: Path
) -> None:
    source = chunks[0][1]
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("table.json", "queries.json"):
        (copy / name).write_text((source / name).read_text())
    rows = json.loads((source / "rows.json").read_text())
    rows[0]["question"] = "another question"
    (copy / "rows.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="rows.json does not match its queries"):
        merge_directories([copy], tmp_path / "merged")


def test_incomplete_runs_and_overwriting_a_run_are_refused(
    chunks: tuple[list[Path], Path], tmp_path: Path
) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(DataError, match="no table.json"):
        merge_directories([chunks[0][0], unfinished], tmp_path / "merged")
    with pytest.raises(DataError, match="is one of the --runs"):
        merge_directories(chunks[0], chunks[0][1])


def test_cli(chunks: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged"
    assert main(["fleet", "report", "--runs", *map(str, chunks[0]), "--out", str(out)]) == 0
    assert "Merged from 3 runs" in capsys.readouterr().out
    assert _files(out) == _files(chunks[1])
    assert main(["fleet", "report", "--runs", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no table.json" in capsys.readouterr().err


def test_a_table_from_before_the_kv_fields_gets_them_from_the_evaluated_fleets_gguf(
    tmp_path: Path, items: list[BenchmarkItem], smollm2_gguf: str
) -> None:
    from backends.gguf_meta import read_kv_shape
    from backends.llama_cpp import LlamaCppBackend

    old = replace(_run("a", items), kv_shape=None, context_length=None)
    chunk = _write(tmp_path / "old", [old], BENCHMARKS)
    backend = LlamaCppBackend("a", smollm2_gguf, context_length=2048)
    fleet = [EvalModel("a", cast(Backend, backend), gguf=smollm2_gguf, in_process=True)]
    merge_directories([chunk], tmp_path / "filled", fleet=fleet)
    entry = json.loads((tmp_path / "filled" / "table.json").read_text())["table"][0]
    assert entry["kv_bytes_per_token"] == read_kv_shape(smollm2_gguf).kv_bytes_per_token
    assert entry["context_length"] == 2048
    merge_directories([chunk], tmp_path / "unfilled")
    assert json.loads((tmp_path / "unfilled" / "table.json").read_text())["table"][0]["kv_bytes_per_token"] is None
