"""The records every stage hands on: one name for the gold answer, one conversion each way, older files still read."""

from __future__ import annotations

import json

import msgspec
import pytest

from core.errors import DataError
from core.records import Mistake, Question, RecordDecoder, TrainRecord, mistake_from, question_from
from core.samples import DecidedSample, RationaleOutcome

QUESTION = Question(
    id="7", task="logiqa", question="Which?", gold="B", gold_text="because", context="c", options=("w", "x", "y", "z")
)


def test_a_question_and_its_mistake_convert_both_ways():
    mistake = mistake_from(QUESTION, "I think A.", "A")
    assert mistake.gold == "B" and mistake.gold_text == "because" and mistake.student_final_answer == "A"
    assert question_from(mistake) == QUESTION


def _old(record: msgspec.Struct) -> bytes:
    """The record as a version before the rename wrote it: `gold` was `gold_answer`."""
    fields = msgspec.to_builtins(record)
    fields["gold_answer"] = fields.pop("gold")
    return json.dumps(fields).encode()


MISTAKE = mistake_from(QUESTION, "I think A.", "A")
RECORD = TrainRecord(
    id="7", task="logiqa", question="Which?", student_answer="A", feedback="f", rationale="r", gold="B"
)
SAMPLE = DecidedSample(
    id="7",
    task="logiqa",
    question="Which?",
    gold="B",
    student_answer="A",
    rationales=[RationaleOutcome(teacher="t", text="r", scores={"u": 4})],
    included=True,
)


@pytest.mark.parametrize("record", [MISTAKE, RECORD, SAMPLE], ids=["mistake", "train record", "decided sample"])
def test_records_written_before_gold_was_renamed_still_decode(record):
    decoder = RecordDecoder(type(record))
    assert decoder.decode(_old(record)) == record
    assert decoder.decode(msgspec.json.encode(record)) == record


def test_an_old_line_that_is_malformed_otherwise_still_fails_naming_the_field():
    bad = json.loads(_old(MISTAKE))
    del bad["student_answer"]
    with pytest.raises(msgspec.ValidationError, match="student_answer"):
        RecordDecoder(Mistake).decode(json.dumps(bad).encode())


def test_a_gold_answer_inside_the_text_is_no_old_key():
    tricky = msgspec.structs.replace(MISTAKE, question='He wrote "gold_answer": 3. Which?')
    assert RecordDecoder(Mistake).decode(msgspec.json.encode(tricky)) == tricky


def test_an_old_run_directory_still_reads(tmp_path):
    """An older run's mistakes.jsonl, train.jsonl, dataset.jsonl and stored samples."""
    from dataset.preferences import write_preferences
    from dataset.writer import decode_samples
    from stages.sources import exam_mistakes
    from trainer.data import load_records

    (tmp_path / "mistakes.jsonl").write_bytes(_old(MISTAKE) + b"\n")
    (tmp_path / "train.jsonl").write_bytes(_old(RECORD) + b"\n")
    (tmp_path / "dataset.jsonl").write_bytes(_old(SAMPLE) + b"\n")
    assert exam_mistakes(tmp_path, "logiqa") == [MISTAKE]
    assert load_records(tmp_path / "train.jsonl") == [RECORD]
    assert decode_samples([_old(SAMPLE)]) == [SAMPLE]
    assert write_preferences(tmp_path, 1.0) == 0  # one rationale: no pair, but the file reads


def test_a_bad_old_line_is_named_by_file_and_line(tmp_path):
    from trainer.data import load_records

    (tmp_path / "train.jsonl").write_bytes(msgspec.json.encode(RECORD) + b"\n" + _old(RECORD)[:-1] + b"\n")
    with pytest.raises(DataError, match=r"train.jsonl:2: not a valid training record"):
        load_records(tmp_path / "train.jsonl")
