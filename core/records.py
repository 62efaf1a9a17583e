"""Typed records that flow from the benchmarks through exam, teachers and dataset."""

from __future__ import annotations

import msgspec

from core.config import TaskName


class Question(msgspec.Struct, frozen=True, kw_only=True):
    """One benchmark item.

    `gold` is the normalised final answer the graders compare against ("72",
    "true"/"false", or an option letter "A".."D"); `gold_text` is the published
    answer in full (GSM8K's worked solution, StrategyQA's facts) for reference.
    """

    id: str
    task: TaskName
    question: str
    gold: str
    gold_text: str = ""
    context: str = ""
    options: tuple[str, ...] = ()


class Mistake(msgspec.Struct, frozen=True, kw_only=True):
    """A question the student got wrong: the input of the teacher stages.

    `gold_answer` is normalised like `Question.gold` (what graders and the review
    hint use); `gold_text` is the published or imported gold text in full.
    """

    id: str
    task: TaskName
    question: str
    gold_answer: str
    student_answer: str
    student_final_answer: str | None
    context: str = ""
    options: tuple[str, ...] = ()
    gold_text: str = ""


class TrainRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of train.jsonl: what the trainer needs for FAIR's joint loss.

    The learn-from-mistakes part is (question, student_answer) -> feedback; the
    learn-from-rationale part is question -> rationale. `question` is as the run's
    prompt set keeps it (`PromptSet.record_question`); `gold_answer` (normalised) is
    for sets whose learn-from-mistakes input carries the gold hint, as the authors' did.
    """

    id: str
    task: TaskName
    question: str
    student_answer: str
    feedback: str
    rationale: str
    feedback_teacher: str = ""
    rationale_teacher: str = ""
    context: str = ""
    options: tuple[str, ...] = ()
    gold_answer: str = ""
