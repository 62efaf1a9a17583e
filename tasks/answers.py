"""Final answers: normalise gold answers, extract a model's answer from free text, grade it.

Every answer has one canonical form per family: a number written by
`numbers.canonical` ("72", "0.75"), "true"/"false", or an option letter "A".."D".
Extraction prefers an explicit answer marker ("The answer is ...", "#### 72",
`\\boxed{}`, "Answer: B") over anything else in the text, because models work
through other numbers and options on the way to their answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from core.config import TaskName
from tasks.definitions import task_def
from tasks.numbers import canonical, find_numbers, parse_number

LETTERS = ("A", "B", "C", "D")
# Absolute tolerance of the numeric comparison in `is_correct`.
MATH_TOLERANCE = Fraction(1, 10_000)

# "The answer is", "Final answer:", "answer would be", "Answer =" ...; what follows is the answer.
_ANSWER_PHRASE = re.compile(
    r"\banswer\b\s*(?:to\s+(?:the|this)\s+(?:question|problem)\s+)?"
    r"(?:is|would\s+be|will\s+be|should\s+be|[:=])\s*(?:[:=]\s*)?",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####\s*")
_BOXED = re.compile(r"\\boxed\s*\{")
# A marker's answer ends at the end of its sentence or line.
_SENTENCE_END = re.compile(r"\n|\.(?=\s|$)")

_TRUE_WORDS = {"true": "true", "yes": "true", "false": "false", "no": "false"}
_BOOL_AFTER_MARKER = re.compile(r"^[\s:*\"'(\[_]*(true|false|yes|no)\b", re.IGNORECASE)
_BOOL_LEADING = re.compile(r"^[\W_]*(true|false|yes|no)\b", re.IGNORECASE)
_TRUE_FALSE = re.compile(r"\b(true|false)\b", re.IGNORECASE)
# The question's own instruction echoed back ('answer "true" or "false"'): a choice offered, not made.
_BOOL_ECHO = re.compile(
    r"[\"'*]?\b(?:true|false)\b[\"'*]?\s*(?:or|/)\s*[\"'*]?\b(?:true|false)\b[\"'*]?", re.IGNORECASE
)

# An option letter right after a marker: "B", "(B)", "option C", "choice (d)", "b." at a line end.
_LETTER_AFTER_MARKER = re.compile(
    r"^[\s:*\"'_]*(?:(?i:option|choice)\s*)?"
    r"(?:[(\[]([A-Da-d])[)\]]|([A-D])(?![A-Za-z])|([a-d])(?=[.):]?\s*(?:$|\n)))"
)
# "Option C is correct", "(B) is the right answer", "B is the best choice".
_LETTER_IS_CORRECT = re.compile(
    r"(?:\b(?i:option|choice)\s*)?(?:\(([A-D])\)|\b([A-D])\b)\s+is\s+(?:the\s+)?(?:correct|right|best)\b"
)
_LETTER_PAREN = re.compile(r"\(([A-D])\)")
# "B. <option text>" at the very start; "(A) is wrong, ..." is an enumeration, not an answer.
_LETTER_LEADING = re.compile(r"^[\s*\"'_]*([A-D])(?:[).:]|\s*$)")
_NON_WORD = re.compile(r"[\W_]+")


def normalize_answer(task: TaskName, value: str) -> str | None:
    """`value` (a gold answer or an extracted one) in canonical form, or None if unreadable.

    Math: one number ("145", "51.0", "$1,200" -> "145", "51", "1200"). StrategyQA:
    "true"/"false" (also yes/no, any case, trailing period). LogiQA: "A".."D" from a
    letter ("b", "(B)", "Option B") or a 0-based option index ("1" -> "B").
    """
    kind = task_def(task).answer.type
    text = value.strip()
    if kind == "number":
        number = parse_number(text)
        return None if number is None else canonical(number)
    if kind == "boolean":
        return _TRUE_WORDS.get(text.strip(" .!*\"'").lower())
    word = re.sub(r"(?i)^(?:option|choice)\s*", "", text.strip(" .*\"'")).strip("()[] ")
    if word in ("0", "1", "2", "3"):
        return LETTERS[int(word)]
    return word.upper() if word.upper() in LETTERS else None


def extract_answer(task: TaskName, text: str, *, options: Sequence[str] = ()) -> str | None:
    """The final answer in a model's free-text output, canonical (see `normalize_answer`), or None.

    Math: the last `\\boxed{}`, else the last "#### N", else the last "answer is N" /
    "Answer: N" (the result after "=" when the sentence is a calculation), else the
    last number in the text. StrategyQA: "the answer is yes/true/...", else a leading
    true/false/yes/no, else the last standalone true/false. LogiQA: after the last
    answer marker, the text of one of `options` or else a letter; else "option C is
    correct"; else a leading letter ("B. ..."); else the last "(B)"; else the one
    option whose text the output quotes.

    >>> extract_answer("gsm8k", "She pays 3 * $4 = $12.\\nThe answer is $1,200.")
    '1200'
    """
    kind = task_def(task).answer.type
    if kind == "number":
        return _extract_number(text)
    if kind == "boolean":
        return _extract_bool(text)
    return _extract_option(text, options)


def is_correct(task: TaskName, predicted: str | None, gold: str) -> bool:
    """Whether `predicted` matches `gold` (both canonical or readable by `normalize_answer`).

    Math compares numerically within 1e-4; the others compare canonical forms.
    None (no answer found) is never correct.
    """
    if predicted is None:
        return False
    if task_def(task).answer.type == "number":
        p, g = parse_number(predicted), parse_number(gold)
        return p is not None and g is not None and abs(p - g) <= MATH_TOLERANCE
    p_norm = normalize_answer(task, predicted)
    return p_norm is not None and p_norm == normalize_answer(task, gold)


def _sentence(text: str) -> str:
    """The answer's sentence: `text` up to the end of its first sentence or line."""
    text = text.lstrip()
    end = _SENTENCE_END.search(text)
    return text if end is None else text[: end.start()]


