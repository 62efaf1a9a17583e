"""The FAIR teacher graph, streamed: mistakes in, decided samples out.

For every mistake, every teacher is asked for a rationale and for feedback at
once; the moment a rationale arrives its peer reviews go out to every other
teacher; the sample is decided when its last review is in. There is no barrier
between stages: a slow provider delays only its own calls, and each teacher's
lane (its rate limits) is the only thing that bounds throughput.

Samples are worked on concurrently up to `samples_in_flight` (shared by all
datasets of the run), which bounds memory however many mistakes stream in. A
sample waiting on a batch teacher gives its place up (engine/parking.py), so a
mixed committee's sync teachers keep streaming while batches are out; a batch
teacher's calls go out in waves (rationales and feedback, then the reviews of the
rationales that came back) because each is asked when what it needs has arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import ObjectReceiveStream

from core.calls import Message
from core.config import ReviewSection, Stage
from core.records import Mistake
from core.samples import DecidedSample, FeedbackOutcome, RationaleOutcome, decision_settings
from engine.parking import sample_slot
from engine.review import decided, mean_score, passes
from engine.teacher import Teacher
from prompts.sets import PromptSet, prompt_set
from store.calls import CallRow, Store
from tasks import answer_type_of, review_score

log = logging.getLogger(__name__)

OnDecided = Callable[[DecidedSample], Awaitable[None]]

# Missing calls named in the run's last word; the rest are counted, so memory stays flat.
MISSING_EXAMPLES = 3


@dataclass
class TeachCounters:
    """Live counts for one dataset, read by the progress display and the summary."""

    received: int = 0
    decided: int = 0
    included: int = 0
    incomplete: int = 0
    resumed: int = 0
    not_started: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    # The latest one-line error per teacher whose call failed, for the run's last word.
    errors: dict[str, str] = field(default_factory=dict)


class Committee:
    """The teachers of a run and the review rule they apply to each other's rationales."""

    def __init__(
        self, teachers: Sequence[Teacher], review: ReviewSection, store: Store, prompts: PromptSet | None = None
    ):
        self.prompts: PromptSet = prompts or prompt_set("committee")
        # `single_teacher` (the authors' --teacher X baseline) asks that teacher alone.
        single = review.single_teacher
        # The teachers asked for rationale and feedback; every teacher may review.
        self.asked: list[Teacher] = [t for t in teachers if single in (None, t.name)]
        if len(teachers) < 2:
            raise ValueError("peer review needs at least two teachers")
        self.teachers = list(teachers)
        self.review = review
        self.settings = decision_settings(review)
        self.store = store
        # The latest one-line error per (dataset, teacher), for the run's last word.
        self.errors: dict[tuple[str, str], str] = {}

    def _messages(
        self, stage: Stage, m: Mistake, teacher: Teacher, rationale: str | None = None
    ) -> tuple[Message, ...]:
        return self.prompts.teacher_messages(stage, m, rationale=rationale, system=teacher.section.system_message)

    def _failed(self, m: Mistake, missing: list[str], slot: str, teacher: Teacher, error: str | None) -> None:
        missing.append(slot)
        if error:
            self.errors[(m.task, teacher.name)] = error

    async def decide(self, mistake: Mistake) -> DecidedSample:
        """Run every teacher call this mistake needs and decide the sample."""
        sample = DecidedSample(
            id=mistake.id,
            task=mistake.task,
            question=mistake.question,
            gold=mistake.gold,
            student_answer=mistake.student_answer,
            student_final_answer=mistake.student_final_answer,
            context=mistake.context,
            options=mistake.options,
            rationales=[RationaleOutcome(teacher=t.name, text=None) for t in self.asked],
            feedback=[FeedbackOutcome(teacher=t.name, text=None) for t in self.asked],
            decided_with=self.settings,
        )
        async with anyio.create_task_group() as tg:
            for teacher, outcome in zip(self.asked, sample.rationales, strict=True):
                tg.start_soon(self._rationale_and_reviews, mistake, teacher, outcome, sample.missing)
            for teacher, outcome in zip(self.asked, sample.feedback, strict=True):
                tg.start_soon(self._feedback, mistake, teacher, outcome, sample.missing)
        # Rationale and feedback lists keep the teachers' config order whatever
        # order the answers came in, so reruns give identical lines.
        sample.missing.sort()
        sample.included = (
            not sample.missing and any(r.accepted for r in sample.rationales) and any(f.text for f in sample.feedback)
        )
        return sample

    async def _feedback(self, m: Mistake, teacher: Teacher, out: FeedbackOutcome, missing: list[str]) -> None:
        answer = await teacher.ask(
            self._messages("feedback", m, teacher), dataset=m.task, sample_id=m.id, stage="feedback"
        )
        out.text = answer.text
        if answer.text is None:
            self._failed(m, missing, f"feedback:{teacher.name}", teacher, answer.error)

    async def _rationale_and_reviews(
        self, m: Mistake, teacher: Teacher, out: RationaleOutcome, missing: list[str]
    ) -> None:
        answer = await teacher.ask(
            self._messages("rationale", m, teacher), dataset=m.task, sample_id=m.id, stage="rationale"
        )
        if answer.text is None:
            self._failed(m, missing, f"rationale:{teacher.name}", teacher, answer.error)
            return
        out.text = rationale = answer.text
        graded = answer_type_of(m.task).grade(answer.text, m.gold, m.options, sample_id=m.id)
        out.answer, out.answer_correct = graded.answer, graded.correct
        if not self.review.peer_review or self.review.single_teacher:
            # The paper's baselines: every rationale is taken as it is, no review is bought.
            out.accepted = True
            return
        reviewers = [r for r in self.teachers if r is not teacher]

        if self.review.skip_wrong_answer and not out.answer_correct:
            # A rationale reaching a wrong final answer is rejected without paying for reviews.
            for r in reviewers:
                await self._skip(m, r, teacher, out, "wrong_answer")
            out.accepted = False
            return

        async def review(reviewer: Teacher) -> None:
            messages = self._messages("review", m, reviewer, rationale=rationale)
            reply = await reviewer.ask(
                messages,
                dataset=m.task,
                sample_id=m.id,
                stage="review",
                target=teacher.name,
                structured=self.review.structured,
                # A reviewer's other reviews of this sample repeat everything before the rationale.
                shared_prefix_chars=max(messages[-1].content.find(rationale), 0),
            )
            if reply.text is None:
                self._failed(m, missing, f"review:{reviewer.name}->{teacher.name}", reviewer, reply.error)
            else:
                out.scores[reviewer.name] = review_score(reply.text, structured=self.review.structured)

        if self.review.skip_decided:
            # One review at a time, so a decisive early score saves the rest. This
            # lengthens a sample's latency, not the run: other samples fill the lanes.
            for i, reviewer in enumerate(reviewers):
                verdict = decided(
                    list(out.scores.values()), len(reviewers) - i, self.review.threshold, self.review.strict
                )
                if verdict is not None:
                    for r in reviewers[i:]:
                        await self._skip(m, r, teacher, out, "decided")
                    break
                await review(reviewer)
        else:
            async with anyio.create_task_group() as tg:
                for reviewer in reviewers:
                    tg.start_soon(review, reviewer)

        out.scores = {r.name: out.scores[r.name] for r in reviewers if r.name in out.scores}
        out.mean = mean_score(out.scores.values())
        out.accepted = passes(out.mean, self.review.threshold, self.review.strict)

    async def _skip(self, m: Mistake, reviewer: Teacher, target: Teacher, out: RationaleOutcome, why: str) -> None:
        out.skipped[reviewer.name] = why  # type: ignore[assignment]
        await self.store.add_call(
            CallRow(
                key="",
                dataset=m.task,
                sample_id=m.id,
                teacher=reviewer.name,
                stage="review",
                target=target.name,
                status="skipped",
                error=why,
            )
        )


