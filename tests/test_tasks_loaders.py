"""Benchmark loaders: the paper's splits from ../shared/data, the demo, Hugging Face rows, bad input."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import types
from pathlib import Path

import pytest

from core.errors import DataError
from prompts.messages import format_question
from tasks import load_split, load_split_report

# ---------------------------------------------------------------- the real files


@pytest.mark.parametrize(
    ("task", "folder", "sizes"),
    [
        ("gsm8k", "gsm8k", (7473, 1319)),
        ("svamp", "svamp", (700, 300)),
        ("strategyqa", "strategyqa", (1603, 687)),
    ],
)
def test_every_record_of_the_real_splits_loads(
    shared_data: Path, task: str, folder: str, sizes: tuple[int, int]
) -> None:
    # on_bad_line="stop" (the default): one unreadable gold answer would raise.
    for split, size in zip(("train", "test"), sizes, strict=True):
        questions = load_split(task, str(shared_data / folder), split)  # type: ignore[arg-type]
        assert len(questions) == size
        assert [q.id for q in questions] == [str(i) for i in range(size)]
        assert all(q.question and q.gold for q in questions)


def test_gsm8k_gold_is_the_number_after_the_hashes(shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:50]]
    questions = load_split("gsm8k", str(shared_data / "gsm8k"), "test", limit=50)
    for row, q in zip(rows, questions, strict=True):
        assert q.gold == row["answer"].split("####")[1].strip().replace(",", "")
        assert q.gold_text == row["answer"].strip()
    assert questions[0].gold == "18"


def test_svamp_split_follows_the_recipe(shared_data: Path) -> None:
    raw = json.loads((shared_data / "svamp" / "SVAMP.json").read_text())
    by_text = {f"{r['Body'].strip()} {r['Question'].strip()}": r for r in raw}
    train = load_split("svamp", str(shared_data / "svamp"), "train")
    test = load_split("svamp", str(shared_data / "svamp"), "test")
    # README: the first train IDs are chal-777, chal-508, chal-896; test 0 is chal-363, chal-736 at 164.
    assert [by_text[q.question]["ID"] for q in train[:3]] == ["chal-777", "chal-508", "chal-896"]
    assert by_text[test[0].question]["ID"] == "chal-363"
    assert by_text[test[164].question]["ID"] == "chal-736"
    assert {by_text[q.question]["ID"] for q in train + test} == {r["ID"] for r in raw}
    # The FAIR authors' svamp mistakes: id 0 is the bananas question (145), id 3 Frank's book (198).
    assert train[0].gold == "145" and train[0].question.startswith("There are 87 oranges and 290 bananas")
    assert train[3].gold == "198" and "594 pages" in train[3].question


def test_strategyqa_recipe_equals_the_kard_split(shared_data: Path, tmp_path: Path) -> None:
    full = shared_data / "strategyqa"
    kard_only = tmp_path / "strategyqa"
    shutil.copytree(full / "kard_split", kard_only / "kard_split")
    for split in ("train", "test"):
        a = load_split("strategyqa", str(full), split)
        b = load_split("strategyqa", str(kard_only), split)
        assert [(q.id, q.question, q.gold) for q in a] == [(q.id, q.question, q.gold) for q in b]
    train = load_split("strategyqa", str(full), "train", limit=2)
    assert train[0].question == "Is Mixed martial arts totally original from Roman Colosseum games?"
    assert train[0].gold_text  # the facts, joined
    assert load_split("strategyqa", str(full), "test", limit=1)[0].question.startswith(
        "Was ship that recovered Apollo 13"
    )


def test_logiqa_test_split_and_a_user_supplied_train_file(shared_data: Path, tmp_path: Path) -> None:
    test = load_split("logiqa", str(shared_data / "logiqa"), "test")
    assert len(test) == 651
    assert test[0].gold == "A" and len(test[0].options) == 4
    assert not test[0].options[0].startswith("A.")
    assert test[0].question == "Based on the above statement, which of the following can be derived?"
    # Position counts, not the printed letter: item 108 lists its options as A, C, B, D.
    assert test[108].options[1] == "No.3 valve and No.5 valve."
    text = format_question(test[0])
    assert text.startswith(test[0].context) and "\nA. Civic Park" in text and "\nD. " in text

    folder = tmp_path / "logiqa"
    folder.mkdir()
    # Eval.txt stands in for the missing Train.txt: same format, and it must parse completely too,
    # here with Windows line ends and trailing blank lines as a download might have them.
    raw = (shared_data / "logiqa" / "Eval.txt").read_bytes()
    (folder / "Train.txt").write_bytes(raw.replace(b"\n", b"\r\n") + b"\r\n\r\n")
    train = load_split("logiqa", str(folder), "train")
    assert len(train) == 651
    assert not any("\r" in o for q in train for o in q.options)


def test_logiqa_train_missing_says_where_to_get_it(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"Train\.txt.*missing.*hf:lucasmccabe/logiqa") as info:
        load_split("logiqa", str(shared_data / "logiqa"), "train")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the demo


def test_demo_ships_forty_svamp_questions_per_split() -> None:
    for split in ("train", "test"):
        questions = load_split("svamp", "demo", split)
        assert len(questions) == 40
        assert [q.id for q in questions] == [str(i) for i in range(40)]
    assert load_split("svamp", "demo", "train", limit=1)[0].gold == "145"
    assert len(load_split("svamp", "demo", "test", limit=5)) == 5


def test_demo_is_the_head_of_the_real_splits(shared_data: Path) -> None:
    for split in ("train", "test"):
        demo = load_split("svamp", "demo", split)
        real = load_split("svamp", str(shared_data / "svamp"), split, limit=40)
        assert demo == real


def test_demo_ships_its_license() -> None:
    demo = Path(__file__).resolve().parents[1] / "tasks" / "demo_data"
    assert "Copyright (c) 2021 Arkil Patel" in (demo / "LICENSE").read_text()
    assert "MIT License" in (demo / "LICENSE").read_text()


def test_demo_for_other_tasks_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="SVAMP questions only"):
        load_split("gsm8k", "demo", "train")


# ---------------------------------------------------------------- bad input


def _gsm8k_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    lines = [
        json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}),
        '{"question": "broken", ',
        json.dumps({"question": "no final answer", "answer": "it is 3"}),
        "",
        json.dumps({"question": "2+2?", "answer": "#### 1,004"}),
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_bad_line_stops_with_file_and_line(tmp_path: Path) -> None:
    folder = _gsm8k_folder(tmp_path)
    with pytest.raises(DataError, match=r"train\.jsonl:2: not valid JSON") as info:
        load_split("gsm8k", str(folder), "train")
    assert "\n" not in str(info.value)


def test_bad_lines_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _gsm8k_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tasks.loaders"):
        report = load_split_report("gsm8k", str(folder), "train", on_bad_line="skip")
    assert [(q.id, q.gold) for q in report.questions] == [("0", "2"), ("3", "1004")]
    assert [s.where.rsplit("/", 1)[1] for s in report.skipped] == ["train.jsonl:2", "train.jsonl:3"]
    assert "####" in report.skipped[1].reason
    assert "train.jsonl:3" in caplog.text and "skipped 2 malformed records" in caplog.text


def test_limit_counts_loaded_questions(tmp_path: Path) -> None:
    folder = _gsm8k_folder(tmp_path)
    assert [q.id for q in load_split("gsm8k", str(folder), "train", limit=2, on_bad_line="skip")] == ["0", "3"]
    assert load_split("gsm8k", str(folder), "train", limit=0) == []


def test_bad_json_record_names_file_and_record(tmp_path: Path) -> None:
    folder = tmp_path / "svamp"
    folder.mkdir()
    rows = [{"Body": f"Tom has {i} apples.", "Question": "How many?", "Answer": float(i)} for i in range(10)]
    del rows[4]["Answer"]
    (folder / "SVAMP.json").write_text(json.dumps(rows))
    # Record 4 lands in one of the two splits, which then cannot load.
    errors = []
    for split in ("train", "test"):
        try:
            load_split("svamp", str(folder), split)  # type: ignore[arg-type]
        except DataError as exc:
            errors.append(str(exc))
    assert len(errors) == 1 and "SVAMP.json record 4: missing field 'Answer'" in errors[0]
    report = load_split_report("svamp", str(folder), "train", on_bad_line="skip")
    report_test = load_split_report("svamp", str(folder), "test", on_bad_line="skip")
    assert len(report.questions) + len(report_test.questions) == 9
    assert len(report.skipped) + len(report_test.skipped) == 1


def test_file_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "svamp"
    folder.mkdir()
    (folder / "SVAMP.json").write_text('[\n{"Body": "x",\n oops\n]')
    with pytest.raises(DataError, match=r"SVAMP\.json:3: not valid JSON"):
        load_split("svamp", str(folder), "test")


def test_bad_logiqa_block_names_its_line_and_reading_resumes(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "logiqa" / "Test.txt").read_text(encoding="utf-8").split("\n")[:24]
    lines[9] = "e"  # the second question's answer letter
    folder = tmp_path / "logiqa"
    folder.mkdir()
    (folder / "Test.txt").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"Test\.txt:9: expected the answer letter"):
        load_split("logiqa", str(folder), "test")
    report = load_split_report("logiqa", str(folder), "test", on_bad_line="skip")
    assert [q.id for q in report.questions] == ["0", "2"]
    assert len(report.skipped) == 1


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_split("gsm8k", str(tmp_path / "nowhere"), "train")
    with pytest.raises(DataError, match=r"SVAMP\.json: missing"):
        load_split("svamp", str(tmp_path), "train")


def test_unknown_task_and_split() -> None:
    with pytest.raises(DataError, match="unknown task 'aqua'"):
        load_split("aqua", "demo", "train")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_split("svamp", "demo", "dev")  # type: ignore[arg-type]


# ---------------------------------------------------------------- Hugging Face


@pytest.fixture
def fake_datasets(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A stand-in `datasets` module serving hand-made rows in each dataset's published columns."""
    calls: dict[str, object] = {}
    rows = {
        "openai/gsm8k": [{"question": "Natalia sold 48 clips ...", "answer": "48/2 = <<48/2=24>>24\n#### 72"}],
        "ChilleD/SVAMP": [
            {
                "ID": "chal-777",
                "Body": "There are 87 oranges and 290 bananas. ",
                "Question": "How big is each group of bananas?",
                "Equation": "( 290.0 / 2.0 )",
                "Answer": "145",
                "Type": "Common-Division",
                "question_concat": "There are 87 oranges and 290 bananas. How big is each group of bananas?",
            }
        ],
        "ChilleD/StrategyQA": [
            {
                "qid": "4fd64bb6ce5b78ab20b6",
                "term": "Mixed martial arts",
                "description": "full contact combat sport",
                "question": "Is Mixed martial arts totally original from Roman Colosseum games?",
                "answer": False,
                "facts": "MMA draws on many styles. Pankration predates the Colosseum.",
                "decomposition": ["..."],
            }
        ],
        "lucasmccabe/logiqa": [
            {
                "context": "Continuous exposure to fluorescent light helps hamsters.",
                "query": "Which question motivated the experiment?",
                "options": ["Can light therapy help?", "Which lives longer?", "What illness?", "Need darkness?"],
                "correct_option": 0,
            }
        ],
    }

    def load_dataset(name: str, config: str | None = None, *, split: str) -> list[dict[str, object]]:
        calls[name] = (config, split)
        if name not in rows:
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub\nmore detail")
        return rows[name]

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_hf_column_mapping(fake_datasets: dict[str, object]) -> None:
    (gsm,) = load_split("gsm8k", "hf:openai/gsm8k", "train")
    assert (gsm.id, gsm.gold, gsm.question) == ("0", "72", "Natalia sold 48 clips ...")
    assert fake_datasets["openai/gsm8k"] == ("main", "train")

    (svamp,) = load_split("svamp", "hf:ChilleD/SVAMP", "test")
    assert svamp.gold == "145" and svamp.question.endswith("bananas. How big is each group of bananas?")
    assert fake_datasets["ChilleD/SVAMP"] == (None, "test")

    (sqa,) = load_split("strategyqa", "hf:ChilleD/StrategyQA", "train")
    assert sqa.gold == "false" and sqa.gold_text.startswith("MMA draws")

    (logi,) = load_split("logiqa", "hf:lucasmccabe/logiqa:default", "train")
    assert (logi.gold, logi.options[1], logi.context) == (
        "A",
        "Which lives longer?",
        "Continuous exposure to fluorescent light helps hamsters.",
    )
    assert fake_datasets["lucasmccabe/logiqa"] == ("default", "train")


def test_hf_load_failure_is_one_line(fake_datasets: dict[str, object]) -> None:
    with pytest.raises(DataError, match="cannot load split 'train': Dataset 'nobody/x' doesn't exist") as info:
        load_split("gsm8k", "hf:nobody/x", "train")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="hf:<dataset name>"):
        load_split("gsm8k", "hf:", "train")


def test_hf_without_datasets_says_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(DataError, match="pip install datasets"):
        load_split("gsm8k", "hf:openai/gsm8k", "train")
