"""Scripted FAIR teachers for the emulator: deterministic rationales, feedback and review scores.

The emulator calls a `FairScript` with every request. It recognises which of our
prompt templates the request was rendered from (rationale, feedback or review),
pulls the fields back out, and answers the way a teacher of known quality would:

- rationale: step-by-step text ending "The answer is X.", right for a share of the
  questions that depends on the model (a stable hash decides which);
- feedback: a short explanation pointing at the gold answer from the hint;
- review: a score in brackets, high for rationales that reach the gold answer and
  low otherwise, varying by reviewer and rationale. A reviewer given a
  `forget_brackets` share forgets the brackets in that share of its free-text
  reviews and writes the score as a word ("Score: four."), which no bracket parser
  can read; asked for structured output it always fills the score field.

`review_score` is public so tests can recompute every score the pipeline should
have seen and check its decisions against the paper's rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache

import prompts
from accounting.forecast import DEFAULT_OUTPUT_TOKENS
from core.records import Question
from emulator.spec import AnswerRequest
from emulator.tokens import count_tokens
from prompts import Templates
from prompts.messages import format_question
from prompts.sets import PAPER_FOLDER
from tasks.definitions import TEMPLATES_BY_ANSWER, answer_type_of

_PAPER = Templates(PAPER_FOLDER, verbatim=True)

_STAGES = ("teacher_rationale", "teacher_feedback", "review")
_FILLER = (
    "We list the quantities the question gives and what it asks for.",
    "Each step uses only numbers stated in the question or found in an earlier step.",
    "We check the operation against the wording before computing it.",
    "Then we combine the partial results in the order the question describes.",
)
# The built-in template families: the paper's three, then those of defined tasks' answer types.
_FAMILIES = tuple(dict.fromkeys(("math", "strategyqa", "logiqa", *TEMPLATES_BY_ANSWER.values())))
# The task a review is graded as when its question is not one the script was given.
_FAMILY_TASK = {"math": "svamp", "strategyqa": "strategyqa", "logiqa": "logiqa"}
_WORDS = ("zero", "one", "two", "three", "four", "five")


def _unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from `parts`."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@cache
def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"\{\{(\w+)\}\}", prompts.template(name))
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*?)" for i, p in enumerate(parts))
    return re.compile(regex + r"\Z", re.DOTALL)


@cache
def _paper_pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"\{\{(\w+)\}\}", _PAPER.text(name))
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*?)" for i, p in enumerate(parts))
    return re.compile(regex + r"\Z", re.DOTALL)


def recognise(prompt: str) -> tuple[str, str, dict[str, str]] | None:
    """(stage, family, fields) of a rendered teacher prompt, or None if it is none of ours.

    Knows the committee set and the paper set's feedback, review and StrategyQA prompts;
    a paper-set math rationale prompt is the bare question, which only `FairScript`
    (knowing the questions) can tell apart.
    """
    for stage in _STAGES:
        for fam in _FAMILIES:
            match = _pattern(f"{stage}_{fam}").match(prompt.strip())
            if match:
                return stage, fam, match.groupdict()
    for stage, name in (("teacher_feedback", "teacher_feedback"), ("review", "review")):
        match = _paper_pattern(name).match(prompt)
        if match:
            # The authors' hint is the stored gold: StrategyQA's starts "true.<tab>" or "false.<tab>".
            fam = "strategyqa" if re.match(r"(true|false)\.\t", match["gold"]) else "math"
            return stage, fam, match.groupdict()
    match = _paper_pattern("question_strategyqa").match(prompt)
    if match:
        return "teacher_rationale", "strategyqa", match.groupdict()
    return None


class FairScript:
    """An emulator answer function playing a committee of teachers of different quality."""

    def __init__(
        self,
        questions: Sequence[Question] = (),
        *,
        seed: int = 0,
        lengths: Mapping[str, float] = DEFAULT_OUTPUT_TOKENS,
        scale: Mapping[str, float] | None = None,
        forget_brackets: Mapping[str, float] | None = None,
    ):
        self._questions = {format_question(q).strip(): q for q in questions}
        self._seed = seed
        # Answers as long as the dry-run forecast assumes (give or take 20%), so a
        # forecast for an emulated run can be checked against what it measures.
        self._lengths = lengths
        # Per-model length factors: teachers far more or less verbose than the
        # defaults, which the forecast must learn from a pilot rather than assume.
        self._scale = dict(scale or {})
        # Per model: the share of free-text reviews that leave the score unbracketed.
        self._forget = dict(forget_brackets or {})

    def _padded(self, head: str, tail: str, stage: str, model: str, *key: object) -> str:
        spread = 0.8 + 0.4 * _unit(self._seed, "length", stage, model, *key)
        target = self._lengths[stage] * self._scale.get(model, 1.0) * spread
        sentences = [head]
        while count_tokens(" ".join(sentences) + tail) < target:
            sentences.append(_FILLER[len(sentences) % len(_FILLER)])
        return " ".join(sentences) + tail

    def quality(self, model: str) -> float:
        """The share of questions this model's rationales get right (0.55 .. 0.9)."""
        return 0.55 + 0.35 * _unit(self._seed, "quality", model)

    def review_score(self, reviewer: str, task: str, rationale: str, gold: str) -> int:
        """The score `reviewer` gives `rationale` (1..5): 3..5 when it reaches `gold`, else 1..3."""
        right = answer_type_of(task).grade(rationale, gold).correct
        step = int(_unit(self._seed, "review", reviewer, rationale) * 3)
        return 3 + step if right else 1 + step

    def __call__(self, request: AnswerRequest) -> str:
        prompt = request.messages[-1][1]
        found = recognise(prompt)
        if found is None and prompt.strip() in self._questions:
            # The paper set asks for a GSM8K/SVAMP rationale with the bare question.
            found = ("teacher_rationale", "math", {"question": prompt})
        if found is None:
            return "I can only answer FAIR teacher prompts."
        stage, fam, fields = found
        if stage == "teacher_rationale":
            return self._rationale(request.model, fam, fields["question"].strip())
        gold = fields["gold"].strip()
        if stage == "teacher_feedback":
            return self._padded(
                "The student's reasoning goes wrong at the first calculation: the quantities in the question "
                "are combined with the wrong operation.",
                f" Redo that step carefully; the correct answer is {gold}.",
                "feedback",
                request.model,
                prompt,
            )
        asked = self._questions.get(fields["question"].strip())
        task = asked.task if asked is not None else _FAMILY_TASK.get(fam, "")
        if not task:
            return "I can only review questions I was given."
        score = self.review_score(request.model, task, fields["rationale"].strip(), _gold_value(fam, gold))
        head = "The rationale was checked step by step against the hint."
        if request.structured:
            reasoning = self._padded(head, "", "review", request.model, prompt)
            return json.dumps({"reasoning": reasoning, "score": score})
        if self.forgets_brackets(request.model, prompt):
            return self._padded(head, f" Score: {_WORDS[score]}.", "review", request.model, prompt)
        return self._padded(head, f" Score: [{score}]", "review", request.model, prompt)

    def forgets_brackets(self, model: str, prompt: str) -> bool:
        """Whether `model`'s free-text review of `prompt` leaves out the brackets (its `forget_brackets` share)."""
        return _unit(self._seed, "forget", model, prompt) < self._forget.get(model, 0.0)

    def _rationale(self, model: str, fam: str, question: str) -> str:
        asked = self._questions.get(question)
        gold, options = (asked.gold, asked.options) if asked is not None else ("", ())
        kind = answer_type_of(asked.task if asked is not None else _FAMILY_TASK.get(fam, "svamp"))
        right = bool(gold) and _unit(self._seed, "right", model, question) < self.quality(model)
        final = kind.written(gold if right else kind.wrong(gold, options))
        return self._padded("Let's think step by step.", f"\nThe answer is {final}.", "rationale", model, question)


def _gold_value(fam: str, hint: str) -> str:
    # The paper set's hints are the authors' stored gold: GSM8K's whole solution, StrategyQA's "true.<tab>facts".
    if "####" in hint:
        return hint.rsplit("####", 1)[1].strip()
    if fam == "strategyqa":
        return hint.split(".", 1)[0]
    # A choice hint reads "(B) option text"; graders want the letter.
    if fam in ("logiqa", "choice"):
        match = re.match(r"\(([A-Z])\)", hint)
        return match.group(1) if match else hint
    return hint


__all__ = ["FairScript", "recognise"]
