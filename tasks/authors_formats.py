"""How the FAIR authors' files store each of their four tasks' gold answer, as the paper prompt set shows it.

The paper set (`prompts/sets.py: PaperPrompts`) reproduces the authors' strings byte for byte; these
per-task formats are theirs, so they live with the tasks, not the prompts. Any other task shows its
normalised gold.
"""

from __future__ import annotations

from core.config import TaskName
from core.records import Mistake, Question
from tasks.definitions import LETTERS


def authors_hint(item: Question | Mistake) -> str:
    """The gold answer as the authors' mistake files store it, which is their teachers' hint.

    GSM8K: the whole published solution ending in `#### N`; StrategyQA: `true.` or
    `false.`, a tab, then the facts; SVAMP: the number; LogiQA: the option's index 0-3
    (their `str(correct_option)`).
    """
    gold = item.gold
    text = item.gold_text.strip()
    if item.task == "gsm8k" and "####" in text:
        return text
    if item.task == "strategyqa":
        # Imported mistakes keep the authors' string; loaded questions keep the facts only.
        return text if text.startswith(f"{gold}.\t") else f"{gold}.\t{text}"
    if item.task == "logiqa":
        return str(LETTERS.index(gold))
    return gold


def authors_train_hint(task: TaskName, gold: str) -> str:
    """The gold answer in the authors' learn-from-mistakes record (their data.py).

    GSM8K: the part after `####`; StrategyQA: the part before the tab (`true.`);
    LogiQA: the stored option index; SVAMP: the stored answer. `gold` is normalised.
    """
    if task == "strategyqa":
        return f"{gold}."
    if task == "logiqa":
        return str(LETTERS.index(gold))
    return gold
