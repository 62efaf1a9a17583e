"""The student's exam and eval answers, kept in the run's SQLite database so a rerun redoes nothing.

The run's `store.sqlite` is shared with store/calls.py; this module owns only
the `student_` tables. A row is keyed by (task, split, question id, model,
sampling fingerprint): another model or other sampling settings never reuse a
stale answer. The prompt's hash is kept beside the answer, and a row whose prompt
has since changed (a new template) counts as unanswered.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS student_answers (
    task TEXT NOT NULL,
    split TEXT NOT NULL,
    question_id TEXT NOT NULL,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    prompt_sha TEXT NOT NULL,
    text TEXT NOT NULL,
    final_answer TEXT,
    correct INTEGER NOT NULL,
    answered_at REAL NOT NULL,
    PRIMARY KEY (task, split, question_id, model, fingerprint)
);
"""


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """One graded answer of the student to one question."""

    question_id: str
    prompt_sha: str
    text: str
    final_answer: str | None
    correct: bool


class AnswerSlot(msgspec.Struct, frozen=True):
    """Which answers a lookup or write is about: everything in the key but the question id."""

    task: str
    split: str
    model: str
    fingerprint: str


def prompt_sha(prompt: str) -> str:
    """The hash stored beside an answer to notice a changed prompt."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


class AnswersStore:
    """Reads and batched writes of the `student_answers` table.

    Writes are small transactions on the caller's thread: one per finished
    generation batch, a fraction of a millisecond in WAL mode against seconds of
    generation, so they need no writer task of their own.

        store = AnswersStore.open(out_dir / "store.sqlite")
        done = store.answered(AnswerSlot("svamp", "train", model_id, fingerprint))
        store.add(slot, [StoredAnswer(...), ...])
        store.close()
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path) -> AnswersStore:
        """Open (creating if needed) the database at `path` in WAL mode with our table."""
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # A killed process loses nothing committed in WAL with NORMAL; only an OS crash can.
        conn.execute("PRAGMA synchronous=NORMAL")
        # The engine's writer shares the file; wait for its commits instead of failing.
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
        return cls(conn)

    def answered(self, slot: AnswerSlot) -> dict[str, StoredAnswer]:
        """Every stored answer in `slot`, by question id."""
        rows = self._conn.execute(
            "SELECT question_id, prompt_sha, text, final_answer, correct FROM student_answers "
            "WHERE task = ? AND split = ? AND model = ? AND fingerprint = ?",
            (slot.task, slot.split, slot.model, slot.fingerprint),
        )
        return {
            qid: StoredAnswer(question_id=qid, prompt_sha=sha, text=text, final_answer=final, correct=bool(ok))
            for qid, sha, text, final, ok in rows
        }

    def add(self, slot: AnswerSlot, answers: Iterable[StoredAnswer]) -> None:
        """Store `answers` in one transaction, replacing older answers to the same questions."""
        now = time.time()
        rows = [
            (
                slot.task,
                slot.split,
                a.question_id,
                slot.model,
                slot.fingerprint,
                a.prompt_sha,
                a.text,
                a.final_answer,
                int(a.correct),
                now,
            )
            for a in answers
        ]
        if not rows:
            return
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO student_answers VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AnswersStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
