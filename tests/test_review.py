"""The acceptance rule and the skip-decided logic against brute force."""

from __future__ import annotations

import itertools

import pytest

from engine.review import accepted, decided, mean_score


def test_mean_leaves_invalid_out():
    assert mean_score([4, None, 5]) == 4.5
    assert mean_score([None, None]) is None


@pytest.mark.parametrize("threshold", [3.5, 4.0])
def test_paper_rule_and_authors_rule(threshold):
    assert accepted([4, 4], threshold)
    assert accepted([4, 3], threshold) is (threshold == 3.5)
    assert not accepted([3, 3], threshold)
    assert not accepted([None, None], threshold)
    assert accepted([None, 5], threshold)


def test_authors_rule_is_mean_above_three_exactly():
    # collect_teacher_res.py: `sum(total_score) / len(total_score) > 3` over the valid scores.
    for scores in itertools.product([None, 1, 2, 3, 4, 5], repeat=3):
        valid = [s for s in scores if s is not None]
        assert accepted(scores, 3.0, strict=True) is (bool(valid) and sum(valid) / len(valid) > 3), scores
    # Three reviewers (four teachers): 3.33 passes the authors' rule, not "3.5".
    assert accepted([3, 3, 4], 3.0, strict=True) and not accepted([3, 3, 4], 3.5)
    assert not accepted([3, 3], 3.0, strict=True) and accepted([3, 3], 3.0)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("threshold", [1.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])
def test_decided_agrees_with_brute_force(threshold, strict):
    outcomes = [None, 1, 2, 3, 4, 5]
    for n_known in range(0, 4):
        for known in itertools.product(outcomes, repeat=n_known):
            for pending in range(0, 3):
                finals = {
                    accepted(list(known) + list(rest), threshold, strict)
                    for rest in itertools.product(outcomes, repeat=pending)
                }
                verdict = decided(list(known), pending, threshold, strict)
                if len(finals) == 1:
                    assert verdict == finals.pop(), (known, pending, threshold, strict)
                else:
                    assert verdict is None, (known, pending, threshold, strict)


def test_first_score_of_one_decides_with_two_reviewers_at_threshold_four():
    # The example: one other reviewer left, a first score of 1: (1 + 5) / 2 = 3 < 4.
    assert decided([1], pending=1, threshold=4.0) is False
