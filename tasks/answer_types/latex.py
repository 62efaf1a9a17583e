"""`math`: competition-maths answers in LaTeX (MATH-style `\\boxed{}`), compared symbolically with math-verify.

math-verify (huggingface/math-verify, Apache-2.0) parses LaTeX into SymPy and decides
equivalence: `\\frac12` = `0.5` = `\\dfrac{1}{2}`, `2\\sqrt{2}` = `\\sqrt{8}`, intervals,
sets, `x = 3` = `3`, `30^\\circ` = `30`. Its time limit is `signal.alarm`, which only the
main thread may set ("Math-Verify doesn't support threaded environment due to usage of
signal.alarm()", math_verify/grader.py): we pass a limit on the main thread, where the
exam and the teach loop grade (an asyncio loop included), and none elsewhere, where
nothing could interrupt SymPy anyway. It is imported on first use: SymPy takes a second.
"""

from __future__ import annotations

import math
import re
import signal
import threading
from collections.abc import Sequence
from functools import lru_cache

from core.config import AnswerKind
from tasks.answer_types.base import Rule
from tasks.answer_types.marks import boxed_contents, marked
from tasks.numbers import canonical, find_numbers, parse_number

_BOXES = ("boxed", "fbox")
# "\boxed 5": LaTeX's one-token argument without braces, which MATH's solutions use now and then.
_BARE_BOX = re.compile(r"\\(boxed|fbox) +([^\s${},\\]+)")
# Seconds math-verify may spend parsing or comparing one answer (its default).
_TIMEOUT_S = 5
# Inline or display maths in an answer sentence: "The answer is $\frac{1}{2}$."
_INLINE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
# What joins the parts of one answer: "$x = 2$ or $x = 3$", "$1$, $2$ and $4$".
_JOINER = re.compile(r"\s*(?:,|and|or|,\s*and|,\s*or)\s*", re.IGNORECASE)
# A text answer: the whole gold wrapped in \text{} (MATH writes "\text{Monday}", "\text{(C)}").
_TEXT = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{(.*)\}$", re.DOTALL)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
# Spacing commands and delimiters that never change an answer's value.
_NOISE = re.compile(r"\\[,;:! ]|\\left|\\right|\\displaystyle|\s|\$")
_NON_WORD = re.compile(r"[\W_]+")
# Longer answers are compared as text only: no real answer is this long, and SymPy's cost grows with it.
_MAX_VERIFIED_CHARS = 1000
# A factorial SymPy would compute in full ("1000000!" takes minutes).
_BIG_FACTORIAL = re.compile(r"\d{6,}\s*!")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_SMALL_POWER = re.compile(r"\s*(\d+)\s*\^\s*\{?\s*(\d+)\s*\}?\s*")


class MathAnswer(Rule):
    """LaTeX answers as written ("\\frac{3}{4}", "(1, 2]", "\\text{Monday}"), compared with math-verify.

    Extraction: the last `\\boxed{}` or `\\fbox{}` (nested braces balanced), else the
    last "####" or answer phrase's sentence (its `$...$` if it has one: "The answer is
    $\\frac{1}{2}$."), else the last number in the reply.
    """

    __slots__ = ()
    kind: AnswerKind = "math"

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The gold answer: the last box of a worked solution, or the field itself without `$`s.

        Raises ValueError for an empty answer or a box that never closes.
        """
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"expected a LaTeX answer, got {type(raw).__name__}")
        text = _braced(str(raw).strip())
        if any(f"\\{box}" in text for box in _BOXES):
            boxes = [b for b in boxed_contents(text, _BOXES) if b.strip()]
            if not boxes:
                raise ValueError("its \\boxed{} is empty or never closes")
            text = boxes[-1]
        gold = _unwrapped(text)
        if not gold:
            raise ValueError("empty answer")
        return gold

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The reply's final answer as LaTeX (see the class), or None."""
        for spans in marked(_braced(text), _BOXES):
            for span in reversed(spans):
                answer = _unwrapped(_first_maths(span))
                if answer:
                    return answer
        numbers = find_numbers(text)
        return canonical(numbers[-1]) if numbers else None

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """Whether `predicted` is the same answer: equal text, equal words for a `\\text{}` gold, else math-verify."""
        if predicted is None or not predicted.strip():
            return False
        if _NOISE.sub("", predicted) == _NOISE.sub("", gold):
            return True
        text = _TEXT.match(gold.strip())
        if text is not None:
            # Compared as words: math-verify reads bare letters as symbols multiplied ("ab" equals "ba").
            return _words(predicted) == _words(text.group(1))
        return _verify(gold, predicted)

    def written(self, answer: str) -> str:
        """ "\\boxed{<answer>}"."""
        return f"\\boxed{{{answer}}}"

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """`gold` + 1 for a number, else `gold` with "+1" after it."""
        number = parse_number(gold)
        return canonical(number + 1) if number is not None else f"{gold}+1"


