"""preferences.jsonl: pairs of reviewed rationales of the same sample, better one chosen, in TRL's format."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from core.errors import DataError
from core.samples import DecidedSample, RationaleOutcome
from dataset.preferences import load_preferences, preference_pairs, write_preferences


def sample(sample_id: str, means: dict[str, float | None], *, failed: tuple[str, ...] = ()) -> DecidedSample:
    rationales = [
        RationaleOutcome(teacher=t, text=None if t in failed else f"{t} explains {sample_id}.", mean=m,
                         accepted=m is not None and m >= 4)
        for t, m in means.items()
    ]  # fmt: skip
    return DecidedSample(
        id=sample_id, task="svamp", question=f"Question {sample_id}?", gold="3", student_answer="2",
        rationales=rationales,
    )  # fmt: skip


def test_pairs_rank_the_better_rationale_first_and_respect_the_margin() -> None:
    pairs = preference_pairs(sample("7", {"a": 4.5, "b": 2.0, "c": 4.0}), min_margin=1.0)

    assert {(p.chosen_teacher, p.rejected_teacher) for p in pairs} == {("a", "b"), ("c", "b")}
    for p in pairs:
        assert p.id == "7" and p.chosen_score > p.rejected_score
        assert p.margin == pytest.approx(p.chosen_score - p.rejected_score) and p.margin >= 1.0
        assert p.chosen[0].content == f"{p.chosen_teacher} explains 7."
        assert p.rejected[0].content == f"{p.rejected_teacher} explains 7."
    # a vs c differ by 0.5 < 1.0: no pair; with no minimum, a pair.
    assert ("a", "c") in {(p.chosen_teacher, p.rejected_teacher) for p in preference_pairs(
        sample("7", {"a": 4.5, "b": 2.0, "c": 4.0}), min_margin=0.0)}  # fmt: skip


def test_ties_unscored_and_failed_rationales_make_no_pair() -> None:
    assert preference_pairs(sample("1", {"a": 3.0, "b": 3.0}), min_margin=0.0) == []
    assert preference_pairs(sample("2", {"a": 5.0, "b": None}), min_margin=0.0) == []
    assert preference_pairs(sample("3", {"a": 5.0, "b": 1.0}, failed=("b",)), min_margin=0.0) == []


def test_the_file_holds_only_same_sample_pairs_in_trls_conversational_format(tmp_path: Path) -> None:
    samples = [sample("1", {"a": 5.0, "b": 1.0}), sample("2", {"a": 2.0, "b": 4.5, "c": 1.0}), sample("3", {"a": 4.0})]
    (tmp_path / "dataset.jsonl").write_bytes(b"".join(msgspec.json.encode(s) + b"\n" for s in samples))

    assert write_preferences(tmp_path, min_margin=1.0) == 4
    rows = [json.loads(line) for line in (tmp_path / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        # TRL's conversational preference format: prompt = user turns, chosen / rejected = one assistant turn.
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert row["prompt"][0]["content"].endswith(f"Question {row['id']}?")
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["chosen"][0]["content"].endswith(f"explains {row['id']}.")
        assert row["rejected"][0]["content"].endswith(f"explains {row['id']}.")
        assert row["chosen_score"] > row["rejected_score"]
    assert len(load_preferences(tmp_path / "preferences.jsonl")) == 4


def test_no_pairs_is_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "dataset.jsonl").write_bytes(msgspec.json.encode(sample("1", {"a": 4.0, "b": 4.0})) + b"\n")
    write_preferences(tmp_path, min_margin=0.5)
    with pytest.raises(DataError, match=r"no preference pairs.*\[dpo\]\.min_margin") as err:
        load_preferences(tmp_path / "preferences.jsonl")
    assert "\n" not in str(err.value)
