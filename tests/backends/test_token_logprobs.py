"""LogprobRecorder: each step's distribution is attributed to the token the next step names."""

from __future__ import annotations

import numpy as np
import pytest

from backends.token_logprobs import LogprobRecorder


def _log_softmax(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array - np.log(np.exp(array - array.max()).sum()) - array.max()


def test_each_generated_token_gets_the_logprob_of_the_step_that_sampled_it():
    recorder = LogprobRecorder(lambda token: f"<{token}>", top=2)
    step0, step1 = [1.0, 3.0, 0.5], [0.0, 0.0, 4.0]
    assert recorder([7, 8], np.asarray(step0, dtype=np.float32)) is not None  # logits pass through
    assert recorder.entries == []  # the token of step 0 is not known yet
    recorder([7, 8, 1], np.asarray(step1, dtype=np.float32))  # step 0 sampled token 1
    recorder.finish(2)  # the last step sampled token 2
    assert recorder.ids == [1, 2]
    first, second = recorder.entries
    assert first.token == "<1>" and first.logprob == pytest.approx(_log_softmax(step0)[1])
    assert second.logprob == pytest.approx(_log_softmax(step1)[2])
    assert [t for t, _ in first.top] == ["<1>", "<0>"]  # likeliest first
    assert first.top[1][1] == pytest.approx(_log_softmax(step0)[0])


def test_an_end_of_generation_step_is_dropped_and_take_returns_each_entry_once():
    recorder = LogprobRecorder(str)
    recorder([0], np.zeros(4, dtype=np.float32))
    recorder([0, 3], np.zeros(4, dtype=np.float32))
    assert [e.token for e in recorder.take()] == ["3"]
    assert recorder.take() == ()
    recorder.finish(None)  # the last step produced the end-of-generation token
    assert recorder.take() == () and recorder.ids == [3]
    assert recorder.entries[0].logprob == pytest.approx(np.log(0.25))
    assert recorder.entries[0].top == ()