def _boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}`, braces balanced (`\\boxed{\\frac{3}{4}}`)."""
    contents = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            contents.append(text[m.end() : i - 1])
    return contents


def _number_in(span: str) -> str | None:
    # "48 + 24 = 72": the answer is the result, not the first operand.
    numbers = find_numbers(span.rsplit("=", 1)[-1])
    return canonical(numbers[0]) if numbers else None


def _extract_number(text: str) -> str | None:
    marked = [
        _boxed_contents(text),
        [_sentence(text[m.end() :]) for m in _HASHES.finditer(text)],
        [_sentence(text[m.end() :]) for m in _ANSWER_PHRASE.finditer(text)],
    ]
    for spans in marked:
        for span in reversed(spans):
            number = _number_in(span)
            if number is not None:
                return number
    numbers = find_numbers(text)
    return canonical(numbers[-1]) if numbers else None


def _extract_bool(text: str) -> str | None:
    text = _BOOL_ECHO.sub(" ", text)
    for m in reversed(list(_ANSWER_PHRASE.finditer(text))):
        word = _BOOL_AFTER_MARKER.match(text[m.end() :])
        if word:
            return _TRUE_WORDS[word.group(1).lower()]
    leading = _BOOL_LEADING.match(text)
    if leading:
        return _TRUE_WORDS[leading.group(1).lower()]
    # Not yes/no here: "there is no evidence" says nothing about the answer.
    words = _TRUE_FALSE.findall(text)
    return words[-1].lower() if words else None


def _quoted(span: str, options: Sequence[str]) -> list[str]:
    """Letters of the options whose text `span` quotes, longest option first."""
    haystack = " " + _NON_WORD.sub(" ", span.lower()) + " "
    hits = []
    for letter, option in zip(LETTERS, options, strict=False):
        needle = _NON_WORD.sub(" ", option.lower()).strip()
        # A short option ("G", "4") counts only when it is all the span says, and never
        # when it reads as an option letter: "(B)" is option B even if option A is "B".
        if len(needle) >= 3:
            quoted = f" {needle} " in haystack
        else:
            quoted = needle not in ("", "a", "b", "c", "d") and haystack.strip() == needle
        if quoted:
            hits.append((len(needle), letter))
    # Longest first: an option may be a substring of another one.
    return [letter for _, letter in sorted(hits, reverse=True)]


def _extract_option(text: str, options: Sequence[str]) -> str | None:
    for m in reversed(list(_ANSWER_PHRASE.finditer(text))):
        # The option's text first: many options start with "A " ("A city's GDP ...").
        quoted = _quoted(_sentence(text[m.end() :]), options)
        if quoted:
            return quoted[0]
        letter = _LETTER_AFTER_MARKER.match(text[m.end() :])
        if letter:
            return next(g for g in letter.groups() if g).upper()
    stated = list(_LETTER_IS_CORRECT.finditer(text))
    if stated:
        return next(g for g in stated[-1].groups() if g)
    leading = _LETTER_LEADING.match(text)
    if leading:
        return leading.group(1)
    parens = _LETTER_PAREN.findall(text)
    if parens:
        return parens[-1]
    quoted = _quoted(text, options)
    return quoted[0] if len(quoted) == 1 else None
