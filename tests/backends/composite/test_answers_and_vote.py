"""Final-answer extraction and the vote: pure functions, no models."""

from __future__ import annotations

import pytest

from backends.composite.answers import FinalAnswer, final_answer, normalize_text
from backends.composite.vote import Candidate, ballot, find_duplicates, unit_rows


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("so 9 * 2 = 18 dollars.\n#### 18", "number", "18"),
        ("She pays $1,234.50 in all. The answer is $1,234.50", "number", "1234.5"),
        ("Therefore \\boxed{3/4} of the cake.", "number", "0.75"),
        ("First 3 apples, then 5 more: 8 apples", "number", "8"),
        ("The capital is Paris, so the answer is B.", "letter", "B"),
        ("Answer: (C)", "letter", "C"),
        ("  Hello,   World!  ", "text", "hello, world"),
    ],
)
def test_final_answer_finds_numbers_letters_or_text(text, kind, value):
    assert final_answer(text) == FinalAnswer(kind, value)


def test_marked_number_wins_over_letters_and_later_numbers():
    assert final_answer("Option (A) gives 5. #### 7\nCheck: 7 - 2 = 5").value == "7"
    assert normalize_text("A  b.\n") == "a b"


def _candidates(*texts: str, stop: bool = True) -> list[Candidate]:
    return [Candidate(i, t, "stop" if stop else "length", final_answer(t)) for i, t in enumerate(texts)]


def test_without_embeddings_only_equal_normalized_texts_are_duplicates():
    candidates = _candidates("#### 18", "####  18 ", "so #### 18", "#### 20")
    assert find_duplicates(candidates, None, 0.9) == (None, 0, None, None)


def test_alike_texts_with_different_definite_answers_are_never_merged():
    candidates = _candidates("the total is 9 so #### 18", "the total is 9 so #### 19", "a poem", "a poem too")
    alike = unit_rows([[1, 0], [1, 0], [0, 1], [0, 1]], 4)  # two pairs, each pair reading alike
    # the two numbers stay apart; the free texts merge (no definite answers to tell them apart)
    assert find_duplicates(candidates, alike, 0.95) == (None, None, None, 2)


def test_every_sample_votes_or_only_distinct_ones_and_ties_go_to_the_first_seen():
    candidates = _candidates("#### 5", "#### 7", "again #### 7", "#### 7", "#### 5 ok")
    counted = ballot(candidates, None, 0.95)
    assert counted.duplicate_of == (None, None, None, 1, None)
    assert counted.votes == {"5": 2, "7": 3} and counted.winner == "7"
    once = ballot(candidates, None, 0.95, count_duplicates=False)
    assert once.votes == {"5": 2, "7": 2}
    assert once.winner == "5" and once.ranked[0] == 0


def test_ranking_puts_the_winner_first_then_finished_answers_before_truncated_ones():
    candidates = [
        Candidate(0, "so #### 3", "length", final_answer("so #### 3")),
        Candidate(1, "thus #### 3", "stop", final_answer("thus #### 3")),
        Candidate(2, "#### 4", "stop", final_answer("#### 4")),
    ]
    result = ballot(candidates, None, 0.95)
    assert result.ranked == (1, 0, 2)
    assert result.distinct == 3


def test_a_sample_with_a_number_never_merges_into_one_without_so_its_vote_is_not_lost():
    # The first sample commits to no answer; two more read like it (one embedding) but end on 7.
    candidates = _candidates("let me think about it", "let me think about it: 7", "let me think about it, 7")
    alike = unit_rows([[1, 0], [1, 0], [1, 0]], 3)
    result = ballot(candidates, alike, 0.95)
    assert result.duplicate_of == (None, None, 1)  # the 7s merge with each other, not with the free text
    assert result.votes == {"sample 0": 1, "7": 2}
    assert result.winner == "7" and result.ranked[0] == 1


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("So the answer is a total of 8 apples.", "number", "8"),  # 'a' is the article, not option A
        ("The answer is a bit more than 7, namely 7.5", "number", "7.5"),
        ("I think the answer is b", "letter", "B"),
        ("The answer is a.", "letter", "A"),
        ("The answer is A because it is smallest.", "letter", "A"),
    ],
)
def test_the_article_a_after_answer_is_is_no_letter(text, kind, value):
    assert final_answer(text) == FinalAnswer(kind, value)
