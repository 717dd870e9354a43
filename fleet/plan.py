"""Choosing the fleet that fits a memory budget, from measured accuracy (`smallfleet plan`).

A model's footprint is ``weights + KV cache + overhead``: the GGUF file size, plus
``kv_bytes_per_token * context`` (K and V for every layer and KV head at f16, llama.cpp's default
cache type), plus the overhead: llama.cpp's compute buffers, weights it repacks for the CPU (a
second copy next to the mapped file), llama-cpp-python's buffers. By default the overhead is the
model's own, measured: its peak memory in fleet eval minus weights and the KV cache at the
context it ran with (so at that context the footprint is the measured peak); without a
measurement, :data:`DEFAULT_OVERHEAD_BYTES`. A fixed overhead can be given instead.

The rule, applied to a table of measured accuracy per model and task:

1. Models are grouped into families: the same base model at several precisions, i.e. the same
   ``params`` and the same name once a GGUF-type suffix (``-q2_k``, ``-q3_k_m``, ``-f16`` ...)
   is dropped. A family's reference is its highest precision measured (largest file).
2. The primary model comes from the family with the most parameters that has a member which fits
   and is acceptable. When the reference fits, a member is acceptable if its accuracy is at most
   ``max_loss`` below the reference's on every task, and the smallest such member (the lowest
   precision) is chosen. When the reference does not fit, the question is no longer how much a
   lower precision loses against a model that cannot be had, but whether it beats the model that
   would replace it: the next-smaller family's highest precision that fits (the rival). A
   fitting member measured on every task of the reference is acceptable unless its mean accuracy
   over the tasks is more than ``max_loss`` below the rival's; the most accurate acceptable member
   is chosen. Families with the same parameter count: the higher mean accuracy wins.
3. With the memory left, smaller models (fewer parameters) are added for the tasks on which they
   match the primary (at most ``max_loss`` below it) at a lower measured cost per query; greedily,
   the one that takes over the most tasks first (ties: the smaller footprint).

When nothing fits, :class:`NothingFits` says what the smallest footprint is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.llama_cpp import DEFAULT_CONTEXT_LENGTH
from router._errors import DataError

# The overhead of a model whose peak memory was not measured: Qwen2.5-Coder-0.5B Q4_K_M's in fleet
# eval at context 4096 (259 MB). Others measured (docs/fleet-eval.md): SmolLM2-135M about 56 MB;
# Qwen2.5-Coder-1.5B Q2_K 515 MB, 284 MB of it weights llama.cpp repacks for the CPU.
DEFAULT_OVERHEAD_BYTES = 260_000_000
DEFAULT_CONTEXT = DEFAULT_CONTEXT_LENGTH  # the context a llama_cpp model is served with by default
DEFAULT_MAX_LOSS = 0.02
_EPSILON = 1e-9
# The rule in one paragraph: printed with every plan, in --json and in --help.
RULE = (
    "Footprint = GGUF weights + KV cache (2 x layers x context x KV heads x head dim x 2 bytes) + overhead. "
    "Families are one base model at several precisions (same params, same name without the GGUF-type "
    "suffix); a family's reference is its highest precision measured. The primary is the largest family "
    "with a member that fits, at its lowest precision whose accuracy is within max-loss of the reference "
    "on every task; when the reference itself does not fit, at its most accurate fitting precision whose "
    "mean accuracy is within max-loss of the smaller model that would replace it (the next-smaller "
    "family's highest fitting precision). Smaller models are added, while memory lasts, for the tasks on "
    "which they are within max-loss of the primary at a lower measured cost per query."
)
_QUANT_SUFFIX = re.compile(r"[-_.](?:i?q\d[a-z0-9_]*|f16|f32|bf16)$", re.IGNORECASE)


class NothingFits(DataError):
    """No model of the table fits the budget."""


@dataclass(frozen=True, eq=False)
class Candidate:
    """One measured model: its size, KV-cache cost per token, and accuracy and cost per task."""

    name: str
    params: float | None
    quant: str | None
    file_bytes: int
    kv_bytes_per_token: int
    accuracy: dict[str, float]
    n: dict[str, int] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)  # measured cost per query
    peak_memory_bytes: int | None = None
    eval_context: int | None = None

    @property
    def family(self) -> str:
        return family_name(self.name)

    @property
    def family_key(self) -> tuple[str, float | None]:
        return self.family, self.params

    @property
    def bits_per_param(self) -> float | None:
        """File size x 8 / params: the precision, with embeddings and metadata included."""
        return self.file_bytes * 8 / self.params if self.params else None

    @property
    def measured_overhead(self) -> int | None:
        """Peak memory in fleet eval minus weights and KV cache at the eval context, if measured."""
        if self.peak_memory_bytes is None or self.eval_context is None:
            return None
        return max(0, self.peak_memory_bytes - self.file_bytes - self.kv_bytes_per_token * self.eval_context)

    def mean_accuracy(self) -> float:
        values = list(self.accuracy.values())
        return sum(values) / len(values) if values else 0.0


def family_name(model: str) -> str:
    """The model's name without a GGUF-type suffix: ``qwen2.5-coder-1.5b-q2_k`` -> ``qwen2.5-coder-1.5b``."""
    return _QUANT_SUFFIX.sub("", model)


