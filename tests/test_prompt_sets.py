"""Prompt sets: the `paper` set renders byte for byte what the FAIR authors' code sends and trains on.

The reference below is the composition written down in ../shared/PAPER_PROMPTS.md (the
authors' strings with `str.format`, their field handling), computed from the raw benchmark
rows, independently of `prompts/sets.py`, which goes through our loaders and templates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.records import Question, TrainRecord, mistake_from
from prompts.sets import CommitteePrompts, PaperPrompts, check_templates, prompt_set
from tasks.loaders import load_split
from tasks.rows import to_question

# The authors' strings (all_prompts.py, MIT, Copyright (c) 2025 Zhuochun), as PAPER_PROMPTS.md gives them.
SQ = (
    '\nQuestions: {}\nLet\'s think step by step. First, you should answer "true" or "false". '
    "Then, you should explain how you drew this conclusion.\n"
)
LQ = (
    "\nGiven the context: {}\nQuery: {}\nThere are four options in the list: {}. \n"
    "Give me your answer and rationale immediately. Let's think step by step.\n"
)
FB = (
    "\nImagine you are a teacher, I will give you one student's incorrect answer to a question. "
    "You should point out the mistakes in the student's answer.\n"
    "Question: {}\nStudent's Answer: {}\nHint: The correct answer should be {}.\n"
)
RV = (
    "\nImagine you are a reviewer, I will give you one submission about the rationale for a question. "
    "You should simulate the peer-review process by evaluating the rationale based on its correctness and soundness. "
    "Let's think step by step, but your final answer should only be one number, ranging from 1-5 (the higher the "
    "score is, the more possible you think the rationale is correct). The score should be wrapped by square "
    "brackets, such as: [5].\nQuestion: {}\nRationale: {}\nHint: The correct answer should be {}.\n"
)
TF = (
    "\n### Instruction:\nImagine you are a teacher, I will give you one student's incorrect answer to a question. "
    "You should point out the mistakes in the student's answer.\n### Input:\n{}\n### Response:\n"
)
TR = "\n### Instruction:\nAnswer the following question. Let's think step by step.\n### Input:\n{}\n### Response:\n"
STR = (
    '\n### Instruction:\nAnswer the following question. Let\'s think step by step. First, you should answer "true" '
    'or "false". Then, you should explain how you drew this conclusion.\n### Input:\n{}\n### Response:\n'
)
LTR = (
    "\n### Instruction:\nAnswer the following question based on the given context, query and options.\n"
    "### Input:\n{}\n### Response:\n"
)
RATIONALE = "  Step 1: think.\nStep 2: answer. [sic]\n"


class RawTokenizer:
    """The `instruction` format never calls the chat template; the paper set tokenizes raw text."""

    chat_template = None
    eos_token = "</s>"

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: object) -> str:
        raise AssertionError("the instruction format must not use a chat template")


def _authors(task: str, row: dict, student: str) -> dict[str, str]:
    """What the authors' scripts send and train on for one row.

    From their infer_student_wrong.py, collect_teacher_res.py, data.py and test.py.
    """
    if task == "logiqa":
        question = LQ.format(row["context"].strip(), row["query"].strip(), row["options"])
        exam, plain, stored = question, question, str(row["correct_option"]).strip()
        hint, train_r = stored.strip(), LTR
    elif task == "strategyqa":
        ques = row["question"].strip()
        stored = str(row["answer"]).strip().lower() + ".\t" + " ".join(row["facts"]).strip()
        exam, plain, hint, train_r = SQ.format(ques), ques, stored.split("\t")[0].strip(), STR
    elif task == "gsm8k":
        ques = row["question"].strip()
        stored = row["answer"].strip()
        exam, plain, hint, train_r = ques, ques, stored.split("####")[1].strip(), TR
    else:  # svamp, ChilleD's columns as tasks/demo_data/README.md rebuilds them
        ques = (row["Body"].strip() + " " + row["Question"].strip()).strip()
        stored = str(int(row["Answer"]))
        exam, plain, hint, train_r = ques, ques, stored, TR
    feedback_input = "\n".join(FB.split("\n")[2:]).format(plain, student, hint)
    return {
        "exam": exam,
        "feedback": FB.format(plain, student, stored),
        "review": RV.format(plain, RATIONALE, stored),
        "train_rationale": train_r.format(plain).strip(),
        "train_feedback": TF.format(feedback_input).strip(),
        "eval": train_r.format(plain),
    }


def _cases() -> list[tuple[str, dict, str]]:
    fixtures = json.loads((Path(__file__).parent / "data" / "paper_prompts" / "records.json").read_text("utf-8"))
    cases = [(task, row, row.pop("student")) for task in ("gsm8k", "strategyqa", "logiqa") for row in fixtures[task]]
    svamp_rows = json.loads((Path(__file__).parents[1] / "tasks" / "demo_data" / "svamp_train.json").read_text("utf-8"))
    students = ["The answer is 3.", "  I add them: 10\n", "Answer: 7 apples"]
    cases += [("svamp", row, s) for row, s in zip(svamp_rows[:3], students, strict=True)]
    return cases


def _question(task: str, index: int, row: dict) -> Question:
    if task == "svamp":
        return load_split("svamp", "demo", "train")[index]
    return to_question(task, index, row)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", range(len(_cases())))
def test_paper_set_matches_the_authors_composition(case: int) -> None:
    task, row, student = _cases()[case]
    index = case - [t for t, _, _ in _cases()].index(task)
    expected = _authors(task, row, student)
    paper = prompt_set("paper")
    tok = RawTokenizer()
    q = _question(task, index, row)
    m = mistake_from(q, student)

    assert paper.exam_prompt(tok, "instruction", q) == expected["exam"]
    assert paper.eval_prompt(tok, "instruction", q) == expected["eval"]
    for system in (False, True):
        head = [("system", "You are a helpful assistant.")] if system else []
        got = {
            stage: [(x.role, x.content) for x in paper.teacher_messages(stage, m, rationale=r, system=system)]
            for stage, r in (("rationale", None), ("feedback", None), ("review", RATIONALE))
        }
        assert got["rationale"] == [*head, ("user", expected["exam"])]
        assert got["feedback"] == [*head, ("user", expected["feedback"])]
        assert got["review"] == [*head, ("user", expected["review"])]

    record = TrainRecord(
        id=m.id,
        task=m.task,
        question=paper.record_question(m),
        student_answer=student,
        feedback="f",
        rationale="r",
        context=m.context,
        options=m.options,
        gold=m.gold,
    )
    assert paper.rationale_prompt(tok, "instruction", record) == expected["train_rationale"]
    assert paper.feedback_prompt(tok, "instruction", record) == expected["train_feedback"]


def test_imported_mistakes_keep_the_authors_gold_hint(tmp_path: Path) -> None:
    from tasks import import_mistakes

    stored = "false.\tPenguins are flightless birds. The moon has no air."
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": 4,
                    "question": "Could a penguin fly to the moon?",
                    "gold_answer": stored,
                    "student_wrong_pred": "True.",
                    "student_wrong_final_answer": "true",
                }
            ]
        )
    )
    (m,) = import_mistakes("strategyqa", path)
    (msg,) = prompt_set("paper").teacher_messages("feedback", m)
    assert msg.content == FB.format("Could a penguin fly to the moon?", "True.", stored)


def test_committee_set_is_the_default_wording() -> None:
    from prompts.messages import teacher_messages

    q = load_split("svamp", "demo", "train")[0]
    m = mistake_from(q, "The answer is 3.")
    committee = prompt_set("committee")
    assert isinstance(committee, CommitteePrompts)
    assert committee.teacher_messages("feedback", m) == teacher_messages("feedback", m)
    assert [x.role for x in committee.teacher_messages("rationale", m)] == ["user"]


def test_unknown_set_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[run\]\.prompts = 'papers': not a prompt set") as err:
        prompt_set("papers", tmp_path)
    assert "\n" not in str(err.value)


def test_a_folder_overrides_some_templates_and_the_rest_are_built_in(tmp_path: Path) -> None:
    from prompts import BUILTIN

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "teacher_feedback_math.txt").write_text(BUILTIN.text("teacher_feedback_math") + " (mine)\n")
    mine = prompt_set("mine", tmp_path)
    check_templates(mine, ["svamp"], system=True)
    q = load_split("svamp", "demo", "train")[0]
    assert mine.teacher_messages("feedback", mistake_from(q, "3"))[0].content.endswith("(mine)")
    review = mine.teacher_messages("review", mistake_from(q, "3"), rationale="r")[0].content
    assert review == prompt_set("committee").teacher_messages("review", mistake_from(q, "3"), rationale="r")[0].content


def test_paper_set_ships_every_template_and_the_authors_notice() -> None:
    paper = prompt_set("paper")
    assert isinstance(paper, PaperPrompts)
    check_templates(paper, ["gsm8k", "svamp", "strategyqa", "logiqa"], system=True)
    notice = paper.templates.folder.joinpath("LICENSE").read_text("utf-8")
    assert "Copyright (c) 2025 Zhuochun" in notice and "MIT License" in notice


@pytest.mark.parametrize("task", ["svamp", "gsm8k", "strategyqa"])
def test_scripted_teachers_answer_the_paper_set(task: str) -> None:
    """The emulator's scripted committee plays the paper set too, so the demo runs offline with it."""
    from emulator.fair_script import FairScript
    from emulator.spec import AnswerRequest
    from tasks import parse_score

    task_cases = [(i, row, s) for i, (t, row, s) in enumerate(c for c in _cases() if c[0] == task)]
    index, row, student = task_cases[0]
    q = _question(task, index, row)
    script = FairScript([q])
    paper = prompt_set("paper")
    m = mistake_from(q, student)

    def ask(stage: str, rationale: str | None = None) -> str:
        msgs = paper.teacher_messages(stage, m, rationale=rationale, system=True)  # type: ignore[arg-type]
        return script(
            AnswerRequest(
                provider="openai",
                model="gpt",
                messages=[(x.role, x.content) for x in msgs],
                max_tokens=512,
                temperature=0.8,
            )
        )

    rationale = ask("rationale")
    assert "The answer is" in rationale
    assert q.gold in ask("feedback")
    assert parse_score(ask("review", f"Step.\nThe answer is {q.gold}.")) >= 3
    assert parse_score(ask("review", "Step.\nThe answer is 12345.")) <= 3
