"""The benchmarks: loading splits, gold answers, answer extraction and grading, and imported
mistakes (the messages teachers are sent live in `prompts.messages`).

Everything others call is re-exported here; the modules behind it each do one job.
"""

from tasks.answers import extract_answer, is_correct, normalize_answer
from tasks.definitions import answer_type_of, task_def
from tasks.family import Family, family
from tasks.loaders import LoadReport, SkippedRecord, load_split, load_split_report
from tasks.mistakes_import import import_mistakes
from tasks.scores import parse_score, parse_structured_score, review_score

__all__ = [
    "Family",
    "LoadReport",
    "SkippedRecord",
    "answer_type_of",
    "extract_answer",
    "family",
    "import_mistakes",
    "is_correct",
    "load_split",
    "load_split_report",
    "normalize_answer",
    "parse_score",
    "parse_structured_score",
    "review_score",
    "task_def",
]