@dataclass(frozen=True)
class Footprint:
    weights: int
    kv_cache: int
    overhead: int
    overhead_source: str  # measured, fixed (given) or default

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


@dataclass(frozen=True)
class PlanSettings:
    """The budget, the context every model must hold, and the overhead (None: measured per model)."""

    budget: int
    context: int = DEFAULT_CONTEXT
    max_loss: float = DEFAULT_MAX_LOSS
    overhead: int | None = None

    def footprint(self, candidate: Candidate) -> Footprint:
        kv_cache = candidate.kv_bytes_per_token * self.context
        if self.overhead is not None:
            return Footprint(candidate.file_bytes, kv_cache, self.overhead, "fixed")
        measured = candidate.measured_overhead
        if measured is not None:
            return Footprint(candidate.file_bytes, kv_cache, measured, "measured")
        return Footprint(candidate.file_bytes, kv_cache, DEFAULT_OVERHEAD_BYTES, "default")


@dataclass(frozen=True)
class Choice:
    """A model in the plan: ``primary`` (serves every task not given away) or ``helper``."""

    candidate: Candidate
    footprint: Footprint
    role: str
    tasks: tuple[str, ...]
    reason: str
    reference: Candidate | None = None  # the primary's family reference
    loss: dict[str, float] = field(default_factory=dict)  # the primary's loss vs the reference


@dataclass(frozen=True)
class Rejection:
    model: str
    reason: str


@dataclass
class Plan:
    settings: PlanSettings
    tasks: list[str]
    chosen: list[Choice]
    rejected: list[Rejection]
    alternative: Candidate | None = None  # the next-smaller family at its highest fitting precision

    @property
    def total(self) -> int:
        return sum(choice.footprint.total for choice in self.chosen)

    @property
    def assignment(self) -> dict[str, str]:
        owner = {task: choice.candidate.name for choice in self.chosen for task in choice.tasks}
        return {task: owner[task] for task in self.tasks if task in owner}


@dataclass(frozen=True)
class ModelFacts:
    """What older tables lack, from the model's GGUF and fleet config: KV bytes per token, n_ctx."""

    kv_bytes_per_token: int
    context_length: int | None


def needs_facts(entry: dict[str, Any]) -> bool:
    """Whether a table entry lacks what sizing its model needs (tables from before they were recorded)."""
    return entry.get("file_bytes") is not None and (
        entry.get("kv_bytes_per_token") is None or entry.get("context_length") is None
    )


