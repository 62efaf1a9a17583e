"""Teacher prompt templates: fields, rendering through tasks.teacher_messages, and answer formats
that our extractor and score parser read back."""

from __future__ import annotations

import pytest

import prompts
from core.records import Mistake
from prompts.messages import format_question, teacher_messages, template_name
from tasks import extract_answer, family, parse_score

MISTAKES = {
    "gsm8k": Mistake(
        id="12",
        task="gsm8k",
        question="Natalia sold 48 clips in April and half as many in May. How many in total?",
        gold="72",
        student_answer="She sold 48 + 48 = 96 clips.",
        student_final_answer="96",
    ),
    "strategyqa": Mistake(
        id="1",
        task="strategyqa",
        question="Is the cuisine of Hawaii suitable for a vegan?",
        gold="false",
        student_answer="True. Hawaii has lots of fruit.",
        student_final_answer="true",
    ),
    "logiqa": Mistake(
        id="7",
        task="logiqa",
        question="Which can be derived?",
        context="Four districts surround the park.",
        options=("North park", "Southwest leisure", "Northeast culture", "Southeast business"),
        gold="C",
        student_answer="Answer: A",
        student_final_answer="A",
    ),
}
FAMILIES = ("math", "strategyqa", "logiqa")
# The final-line form each rationale template spells out, and a reply's line in that form.
FORM = {"math": "The answer is X.", "strategyqa": "The answer is false.", "logiqa": "The answer is (X)."}
FINAL_LINE = {"math": "The answer is 72.", "strategyqa": "The answer is false.", "logiqa": "The answer is (C)."}


@pytest.mark.parametrize("fam", FAMILIES)
def test_templates_exist_with_their_fields(fam: str) -> None:
    assert prompts.fields(f"teacher_rationale_{fam}") == {"question"}
    assert prompts.fields(f"teacher_feedback_{fam}") == {"question", "student_answer", "gold"}
    assert prompts.fields(f"review_{fam}") == {"question", "rationale", "gold"}


def test_family_and_template_names() -> None:
    assert [family(t) for t in ("gsm8k", "svamp", "strategyqa", "logiqa")] == ["math", "math", "strategyqa", "logiqa"]
    assert template_name("rationale", "svamp") == "teacher_rationale_math"
    assert template_name("feedback", "logiqa") == "teacher_feedback_logiqa"
    assert template_name("review", "strategyqa") == "review_strategyqa"


@pytest.mark.parametrize("task", list(MISTAKES))
def test_rationale_prompt_asks_for_the_line_the_extractor_reads(task: str) -> None:
    m = MISTAKES[task]
    (msg,) = teacher_messages("rationale", m)
    assert msg.role == "user"
    assert format_question(m) in msg.content
    assert f"\n{FORM[family(m.task)]}\n" in msg.content
    # A reply that ends the way the template asks grades as the gold answer.
    reply = f"Step one. Step two, considering 3 options and 12 facts.\n{FINAL_LINE[family(m.task)]}"
    assert extract_answer(m.task, reply, options=m.options) == m.gold


def test_logiqa_question_shows_context_and_lettered_options() -> None:
    (msg,) = teacher_messages("rationale", MISTAKES["logiqa"])
    assert (
        "Four districts surround the park.\nWhich can be derived?\nA. North park\nB. Southwest leisure" in msg.content
    )
    assert "D. Southeast business" in msg.content


@pytest.mark.parametrize("task", list(MISTAKES))
def test_feedback_prompt_has_the_wrong_answer_and_the_hint(task: str) -> None:
    m = MISTAKES[task]
    (msg,) = teacher_messages("feedback", m)
    assert m.student_answer in msg.content and format_question(m) in msg.content
    assert "{{" not in msg.content
    hint = msg.content.rsplit("Hint:", 1)[1]
    assert m.gold in hint
    if task == "logiqa":
        assert "(C) Northeast culture" in hint


@pytest.mark.parametrize("task", list(MISTAKES))
def test_review_prompt_carries_the_rationale_and_asks_for_a_bracketed_score(task: str) -> None:
    m = MISTAKES[task]
    rationale = "Half of 48 is 24 and 48 + 24 = 72. The answer is 72."
    (msg,) = teacher_messages("review", m, rationale=rationale)
    assert rationale in msg.content and m.gold in msg.content.rsplit("Hint:", 1)[1]
    example = msg.content.split("for example", 1)[1].split(",", 1)[0]
    assert parse_score(example) == 4


def test_rationale_argument_only_for_review() -> None:
    with pytest.raises(ValueError, match="required"):
        teacher_messages("review", MISTAKES["gsm8k"])
    with pytest.raises(ValueError, match="only for review"):
        teacher_messages("feedback", MISTAKES["gsm8k"], rationale="...")


def test_text_from_the_data_is_inserted_verbatim() -> None:
    # Braces in a question (LaTeX, JSON) must survive rendering untouched.
    m = Mistake(
        id="0",
        task="gsm8k",
        question="Compute \\frac{1}{2} of {{x}} = 10.",
        gold="5",
        student_answer="{}",
        student_final_answer=None,
    )
    (msg,) = teacher_messages("feedback", m)
    assert "Compute \\frac{1}{2} of {{x}} = 10." in msg.content
