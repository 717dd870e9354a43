"""The routing benchmark's own questions as fleet-eval items, and each task's scorer."""

from __future__ import annotations

import json

import pytest

from fleet.benchmarks import expand_names, load_benchmarks, shard_items
from fleet.grading import F1_THRESHOLD, score, short_answer, token_f1
from fleet.routing_tasks import GRADEABLE, NAMES, TRAIN_FILE, load_routing_task
from router._errors import DataError


@pytest.fixture(scope="module")
def items():
    return load_benchmarks(["routing"], 10, 0)


def test_the_group_name_stands_for_every_gradeable_task_in_order():
    assert expand_names(["mmlu", "routing", "routing:mbpp"]) == ["mmlu", *NAMES]
    assert [name.removeprefix("routing:") for name in NAMES] == list(GRADEABLE)


def test_items_are_sampled_deterministically_and_keyed_by_the_benchmarks_own_question(items):
    assert len(items) == 10 * len(GRADEABLE)
    assert [i.id for i in items] == [i.id for i in load_benchmarks(["routing"], 10, 0)]
    assert [i.id for i in items] != [i.id for i in load_benchmarks(["routing"], 10, 1)]
    trained = {row["question"] for row in json.loads(TRAIN_FILE.read_text())}
    assert all(item.question in trained for item in items)  # rows join train.json's nine models
    assert len({item.question for item in items}) == len(items)


def test_multiple_choice_prompts_show_every_option_and_name_the_letters(items):
    commonsense = next(i for i in items if i.task == "routing:commonsense_qa")
    system, user = commonsense.messages
    assert "A, B, C, D or E" in system.content and "\nE. " in user.content
    assert user.content.startswith(commonsense.question)
    assert commonsense.reference in "ABCDE" and commonsense.get("letters") == "ABCDE"


def test_arc_options_numbered_1_to_4_are_shown_and_graded_as_letters():
    arc = load_routing_task("routing:arc_challenge")
    assert all("\n1. " not in i.messages[1].content and "\nA. " in i.messages[1].content for i in arc)
    assert all(i.reference in i.get("letters") for i in arc)


def test_unknown_routing_task_is_named():
    with pytest.raises(DataError, match="unknown routing task 'gpqa'"):
        load_routing_task("routing:gpqa")


def test_short_answers_score_by_normalised_token_f1_at_the_threshold():
    assert token_f1("The Bayreuth", "bayreuth germany") == pytest.approx(2 / 3)
    assert token_f1("Paris", "paris") == 1.0 and token_f1("", "paris") == 0.0
    assert short_answer("Answer: Sammy Davis Jr.\nHe sang it in 1968.") == "Sammy Davis Jr."
    trivia = load_routing_task("routing:trivia_qa", 1, 0)[0]
    assert score(trivia, trivia.reference)[0] == 1
    assert score(trivia, "I am not sure, sorry")[0] == 0
    assert F1_THRESHOLD == 0.5


def test_multiple_choice_answers_score_by_the_committed_letter(items):
    commonsense = next(i for i in items if i.task == "routing:commonsense_qa")
    wrong = next(letter for letter in "ABCDE" if letter != commonsense.reference)
    assert score(commonsense, f"Answer: {commonsense.reference}")[0] == 1
    assert score(commonsense, f"Answer: {wrong}") == (0, f"letter={wrong}")


def test_mbpp_runs_the_tasks_asserts_in_the_sandbox():
    item = load_routing_task("routing:mbpp", 1, 0)[0]
    assert item.reference.startswith("assert ")
    assert score(item, "```python\ndef nothing():\n    pass\n```")[0] == 0
    name = item.reference.split("assert ", 1)[1].split("(", 1)[0]
    assert f"{name}(" in item.messages[1].content  # the model is shown the asserts, so the name


def test_a_shard_keeps_every_nth_item_of_each_benchmark(items):
    shard = shard_items(items, 1, 5)
    assert len(shard) == 2 * len(GRADEABLE)
    for name in NAMES:
        mine = [i.id for i in items if i.task == name]
        assert [i.id for i in shard if i.task == name] == mine[1::5]
