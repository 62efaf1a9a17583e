"""Answer types on the tricky cases: LaTeX equivalence and boxes, option text vs letter, yes/no synonyms,
numbers with units and thousands separators, normalised exact answers, and a user's grader."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import msgspec
import pytest

from core.config import AnswerSection
from tasks.answer_types import AnswerType, GraderError, answer_type


def _type(**keys: object) -> AnswerType:
    return answer_type(msgspec.convert(keys, AnswerSection))


MATH = _type(type="math")


@pytest.mark.parametrize(
    ("gold", "predicted"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\frac12", "\\dfrac{1}{2}"),
        ("\\frac{1}{2}", "1/2"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("-\\frac{\\sqrt{3}}{2}", "-\\frac{\\sqrt3}{2}"),
        ("\\frac{\\pi}{2}", "\\pi/2"),
        ("(1,2]", "(1, 2]"),
        ("\\{1,2,3\\}", "\\{3, 2, 1\\}"),
        ("3", "x = 3"),
        ("30^\\circ", "30"),
        ("1,000", "1000"),
        ("x^2+2x+1", "(x+1)^2"),
        ("\\text{Monday}", "Monday"),
        ("\\text{(C)}", "C"),
        ("10", "10.0"),
    ],
)
def test_math_equivalent_forms_are_correct(gold: str, predicted: str) -> None:
    assert MATH.correct(predicted, gold)


@pytest.mark.parametrize(
    ("gold", "predicted"),
    [
        ("3", "4"),
        ("\\frac{1}{3}", "0.333"),
        ("(1,2]", "[1,2]"),
        ("2\\sqrt{2}", "\\sqrt{2}"),
        # A text answer: compared as words, so the same letters in another order are wrong.
        ("\\text{Monday}", "dynamo"),
        ("\\text{Monday}", "Tuesday"),
        ("5", ""),
    ],
)
def test_math_different_answers_are_wrong(gold: str, predicted: str) -> None:
    assert not MATH.correct(predicted, gold)
    assert not MATH.correct(None, gold)


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("So $x = \\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"),
        ("First \\boxed{4}, but I slipped; redo: \\boxed{\\dfrac{1}{2}}", "\\dfrac{1}{2}"),
        ("\\boxed{\\left\\{ 1, \\frac{2}{3} \\right\\}}", "\\left\\{ 1, \\frac{2}{3} \\right\\}"),
        ("The area is \\fbox{12}.", "12"),
        ("so $x = \\boxed 5$. Check: 5 + 1 = 6", "5"),
        ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("The answer is $x = 2$ or $x = 3$.", "x = 2, x = 3"),
        ("The answer is $12$, since $3 \\cdot 4 = 12$.", "12"),
        ("Therefore the final answer is \\(2\\sqrt{2}\\).", "2\\sqrt{2}"),
        ("Final answer: (1, 2]", "(1, 2]"),
        ("**Final Answer:** 1/2", "1/2"),
        ("**Final Answer:** $-\\frac{\\pi}{3}$ radians.", "-\\frac{\\pi}{3}"),
        # A box cut off by max_tokens is not an answer; the marked sentence is.
        ("The answer is 7. Check: \\boxed{7 + \\frac{1}{", "7"),
        ("Adding 3 and 4 gives 7", "7"),
        ("No idea.", None),
    ],
)
def test_math_extraction(reply: str, answer: str | None) -> None:
    assert MATH.extract(reply) == answer


def test_math_gold_from_a_worked_solution() -> None:
    solution = "Half of it: $\\frac{1}{2} \\cdot 4 = 2$, and so the answer is $\\boxed{\\frac{2}{\\sqrt{5}}}$."
    assert MATH.gold(solution) == "\\frac{2}{\\sqrt{5}}"
    assert MATH.gold("$(1, 2]$") == "(1, 2]"
    assert MATH.gold(12) == "12"
    for bad, reason in [("", "empty"), ("\\boxed{", "never closes"), ("\\boxed{ }", "empty")]:
        with pytest.raises(ValueError, match=reason):
            MATH.gold(bad)
    assert MATH.grade("We find \\boxed{\\frac{4}{2\\sqrt5}}.", MATH.gold(solution)).correct


def test_math_grades_off_the_main_thread_and_inside_an_event_loop() -> None:
    # math-verify's time limit is signal.alarm, which only the main thread may set.
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(MATH.correct("\\sqrt{8}", "2\\sqrt{2}")))
    thread.start()
    thread.join()
    assert results == [True]

    async def in_loop() -> bool:
        return MATH.correct("\\dfrac{1}{2}", "0.5") and not MATH.correct("0.4", "\\frac12")

    assert anyio.run(in_loop)


def test_math_verify_gets_a_time_limit_only_where_signal_alarm_works(monkeypatch: pytest.MonkeyPatch) -> None:
    import math_verify

    limits: list[int | None] = []
    monkeypatch.setattr(math_verify, "parse", lambda latex, parsing_timeout: limits.append(parsing_timeout) or [latex])
    monkeypatch.setattr(math_verify, "verify", lambda gold, pred, timeout_seconds: limits.append(timeout_seconds) or 1)
    assert MATH.correct("a+b", "c")
    thread = threading.Thread(target=MATH.correct, args=("a+c", "d"))  # another pair: results are cached
    thread.start()
    thread.join()
    assert limits == [5, 5, 5, None, None, None]


def test_math_never_hangs_on_an_enormous_number_off_the_main_thread() -> None:
    """A notebook's run grades on a thread of its own, where math-verify has no time limit, and SymPy building
    9^(9^(9^9)) holds the GIL for good: the whole kernel would hang. Such answers are compared as text only."""
    import subprocess
    import sys

    script = (
        "import threading\n"
        "from tasks.answer_types import MathAnswer\n"
        "m, out = MathAnswer(), []\n"
        "def grade():\n"
        "    out.extend([m.correct('9^{9^{9^{9}}}', '2'), m.correct('10!^{10!^{10!}}', '2')])\n"
        "    out.append(m.correct('9^{9^{9^{9}}}', '9^{9^{9^{9}}}'))\n"
        "    out.append(m.correct('(2)' * 2000, '2'))\n"
        "t = threading.Thread(target=grade)\n"
        "t.start(); t.join()\n"
        "print(out)\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[False, False, True, False]", done.stderr[-2000:]
    # A small tower is still compared by value.
    assert MATH.correct("2^{2^{3}}", "256") and MATH.correct("2^{20}", "1048576")


NUMBER = _type(type="number")


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("It weighs 1,250 kg in total. The answer is 1,250 kg.", "1250"),
        ("She earns $2,400.50 a month", "2400.5"),
        ("A discount of 15%, so the answer is 15%.", "15"),
        ("The answer is -12 degrees.", "-12"),
        ("48 + 24 = 72 cookies", "72"),
        ("#### 1,000,000", "1000000"),
    ],
)
def test_numbers_with_units_and_thousands_separators(reply: str, answer: str) -> None:
    assert NUMBER.extract(reply) == answer
    assert NUMBER.grade(reply, NUMBER.gold(answer)).correct


def test_number_tolerances() -> None:
    assert NUMBER.correct("72.00009", "72") and not NUMBER.correct("72.001", "72")
    loose = _type(type="number", relative_tolerance=0.01)
    assert loose.correct("1010", "1000") and not loose.correct("1011", "1000")
    exact = _type(type="number", tolerance=0)
    assert exact.correct("0.75", "3/4") and not exact.correct("0.75001", "0.75")
    assert NUMBER.gold(" $1,200 ") == "1200" and NUMBER.gold(3.0) == "3"
    with pytest.raises(ValueError, match="one number"):
        NUMBER.gold("12 or 13")
    with pytest.raises(ValueError, match="expected a number"):
        NUMBER.gold(True)


OPTIONS5 = ("a river", "a mountain", "the desert", "an ocean", "a forest")
CHOICE = _type(type="choice")


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Answer: C", "C"),
        ("The answer is (E).", "E"),
        ("the answer is e", "E"),
        ("The answer is: the desert, because it is dry.", "C"),
        ("Camels live where it is dry, so the answer is the desert.", "C"),
        ("Option D is correct.", "D"),
        ("(A) is wet, (B) is cold, so (E)", "E"),
        ("Looking at it again, an ocean fits best.", "D"),
        ("None of them.", None),
    ],
)
def test_choice_letter_or_option_text_among_five(reply: str, answer: str | None) -> None:
    assert CHOICE.extract(reply, OPTIONS5) == answer


def test_choice_gold_and_letters_beyond_the_options() -> None:
    assert CHOICE.gold("e", OPTIONS5) == "E"
    assert CHOICE.gold(4, OPTIONS5) == "E"
    assert CHOICE.gold("An ocean", OPTIONS5) == "D"
    with pytest.raises(ValueError, match=r"letter A\.\.E"):
        CHOICE.gold("F", OPTIONS5)
    assert CHOICE.correct("(c)", "C", OPTIONS5) and not CHOICE.correct("F", "F", OPTIONS5)
    assert CHOICE.hint("C", OPTIONS5) == "(C) the desert"
    assert CHOICE.written("C") == "(C)" and CHOICE.wrong("E", OPTIONS5) == "A"
    four = _type(type="choice", n_options=4)
    assert four.extract("The answer is (E).", OPTIONS5) is None


BOOLEAN = _type(type="boolean")
FACTS = _type(type="boolean", true_words=["supported", "holds"], false_words=["refuted", "not supported"])


@pytest.mark.parametrize(
    ("kind", "reply", "answer"),
    [
        (BOOLEAN, "Yes, penguins are birds.", "true"),
        (BOOLEAN, "So the answer is: NO.", "false"),
        (BOOLEAN, "There is no evidence either way, but it is true", "true"),
        (BOOLEAN, 'Answer "true" or "false": the answer is false.', "false"),
        (FACTS, "The claim is refuted by the census.", "false"),
        (FACTS, "Answer: not supported", "false"),
        (FACTS, "Supported. The census says so.", "true"),
        (FACTS, "The answer is yes.", "true"),
        (BOOLEAN, "The claim is refuted by the census.", None),
    ],
)
def test_boolean_yes_no_and_synonyms(kind: AnswerType, reply: str, answer: str | None) -> None:
    assert kind.extract(reply) == answer


def test_boolean_gold() -> None:
    assert BOOLEAN.gold(True) == "true" and BOOLEAN.gold("No.") == "false"
    assert BOOLEAN.gold(0) == "false" and BOOLEAN.gold(1) == "true"
    with pytest.raises(ValueError, match="true/false"):
        BOOLEAN.gold(2)
    assert FACTS.gold("REFUTED") == "false" and FACTS.correct("supported", "yes")
    with pytest.raises(ValueError, match="true/false"):
        BOOLEAN.gold("maybe")


def test_boolean_gold_labels_1_and_0_read_alike_from_every_file_kind() -> None:
    # JSON and Parquet give ints, CSV gives text, a Parquet column with gaps gives floats: one label, one gold.
    for true, false in [(1, 0), ("1", "0"), (" 1 ", "0\n"), (1.0, 0.0)]:
        assert (BOOLEAN.gold(true), BOOLEAN.gold(false)) == ("true", "false"), (true, false)
    for bad in ("2", 0.5, "1.5", "-1"):
        with pytest.raises(ValueError, match="true/false"):
            BOOLEAN.gold(bad)
    # A reply's "1" is still no yes/no answer.
    assert BOOLEAN.extract("The answer is 1.") is None


EXACT = _type(type="exact")


def test_exact_normalisation_and_extraction() -> None:
    assert EXACT.extract("It flows through Egypt.\nThe answer is: **The Nile**.") == "The Nile"
    assert EXACT.extract("Thinking...\n\nParis") == "Paris"
    assert EXACT.correct("the  Nile!", "Nile") and not EXACT.correct("Niger", "Nile")
    strict = _type(type="exact", case_sensitive=True, ignore_punctuation=False, ignore_articles=False)
    assert not strict.correct("the Nile", "Nile") and not strict.correct("nile", "Nile")
    assert not strict.correct("Nile.", "Nile") and strict.correct(" Nile ", "Nile")
    coded = _type(type="exact", pattern=r"CODE-(\d+)")
    assert coded.extract("Not CODE-12 but CODE-31 it is") == "31" and coded.extract("no code") is None
    with pytest.raises(ValueError, match="no answer left"):
        EXACT.gold("The")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"type": "choice", "tolerance": 0.1}, "`tolerance` applies to answer type number, not 'choice'"),
        ({"type": "number", "tolerance": -1}, "`tolerance` must be >= 0"),
        ({"type": "choice", "n_options": 30}, "`n_options` must be 2..26"),
        ({"type": "exact", "pattern": "(a)(b)"}, "one capture group"),
        ({"type": "exact", "pattern": "("}, "not a valid regular expression"),
        ({"type": "exact", "pass_score": 0.5}, "set `grader`"),
        ({"type": "boolean", "true_words": [" "]}, "empty word"),
        ({"type": "fraction"}, "Invalid enum value 'fraction'"),
    ],
)
def test_bad_answer_options_name_their_key(keys: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(keys, AnswerSection)


class _Dataset(msgspec.Struct):
    answer: AnswerSection


def _grader_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_grader_that_cannot_be_imported_is_one_line_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _grader_module(tmp_path, monkeypatch, "broken_grader_mod", "import not_a_module_anywhere\n")
    _grader_module(tmp_path, monkeypatch, "fine_grader_mod", "def check(reply, gold, options):\n    return True\n")
    cases = [
        ('"no_such_pkg.grade:check"', r"cannot import module 'no_such_pkg.grade'.*PYTHONPATH - at `\$.answer`"),
        ('"broken_grader_mod:check"', r"No module named 'not_a_module_anywhere'"),
        ('"fine_grader_mod:score"', r"module 'fine_grader_mod' has no function 'score'"),
        ('"fine_grader_mod"', r'should read "module:function"'),
    ]
    for spec, message in cases:
        with pytest.raises(msgspec.ValidationError, match=message) as err:
            msgspec.toml.decode(f'[answer]\ntype = "exact"\ngrader = {spec}\n'.encode(), type=_Dataset)
        assert "\n" not in str(err.value)


def test_a_grader_decides_with_a_bool_or_a_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _grader_module(
        tmp_path,
        monkeypatch,
        "overlap_grader_mod",
        "def check(reply, gold, options):\n"
        "    assert isinstance(options, tuple)\n"
        "    words = set(gold.lower().split())\n"
        "    return len(words & set(reply.lower().replace('.', ' ').split())) / len(words)\n",
    )
    kind = _type(type="exact", grader="overlap_grader_mod:check")
    graded = kind.grade("Long thinking.\nThe answer is the river Nile.", "river Nile", ["x"], sample_id="q7")
    # The type still reads the answer shown in records; the grader saw the whole reply.
    assert graded.answer == "the river Nile" and graded.correct
    assert not kind.grade("Some river, I think.", "blue river Nile").correct  # 1/3 < 0.5
    assert kind.correct("river", "river Nile")  # 1/2 passes at the default 0.5
    assert not kind.correct(None, "river Nile")
    strict = _type(type="exact", grader="overlap_grader_mod:check", pass_score=0.9)
    assert not strict.correct("river", "river Nile") and strict.correct("river nile", "river Nile")


def test_a_raising_grader_names_itself_and_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _grader_module(
        tmp_path,
        monkeypatch,
        "raising_grader_mod",
        "def check(reply, gold, options):\n    raise KeyError('lookup\\nfailed')\n\n"
        "def vague(reply, gold, options):\n    return 'yes'\n",
    )
    kind = _type(type="number", grader="raising_grader_mod:check")
    with pytest.raises(GraderError) as err:
        kind.grade("The answer is 4.", "4", sample_id="gsm-17")
    message = str(err.value)
    assert "grader 'raising_grader_mod:check' on sample gsm-17 raised KeyError" in message
    assert "\n" not in message and isinstance(err.value.__cause__, KeyError)
    vague = _type(type="number", grader="raising_grader_mod:vague")
    with pytest.raises(GraderError, match="on sample s1 returned str; it should return a bool or a number"):
        vague.correct("4", "4", sample_id="s1")


EXAMPLES = Path(__file__).parent / "data" / "tasks"


@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_math_boxed_golds_read_and_grade(split: str) -> None:
    lines = (EXAMPLES / "math_boxed" / f"{split}.jsonl").read_text().splitlines()
    assert len(lines) >= 16
    for line in lines:
        record = msgspec.json.decode(line, type=dict[str, str])
        gold = MATH.gold(record["solution"])
        reply = f"Let's work it out.\n{record['solution'].replace('boxed', 'fbox')}\nSo the answer is ${gold}$."
        assert MATH.grade(reply, gold).correct, record["problem"]
        assert not MATH.correct(MATH.wrong(gold), gold), gold


@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_mc5_items_read_and_grade(split: str) -> None:
    import csv

    with (EXAMPLES / "mc5" / f"{split}.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 12 and len({row["key"] for row in rows}) == 5
    for row in rows:
        options = tuple(row[f"choice{k}"] for k in range(1, 6))
        gold = CHOICE.gold(row["key"], options)
        quoted = f"Thinking about each option in turn.\nThe answer is: {options['ABCDE'.index(gold)]}."
        assert CHOICE.grade(quoted, gold, options).correct, row["qid"]
        assert not CHOICE.grade(f"Answer: {CHOICE.wrong(gold, options)}", gold, options).correct


def test_a_grader_module_beside_the_config_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from core.config import load_config
    from core.graders import import_grader

    monkeypatch.setattr(sys, "path", list(sys.path))  # load_config's addition is undone after the test
    (tmp_path / "beside_config_grader.py").write_text("def check(reply, gold, options):\n    return reply == gold\n")
    with pytest.raises(ValueError, match="put it beside the config"):
        import_grader("beside_config_grader:check")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nname = "x"\nout_dir = "r"\n[[datasets]]\ntask = "svamp"\n')
    load_config(cfg)
    assert import_grader("beside_config_grader:check")("4", "4", ())
    assert sys.path[-1] == str(tmp_path.resolve())
