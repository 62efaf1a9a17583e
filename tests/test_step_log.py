"""The loss logs: rows written by the trainer (now and by older versions) read back typed."""

from __future__ import annotations

import json
import math

from trainer.step_log import DpoStepRow, TrainStepRow, encode_row, read_step_log


def test_a_log_written_by_an_older_trainer_reads_back(tmp_path):
    """Older trainers wrote the rows with json.dumps, in another key order; a torn last line is skipped."""
    old = {"step": 1, "epoch": 0.25, "loss": 2.0, "loss_feedback": 2.1, "loss_rationale": 1.9, "lr": 1e-5,
           "grad_norm": None, "tokens_per_s": 100.0}  # fmt: skip
    path = tmp_path / "train_log.jsonl"
    path.write_text(json.dumps(old) + "\n" + '{"step": 2, "lo')
    assert read_step_log(path, TrainStepRow) == [TrainStepRow(1, 0.25, 2.0, 1e-5, None, 100.0, 2.1, 1.9)]


def test_a_diverged_step_round_trips_as_none_and_each_log_keeps_its_own_figures(tmp_path):
    path = tmp_path / "dpo_log.jsonl"
    row = DpoStepRow(3, 1.0, math.nan, 1e-6, 0.5, 10.0, 0.75, 0.2)
    path.write_bytes(encode_row(row))
    (back,) = read_step_log(path, DpoStepRow)
    assert back.loss is None and (back.reward_accuracy, back.reward_margin) == (0.75, 0.2)
    assert read_step_log(path, TrainStepRow) == []  # a DPO row is no training row
    assert read_step_log(tmp_path / "absent.jsonl", TrainStepRow) == []