def _first_maths(span: str) -> str:
    """The maths a marked sentence opens with: its first `$...$` with those joined to it by "," / "and" / "or"
    ("$x = 2$ or $x = 3$" -> "x = 2, x = 3"; "$5$, since $2 + 3 = 5$" -> "5"), or the sentence if it has none."""
    found = list(_INLINE.finditer(span))
    if not found:
        return span
    parts = [found[0]]
    for m in found[1:]:
        if not _JOINER.fullmatch(span, parts[-1].end(), m.start()):
            break
        parts.append(m)
    return ", ".join(next(g for g in m.groups() if g) for m in parts)


def _braced(text: str) -> str:
    """`text` with every bare box braced: "\\boxed 5" -> "\\boxed{5}"."""
    return _BARE_BOX.sub(r"\\\1{\2}", text)


def _unwrapped(span: str) -> str:
    """`span` without the `$`s, bold stars, spaces and closing period around it."""
    return span.strip(" \t\n*$").removesuffix(".").strip(" \t\n*$")


def _words(latex: str) -> str:
    return " ".join(_NON_WORD.sub(" ", _TEXT_COMMAND.sub(r"\1", latex).casefold()).split())


# A resumed run regrades the answers it stored: the same pairs again, each worth tens of milliseconds of SymPy.
@lru_cache(maxsize=4096)
def _verify(gold: str, predicted: str) -> bool:
    if _too_costly(gold) or _too_costly(predicted):
        # Nothing bounds SymPy here off the main thread (a notebook's run), and a huge integer power holds the
        # GIL until it is done, hanging the whole process; the exact-text match above already had its chance.
        return False
    import math_verify as mv  # deferred: SymPy takes a second to import, and only maths tasks need it

    # signal.alarm exists on POSIX only, and only the main thread may set it.
    limit = _TIMEOUT_S if hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread() else None
    parsed_gold = mv.parse(f"${gold}$", parsing_timeout=limit)  # type: ignore[arg-type]
    parsed = mv.parse(f"${predicted}$", parsing_timeout=limit)  # type: ignore[arg-type]
    if not parsed_gold or not parsed:
        return False
    return bool(mv.verify(parsed_gold, parsed, timeout_seconds=limit))


def _too_costly(latex: str) -> bool:
    """Whether SymPy would spend minutes on `latex`: very long, a huge factorial, or a power whose numeric
    exponent may be huge ("9^{9^{9^{9}}}", "2^{1000000}", "2^{10!}")."""
    if len(latex) > _MAX_VERIFIED_CHARS or _BIG_FACTORIAL.search(latex):
        return True
    for at in (m.end() for m in re.finditer(r"\^\s*", latex)):
        exponent = _group(latex, at)
        # An exponent with a symbol in it stays symbolic ("e^{x^2}"): SymPy computes nothing huge.
        if re.search(r"[A-Za-z]", _COMMAND.sub("", exponent)):
            continue
        if _huge(exponent):
            return True
    return False


def _huge(exponent: str) -> bool:
    """Whether a numeric exponent may be huge: a factorial, six digits or more, or a power that is."""
    if "!" in exponent:
        return True
    if "^" not in exponent:
        return re.search(r"\d{6,}", exponent) is not None
    power = _SMALL_POWER.fullmatch(exponent)
    # One level of tower stays cheap while it is small ("2^{2^{3}}" is 2^8); a deeper one never is.
    return power is None or int(power.group(2)) * math.log10(max(int(power.group(1)), 2)) >= 5


def _group(latex: str, at: int) -> str:
    """The braced group starting at `at` (its braces balanced, without them), else the one token there."""
    if not latex.startswith("{", at):
        token = re.match(r"\d+|\\[A-Za-z]+|.", latex[at:], re.DOTALL)
        return token.group(0) if token else ""
    depth = 0
    for i in range(at, len(latex)):
        depth += {"{": 1, "}": -1}.get(latex[i], 0)
        if depth == 0:
            return latex[at + 1 : i]
    return latex[at + 1 :]