async def teach_dataset(
    committee: Committee,
    mistakes: ObjectReceiveStream[Mistake],
    *,
    limiter: anyio.CapacityLimiter,
    done_ids: frozenset[str],
    on_decided: OnDecided,
    counters: TeachCounters,
    budget_reached: Callable[[], bool],
    parked: anyio.CapacityLimiter | None = None,
) -> None:
    """Decide every mistake arriving on `mistakes`, at most `limiter` samples at once, and at most `parked`
    more that wait on a batch teacher (engine/parking.py; None: no bound).

    Samples in `done_ids` (decided by an earlier run with these settings and
    nothing missing) are passed over: rerunning a finished run sends nothing.
    Every other mistake is decided afresh; its calls already answered come from
    the store, so only calls that never existed are bought. Once the spending cap
    is reached no new sample starts; the rest are counted as not started.
    """

    async def work(m: Mistake, token: object) -> None:
        released = parking = holds_parked = False

        def release() -> None:
            # Once: when the sample first waits on a batch (engine/parking.py), or when it is decided.
            nonlocal released
            if not released:
                released = True
                limiter.release_on_behalf_of(token)

        async def park_sample() -> None:
            # Its other calls wait on their batches meanwhile; one of them trades the slot.
            nonlocal parking, holds_parked
            if parking:
                return
            parking = True
            if parked is not None:
                await parked.acquire_on_behalf_of(token)
                holds_parked = True
            release()

        try:
            with sample_slot(park_sample):
                sample = await committee.decide(m)
            counters.decided += 1
            counters.included += sample.included
            if sample.missing:
                counters.incomplete += 1
                counters.missing += len(sample.missing)
                room = MISSING_EXAMPLES - len(counters.missing_examples)
                counters.missing_examples += [f"{m.task}/{m.id}/{x}" for x in sample.missing[:room]]
                counters.errors.update(
                    {teacher: e for (task, teacher), e in committee.errors.items() if task == m.task}
                )
            await on_decided(sample)
        finally:
            release()
            if holds_parked:
                assert parked is not None
                parked.release_on_behalf_of(token)

    async with mistakes, anyio.create_task_group() as tg:
        async for mistake in mistakes:
            counters.received += 1
            if mistake.id in done_ids:
                counters.resumed += 1
                continue
            if budget_reached():
                counters.not_started += 1
                continue
            # Acquire before starting the task: this is the backpressure that keeps
            # the number of half-done samples (and memory) bounded.
            token = object()
            await limiter.acquire_on_behalf_of(token)
            tg.start_soon(work, mistake, token)
