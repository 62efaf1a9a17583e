"""Answer and grade a list of questions with a backend, reusing stored answers: the core of exam and eval.

Stored answers come out first (a resumed exam streams every earlier mistake
again before any new one), then fresh ones as the backend finishes them. Fresh
answers are committed a batch at a time, so a killed run loses at most one batch.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from core.config import GraderName
from core.records import Question
from prompts.sets import PromptSet, prompt_set
from prompts.student import PromptFormat
from student.answers_store import AnswerSlot, AnswersStore, StoredAnswer, prompt_sha
from student.backend import StudentBackend
from tasks import answer_type_of
from tasks.authors_grader import as_committee_answer, authors_correct, authors_final_answer


def grade(question: Question, text: str, sha: str, grader: GraderName = "committee") -> StoredAnswer:
    """The student's `text` for `question`, with its extracted final answer and verdict.

    `grader`: "committee" (the task's answer type, a custom grader included) or "authors" (the FAIR authors' string
    comparison, `tasks.authors_grader`).
    """
    if grader == "authors":
        theirs = authors_final_answer(question.task, text, question.options)
        final = as_committee_answer(question.task, theirs)
        correct = authors_correct(question.task, theirs, question.gold, question.gold_text)
    else:
        graded = answer_type_of(question.task).grade(text, question.gold, question.options, sample_id=question.id)
        final, correct = graded.answer, graded.correct
    return StoredAnswer(question_id=question.id, prompt_sha=sha, text=text, final_answer=final, correct=correct)


async def answer_all(
    questions: Sequence[Question],
    backend: StudentBackend,
    store: AnswersStore,
    fmt: PromptFormat,
    *,
    split: str,
    prompts: PromptSet | None = None,
    grader: GraderName = "committee",
) -> AsyncGenerator[tuple[Question, StoredAnswer, bool], None]:
    """Yield `(question, graded answer, fresh)` for every question: stored ones first, then new ones.

    `fresh` is False for an answer taken from the store. Questions of several tasks
    may be mixed; each task is keyed in the store on its own. `prompts` (default: the
    committee set) words the question: its exam prompt on the train split, its eval
    prompt on the test split. Stored answers are graded again with `grader`, so a
    change of grader (or a grader fix) applies to answers already paid for.
    """
    fingerprint = backend.sampling.fingerprint(fmt)
    wording = prompts or prompt_set("committee")
    render = wording.exam_prompt if split == "train" else wording.eval_prompt
    texts = [render(backend.tokenizer, fmt, q) for q in questions]
    shas = [prompt_sha(p) for p in texts]
    slots = {task: AnswerSlot(task, split, backend.model_id, fingerprint) for task in {q.task for q in questions}}
    stored = {task: store.answered(slot) for task, slot in slots.items()}

    todo: list[int] = []
    for i, q in enumerate(questions):
        hit = stored[q.task].get(q.id)
        if hit is not None and hit.prompt_sha == shas[i]:
            yield q, grade(q, hit.text, hit.prompt_sha, grader), False
        else:
            todo.append(i)
    if not todo:
        return

    pending: dict[str, list[StoredAnswer]] = {task: [] for task in slots}
    n_pending = 0

    def flush() -> None:
        nonlocal n_pending
        for task, answers in pending.items():
            store.add(slots[task], answers)
            answers.clear()
        n_pending = 0

    try:
        async with aclosing(backend.generate([texts[i] for i in todo])) as completions:
            async for k, text in completions:
                q = questions[todo[k]]
                answer = grade(q, text, shas[todo[k]], grader)
                pending[q.task].append(answer)
                n_pending += 1
                if n_pending >= backend.batch_size:
                    flush()
                yield q, answer, True
    finally:
        # Keep what was generated even when the consumer stops early or is cancelled.
        flush()
