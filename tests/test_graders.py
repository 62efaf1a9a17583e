"""StrategyQA's echo fallback, and the `authors` grader against the authors' cleanup() rules."""

from __future__ import annotations

import pytest

from core.records import Question
from student.answering import grade
from tasks import extract_answer
from tasks.authors_grader import authors_correct, authors_final_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('First, you should answer "true" or "false". Then, you should explain.', None),
        ('You asked me to answer "true" or "false". Penguins cannot fly, so it is false.', "false"),
        ("True or false? Water is a liquid, hence true.", "true"),
        ("I must say true/false: the facts say otherwise, so false", "false"),
        ('Answer "true" or "false": the answer is true.', "true"),
    ],
)
def test_strategyqa_echo_of_the_instruction_is_not_an_answer(text: str, expected: str | None) -> None:
    assert extract_answer("strategyqa", text) == expected


@pytest.mark.parametrize(
    ("task", "text", "options", "final"),
    [
        # Math: after "\nAnswer" the first number; else the last number; commas out, trailing "." stripped.
        ("gsm8k", "She has 7 + 14 = 21.\nAnswer: 21 muffins, not 30", (), "21"),
        ("gsm8k", "Therefore, the answer is 1,200. Check: 3 * 400", (), "1200"),
        ("svamp", "He had 5 and got 3 more, 8 in total.", (), "8"),
        ("svamp", "It costs 2.50 dollars", (), "2.50"),
        ("gsm8k", "no idea", (), None),
        # StrategyQA: "true" anywhere wins, even in an echo of the instruction.
        ("strategyqa", 'I answer "true" or "false": false.', (), "true"),
        ("strategyqa", "FALSE, because ...", (), "false"),
        ("strategyqa", "", (), None),
        # LogiQA: an option's text between "Answer:" and "Rationale:", as its index.
        ("logiqa", "Answer: 'It did not rain.'\nRationale: modus tollens.", ("It rained.", "It did not rain."), "1"),
        ("logiqa", "The answer is (B).", ("It rained.", "It did not rain."), None),
    ],
)
def test_authors_extraction(task: str, text: str, options: tuple[str, ...], final: str | None) -> None:
    assert authors_final_answer(task, text, options) == final  # type: ignore[arg-type]


def test_authors_compare_strings_where_we_compare_numbers() -> None:
    q = Question(id="0", task="gsm8k", question="?", gold="72", gold_text="48 + 24 = 72\n#### 72")
    assert grade(q, "The answer is 72.0", "sha").correct
    assert not grade(q, "The answer is 72.0", "sha", "authors").correct
    assert grade(q, "so 72 clips", "sha", "authors").correct
    assert authors_correct("logiqa", "1", "B") and not authors_correct("logiqa", None, "B")
    lq = Question(
        id="1",
        task="logiqa",
        question="What follows?",
        gold="B",
        context="c",
        options=("It rained.", "It did not rain.", "x", "y"),
    )
    answer = grade(lq, "Answer: It did not rain.\nRationale: ...", "sha", "authors")
    assert answer.correct and answer.final_answer == "B"


def test_unknown_grader_is_a_config_error_naming_the_key(tmp_path) -> None:
    from core.config import load_config
    from core.errors import ConfigError

    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nname = "x"\nout_dir = "r"\n[[datasets]]\ntask = "svamp"\ngrader = "paper"\n')
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.grader") as err:
        load_config(cfg)
    assert "\n" not in str(err.value)
