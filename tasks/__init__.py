"""The benchmarks: loading splits, gold answers, answer extraction and grading, imported
mistakes, and the messages teachers are sent.

Everything others call is re-exported here; the modules behind it each do one job.
"""

from tasks.answers import extract_answer, is_correct, normalize_answer
from tasks.family import Family, family
from tasks.loaders import LoadReport, SkippedRecord, load_split, load_split_report
from tasks.messages import format_question, gold_hint, teacher_messages, template_name
from tasks.mistakes_import import import_mistakes
from tasks.scores import parse_score

__all__ = [
    "Family",
    "LoadReport",
    "SkippedRecord",
    "extract_answer",
    "family",
    "format_question",
    "gold_hint",
    "import_mistakes",
    "is_correct",
    "load_split",
    "load_split_report",
    "normalize_answer",
    "parse_score",
    "teacher_messages",
    "template_name",
]