def candidates_from_table(
    entries: Sequence[dict[str, Any]], facts: Mapping[str, ModelFacts] | None = None
) -> tuple[list[Candidate], list[Rejection]]:
    """The table's models as candidates; those that cannot be sized, with the reason.

    ``facts`` fills in what an entry lacks (:func:`needs_facts`).
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_model.setdefault(str(entry["model"]), []).append(entry)
    found, skipped = [], []
    for name, rows in by_model.items():
        first, known = rows[0], (facts or {}).get(name)
        per_token = first.get("kv_bytes_per_token") or (known.kv_bytes_per_token if known else None)
        context = first.get("context_length") or (known.context_length if known else None)
        if first.get("file_bytes") is None:
            skipped.append(Rejection(name, "no GGUF of its own (a remote model or a route): not planned"))
            continue
        if per_token is None:
            skipped.append(Rejection(name, "no KV-cache shape in the table or from its GGUF"))
            continue
        tasks = [row for row in rows if row["task"] != "all"]
        found.append(Candidate(
            name, first.get("params"), first.get("quant"), int(first["file_bytes"]), int(per_token),
            accuracy={row["task"]: float(row["accuracy"]) for row in tasks},
            n={row["task"]: int(row["n"]) for row in tasks},
            cost={row["task"]: float(row["measured_cost_per_query"]) for row in tasks
                  if row.get("measured_cost_per_query") is not None},
            peak_memory_bytes=first.get("peak_memory_bytes"), eval_context=context,
        ))
    return found, skipped


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def loss_vs(reference: Candidate, member: Candidate) -> dict[str, float | None]:
    """Per task of the reference: how much lower the member's accuracy is (None: not measured)."""
    return {
        task: reference.accuracy[task] - member.accuracy[task] if task in member.accuracy else None
        for task in reference.accuracy
    }


def _unacceptable(loss: dict[str, float | None], max_loss: float) -> str | None:
    """Why a loss is too large, or None when it is within ``max_loss`` on every task."""
    for task, value in loss.items():
        if value is None:
            return f"not measured on {task}"
        if value > max_loss + _EPSILON:
            return f"loses {value:.3f} on {task} (more than {max_loss:g})"
    return None


def families(candidates: Sequence[Candidate]) -> dict[tuple[str, float | None], list[Candidate]]:
    """Candidates grouped by family, each family's members from the highest precision down."""
    grouped: dict[tuple[str, float | None], list[Candidate]] = {}
    for candidate in candidates:
        grouped.setdefault(candidate.family_key, []).append(candidate)
    return {key: sorted(members, key=lambda c: -c.file_bytes) for key, members in grouped.items()}


def _mean_over(candidate: Candidate, tasks: Sequence[str]) -> float:
    return sum(candidate.accuracy[t] for t in tasks) / len(tasks) if tasks else 0.0


def _best_against_rival(
    members: list[Candidate], rival: Candidate | None, settings: PlanSettings
) -> tuple[Candidate | None, dict[str, str]]:
    """The reference does not fit: the most accurate fitting member that does not lose to ``rival``
    (the smaller model that would replace the family), and why each other member is not it."""
    reference = members[0]
    reasons: dict[str, str] = {}
    acceptable: list[Candidate] = []
    for member in members:
        total = settings.footprint(member).total
        missing = [t for t in reference.accuracy if t not in member.accuracy]
        if total > settings.budget:
            reasons[member.name] = f"does not fit: {_mb(total)} > {_mb(settings.budget)}"
        elif missing:
            reasons[member.name] = f"not measured on {', '.join(missing)}"
        elif rival is None:
            acceptable.append(member)
        else:
            tasks = [t for t in member.accuracy if t in rival.accuracy]
            mine, theirs = _mean_over(member, tasks), _mean_over(rival, tasks)
            if mine < theirs - settings.max_loss - _EPSILON:
                reasons[member.name] = (
                    f"{reference.name} does not fit, and at {member.quant} it loses to {rival.name} "
                    f"({mine:.3f} against {theirs:.3f}, mean of {len(tasks)} tasks)"
                )
            else:
                acceptable.append(member)
    best = max(acceptable, key=lambda m: (m.mean_accuracy(), -settings.footprint(m).total), default=None)
    for member in acceptable:
        if member is not best:
            reasons[member.name] = f"fits, but {_name(best)} is more accurate"
    return best, reasons


def _rival(
    family: list[Candidate], candidates: Sequence[Candidate], settings: PlanSettings
) -> Candidate | None:
    """The smaller model that would replace ``family``: the next-smaller family's highest precision
    that fits (measured on the most tasks)."""
    smaller = [c for c in candidates if _params_rank(c) < _params_rank(family[0])
               and settings.footprint(c).total <= settings.budget]
    if not smaller:
        return None
    top = max(_params_rank(c) for c in smaller)
    return max((c for c in smaller if _params_rank(c) == top), key=lambda c: (len(c.accuracy), c.file_bytes))


