"""Token buckets, AIMD, full-jitter backoff and the prompt-token estimate, on a hand-stepped clock."""

from __future__ import annotations

import json
import random

import pytest

from core.calls import ChatRequest, Message
from emulator.tokens import count_prompt_tokens
from engine.backoff import backoff_s, retry_delay_s
from engine.concurrency import Aimd
from engine.limiter import TokenBucket
from engine.tokens import estimate_request_tokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_continuously_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=600, burst_s=2.0, clock=clock)  # 10/s, holds 20
    assert bucket.capacity == 20
    bucket.take(20)
    assert bucket.wait_s(1) == pytest.approx(0.1)
    clock.now += 0.5
    assert bucket.level() == pytest.approx(5)
    clock.now += 60
    assert bucket.level() == pytest.approx(20)


def test_bucket_clamps_a_charge_above_capacity_so_it_can_be_admitted() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=60_000, burst_s=1.0, clock=clock)  # 1,000 tokens
    assert bucket.clamp(5_000) == 1_000
    assert bucket.wait_s(5_000) == 0.0


def test_refund_gives_back_a_charge_but_never_above_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=60_000, clock=clock, start_fill=0.5)
    bucket.take(400)
    bucket.refund(300)
    assert bucket.level() == pytest.approx(400)
    bucket.refund(10_000)
    assert bucket.level() == pytest.approx(1_000)


def test_drain_keeps_the_bucket_empty_for_the_pause() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=1200, clock=clock)  # 20/s
    bucket.drain(for_s=0.5)
    assert bucket.wait_s(1) == pytest.approx(0.55)


def test_set_rate_keeps_what_accrued_and_shrinks_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=1200, clock=clock)
    bucket.set_rate(600)
    assert bucket.capacity == 10
    assert bucket.level() == pytest.approx(10)
    bucket.take(10)
    assert bucket.wait_s(1) == pytest.approx(0.1)


def test_aimd_shrinks_once_per_event_and_grows_back_additively() -> None:
    cap = Aimd(64, floor=1, factor=0.5, step=1)
    assert cap.on_congestion(admitted_seq=10, next_seq=20)
    # Calls 11..19 were already in flight when the limit was hit: same event.
    assert not any(cap.on_congestion(admitted_seq=s, next_seq=25) for s in range(11, 20))
    assert cap.value == 32 and cap.events == 1
    assert cap.on_congestion(admitted_seq=20, next_seq=30)  # admitted after the shrink: new event
    assert cap.value == 16
    for _ in range(100):
        cap.on_success()
    assert cap.value == 64
    for seq in range(10):
        cap.on_congestion(admitted_seq=100 + 10 * seq, next_seq=101 + 10 * seq)
    assert cap.value == 1  # never under the floor


def test_aimd_success_floor_and_lowered_ceiling() -> None:
    rate = Aimd(1200, floor=1, factor=0.5, step=0)
    rate.on_congestion(0, 1)
    rate.on_success(floor=900)
    assert rate.value == 900
    rate.lower_ceiling(600)
    assert rate.value == rate.ceiling == 600
    rate.lower_ceiling(2000)  # a higher "limit" never raises the configured one
    assert rate.ceiling == 600


def test_backoff_is_full_jitter_within_exponential_bounds() -> None:
    rng = random.Random(7)
    for retry in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (retry - 1))
        samples = [backoff_s(retry, rng=rng) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole window, not a thin band under the ceiling.
        assert min(samples) < 0.1 * ceiling and max(samples) > 0.9 * ceiling
    with pytest.raises(ValueError):
        backoff_s(0)


def test_server_delay_wins_over_backoff() -> None:
    assert retry_delay_s(3, 1.25) == 1.25
    assert 0.0 <= retry_delay_s(1, None) <= 0.5
    assert 0.0 <= retry_delay_s(1, 0.0) <= 0.5


def _benchmark_requests(data) -> list[ChatRequest]:
    """Whole teacher-like requests built from every benchmark's questions."""
    texts = [json.loads(line)["question"] for line in (data / "gsm8k" / "test.jsonl").open()]
    texts += [f"{r['Body']} {r['Question']}" for r in json.loads((data / "svamp" / "SVAMP.json").read_text())]
    texts += [r["question"] for r in json.loads((data / "strategyqa" / "strategyqa_train.json").read_text())]
    lines = (data / "logiqa" / "Test.txt").read_text().split("\n")
    texts += ["\n".join(lines[i + 2 : i + 8]) for i in range(0, len(lines) - 7, 8)]
    system = Message("system", "You are a careful teacher. Explain step by step, then give the final answer.")
    return [ChatRequest(model="m", messages=(system, Message("user", t))) for t in texts]


@pytest.mark.full_data("measures the estimate's fit on the four real benchmarks")
def test_prompt_estimate_is_close_to_the_emulator_count(shared_data) -> None:
    requests = _benchmark_requests(shared_data)
    errors = []
    for request in requests:
        true = count_prompt_tokens((m.role, m.content) for m in request.messages)
        errors.append((estimate_request_tokens(request) - true) / true)
    mean_abs = sum(abs(e) for e in errors) / len(errors)
    worst = max(abs(e) for e in errors)
    bias = sum(errors) / len(errors)
    print(
        f"prompt estimate vs emulator on {len(errors)} requests: "
        f"mean |err| {mean_abs:.1%}, worst {worst:.1%}, bias {bias:+.1%}"
    )
    assert mean_abs < 0.05
    assert worst < 0.25
    assert abs(bias) < 0.02
