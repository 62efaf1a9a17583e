"""Answer extraction, normalisation and grading on real-looking model outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import extract_answer, is_correct, load_split, normalize_answer, parse_score

MATH = [
    ("The answer is 72.", "72"),
    ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72", "72"),
    ("So the total is $1,200.50.", "1200.5"),
    ("The answer is $1,200.", "1200"),
    ("Final answer: -5", "-5"),
    ("The temperature dropped to \u22123 degrees. The answer is \u22123.", "-3"),
    ("He lost -$15 in total, so the answer is -$15.", "-15"),
    ("Each person gets 3/4 of a pizza. The answer is 3/4.", "0.75"),
    ("The answer is \\boxed{\\frac{3}{4}}.", "0.75"),
    ("We get 25% off, so the answer is 25%.", "25"),
    ("First 12 + 30 = 42, then 42 * 2 = 84. The answer is 84 apples.", "84"),
    ("The answer is 48 + 24 = 72.", "72"),
    ("So \\boxed{1,234} is the result; double-check: 1234 = 1000 + 234.", "1234"),
    ("Thus the final answer is \\boxed{72 \\text{ dollars}}", "72"),
    ("Answer: 12\n\nExplanation:\nDave won 12 tickets and used 12, so he has 14", "12"),
    ("The answer is 5. Wait, that is wrong: 3 + 4 = 7. The answer is 7.", "7"),
    ("She has 5 apples and buys 3 more, giving 8", "8"),
    ("It costs 0.5 dollars per pen, 2 pens cost 1.0", "1"),
    ("The answer is: \n\n42", "42"),
    ("**Final Answer:** 1,000,000", "1000000"),
    ("The speed is 60 km/h, so in 2 hours it travels 120 km.", "120"),
    ("The answer is .5", "0.5"),
    ("The answer is 2.50.", "2.5"),
    ("I cannot solve this.", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), MATH)
def test_extract_math(text: str, expected: str | None) -> None:
    assert extract_answer("gsm8k", text) == expected
    assert extract_answer("svamp", text) == expected


def test_explicit_marker_beats_last_number() -> None:
    text = "The answer is 19.\nCheck: 11 + 19 = 30 pounds in total."
    assert extract_answer("svamp", text) == "19"
    assert extract_answer("svamp", "11 + 19 = 30 pounds in total.") == "30"


STRATEGYQA = [
    ("True. Genghis Khan had sixteen children, Caesar three.", "true"),
    ("No, the members of The Police were musicians.", "false"),
    ("The band were not police officers, so they could not arrest anyone. The answer is false.", "false"),
    ("There is no evidence against it, so the answer is yes.", "true"),
    ("Answer: **True**\nExplanation: ...", "true"),
    ("So, the answer is: No.", "false"),
    ("Reasoning: the claim that it is false is wrong; it is true", "true"),
    ("Hawaiian cuisine has many pork dishes; a vegan eats no meat. The answer is false.", "false"),
    ("I am not sure about this one.", None),
]


@pytest.mark.parametrize(("text", "expected"), STRATEGYQA)
def test_extract_strategyqa(text: str, expected: str | None) -> None:
    assert extract_answer("strategyqa", text) == expected


OPTIONS = (
    "Civic Park is north of the administrative service area",
    "The leisure area is southwest of the cultural area",
    "The cultural district is in the northeast of the business district",
    "The business district is southeast of the leisure area",
)
LOGIQA = [
    ("Step by step ... The answer is (B).", "B"),
    ("Answer: B", "B"),
    ("the answer is option C because the district lies to the northeast", "C"),
    ("Answer: (d)\nRationale: ...", "D"),
    ("The correct answer is d.", "D"),
    ("(A) is wrong since ... Option C is correct.", "C"),
    ("A. Civic park is north, as the context implies.", "A"),
    ("Answer:\n\nThe correct answer is: 'The leisure area is southwest of the cultural area.'\n\nRationale:", "B"),
    ("Looking at the map, the business district is southeast of the leisure area, which fits.", "D"),
    ("(A) fails, (B) fails, so it must be (C)", "C"),
    ("The answer is a trick: none of them follows.", None),
    ("I cannot tell.", None),
]


@pytest.mark.parametrize(("text", "expected"), LOGIQA)
def test_extract_logiqa(text: str, expected: str | None) -> None:
    assert extract_answer("logiqa", text, options=OPTIONS) == expected


def test_logiqa_prefers_the_longest_quoted_option() -> None:
    options = ("Some workers", "Some workers are Northerners", "No one", "All of them")
    assert extract_answer("logiqa", "The answer is: some workers are northerners.", options=options) == "B"


@pytest.mark.parametrize(
    ("task", "value", "expected"),
    [
        ("svamp", "145", "145"),
        ("svamp", "51.0", "51"),
        ("gsm8k", " 1,000 ", "1000"),
        ("gsm8k", "-3", "-3"),
        ("gsm8k", "0.750", "0.75"),
        ("gsm8k", "1/3", "0.3333333333"),
        ("gsm8k", "12 and 13", None),
        ("gsm8k", "none", None),
        ("strategyqa", "True", "true"),
        ("strategyqa", "false.", "false"),
        ("strategyqa", "Yes", "true"),
        ("strategyqa", "maybe", None),
        ("logiqa", "b", "B"),
        ("logiqa", "(C)", "C"),
        ("logiqa", "Option D", "D"),
        ("logiqa", "0", "A"),
        ("logiqa", "3", "D"),
        ("logiqa", "E", None),
        ("logiqa", "4", None),
    ],
)
def test_normalize_answer(task: str, value: str, expected: str | None) -> None:
    assert normalize_answer(task, value) == expected  # type: ignore[arg-type]


def test_is_correct() -> None:
    assert is_correct("gsm8k", "72", "72")
    assert is_correct("gsm8k", "72.00001", "72")
    assert not is_correct("gsm8k", "72.001", "72")
    assert is_correct("svamp", "0.75", "0.75")
    assert is_correct("gsm8k", "1200", "1,200")
    assert not is_correct("gsm8k", None, "72")
    assert not is_correct("gsm8k", "seventy", "72")
    assert is_correct("gsm8k", "123456789012", "123456789012")
    assert not is_correct("gsm8k", "123456789013", "123456789012")
    assert is_correct("strategyqa", "true", "true")
    assert is_correct("strategyqa", "yes", "true")
    assert not is_correct("strategyqa", "false", "true")
    assert is_correct("logiqa", "B", "B")
    assert is_correct("logiqa", "b", "B")
    assert not is_correct("logiqa", "C", "B")
    assert not is_correct("logiqa", None, "B")


def test_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown task 'aqua'"):
        extract_answer("aqua", "The answer is 3")  # type: ignore[arg-type]


SCORES = [
    ("The rationale is correct and well explained. [5]", 5),
    ("Score: [4]", 4),
    ("I would give it [4/5].", 4),
    ("[ 3 ]", 3),
    ("[4.0]", 4),
    ("[Score: 2]", 2),
    ("[[4]]", 4),
    ("**[4]**", 4),
    ("Step [1] is fine, step [2] has an error. Overall: [3]", 3),
    ("Overall [3]. See [Rationale] above.", 3),
    ("I rate it 4 out of 5", 4),
    ("Score: 4/5", 4),
    ("The rationale gets a 2.", 2),
    ("[6]", None),
    ("[0]", None),
    ("[-1]", None),
    ("[4.5]", None),
    ("Out of range: [10]", None),
    ("No score given.", None),
    ("", None),
    ("Final score: [2] \n", 2),
    ("[3 out of 5]", 3),
]


@pytest.mark.parametrize(("text", "expected"), SCORES)
def test_parse_score(text: str, expected: int | None) -> None:
    assert parse_score(text) == expected


def test_every_gsm8k_worked_answer_extracts_to_its_gold(bench_data: Path) -> None:
    for split in ("train", "test"):
        for q in load_split("gsm8k", str(bench_data / "gsm8k"), split):
            assert extract_answer("gsm8k", q.gold_text) == q.gold, q.id


def test_strategyqa_gold_rationales_in_the_authors_form_extract(bench_data: Path) -> None:
    # LfC's gold rationale is "<answer>.\t<facts>"; facts mention true and false freely.
    for q in load_split("strategyqa", str(bench_data / "strategyqa"), "train"):
        assert extract_answer("strategyqa", f"{q.gold}.\t{q.gold_text}") == q.gold, q.id


def test_logiqa_options_that_look_like_letters() -> None:
    assert extract_answer("logiqa", "The answer is (B).", options=("B", "C", "D", "E")) == "B"
    assert extract_answer("logiqa", "The answer is: E", options=("B", "C", "D", "E")) == "D"
    assert (
        extract_answer(
            "logiqa", "Answer: 'A city's GDP is large.'", options=("x y z", "A city's GDP is large", "q r s", "t u v")
        )
        == "B"
    )


def test_every_logiqa_gold_option_extracts_when_quoted_or_lettered(bench_data: Path) -> None:
    for q in load_split("logiqa", str(bench_data / "logiqa"), "test"):
        option = q.options["ABCD".index(q.gold)]
        quoted = f"Answer:\n\nThe correct answer is: '{option}'\n\nRationale: the context says so."
        lettered = f"Checking each option against the context. The answer is ({q.gold})."
        assert extract_answer("logiqa", quoted, options=q.options) == q.gold, q.id
        assert extract_answer("logiqa", lettered, options=q.options) == q.gold, q.id


def test_numbers_too_long_to_print_read_as_no_answer() -> None:
    # A looping model can emit thousands of digits; Python refuses int <-> str past 4300.
    huge = "9" * 5000
    for text in (f"The answer is {huge}.", f"#### {huge}", f"The answer is {huge}/7.", f"The answer is 0.{huge}."):
        assert extract_answer("gsm8k", text) is None
    assert normalize_answer("svamp", huge) is None
    assert not is_correct("svamp", huge, "3") and not is_correct("svamp", "3", huge)
    assert parse_score(f"Score: {huge}") is None


def test_long_decimals_keep_their_digits() -> None:
    # Beyond Decimal's default 28 digits of precision.
    assert extract_answer("gsm8k", "The answer is 12345678901234567890.5.") == "12345678901234567890.5"
    assert extract_answer("gsm8k", f"The answer is {'9' * 40}/4.") == "24" + "9" * 38 + ".75"