def _best_of_family(
    members: list[Candidate], settings: PlanSettings, candidates: Sequence[Candidate] = ()
) -> tuple[Candidate | None, dict[str, str]]:
    """The family's chosen member (rule 2 of this module), and why each other member is not it."""
    reference = members[0]
    if settings.footprint(reference).total > settings.budget:
        return _best_against_rival(members, _rival(members, candidates, settings), settings)
    fitting = [m for m in members if settings.footprint(m).total <= settings.budget]
    acceptable = [m for m in fitting if _unacceptable(loss_vs(reference, m), settings.max_loss) is None]
    best = min(acceptable, key=lambda m: settings.footprint(m).total, default=None)
    reasons = {}
    for member in (m for m in members if m is not best):
        total = settings.footprint(member).total
        why = _unacceptable(loss_vs(reference, member), settings.max_loss)
        if total > settings.budget:
            reasons[member.name] = f"does not fit: {_mb(total)} > {_mb(settings.budget)}"
        elif why is not None:
            reasons[member.name] = f"{why} vs {reference.name} ({reference.quant})"
        else:
            reasons[member.name] = f"fits, but {_name(best)} is within {settings.max_loss:g} in less memory"
    return best, reasons


def _name(candidate: Candidate | None) -> str:
    return candidate.name if candidate else "-"


def _params_rank(candidate: Candidate) -> float:
    return candidate.params if candidate.params is not None else -1.0


def _primary(candidates: Sequence[Candidate], settings: PlanSettings) -> tuple[Candidate, dict[str, str]]:
    """The primary model, and why each model of a family at least as large is not it."""
    grouped = families(candidates)
    options: list[Candidate] = []
    reasons: dict[str, str] = {}
    for key in sorted(grouped, key=lambda k: _params_rank(grouped[k][0]), reverse=True):
        best, why_not = _best_of_family(grouped[key], settings, candidates)
        reasons.update(why_not)
        if best is not None:
            options.append(best)
    if not options:
        fitting = ", ".join(c.name for c in candidates if settings.footprint(c).total <= settings.budget)
        why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        raise NothingFits(
            f"{fitting} fit in {_mb(settings.budget)}, but none is within {settings.max_loss:g} of its "
            f"family's highest precision on every task ({why}); raise --max-loss or --memory"
        )
    top = max(_params_rank(o) for o in options)
    chosen = max((o for o in options if _params_rank(o) == top), key=lambda o: o.mean_accuracy())
    for other in options:
        if other is not chosen:
            same = _params_rank(other) == top
            reasons[other.name] = (f"same parameter count as {chosen.name}, lower mean accuracy" if same
                                   else f"fewer parameters than {chosen.name}")
    return chosen, reasons


def _matches(helper: Candidate, primary: Candidate, task: str, max_loss: float) -> bool:
    if task not in helper.accuracy or task not in primary.accuracy:
        return False
    return helper.accuracy[task] >= primary.accuracy[task] - max_loss - _EPSILON


def _cheaper(helper: Candidate, owner: Candidate, task: str) -> bool:
    mine, theirs = helper.cost.get(task), owner.cost.get(task)
    return mine is not None and theirs is not None and mine < theirs


