"""How long a lane waits before trying a failed call again.

The server's delay comes first (the adapter parsed `retry-after-ms` / `retry-after`
into `Retryable.after_s`); without one we back off exponentially from 0.5 s, capped
at 8 s, as openai-python does, but with FULL jitter (uniform 0..backoff) instead of
its small downward jitter: hundreds of our calls hit one limit at the same moment,
and full jitter spreads their retries over the whole window instead of a thin band.
"""

from __future__ import annotations

import random

BASE_S = 0.5
CAP_S = 8.0


def backoff_s(retry: int, *, base_s: float = BASE_S, cap_s: float = CAP_S, rng: random.Random | None = None) -> float:
    """A full-jitter delay before retry number `retry` (1 for the first retry).

    Uniform in [0, min(cap_s, base_s * 2**(retry-1))].

    >>> 0.0 <= backoff_s(1) <= 0.5
    True
    """
    if retry < 1:
        raise ValueError(f"retry must be >= 1, got {retry}")
    # min() before the power would overflow a float for absurd retry counts.
    ceiling = cap_s if retry > 60 else min(cap_s, base_s * 2.0 ** (retry - 1))
    return (rng or random).uniform(0.0, ceiling)


def retry_delay_s(
    retry: int,
    after_s: float | None,
    *,
    base_s: float = BASE_S,
    cap_s: float = CAP_S,
    rng: random.Random | None = None,
) -> float:
    """The delay before retry number `retry`: the server's `after_s` when it sent a
    positive one, else full-jitter exponential backoff."""
    if after_s is not None and after_s > 0:
        return after_s
    return backoff_s(retry, base_s=base_s, cap_s=cap_s, rng=rng)
