"""Final answers found in free text: what a vote counts and what a benchmark scorer compares.

- a number: after the last ``####``, ``the answer is`` or ``\\boxed{}``, else the text's last number
  (:func:`extract_final_number`; commas, ``$`` and trailing units do not matter);
- a letter A-D: the option a multiple-choice answer commits to (:func:`extract_letter`);
- else the text itself, lower-cased with its whitespace and trailing punctuation squeezed.

Pure functions, no I/O: ``fleet.grading`` grades benchmark answers with the same ones.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

LETTERS = "ABCD"

# Most explicit first; the last match of the first pattern that matches wins. ``L`` stands for
# the option letters ([A-D] unless a question has more options).
_LETTER_TEMPLATES = (
    (r"answer\s*(?:is|:)?\s*(?:option\s*)?[\(\[\*]*\s*(L)\b(?![\w'])", re.IGNORECASE),
    (r"\*\*\s*\(?(L)\)?[.:)]?\s*\*\*", 0),
    (r"\((L)\)", 0),
    (r"^\s*(L)\s*[.:)]", re.MULTILINE),
    (r"^\s*(L)\s*$", re.MULTILINE),
    (r"\boption\s+(L)\b", re.IGNORECASE),
)


@functools.cache
def _letter_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    klass = f"[{re.escape(letters)}]"
    return tuple(
        re.compile(template.replace("(L)", f"({klass})"), flags) for template, flags in _LETTER_TEMPLATES
    )


# A lower-case "a" followed by a word is the article ("the answer is a total of 8"), not option A.
_ARTICLE_FOLLOWS = re.compile(r"\s+[a-z]")


def extract_letter(text: str, letters: str = LETTERS) -> str | None:
    """The option letter (A-D, or one of ``letters``) an answer commits to, or None if it names none."""
    for pattern in _letter_patterns(letters):
        matches = [
            match.group(1)
            for match in pattern.finditer(text)
            if not (match.group(1) == "a" and _ARTICLE_FOLLOWS.match(text, match.end(1)))
        ]
        if matches:
            return matches[-1].upper()
    return None


_NUMBER = r"-?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
_FINAL_MARKERS = (
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"answer\s+is\s*:?\s*(" + _NUMBER + ")", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
)
_ANY_NUMBER = re.compile(_NUMBER)


def parse_number(text: str) -> Fraction | None:
    """``"$1,234.50"`` -> 1234.5 and ``"3/4"`` -> 0.75, exactly; None if it is no number."""
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _marked_number(text: str) -> Fraction | None:
    for pattern in _FINAL_MARKERS:
        matches = pattern.findall(text)
        if matches:
            return parse_number(matches[-1])
    return None


def extract_final_number(text: str) -> Fraction | None:
    """The answer's final number: after the last '####' or 'the answer is', else its last number.

    Commas, a dollar sign, spaces and trailing units ('18 dollars', '5 km') do not matter.
    """
    marked = _marked_number(text)
    if marked is not None:
        return marked
    numbers = _ANY_NUMBER.findall(text)
    return parse_number(numbers[-1]) if numbers else None


_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case, whitespace squeezed, trailing punctuation and a final period dropped."""
    return _SPACES.sub(" ", text).strip().strip(".!?;:,").strip().lower()


AnswerKind = Literal["number", "letter", "text"]


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """What a sample answered, as a vote counts it: equal values are the same answer.

    ``definite`` answers (a number or a letter) that differ are different answers however
    alike the texts read; a ``text`` answer is only its normalized text.
    """

    kind: AnswerKind
    value: str

    @property
    def definite(self) -> bool:
        return self.kind != "text"

    def __str__(self) -> str:
        return self.value


def _number_text(number: Fraction) -> str:
    return str(number.numerator) if number.denominator == 1 else repr(float(number))


def final_answer(text: str) -> FinalAnswer:
    """An explicitly marked number, else a committed letter, else the last number, else the text."""
    marked = _marked_number(text)
    if marked is not None:
        return FinalAnswer("number", _number_text(marked))
    letter = extract_letter(text)
    if letter is not None:
        return FinalAnswer("letter", letter)
    number = extract_final_number(text)
    if number is not None:
        return FinalAnswer("number", _number_text(number))
    return FinalAnswer("text", normalize_text(text))
