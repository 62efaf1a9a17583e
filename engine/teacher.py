"""One teacher as the scheduler sees it: ask a question, get an answer, pay for it once.

`Teacher.ask` is the only path by which a teacher call happens. In order: look
the request's content key up in the store (a completed answer is never bought
twice), join an identical request already in flight, send it through the
teacher's lane (rate limits, retries; each attempt reserves its worst-case cost
against the spending cap when the lane admits it), then record the outcome in the
store with everything its attempts billed or may have billed: completed, failed,
skipped by the cap, or cancelled.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import msgspec

from adapters.anthropic import min_cacheable_tokens
from core.calls import NO_DETAIL, ChatRequest, Message
from core.capabilities import teacher_request
from core.config import Stage, TeacherSection
from engine.batch_lane import BatchLane
from engine.budget import Budget, CallTab, CostFn, billed_row
from engine.parking import park
from engine.tokens import MESSAGE_OVERHEAD_TOKENS, REPLY_OVERHEAD_TOKENS
from store.calls import CallRow, CallSlot, Store, request_key


@dataclass(frozen=True, slots=True)
class Answer:
    """What a call produced: `text` None means it failed or was not sent (see `error`)."""

    text: str | None
    error: str | None = None
    skipped: bool = False


class _Pending:
    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.answer: Answer | None = None


class Teacher:
    """A configured teacher bound to its lane, prices, the run store and the budget.

    `batch`: the teacher's batch lane when its `mode` is "batch"; `lane` then serves the
    requests that fall back to sync (`fallback = "sync"`).
    """

    def __init__(
        self,
        section: TeacherSection,
        lane,
        *,
        store: Store,
        budget: Budget,
        cost_usd: CostFn,
        estimate_tokens: Callable[[str], int],
        batch: BatchLane | None = None,
    ):
        self.section = section
        self.name = section.name
        self.lane = lane
        self.batch = batch
        self._store = store
        self._budget = budget
        self._cost_usd = cost_usd
        self._estimate = estimate_tokens
        self._pending: dict[str, _Pending] = {}
        # Cache prefixes being written by a call in flight (see `_cache_turn`).
        self._writing: dict[str, anyio.Event] = {}

    def request(
        self, messages: tuple[Message, ...], *, structured: bool = False, shared_prefix_chars: int = 0
    ) -> ChatRequest:
        """The request this teacher sends for `messages`, shaped for its model (core/capabilities.py).

        `structured`: ask for a `ReviewScore` through the provider's structured output.
        `shared_prefix_chars`: how much of the last message other calls to this teacher repeat;
        marked for caching where the provider caches on request and the prefix is long enough.
        """
        return msgspec.structs.replace(
            teacher_request(self.section, messages),
            structured_score=structured,
            cache_prefix_chars=shared_prefix_chars if self._cacheable(messages, shared_prefix_chars) else 0,
        )

    def _cacheable(self, messages: tuple[Message, ...], prefix_chars: int) -> bool:
        # Only Anthropic caches on request (cache_control); OpenAI and Gemini cache repeated
        # prefixes by themselves. Below the model's minimum a breakpoint caches nothing.
        if prefix_chars <= 0 or self.section.provider != "anthropic":
            return False
        head = [m.content for m in messages[:-1]] + [messages[-1].content[:prefix_chars]]
        tokens = sum(MESSAGE_OVERHEAD_TOKENS + self._estimate(text) for text in head)
        return tokens >= min_cacheable_tokens(self.section.model)

    def worst_case_usd(self, request: ChatRequest, cost_usd: CostFn | None = None) -> float:
        """The most one attempt at `request` can cost: its prompt (estimated, with a
        margin) and all of its output limit (max_tokens and any thinking budget), at
        the teacher's prices or `cost_usd`'s (batch prices). An abandoned attempt is booked at this."""
        prompt = REPLY_OVERHEAD_TOKENS + sum(
            MESSAGE_OVERHEAD_TOKENS + self._estimate(m.content) for m in request.messages
        )
        # The estimate is off by 3 % on average and up to ~23 % on tiny prompts
        # (engine/tokens.py): the margin keeps a worst case from being an underestimate.
        cost = cost_usd or self._cost_usd
        return cost(math.ceil(prompt * _PROMPT_MARGIN), request.output_limit, NO_DETAIL) or 0.0

    async def ask(
        self,
        messages: tuple[Message, ...],
        *,
        dataset: str,
        sample_id: str,
        stage: Stage,
        target: str = "",
        structured: bool = False,
        shared_prefix_chars: int = 0,
    ) -> Answer:
        """Get this teacher's answer to `messages`, from the store if already bought (see `request`)."""
        request = self.request(messages, structured=structured, shared_prefix_chars=shared_prefix_chars)
        key = request_key(self.section.provider, request)
        slot = CallSlot(key=key, dataset=dataset, sample_id=sample_id, teacher=self.name, stage=stage, target=target)

        hit = self._store.completed(key)
        if hit is not None:
            await self._reused(hit, slot)
            return Answer(hit.text)

        pending = self._pending.get(key)
        if pending is not None:
            # An identical request is in flight for another slot: wait for its answer.
            if self.batch is not None:
                await park()
            await pending.done.wait()
            assert pending.answer is not None
            hit = self._store.completed(key)
            if hit is not None:
                await self._reused(hit, slot)
            return pending.answer

        pending = self._pending[key] = _Pending()
        try:
            if self.batch is not None:
                pending.answer = await self._batched(request, slot)
                return pending.answer
            async with self._cache_turn(request):
                pending.answer = await self._send(request, slot)
            return pending.answer
        finally:
            del self._pending[key]
            if pending.answer is None:
                pending.answer = Answer(None, error="cancelled")
            pending.done.set()

    @asynccontextmanager
    async def _cache_turn(self, request: ChatRequest) -> AsyncIterator[None]:
        """Wait while another call writes the cache prefix `request` marks, then go.

        An Anthropic cache entry is readable only once the response writing it has begun
        (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching): a reviewer's reviews
        of one sample sent together would each write the prefix at 1.25x and none read it at 0.1x.
        """
        if request.cache_prefix_chars <= 0:
            yield
            return
        # What the breakpoint covers: the tools (a structured score's), earlier messages, the marked text.
        marked = request.messages[-1].content[: request.cache_prefix_chars]
        encoded = msgspec.json.encode((request.model, request.structured_score, request.messages[:-1], marked))
        prefix = hashlib.sha256(encoded).hexdigest()
        writing = self._writing.get(prefix)
        if writing is not None:
            await writing.wait()
            yield
            return
        writing = self._writing[prefix] = anyio.Event()
        try:
            yield
        finally:
            del self._writing[prefix]
            writing.set()

    async def _batched(self, request: ChatRequest, slot: CallSlot) -> Answer:
        """Through the batch lane; a request that kept failing in batches goes through the sync lane
        (`fallback = "sync"`). No cache turn: calls of one batch run side by side anyway."""
        assert self.batch is not None
        reply = await self.batch.ask(slot, request, self.worst_case_usd(request, self.batch.cost_usd), queued=park)
        row = reply.row
        if row is None:
            return await self._send(request, slot)
        if row.status == "skipped":
            return Answer(None, error="spending cap reached", skipped=True)
        if row.status == "completed":
            # A batch an earlier run submitted recorded its answer in the slot it was planned for.
            await self._reused(row, slot)
        return Answer(row.text, error=row.error)

    async def _reused(self, hit: CallRow, slot: CallSlot) -> None:
        """Record a stored answer reused for another slot (a duplicate question, an identical rationale).

        Once per slot: a sample decided again by a rerun adds no row.
        """
        where = (slot.dataset, slot.sample_id, slot.stage, slot.target)
        if (hit.dataset, hit.sample_id, hit.stage, hit.target) != where and not self._store.reused_in(slot):
            # In the mode (and batch) of the answer reused, so the cost report counts it with that work.
            reuse = CallRow(
                **msgspec.structs.asdict(slot), status="cached", text=hit.text, usd=0.0, mode=hit.mode, batch=hit.batch
            )
            await self._store.add_call(reuse)

    async def _send(self, request: ChatRequest, slot: CallSlot) -> Answer:
        tab = CallTab(self._budget, worst_usd=self.worst_case_usd(request), cost_usd=self._cost_usd)
        try:
            outcome = await self.lane.call(request, tab=tab)
        except BaseException:
            # Ctrl-C or a sibling's failure: record the call as not done, with what its
            # attempts billed or may have billed, then let the cancellation go on.
            # Shielded, or the write would be cancelled too.
            with anyio.CancelScope(shield=True):
                await self._store.add_call(billed_row(slot, tab, status="cancelled", error="cancelled"))
            raise
        if outcome.status == "skipped":
            # Shielded like the other rows: earlier attempts of this call may have been
            # billed, and a cancellation landing here would leave no row of that money.
            with anyio.CancelScope(shield=True):
                await self._store.add_call(billed_row(slot, tab, status="skipped", error="budget"))
            return Answer(None, error="spending cap reached", skipped=True)
        result = outcome.result
        row = billed_row(
            slot,
            tab,
            status="completed" if result is not None else "failed",
            attempts=outcome.attempts,
            retries=outcome.retries,
            http_429=outcome.http_429,
            text=result.text if result else None,
            latency_s=result.latency_s if result else 0.0,
            error=outcome.error,
            http_status=outcome.http_status,
            unusable=outcome.unusable,
        )
        # Shielded: a Ctrl-C landing right after the answer must not lose a paid-for row.
        with anyio.CancelScope(shield=True):
            await self._store.add_call(row)
        return Answer(row.text, error=outcome.error)


# Prompt estimate margin for worst cases (see `Teacher.worst_case_usd`).
_PROMPT_MARGIN = 1.25