def _helper_pool(primary: Candidate, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The models that may serve some tasks instead of the primary: those with fewer parameters."""
    if primary.params is None:
        return []
    return [c for c in candidates if c.params is not None and c.params < primary.params]


def _assign(
    primary: Candidate, pool: list[Candidate], settings: PlanSettings, tasks: list[str]
) -> dict[str, Candidate]:
    """Task -> model: the primary, except where a smaller model matches it at a lower cost (greedy)."""
    owner = dict.fromkeys(tasks, primary)
    remaining = list(pool)
    while True:
        # Memory left beside the primary and the helpers still serving a task (one whose tasks
        # were all taken over by a cheaper helper is no longer in the plan).
        serving = dict.fromkeys([primary, *owner.values()])
        left = settings.budget - sum(settings.footprint(c).total for c in serving)
        gains = {
            c.name: [t for t in tasks
                     if _matches(c, primary, t, settings.max_loss) and _cheaper(c, owner[t], t)]
            for c in remaining if settings.footprint(c).total <= left
        }
        ranked = sorted((c for c in remaining if gains.get(c.name)),
                        key=lambda c: (-len(gains[c.name]), settings.footprint(c).total))
        if not ranked:
            return owner
        helper = ranked[0]
        owner.update(dict.fromkeys(gains[helper.name], helper))
        remaining.remove(helper)


def _helper_reason(
    c: Candidate, primary: Candidate, settings: PlanSettings, tasks: list[str], left: int
) -> str:
    total = settings.footprint(c).total
    if total > left:
        return f"does not fit in the {_mb(max(left, 0))} left ({_mb(total)})"
    matched = [t for t in tasks if _matches(c, primary, t, settings.max_loss)]
    if not matched:
        return f"more than {settings.max_loss:g} below {primary.name} on every task"
    return (f"matches {primary.name} on {', '.join(matched)}, "
            "but not at a lower cost than the model serving it")


def _alternative(
    primary: Candidate, candidates: Sequence[Candidate], settings: PlanSettings
) -> Candidate | None:
    """The next-smaller family's highest precision that fits: the params-against-precision rival."""
    smaller = [c for c in candidates if _params_rank(c) < _params_rank(primary)
               and settings.footprint(c).total <= settings.budget]
    if not smaller:
        return None
    top = max(_params_rank(c) for c in smaller)
    return max((c for c in smaller if _params_rank(c) == top), key=lambda c: c.file_bytes)


def _refuse(candidates: Sequence[Candidate], settings: PlanSettings) -> None:
    least = min(candidates, key=lambda c: settings.footprint(c).total)
    footprint = settings.footprint(least)
    if footprint.total > settings.budget:
        raise NothingFits(
            f"nothing fits in {_mb(settings.budget)}: the smallest footprint is {least.name} at "
            f"{_mb(footprint.total)} (weights {_mb(footprint.weights)} + KV cache {_mb(footprint.kv_cache)} "
            f"at context {settings.context} + overhead {_mb(footprint.overhead)})"
        )


def make_plan(candidates: Sequence[Candidate], settings: PlanSettings) -> Plan:
    """The fleet for ``settings.budget`` under the rule in this module's docstring."""
    if not candidates:
        raise DataError("the table has no model with a GGUF size to plan with")
    _refuse(candidates, settings)
    tasks = list(dict.fromkeys(task for c in candidates for task in c.accuracy))
    primary, reasons = _primary(candidates, settings)
    members = families(candidates)[primary.family_key]
    pool = _helper_pool(primary, candidates)
    owner = _assign(primary, pool, settings, tasks)
    helpers = list(dict.fromkeys(c for c in owner.values() if c is not primary))
    left = settings.budget - sum(settings.footprint(c).total for c in [primary, *helpers])
    loss = {t: v for t, v in loss_vs(members[0], primary).items() if v is not None}
    chosen = [Choice(primary, settings.footprint(primary), "primary",
                     tuple(t for t in tasks if owner[t] is primary),
                     _primary_reason(primary, members, settings), members[0], loss)]
    for helper in helpers:
        served = tuple(t for t in tasks if owner[t] is helper)
        reason = (f"at most {settings.max_loss:g} below {primary.name} on {', '.join(served)}, "
                  "at a lower cost per query")
        chosen.append(Choice(helper, settings.footprint(helper), "helper", served, reason))
    rejected = [
        Rejection(c.name, _helper_reason(c, primary, settings, tasks, left) if c in pool else reasons[c.name])
        for c in candidates if c is not primary and c not in helpers
    ]
    return Plan(settings, tasks, chosen, rejected, _alternative(primary, candidates, settings))


def _primary_reason(primary: Candidate, members: list[Candidate], settings: PlanSettings) -> str:
    size = f"{primary.params / 1e9:.2f}B" if primary.params else "unknown size"
    if primary is members[0]:
        precision = f"at its highest measured precision ({primary.quant})"
    elif settings.footprint(members[0]).total > settings.budget:
        precision = (f"{members[0].quant} does not fit; at {primary.quant} it is its most accurate precision "
                     "that fits and does not lose to the smaller model that would replace it")
    else:
        precision = (f"its lowest precision within {settings.max_loss:g} of {members[0].quant} "
                     f"on every task")
    return f"the largest family that fits ({primary.family}, {size}); {precision}"
