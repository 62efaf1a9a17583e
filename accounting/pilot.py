"""Extrapolating a pilot: the full run's calls, tokens and USD from a random sample of its mistakes.

A pilot sends the whole FAIR graph for n of a dataset's N mistakes (drawn with the
run seed), so each pilot sample's calls per teacher x stage are measured, not
assumed: output lengths (thinking tokens included, as every provider bills them
as output), review calls that identical rationales share, skip options. The
full run's figure for a row is N times the pilot's per-sample mean; its 90%
interval is the t-interval of that total under sampling without replacement,
N * t(0.95, n-1) * s * sqrt((1 - n/N) / n), so a pilot of every mistake has
no uncertainty left and a pilot of one has no interval at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from accounting.calibration import SampleCalls

# t(0.95, df) for df = 1..30, two-sided 90%; beyond 30 the Cornish-Fisher series below is exact to 1e-3.
_T95 = (
    6.314,
    2.920,
    2.353,
    2.132,
    2.015,
    1.943,
    1.895,
    1.860,
    1.833,
    1.812,
    1.796,
    1.782,
    1.771,
    1.761,
    1.753,
    1.746,
    1.740,
    1.734,
    1.729,
    1.725,
    1.721,
    1.717,
    1.714,
    1.711,
    1.708,
    1.706,
    1.703,
    1.701,
    1.699,
    1.697,
)
_Z95 = 1.6448536


def t95(df: int) -> float:
    """The 95th percentile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df <= len(_T95):
        return _T95[df - 1]
    z = _Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


class Total(msgspec.Struct, frozen=True, kw_only=True):
    """An extrapolated total with its 90% interval (None when the pilot has a single sample)."""

    value: float
    low: float | None
    high: float | None


def extrapolate(per_sample: Sequence[float], population: int) -> Total:
    """The total over `population` samples from the per-sample values of a random subset of them."""
    n = len(per_sample)
    if n == 0:
        return Total(value=0.0, low=None, high=None)
    population = max(population, n)
    mean = sum(per_sample) / n
    value = population * mean
    if n == population:
        return Total(value=value, low=value, high=value)
    if n < 2:
        return Total(value=value, low=None, high=None)
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_sample) / (n - 1))
    half = t95(n - 1) * population * sd * math.sqrt((1 - n / population) / n)
    return Total(value=value, low=max(0.0, value - half), high=value + half)


def estimate_count(hits: int, examined: int, population: int) -> Total:
    """How many of `population` are hits, from `hits` among `examined` of them drawn at random.

    The interval is Wilson's score interval (a t-interval collapses when every
    examined question was a hit), at the sample size the finite population makes
    it worth: examined / (1 - examined/population).
    """
    if examined == 0:
        return Total(value=0.0, low=None, high=None)
    share = hits / examined
    if examined >= population:
        return Total(value=hits, low=hits, high=hits)
    n = examined / (1 - examined / population)
    z2 = _Z95**2
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 / (1 + z2 / n) * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return Total(
        value=population * share,
        low=population * max(centre - half, hits / population),
        high=population * min(centre + half, 1 - (examined - hits) / population),
    )


class Pilot(msgspec.Struct, kw_only=True):
    """One dataset's pilot: the sampled mistake ids and their measured calls."""

    task: str
    sample_ids: list[str]
    calls: list[SampleCalls]

    def per_sample(self, teacher: str | None, stage: str | None, field: str) -> list[float] | None:
        """`field` summed per pilot sample over the matching calls (0 for a sample without any).

        None when `field` is "usd" and a matching call has no known price.
        """
        sums = dict.fromkeys(self.sample_ids, 0.0)
        for c in self.calls:
            if (teacher is None or c.teacher == teacher) and (stage is None or c.stage == stage):
                value = getattr(c, field)
                if value is None:
                    return None
                sums[c.sample_id] += value
        return list(sums.values())

    def spent_usd(self) -> float | None:
        """What the pilot's calls cost (None when a price is unknown)."""
        values = self.per_sample(None, None, "usd")
        return None if values is None else sum(values)

    def latency_s(self, teacher: str) -> float | None:
        """Mean seconds per call of `teacher` in the pilot, if it made any."""
        calls = sum(c.calls for c in self.calls if c.teacher == teacher)
        return sum(c.latency_s for c in self.calls if c.teacher == teacher) / calls if calls else None
