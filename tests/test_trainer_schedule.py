"""The trainer settings the authors used: LR schedules after warmup, and the effective-batch warning."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from core.config import TrainSection, effective_batch_warning
from trainer.ds_config import build_scheduler, warmup_steps


def _lrs(schedule: str, total: int = 20, warmup_ratio: float = 0.1) -> list[float]:
    train = TrainSection(lr=1.0, warmup_ratio=warmup_ratio, lr_schedule=schedule)  # type: ignore[arg-type]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train.lr)
    sched = build_scheduler(opt, train, total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_warmup_is_honoured_then_the_schedule(schedule: str) -> None:
    lrs = _lrs(schedule)
    warmup = warmup_steps(TrainSection(warmup_ratio=0.1), 20)
    assert warmup == 2
    assert lrs[0] < lrs[1] < 1.0 and lrs[warmup] == pytest.approx(1.0)
    after = lrs[warmup:]
    if schedule == "constant":
        assert after == pytest.approx([1.0] * len(after))
    elif schedule == "linear":
        steps = [a - b for a, b in pairwise(after)]
        assert steps == pytest.approx([steps[0]] * len(steps)) and steps[0] > 0
    else:
        mid = len(after) // 2
        assert after[mid] == pytest.approx(0.5 * (1 + math.cos(math.pi * mid / 18)))
        assert all(a >= b for a, b in pairwise(after))


def test_effective_batch_warns_unless_it_is_the_papers_16() -> None:
    assert effective_batch_warning(TrainSection(num_processes=1, micro_batch_size=8, grad_accum=2)) is None
    assert effective_batch_warning(TrainSection(num_processes=2, micro_batch_size=4, grad_accum=2)) is None
    warning = effective_batch_warning(TrainSection(num_processes=4, micro_batch_size=8, grad_accum=2))
    assert warning is not None and "64" in warning and "16" in warning and "\n" not in warning
