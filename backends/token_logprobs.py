"""Log-probabilities of the tokens llama.cpp generates, without ``logits_all``.

llama-cpp-python returns logprobs only for a model created with ``logits_all=True``, which keeps
a float per vocabulary entry for every context position (4096 x 151,936 x 4 bytes = 2.5 GB for a
Qwen model). Instead, :class:`LogprobRecorder` is a logits processor: llama.cpp calls it with
the raw logits of each step before sampling, and the token sampled at that step is the last input
id of the next call. So each step's distribution is kept until the next step names its token;
the last step's token is named by :meth:`LogprobRecorder.finish`.

The log-probabilities are those of the model's raw distribution (before temperature, top-p or
penalties), as OpenAI reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from backends.types import TokenLogprob


class LogprobRecorder:
    """A llama-cpp-python logits processor that records each generated token's logprob."""

    def __init__(self, token_text: Callable[[int], str], top: int = 0) -> None:
        self._token_text = token_text
        self._top = top
        self._pending: tuple[np.ndarray, float] | None = None  # last step's logits, log-sum-exp
        self._taken = 0
        self.ids: list[int] = []
        self.entries: list[TokenLogprob] = []

    def __call__(self, input_ids: Any, logits: np.ndarray) -> np.ndarray:
        if self._pending is not None:
            self._resolve(int(input_ids[-1]))
        values = np.asarray(logits, dtype=np.float64)
        peak = float(values.max())
        self._pending = (values.copy(), peak + float(np.log(np.exp(values - peak).sum())))
        return logits

    def _resolve(self, token: int) -> None:
        assert self._pending is not None
        values, log_total = self._pending
        self._pending = None
        top: tuple[tuple[str, float], ...] = ()
        if self._top > 0:
            count = min(self._top, values.size)
            best = np.argpartition(values, -count)[-count:]
            best = best[np.argsort(values[best])[::-1]]
            top = tuple((self._token_text(int(i)), float(values[i] - log_total)) for i in best)
        self.ids.append(token)
        self.entries.append(TokenLogprob(self._token_text(token), float(values[token] - log_total), top))

    def finish(self, last_token: int | None) -> None:
        """The generation ended: ``last_token`` is the one sampled at the last step, or None when
        that step's token is not part of the answer (an end-of-generation token)."""
        if self._pending is not None and last_token is not None:
            self._resolve(last_token)
        self._pending = None

    def take(self) -> tuple[TokenLogprob, ...]:
        """The entries recorded since the last call."""
        taken, self._taken = self.entries[self._taken:], len(self.entries)
        return tuple(taken)
