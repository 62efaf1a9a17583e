"""train.jsonl -> tokenized FAIR pairs -> bucketed micro-batches, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from core.errors import ConfigError, DataError
from core.records import TrainRecord
from trainer.data import (
    collate,
    load_records,
    padding_fraction,
    plan_epoch,
    rank_batches,
    tokenize_pairs,
)
from trainer.loss import IGNORE_INDEX


def make_records(n: int) -> list[TrainRecord]:
    """Arithmetic word problems of varied length, with a wrong answer, feedback and a rationale."""
    records = []
    for i in range(n):
        a, b = i + 2, 3 * i + 1
        padding = " Each basket is red." * (i % 5)
        records.append(
            TrainRecord(
                id=f"svamp-{i}",
                task="svamp",
                question=f"Tom has {a} apples and buys {b} more.{padding} How many apples does Tom have?",
                student_answer=f"Tom has {a} - {b} = {a - b} apples. The answer is {a - b}.",
                feedback=f"The student subtracted, but buying adds apples: {a} + {b} = {a + b}.",
                rationale=f"Tom starts with {a} apples and buys {b}. {a} + {b} = {a + b}. The answer is {a + b}.",
            )
        )
    return records


def write_jsonl(path: Path, records: list[TrainRecord]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_records_round_trip_through_jsonl(tmp_path: Path) -> None:
    records = make_records(3)
    assert load_records(write_jsonl(tmp_path / "train.jsonl", records)) == records


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b"", "no training records"),
        (b"\n\n", "no training records"),
        (b'{"id": "a", "task": "svamp"}\n', "train.jsonl:1:"),
        (None, "cannot read"),
    ],
)
def test_bad_train_jsonl_is_a_data_error_naming_file_and_line(
    tmp_path: Path, content: bytes | None, where: str
) -> None:
    path = tmp_path / "train.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=where) as info:
        load_records(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_malformed_line_is_named_by_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", make_records(2))
    path.write_bytes(path.read_bytes() + b"{not json\n")
    with pytest.raises(DataError, match=r"train\.jsonl:3: "):
        load_records(path)


def test_pairs_mask_prompts_and_end_responses_with_eos(tokenizer) -> None:
    records = make_records(2)
    pairs, stats = tokenize_pairs(records, tokenizer, "chat", max_length=512)
    assert (stats.prompts, stats.responses) == (0, 0)
    eos = tokenizer.eos_token_id
    for record, pair in zip(records, pairs, strict=True):
        for seq, response in ((pair.feedback, record.feedback), (pair.rationale, record.rationale)):
            assert seq.input_ids[-1] == eos
            assert tokenizer.decode(seq.input_ids[seq.n_prompt : -1]) == response
            assert "<|im_start|>assistant\n" in tokenizer.decode(seq.input_ids[: seq.n_prompt])
        # The two parts have different prompts: the mistake prompt carries the student's answer.
        assert record.student_answer in tokenizer.decode(pair.feedback.input_ids)
        assert record.student_answer not in tokenizer.decode(pair.rationale.input_ids)


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_response(tokenizer) -> None:
    records = make_records(5)  # record 4 has the longest question
    full, _ = tokenize_pairs(records, tokenizer, "chat", max_length=4096)
    shortest_prompt = min(s.n_prompt for p in full for s in (p.feedback, p.rationale))
    longest_response = max(len(s.input_ids) - s.n_prompt for p in full for s in (p.feedback, p.rationale))
    max_length = shortest_prompt + longest_response + 1
    seq = full[4].rationale
    assert len(seq.input_ids) > max_length

    pairs, stats = tokenize_pairs(records, tokenizer, "chat", max_length=max_length)
    cut = pairs[4].rationale
    kept = max_length - (len(seq.input_ids) - seq.n_prompt)
    assert len(cut.input_ids) == max_length
    assert cut.input_ids[cut.n_prompt :] == seq.input_ids[seq.n_prompt :]
    assert cut.input_ids[: cut.n_prompt] == seq.input_ids[seq.n_prompt - kept : seq.n_prompt]
    assert pairs[0].rationale == full[0].rationale  # the shortest fits untouched
    assert stats.prompts >= 2 and stats.responses == 0


def test_a_response_longer_than_the_window_loses_its_tail_and_is_counted(tokenizer) -> None:
    record = msgspec.structs.replace(make_records(1)[0], rationale="The answer is 42. " * 200)
    full, _ = tokenize_pairs([record], tokenizer, "chat", 8192)
    shortest_prompt = min(full[0].feedback.n_prompt, full[0].rationale.n_prompt)
    max_length = shortest_prompt + 8
    pairs, stats = tokenize_pairs([record], tokenizer, "chat", max_length=max_length)
    cut = pairs[0].rationale
    assert stats.responses == 1
    assert len(cut.input_ids) == max_length
    assert cut.n_prompt == max(1, max_length // 4)  # the prompt keeps a quarter of the window


def test_max_length_shorter_than_every_prompt_is_a_config_error(tokenizer) -> None:
    with pytest.raises(ConfigError, match=r"max_length = 8 is shorter than every prompt"):
        tokenize_pairs(make_records(3), tokenizer, "chat", max_length=8)


def test_plan_is_seeded_complete_and_whole_steps_for_every_rank() -> None:
    lengths = [10 + (7 * i) % 50 for i in range(37)]
    kwargs = {"micro_batch_size": 4, "world_size": 2, "grad_accum": 2, "seed": 731}
    plan = plan_epoch(lengths, epoch=0, **kwargs)
    assert plan == plan_epoch(lengths, epoch=0, **kwargs)
    assert plan != plan_epoch(lengths, epoch=1, **kwargs)
    assert len(plan) % (2 * 2) == 0
    assert sorted({i for batch in plan for i in batch}) == list(range(37))
    shards = [rank_batches(plan, r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) and len(shards[0]) % 2 == 0
    assert sorted(b for s in shards for b in map(tuple, s)) == sorted(map(tuple, plan))


def test_bucketing_wastes_less_padding_than_random_batches(tokenizer) -> None:
    records = make_records(40)
    pairs, _ = tokenize_pairs(records, tokenizer, "chat", max_length=512)
    lengths = [p.length for p in pairs]
    bucketed = plan_epoch(lengths, micro_batch_size=4, world_size=1, grad_accum=1, seed=0, epoch=0)
    unsorted = [list(range(i, i + 4)) for i in range(0, 40, 4)]
    assert 0.0 < padding_fraction(bucketed, pairs) < padding_fraction(unsorted, pairs)


def test_collate_puts_feedback_rows_first_and_masks_padding(tokenizer) -> None:
    pairs, _ = tokenize_pairs(make_records(3), tokenizer, "chat", max_length=512)
    batch = collate(pairs, pad_id=tokenizer.pad_token_id)
    assert batch.input_ids.shape[0] == 6 and batch.n_feedback == 3
    for row, seq in enumerate([p.feedback for p in pairs] + [p.rationale for p in pairs]):
        n = len(seq.input_ids)
        assert batch.input_ids[row, :n].tolist() == seq.input_ids
        assert batch.attention_mask[row].sum() == n
        labels = batch.labels[row].tolist()
        assert labels[: seq.n_prompt] == [IGNORE_INDEX] * seq.n_prompt
        assert labels[seq.n_prompt : n] == seq.input_ids[seq.n_prompt :]
        assert labels[n:] == [IGNORE_INDEX] * (batch.input_ids.shape[1] - n)
    assert batch.n_tokens == sum(len(p.feedback.input_ids) + len(p.rationale.input_ids) for p in pairs)


def test_instruction_layout_is_available_too(tokenizer) -> None:
    pairs, _ = tokenize_pairs(make_records(1), tokenizer, "instruction", max_length=512)
    assert "### Response:" in tokenizer.decode(pairs[0].rationale.input_ids)
    assert json.dumps("### Input:")[1:-1] in tokenizer.decode(pairs[0].feedback.input_ids)


def test_right_truncation_cuts_the_tail_as_the_authors_did() -> None:
    from trainer.data import TruncationStats, fit_sequence

    stats = TruncationStats()
    seq = fit_sequence(list(range(6)), [10, 11, 12, 13], 8, stats, "right")
    assert (seq.input_ids, seq.n_prompt) == ([0, 1, 2, 3, 4, 5, 10, 11], 6)
    seq = fit_sequence(list(range(10)), [10, 11], 8, stats, "right")
    assert (seq.input_ids, seq.n_prompt) == (list(range(8)), 8)
    assert (stats.responses, stats.prompts) == (2, 1)
    left = fit_sequence(list(range(10)), [10, 11], 8, TruncationStats())
    assert left.input_ids[-2:] == [10, 11]
