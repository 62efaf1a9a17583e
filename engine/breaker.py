"""A teacher's circuit breaker: stop sending to an account that cannot pay or authenticate.

Out of quota, out of credit or a refused key (`AccountError`) does not pass by
retrying, and every request sent meanwhile is refused the same way (sometimes
billed, always counted against abuse limits). A few such answers in a row open
the breaker for the rest of the run: the lane fails every queued and later call
at once, unsent, with the cause; the other teachers go on. A rerun after topping
up starts closed and resumes the failed calls.

    >>> breaker = Breaker(threshold=2)
    >>> breaker.record_account_error("out of quota"); breaker.open
    False
    >>> breaker.record_account_error("out of quota"); breaker.open
    True
"""

from __future__ import annotations

# One answer could be a provider hiccup (a 401 from a node mid key rotation); a few
# in a row cannot. Calls already in flight when it opens still land, which bounds
# what is sent after the quota ran out to about the lane's in-flight cap.
DEFAULT_THRESHOLD = 3


class Breaker:
    """Counts account errors in a row; `open` (with `cause`) once `threshold` is reached."""

    __slots__ = ("cause", "in_a_row", "open", "threshold")

    def __init__(self, threshold: int = DEFAULT_THRESHOLD):
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.in_a_row = 0
        self.cause: str | None = None
        self.open = False

    def record_account_error(self, cause: str) -> None:
        """An answer said the account cannot be used; opens the breaker after `threshold` in a row."""
        self.in_a_row += 1
        self.cause = cause
        if self.in_a_row >= self.threshold:
            self.open = True

    def record_success(self) -> None:
        """An answer came through: the account works (an open breaker stays open for this run)."""
        self.in_a_row = 0
