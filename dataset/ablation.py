"""The paper's baselines and ablations, decided from one committee run's samples.

Every variant needs a subset of what the full committee bought: a single teacher
without review uses that teacher's rationale and feedback, the committee without
review every rationale, alpha 0 / alpha 1 the same data as the full method with
another loss weight. So a set of variants costs the teacher calls of one run; each
variant's USD is what it would have paid on its own (the calls it uses).
"""

from __future__ import annotations

import sqlite3

import msgspec

from accounting.ledger import stage_ledger
from core.config import Config
from core.errors import ConfigError
from core.samples import DecidedSample


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """One baseline or ablation: its name and the switches that make it (None: as configured)."""

    name: str
    peer_review: bool = True
    single_teacher: str | None = None
    alpha: float | None = None


def paper_variants(cfg: Config) -> list[Variant]:
    """The paper's set: the full method, each teacher alone, no review, alpha 0 and alpha 1."""
    return [
        Variant(name="fair"),
        *(Variant(name=f"single_{t.name}", single_teacher=t.name, peer_review=False) for t in cfg.teachers),
        Variant(name="no_review", peer_review=False),
        Variant(name="alpha_0", alpha=0.0),
        Variant(name="alpha_1", alpha=1.0),
    ]


def parse_variant(spec: str, cfg: Config) -> Variant:
    """A variant from its command-line name: fair, no_review, alpha_0, alpha_1 or single_<teacher>.

    Raises ConfigError naming the choices.
    """
    known = {v.name: v for v in paper_variants(cfg)}
    if spec not in known:
        raise ConfigError(f"--variants: unknown variant {spec!r}; choose from {', '.join(known)}")
    return known[spec]


def restrict(sample: DecidedSample, variant: Variant) -> DecidedSample:
    """`sample` as the variant would have decided it: the rationales and feedback it may use, accepted by its rule."""
    if variant.peer_review and variant.single_teacher is None:
        return sample
    keep = (lambda teacher: teacher == variant.single_teacher) if variant.single_teacher else (lambda teacher: True)
    rationales = [msgspec.structs.replace(r, accepted=bool(r.text)) for r in sample.rationales if keep(r.teacher)]
    feedback = [f for f in sample.feedback if keep(f.teacher)]
    missing = [m for m in sample.missing if not m.startswith("review:") and keep(m.split(":", 1)[1])]
    included = not missing and any(r.accepted for r in rationales) and any(f.text for f in feedback)
    return msgspec.structs.replace(sample, rationales=rationales, feedback=feedback, missing=missing, included=included)


def variant_usd(conn: sqlite3.Connection, dataset: str, variant: Variant) -> float | None:
    """What the variant's calls cost on `dataset` (None when some are unpriced)."""
    total: float | None = 0.0
    for row in stage_ledger(conn, dataset):
        if row.stage == "review" and not (variant.peer_review and variant.single_teacher is None):
            continue
        if variant.single_teacher is not None and row.teacher != variant.single_teacher:
            continue
        total = None if total is None or row.usd is None else total + row.usd
    return total
