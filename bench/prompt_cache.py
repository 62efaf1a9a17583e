"""What prompt caching could save on FAIR's review and feedback calls, per benchmark and prompt set.

    python -m bench.prompt_cache [--questions 100] [--data ../shared/data]

For each benchmark (the demo SVAMP questions, and GSM8K, StrategyQA, LogiQA where the
data folder has them) the questions are taken as mistakes of a committee of three
scripted teachers (emulator/fair_script.py writes their rationales). Every review and
feedback prompt is rendered in run order; a call's shared prefix is the longest one it
has in common with an earlier call of the same stage to the same teacher (a reviewer's
other review of the sample: instructions, question and hint; otherwise the template's
head). Nothing is sent.

Priced at Anthropic's rates (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing):
a cache write costs 1.25x the input price, a read 0.1x; a call whose prefix is read
from the cache wrote it on an earlier call. Only prefixes of at least `--min-tokens`
(1024 for most Claude models, 2048-4096 for some; OpenAI's automatic caching also starts
at 1024, https://platform.openai.com/docs/guides/prompt-caching) are cached at all.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from core.records import Mistake, Question, mistake_from
from emulator.fair_script import FairScript
from emulator.spec import AnswerRequest
from emulator.tokens import count_tokens
from prompts.sets import prompt_set
from tasks import load_split

TEACHERS = ("model-a", "model-b", "model-c")
TASKS = ("svamp", "gsm8k", "strategyqa", "logiqa")
CACHE_WRITE, CACHE_READ = 1.25, 0.10
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class CacheFigure(msgspec.Struct, kw_only=True):
    """One benchmark and prompt set: review and feedback input tokens, and what caching could save."""

    task: str
    prompts: str
    calls: int
    input_tokens: int
    shared_tokens: int
    # Shared-prefix tokens in prefixes long enough to cache.
    cacheable_tokens: int
    # Share of the calls' input cost saved at Anthropic's cache rates: if every shared prefix
    # were cached, and with the minimum length applied.
    saving_unlimited: float
    saving: float


def _common_prefix(a: str, b: str) -> int:
    # Characters, not path parts: a prompt prefix is cached up to the first differing character.
    return len(os.path.commonprefix([a, b]))  # noqa: RUF071


def _mistake(q: Question, answer: str) -> Mistake:
    return mistake_from(q, answer)


def _ask(script: FairScript, model: str, text: str) -> str:
    return script(
        AnswerRequest(provider="anthropic", model=model, messages=[("user", text)], max_tokens=512, temperature=0.8)
    )


def measure(task: str, questions: Sequence[Question], prompts: str, min_tokens: int) -> CacheFigure:
    """The review and feedback calls of `questions` as mistakes, and what caching their shared prefixes saves."""
    script = FairScript(questions)
    pset = prompt_set(prompts)
    last: dict[tuple[str, str], str] = {}
    calls = input_tokens = shared = cacheable = 0
    cost_plain = cost_unlimited = cost_cached = 0.0
    for q in questions:
        wrong = _mistake(q, "")
        student = _ask(script, "student", pset.teacher_messages("rationale", wrong)[-1].content)
        m = _mistake(q, student)
        rationales = {t: _ask(script, t, pset.teacher_messages("rationale", m)[-1].content) for t in TEACHERS}
        for teacher in TEACHERS:
            prompts_of_call = [("feedback", pset.teacher_messages("feedback", m)[-1].content)]
            prompts_of_call += [
                ("review", pset.teacher_messages("review", m, rationale=rationales[author])[-1].content)
                for author in TEACHERS
                if author != teacher
            ]
            for stage, text in prompts_of_call:
                tokens = count_tokens(text)
                previous = last.get((teacher, stage))
                prefix = count_tokens(text[: _common_prefix(previous, text)]) if previous is not None else 0
                last[(teacher, stage)] = text
                calls += 1
                input_tokens += tokens
                shared += prefix
                cost_plain += tokens
                # The earlier call wrote the prefix (1.25x), this one reads it (0.1x): the pair
                # pays 1.35 instead of 2 for it, booked here as 0.1 + the write's extra 0.25.
                cost_unlimited += tokens - prefix * (1 - CACHE_READ - (CACHE_WRITE - 1))
                if prefix >= min_tokens:
                    cacheable += prefix
                    cost_cached += tokens - prefix * (1 - CACHE_READ - (CACHE_WRITE - 1))
                else:
                    cost_cached += tokens
    return CacheFigure(
        task=task,
        prompts=prompts,
        calls=calls,
        input_tokens=input_tokens,
        shared_tokens=shared,
        cacheable_tokens=cacheable,
        saving_unlimited=1 - cost_unlimited / cost_plain if cost_plain else 0.0,
        saving=1 - cost_cached / cost_plain if cost_plain else 0.0,
    )


def benchmark_questions(task: str, data: Path, limit: int) -> list[Question] | None:
    """Up to `limit` questions of `task` from `data/<task>` (SVAMP: the demo set when absent); None when none.

    The test split: its prompts have the same shape as the train split's, and LogiQA's train
    file is not in every data folder.
    """
    folder = data / task
    if folder.is_dir():
        return load_split(task, str(folder), "test", limit=limit)  # type: ignore[arg-type]
    if task == "svamp":
        return load_split("svamp", "demo", "test", limit=limit)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=100, help="per benchmark (default 100)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with <task>/ benchmark files")
    parser.add_argument("--min-tokens", type=int, default=1024, help="shortest cacheable prefix (default 1024)")
    args = parser.parse_args()
    print(
        f"{'benchmark':<11} {'prompts':<10} {'calls':>6} {'input tok':>10} {'shared':>7} {'cacheable':>10} "
        f"{'saving if all cached':>21} {'saving':>7}"
    )
    for task in TASKS:
        questions = benchmark_questions(task, args.data, args.questions)
        if not questions:
            print(f"{task:<11} (no data in {args.data / task})")
            continue
        for prompts in ("committee", "paper"):
            f = measure(task, questions, prompts, args.min_tokens)
            print(
                f"{task:<11} {prompts:<10} {f.calls:>6} {f.input_tokens:>10,} {f.shared_tokens / f.input_tokens:>7.1%} "
                f"{f.cacheable_tokens / f.input_tokens:>10.1%} {f.saving_unlimited:>21.1%} {f.saving:>7.1%}"
            )


if __name__ == "__main__":
    main()
