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


def test_invalid_scores_decide_nothing_until_the_last_review():
    # A reviewer that gave no readable score leaves the mean to the others.
    assert decided([None], pending=1, threshold=4.0) is None
    assert decided([None, None], pending=0, threshold=4.0) is False
    assert decided([None, 4], pending=0, threshold=4.0) is True
    # A 5 beside an invalid score stays open with one review pending (a 1 makes the mean 3); with
    # two 5s even a 1 leaves the mean at 3.67, above a threshold of 3.
    assert decided([5, None], pending=1, threshold=4.0) is None
    assert decided([5, 5], pending=1, threshold=3.0) is True


def test_strict_decides_at_the_threshold_itself():
    # The authors' `> 3`: a mean of exactly 3 is rejected, so [3] with one review pending is open
    # (a 4 or 5 makes it pass) and [3, 3] is closed.
    assert decided([3], pending=1, threshold=3.0, strict=True) is None
    assert decided([3, 3], pending=0, threshold=3.0, strict=True) is False
    assert decided([3, 3], pending=0, threshold=3.0) is True
    # Two 1s and one pending review cannot reach a mean above 3 (at best 7/3).
    assert decided([1, 1], pending=1, threshold=3.0, strict=True) is False
