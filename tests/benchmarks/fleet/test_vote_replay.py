"""benchmarks/fleet/vote_replay.py: a diverse route's vote replayed from its measured samples."""

from __future__ import annotations

from benchmarks.fleet.vote_replay import first_k, replay, stop_when_agreed, vote


def _sample(answer, score, tokens=10, temperature=0.7):
    return {"model": "m", "temperature": temperature, "answer": answer, "score": score, "completion_tokens": tokens}


def test_most_votes_win_and_a_tie_goes_to_the_answer_seen_first():
    assert vote([_sample("1", 0), _sample("2", 1), _sample("2", 1)])["answer"] == "2"
    assert vote([_sample("1", 0), _sample("2", 1)])["answer"] == "1"
    assert vote([{"model": "m", "temperature": 0.7, "score": 0, "error": "timeout"}, _sample("3", 1)])["answer"] == "3"
    assert vote([{"model": "m", "temperature": 0.7, "score": 0, "error": "timeout"}]) is None


def test_a_vote_over_the_first_k_counts_only_their_tokens():
    samples = [_sample("7", 0, 5), _sample("8", 1, 6), _sample("8", 1, 7)]
    assert first_k(samples, 1) == (0, 5)
    assert first_k(samples, 3) == (1, 18)


def test_stopping_once_the_first_samples_agree_saves_the_rest():
    agreeing = [_sample("7", 1, 5), _sample("7", 1, 5), _sample("9", 0, 5), _sample("9", 0, 5), _sample("9", 0, 5)]
    assert stop_when_agreed(agreeing, 2) == (1, 10)  # the three 9s are never drawn
    split = [_sample("7", 1, 5), _sample("8", 0, 5), _sample("8", 0, 5)]
    assert stop_when_agreed(split, 2) == (0, 15)
    prose = [{**_sample("hello", 0, 5), "definite": False}] * 2 + [_sample("8", 1, 5)] * 2
    assert stop_when_agreed(prose, 2) == (0, 20)  # agreeing free text is no reason to stop


def test_replay_pairs_each_rule_with_the_first_sample_alone():
    queries = [
        {"model": "vote", "score": 1, "completion_tokens": 30,
         "samples": [_sample("1", 0, temperature=0.0), _sample("2", 1), _sample("2", 1)]},
        {"model": "vote", "score": 1, "completion_tokens": 30,
         "samples": [_sample("5", 1, temperature=0.0), _sample("5", 1), _sample("6", 0)]},
        {"model": "other", "samples": [_sample("1", 1)]},
        {"model": "vote"},  # measured before samples were kept: left out
    ]
    result = replay(queries, "vote")
    rules = {row["rule"]: row for row in result["rules"]}
    assert result["questions"] == 2
    assert rules["first sample alone"]["accuracy"] == 0.5
    assert rules["vote over the first 3"]["accuracy"] == 1.0
    assert (rules["vote over the first 3"]["only_rule_right"], rules["vote over the first 3"]["only_first_right"]) == (1, 0)
    assert rules["stop once the first 2 agree, else all 3"]["tokens_vs_first"] == (30 + 20) / 20
    assert result["sample_accuracy"] == {"m at 0.0": 0.5, "m at 0.7": 0.75}
    assert rules["the route as run"]["accuracy"] == 1.0 and rules["the route as run"]["tokens_vs_first"] == 3.0


def test_a_route_that_stopped_early_is_compared_as_run_with_its_first_sample():
    # records keep only the samples drawn: no rule needing every sample is replayed
    queries = [
        {"model": "vote", "score": 1, "completion_tokens": 20,
         "samples": [_sample("4", 1, temperature=0.0), _sample("4", 1)]},
        {"model": "vote", "score": 1, "completion_tokens": 50,
         "samples": [_sample("1", 0, temperature=0.0), _sample("2", 1), _sample("2", 1), _sample("3", 0),
                     _sample("2", 1)]},
    ]
    queries = [{**q, "id": f"gsm8k/{i}"} for i, q in enumerate(queries)]
    result = replay([*queries, {**queries[1], "score": 0}], "vote")
    assert result["questions"] == 2  # the same question from a second run counts once
    assert [row["rule"] for row in result["rules"]] == ["the route as run", "first sample alone"]
    as_run = result["rules"][0]
    assert (as_run["accuracy"], as_run["only_rule_right"], as_run["only_first_right"]) == (1.0, 1, 0)
    assert as_run["tokens_vs_first"] == 70 / 20
    assert result["samples_per_question"] == {2: 1, 5: 1}
