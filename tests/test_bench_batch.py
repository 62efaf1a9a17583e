"""bench.pipeline --batch on a few mistakes: the same dataset as all sync, the batch teacher at half its USD."""

from __future__ import annotations

import argparse

import pytest

from bench.pipeline import compare_batch

pytestmark = pytest.mark.anyio


async def test_a_batch_teacher_beside_two_sync_ones_decides_the_same_dataset_at_half_its_price():
    args = argparse.Namespace(
        mistakes=4,
        teachers=3,
        rpm=[60000.0],
        tpm=None,
        latency_ms=5.0,
        latency_sigma=0.0,
        max_in_flight=16,
        batch_teachers=[0],
        batch_delay_s=0.5,
    )
    result = await compare_batch(args)
    assert result.same_dataset
    assert result.batch.batch_teachers == ["t0"] and result.batch.batches >= 1 and result.batch.batch_requests > 0
    assert result.sync.batches == 0 and result.sync.calls == result.batch.calls
    # OpenAI bills batches at half; the sync teachers' bills do not move.
    assert result.batch.usd_per_teacher["t0"] == pytest.approx(result.sync.usd_per_teacher["t0"] / 2)
    assert result.batch.usd_per_teacher["t1"] == pytest.approx(result.sync.usd_per_teacher["t1"])
    assert result.batch.duplicates == result.sync.duplicates == 0
