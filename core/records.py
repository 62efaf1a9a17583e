"""Typed records that flow from the benchmarks through exam, teachers and dataset.

Every record calls the normalised gold answer `gold`. Mistakes, training records and
decided samples written before that said `gold_answer`; `RecordDecoder` reads both.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from core.config import TaskName

T = TypeVar("T")


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


class Mistake(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A question the student got wrong: the input of the teacher stages, one mistakes.jsonl line.

    `gold` is normalised like `Question.gold` (what graders and the review hint
    use); `gold_text` is the published or imported gold text in full. Encoded, the
    optional fields (context, options, gold_text) appear only when set.
    """

    id: str
    task: TaskName
    question: str
    gold: str
    student_answer: str
    student_final_answer: str | None
    context: str = ""
    options: tuple[str, ...] = ()
    gold_text: str = ""


class TrainRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of train.jsonl: what the trainer needs for FAIR's joint loss.

    The learn-from-mistakes part is (question, student_answer) -> feedback; the
    learn-from-rationale part is question -> rationale. `question` is as the run's
    prompt set keeps it (`PromptSet.record_question`); `gold` (normalised) is for
    sets whose learn-from-mistakes input carries the gold hint, as the authors' did.
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
    gold: str = ""


def mistake_from(question: Question, student_answer: str = "", student_final_answer: str | None = None) -> Mistake:
    """`question` answered wrongly: its own fields go along (not a rendered prompt), so teachers
    format them their own way. Without an answer it stands for a mistake not made yet (forecasts)."""
    return Mistake(
        id=question.id,
        task=question.task,
        question=question.question,
        gold=question.gold,
        student_answer=student_answer,
        student_final_answer=student_final_answer,
        context=question.context,
        options=question.options,
        gold_text=question.gold_text,
    )


def question_from(mistake: Mistake) -> Question:
    """The question a mistake was made on."""
    return Question(
        id=mistake.id,
        task=mistake.task,
        question=mistake.question,
        gold=mistake.gold,
        gold_text=mistake.gold_text,
        context=mistake.context,
        options=mistake.options,
    )


# How an older record names the gold answer: as a key, its closing quote is followed by
# the colon, which inside a JSON string it cannot be (that quote would be escaped).
_OLD_GOLD_KEY = b'"gold_answer":'


class RecordDecoder(Generic[T]):
    """A reusable JSON decoder for a record type that also reads the records of older versions,
    whose gold answer was `gold_answer`. Raises `msgspec.DecodeError` like `msgspec.json.Decoder`.

        decoder = RecordDecoder(Mistake)
        decoder.decode(b'{"id": "1", "task": "svamp", "question": "?", "gold_answer": "3", ...}').gold  # "3"
    """

    __slots__ = ("_decoder", "_type")

    def __init__(self, type_: type[T]):
        self._type = type_
        self._decoder = msgspec.json.Decoder(type_)

    def decode(self, data: bytes) -> T:
        if _OLD_GOLD_KEY not in data:
            return self._decoder.decode(data)
        fields = msgspec.json.decode(data)
        if isinstance(fields, dict) and "gold" not in fields:
            fields["gold"] = fields.pop("gold_answer")
        return msgspec.convert(fields, self._type)
