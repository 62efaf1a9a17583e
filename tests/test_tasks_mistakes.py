"""Importing the FAIR authors' mistake files (Learn-from-Committee `*_false_round0.json`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import DataError
from tasks import import_mistakes, load_split

SVAMP = [
    {
        "id": 0,
        "question": "There are 87 oranges and 290 bananas in Philip's collection. If the bananas are organized into 2 "
        "groups and oranges are organized into 93 groups How big is each group of bananas?",
        "gold_answer": "145",
        "student_wrong_pred": "Answer:\n\nGroup of bananas: 290 / 2 = 145\n\nGroup of oranges: 87 / 93 = 0.92",
        "student_wrong_final_answer": "0.92",
    },
    {
        "id": 3,
        "question": "Frank was reading through his favorite book. The book had 3 chapters, each with the same number "
        "of pages. It has a total of 594 pages. It took Frank 607 days to finish the book. How many pages are in "
        "each chapter?",
        "gold_answer": "198",
        "student_wrong_pred": "3x = 205\n\nx = 68",
        "student_wrong_final_answer": "68",
    },
    {
        "id": 59,
        "question": "21 children were riding on the bus. ...",
        "gold_answer": "5",
        "student_wrong_pred": "",
        "student_wrong_final_answer": "ABSOLUTE_WRONG_FINAL_ANS",
    },
]
GSM8K = [
    {
        "id": 12,
        "question": "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many?",
        "gold_answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72",
        "student_wrong_pred": "She sold 48 + 48 = 96",
        "student_wrong_final_answer": "96",
    }
]
STRATEGYQA = [
    {
        "id": 1,
        "question": "Is the cuisine of Hawaii suitable for a vegan?",
        "gold_answer": "false.\tHawaiian cuisine includes a lot of pork. Vegans eat no animal products.",
        "student_wrong_pred": "True. Hawaii has lots of fruit.",
        "student_wrong_final_answer": "true",
    }
]
LOGIQA = [
    {
        "id": 7,
        "context": "Black Americans are twice as likely as white Americans to have hypertension.",
        "question": "Which finding, if true, best supports the researchers' hypothesis?",
        "options": ["Option one text", "Option two text", "Option three text", "Option four text"],
        "gold_answer": "2",
        "student_wrong_pred": "Answer: Option one text\nRationale: ...",
        "student_wrong_final_answer": "0",
    }
]


def _write(tmp_path: Path, records: object, name: str = "false_round0.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_svamp_mistakes_keep_their_ids(tmp_path: Path) -> None:
    mistakes = import_mistakes("svamp", _write(tmp_path, SVAMP))
    assert [m.id for m in mistakes] == ["0", "3", "59"]
    assert [m.gold for m in mistakes] == ["145", "198", "5"]
    assert mistakes[0].student_final_answer == "0.92"
    assert mistakes[0].student_answer == SVAMP[0]["student_wrong_pred"]
    assert mistakes[2].student_final_answer is None  # the authors' "no answer found"


def test_imported_ids_line_up_with_the_paper_split(tmp_path: Path) -> None:
    # The demo is the head of the paper's train split, where ids 0 and 3 are.
    train = load_split("svamp", "demo", "train")
    for m in import_mistakes("svamp", _write(tmp_path, SVAMP[:2])):
        assert train[int(m.id)].question == m.question
        assert train[int(m.id)].gold == m.gold


def test_gsm8k_gold_is_read_from_the_full_answer(tmp_path: Path) -> None:
    (m,) = import_mistakes("gsm8k", _write(tmp_path, GSM8K))
    assert (m.id, m.gold, m.student_final_answer) == ("12", "72", "96")
    assert m.gold_text == GSM8K[0]["gold_answer"]


def test_strategyqa_gold_is_before_the_tab(tmp_path: Path) -> None:
    (m,) = import_mistakes("strategyqa", _write(tmp_path, STRATEGYQA))
    assert (m.gold, m.student_final_answer) == ("false", "true")
    assert "pork" in m.gold_text


def test_logiqa_gold_index_becomes_a_letter(tmp_path: Path) -> None:
    (m,) = import_mistakes("logiqa", _write(tmp_path, LOGIQA))
    assert (m.gold, m.student_final_answer) == ("C", "A")
    assert m.options[2] == "Option three text" and m.context.startswith("Black Americans")


@pytest.mark.parametrize("field", ["id", "question", "gold_answer", "student_wrong_pred", "student_wrong_final_answer"])
def test_missing_field_names_file_record_and_field(tmp_path: Path, field: str) -> None:
    records = [dict(r) for r in SVAMP]
    del records[1][field]
    path = _write(tmp_path, records)
    with pytest.raises(DataError, match=rf"false_round0\.json record 1: missing field '{field}'") as info:
        import_mistakes("svamp", path)
    assert "\n" not in str(info.value)


def test_logiqa_needs_context_and_options(tmp_path: Path) -> None:
    records = [dict(LOGIQA[0])]
    del records[0]["options"]
    with pytest.raises(DataError, match="record 0: missing field 'options'"):
        import_mistakes("logiqa", _write(tmp_path, records))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read mistakes file"):
        import_mistakes("svamp", tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DataError, match="not a JSON mistakes file"):
        import_mistakes("svamp", bad)
    with pytest.raises(DataError, match="expected a JSON list"):
        import_mistakes("svamp", _write(tmp_path, {"id": 1}))
    with pytest.raises(DataError, match="record 0: field 'gold_answer': cannot read a gsm8k answer"):
        import_mistakes("gsm8k", _write(tmp_path, [{**GSM8K[0], "gold_answer": "no hashes here"}]))
    with pytest.raises(DataError, match="id '3' appears more than once"):
        import_mistakes("svamp", _write(tmp_path, [SVAMP[1], SVAMP[1]]))
