"""Tasks defined in the config: field mapping, data files, bad input, and prompt folders, all before any call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError, DataError
from core.records import mistake_from
from prompts.sets import check_config, prompt_set
from tasks import load_split, load_split_report
from tasks.definitions import declare, task_def

BASE = '[run]\nname = "t"\nout_dir = "out"\n'


def write(tmp: Path, text: str) -> Path:
    path = tmp / "run.toml"
    path.write_text(text)
    return path


def define(tmp: Path, entry: str, extra: str = "") -> Path:
    """A config whose one dataset is `entry` (the lines after `task = ...`), loaded and declared."""
    path = write(tmp, BASE + '[[datasets]]\ntask = "mine"\n' + entry + extra)
    cfg = load_config(path)
    declare(cfg.datasets)
    return path


def jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


NESTED_Q2 = "What is 1,000 + 200?"
NESTED = [
    {"uid": "q1", "body": {"text": "What is 6 * 7?"}, "sol": {"value": "42"}},
    {"uid": "q2", "body": {"text": "What is 1,000 + 200?"}, "sol": {"value": 1200}},
]


def test_nested_fields_ids_and_numbers(tmp_path: Path) -> None:
    jsonl(tmp_path / "data" / "train.jsonl", NESTED)
    jsonl(tmp_path / "data" / "test.jsonl", NESTED[:1])
    define(
        tmp_path,
        'source = "data"\nanswer = { type = "number" }\n'
        'fields = { question = "body.text", gold = "sol.value", id = "uid" }\n',
    )
    train = load_split("mine", str(tmp_path / "data"), "train")
    assert [(q.id, q.question, q.gold) for q in train] == [
        ("q1", "What is 6 * 7?", "42"),
        ("q2", train[1].question, "1200"),
    ]
    assert task_def("mine").templates == "math" and load_split("mine", str(tmp_path / "data"), "test")[0].id == "q1"


def test_options_from_a_list_of_tables_and_gold_as_option_text(tmp_path: Path) -> None:
    rows = [
        {
            "question": {
                "stem": "Which is a fruit?",
                "choices": [{"text": "Carrot"}, {"text": "Apple"}, {"text": "Leek"}],
            },
            "passage": "Fruits hold seeds.",
            "key": "Apple",
        }
    ]
    jsonl(tmp_path / "train.jsonl", rows)
    define(
        tmp_path,
        'source = "train.jsonl"\ntest = "train.jsonl"\nanswer = { type = "choice" }\n'
        'fields = { question = "question.stem", options = "question.choices.text", gold = "key", '
        'context = "passage" }\n',
    )
    (q,) = load_split("mine", str(tmp_path / "train.jsonl"), "train")
    assert (q.options, q.gold, q.context) == (("Carrot", "Apple", "Leek"), "B", "Fruits hold seeds.")
    assert task_def("mine").templates == "choice"
    # Shown to teachers and student lettered, the context first.
    from prompts.messages import format_question, gold_hint

    assert format_question(q) == "Fruits hold seeds.\nWhich is a fruit?\nA. Carrot\nB. Apple\nC. Leek"
    assert gold_hint(mistake_from(q, "A")) == "(B) Apple"


def test_csv_with_one_column_per_option(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text('id,q,a,b,ans\n7,"Is it, really?",yes,no,0\n')
    define(
        tmp_path,
        'source = "train.csv"\ntest = "train.csv"\nanswer = { type = "choice" }\n'
        'fields = { question = "q", gold = "ans", id = "id", options = ["a", "b"] }\n',
    )
    (q,) = load_split("mine", str(tmp_path / "train.csv"), "train")
    assert (q.id, q.question, q.options, q.gold) == ("7", "Is it, really?", ("yes", "no"), "A")


def test_parquet_split_in_a_folder(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([{"question": "Is ice cold?", "answer": True}]), folder / "train.parquet")
    define(tmp_path, 'source = "d"\nanswer = { type = "boolean" }\n')
    (q,) = load_split("mine", str(folder), "train")
    assert (q.question, q.gold) == ("Is ice cold?", "true")
    with pytest.raises(DataError, match=r"expected one test file .*found none; name it with `test = "):
        load_split("mine", str(folder), "test")


def test_a_mapped_field_missing_from_the_first_record_stops_whatever_on_bad_line(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "train.jsonl", NESTED)
    define(
        tmp_path,
        'source = "train.jsonl"\ntest = "train.jsonl"\non_bad_line = "skip"\nanswer = { type = "number" }\n'
        'fields = { question = "body.txt", gold = "sol.value" }\n',
    )
    with pytest.raises(DataError) as err:
        load_split("mine", str(data), "train", on_bad_line="skip")
    message = str(err.value)
    assert f"{data}:1" in message and "fields.question = 'body.txt'" in message and "\n" not in message


def test_an_unreadable_gold_answer_stops_or_is_skipped_with_file_and_line(tmp_path: Path) -> None:
    rows = [NESTED[0], {"uid": "q3", "body": {"text": "?"}, "sol": {"value": "many"}}, NESTED[1]]
    data = jsonl(tmp_path / "train.jsonl", rows)
    define(
        tmp_path,
        'source = "train.jsonl"\ntest = "train.jsonl"\nanswer = { type = "number" }\n'
        'fields = { question = "body.text", gold = "sol.value", id = "uid" }\n',
    )
    with pytest.raises(DataError) as err:
        load_split("mine", str(data), "train")
    message = str(err.value)
    assert message.startswith(f"{data}:2: field 'sol.value' (fields.gold): ") and "'many'" in message
    assert 'on_bad_line = "skip"' in message and "\n" not in message
    report = load_split_report("mine", str(data), "train", on_bad_line="skip")
    assert [q.id for q in report.questions] == ["q1", "q2"]
    assert [s.where for s in report.skipped] == [f"{data}:2"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('answer = { type = "number" }\n', "`source = 'demo'` ships SVAMP only"),
        ('source = "x"\n', "task 'mine' is not built in"),
        ('source = "x"\nanswer = { type = "fraction" }\n', "$.datasets[0].answer.type"),
        ('source = "x"\nanswer = { type = "number" }\ngrader = "authors"\n', "knows the paper's four tasks only"),
        ('source = "x"\nanswer = { type = "number" }\nfields = { questoin = "q" }\n', "$.datasets[0].fields"),
        ('source = "x"\nanswer = { type = "exact", grader = "nosuch:check" }\n', "cannot import module 'nosuch'"),
        (
            'source = "x"\nanswer = { type = "exact", grader = "tests.task_graders:two_arguments" }\n',
            "two_arguments(reply, gold) cannot be called as two_arguments(reply, gold, options)",
        ),
    ],
)
def test_bad_task_definitions_are_one_line_naming_the_key(tmp_path: Path, entry: str, expected: str) -> None:
    path = write(tmp_path, BASE + '[[datasets]]\ntask = "mine"\n' + entry)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_grader_taking_reply_gold_and_options_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + '[[datasets]]\ntask = "mine"\nsource = "x"\n'
        'answer = { type = "exact", grader = "tests.task_graders:with_defaults" }\n',
    )
    assert load_config(path).datasets[0].answer is not None


def test_a_built_in_task_keeps_its_meaning(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[[datasets]]\ntask = "gsm8k"\nanswer = { type = "exact" }\n')
    with pytest.raises(ConfigError, match="`answer` is for a task you define; 'gsm8k' is built in"):
        load_config(path)


# ---------------------------------------------------------------- prompt folders


def prompts_config(tmp: Path, files: dict[str, str], entry: str = "") -> Path:
    folder = tmp / "mine_prompts"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    jsonl(tmp / "data" / "train.jsonl", [{"question": "1+1?", "answer": "2"}])
    return write(
        tmp,
        '[run]\nname = "t"\nout_dir = "out"\nprompts = "mine_prompts"\n'
        '[[datasets]]\ntask = "mine"\nsource = "data"\nanswer = { type = "number" }\n' + entry,
    )


def check(path: Path) -> None:
    cfg = load_config(path)
    declare(cfg.datasets)
    check_config(cfg, path)


def test_a_folder_template_overrides_by_name(tmp_path: Path) -> None:
    path = prompts_config(tmp_path, {"review_math.txt": "Score it: {{rationale}} [1-5]"})
    check(path)
    (q,) = load_split("mine", str(tmp_path / "data"), "train")
    pset = prompt_set(load_config(path).run.prompts)
    # The user's review leaves out the question and the hint: allowed, and rendered.
    assert pset.teacher_messages("review", mistake_from(q, "3"), rationale="r")[0].content == "Score it: r [1-5]"
    assert "math word problem" in pset.teacher_messages("rationale", mistake_from(q, "3"))[0].content


@pytest.mark.parametrize(
    ("files", "entry", "expected"),
    [
        ({"reveiw_math.txt": "x"}, "", "reveiw_math.txt matches no template (a typo?)"),
        (
            {"review_math.txt": "{{question}} {{answer}}"},
            "",
            "review_math.txt has unknown placeholder {{answer}}; this template may use {{gold}}, {{question}}, "
            "{{rationale}}",
        ),
        ({}, 'templates = "legal"\n', "template review_legal.txt (needed by mine) is missing"),
    ],
)
def test_a_bad_prompt_folder_is_one_line_before_any_call(
    tmp_path: Path, files: dict[str, str], entry: str, expected: str
) -> None:
    path = prompts_config(tmp_path, files, entry)
    with pytest.raises(ConfigError) as err:
        check(path)
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_custom_family_in_the_folder_is_used(tmp_path: Path) -> None:
    files = {
        f"{kind}_legal.txt": f"{kind}: " + " ".join(f"{{{{{f}}}}}" for f in fields)
        for kind, fields in (
            ("teacher_rationale", ["question"]),
            ("teacher_feedback", ["question", "student_answer", "gold"]),
            ("review", ["question", "rationale", "gold"]),
            ("student_instruction", []),
        )
    }
    path = prompts_config(tmp_path, files, 'templates = "legal"\n')
    check(path)
    (q,) = load_split("mine", str(tmp_path / "data"), "train")
    pset = prompt_set(load_config(path).run.prompts)
    assert pset.teacher_messages("rationale", mistake_from(q, "3"))[0].content == "teacher_rationale: 1+1?"
    # The student is instructed from the same family, at exam and in training alike.
    prompt = pset.exam_prompt(None, "instruction", q)  # type: ignore[arg-type]  # no tokenizer: not chat
    assert prompt.startswith("### Instruction:\nstudent_instruction:\n\n### Input:\n1+1?")


def test_the_paper_set_names_the_template_a_defined_task_lacks(tmp_path: Path) -> None:
    path = prompts_config(tmp_path, {}, 'templates = "choice"\n')
    path.write_text(path.read_text().replace('prompts = "mine_prompts"', 'prompts = "paper"'))
    with pytest.raises(ConfigError, match=r"template question_choice\.txt \(needed by mine\) is missing"):
        check(path)


def test_a_custom_grader_grades_the_student_and_the_teachers(tmp_path: Path) -> None:
    from student.answering import grade

    jsonl(tmp_path / "train.jsonl", [{"question": "Name a primary colour.", "answer": "red"}])
    define(
        tmp_path,
        'source = "train.jsonl"\ntest = "train.jsonl"\n'
        'answer = { type = "exact", grader = "tests.task_graders:mentions_gold" }\n',
    )
    (q,) = load_split("mine", str(tmp_path / "train.jsonl"), "train")
    assert grade(q, "Roses are RED, so: red.", "sha").correct
    assert not grade(q, "The answer is blue.", "sha").correct


def test_a_missing_split_file_is_named_when_the_config_is_loaded(tmp_path: Path) -> None:
    from stages.context import load_run_config

    jsonl(tmp_path / "train.jsonl", [{"question": "1+1?", "answer": "2"}])
    path = write(tmp_path, BASE + '[[datasets]]\ntask = "mine"\nsource = "train.jsonl"\nanswer = { type = "number" }\n')
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert "$.datasets[0]" in str(err.value) and "name the test split's file with `test" in str(err.value)
    path.write_text(path.read_text() + 'test = "tset.jsonl"\n')
    with pytest.raises(ConfigError, match=r"tset\.jsonl: no such file for the test split; fix `source` or `test`"):
        load_run_config(path)


def test_a_hugging_face_source_names_its_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    asked = []

    def load_dataset(name: str, config: str | None, split: str) -> list[dict[str, object]]:
        asked.append((name, config, split))
        return [{"q": "Is water wet?", "label": "yes"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    define(
        tmp_path,
        'source = "hf:me/yesno:v2"\ntrain = "training"\nanswer = { type = "boolean" }\n'
        'fields = { question = "q", gold = "label" }\n',
    )
    (q,) = load_split("mine", "hf:me/yesno:v2", "train")
    load_split("mine", "hf:me/yesno:v2", "test")
    assert (q.question, q.gold) == ("Is water wet?", "true")
    assert asked == [("me/yesno", "v2", "training"), ("me/yesno", "v2", "test")]


def test_a_field_missing_from_the_test_split_is_named_when_the_config_is_loaded(tmp_path: Path) -> None:
    """The test split is first read at eval, after the teachers were paid: its mapping is checked at load too."""
    import committee
    from stages.context import load_run_config

    jsonl(tmp_path / "data" / "train.jsonl", NESTED)
    test = jsonl(tmp_path / "data" / "test.jsonl", [{"uid": "t1", "body": {"text": "1+1?"}, "solution": "2"}])
    path = write(
        tmp_path,
        BASE + '[[datasets]]\ntask = "mine"\nsource = "data"\nanswer = { type = "number" }\n'
        'fields = { question = "body.text", gold = "sol.value", id = "uid" }\n',
    )
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    message = str(err.value)
    assert f"$.datasets[0]: {test}:1: fields.gold = 'sol.value': no such field" in message and "\n" not in message
    # A Config built in code is checked the same way, before any stage runs.
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"test\.jsonl:1: fields\.gold = 'sol\.value': no such field"):
        committee.config_from(cfg)


def test_trainer_workers_import_a_grader_from_the_notebooks_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers start in the package's folder and load out_dir/config.json: a grader beside the notebook (on the
    kernel's sys.path, not beside that file) reaches them through their PYTHONPATH."""
    import os
    import subprocess
    import sys

    from trainer.launch import _REPO, worker_pythonpath

    notebook = tmp_path / "notebook"
    (notebook / "r15graders").mkdir(parents=True)
    (notebook / "r15graders" / "__init__.py").write_text("")
    (notebook / "r15graders" / "yn.py").write_text("def check(reply, gold, options):\n    return gold in reply\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(notebook)])  # the kernel's working directory
    jsonl(tmp_path / "train.jsonl", [{"question": "Is ice cold?", "answer": "yes"}])
    define(
        tmp_path,
        'source = "train.jsonl"\ntest = "train.jsonl"\nanswer = { type = "boolean", grader = "r15graders.yn:check" }\n',
    )
    cfg = load_config(tmp_path / "run.toml")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = worker_pythonpath(cfg, None)
    done = subprocess.run(
        [sys.executable, "-c", "import r15graders.yn"], cwd=_REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-500:]
