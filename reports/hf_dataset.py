"""The distilled data as a Hugging Face `DatasetDict` in `out_dir/hf_dataset/`, with a dataset card.

Splits: `train` (train.jsonl, what the student was trained on), `samples`
(dataset.jsonl: every decided sample with all rationales, peer scores and
feedback) and `preferences` (preferences.jsonl, when it has pairs). Peer scores
are per-reviewer maps in dataset.jsonl; Arrow wants one schema per column, so
they become lists of `{reviewer, score}`. The card is `README.md` with the YAML
header the Hub reads (https://huggingface.co/docs/hub/datasets-cards): licence,
task categories, size category, then the teachers, prompts, acceptance rates,
cost per included sample and the licences of the source benchmarks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec

from core.config import Config, TaskName
from core.jsonl import decode_lines
from core.records import RecordDecoder, TrainRecord
from core.samples import DecidedSample
from prompts import BUILTIN, template
from reports.run_report import RunReport
from tasks.family import family

log = logging.getLogger(__name__)

# From each benchmark's source repository (see shared/data/README.md for provenance).
SOURCE_LICENSES: dict[TaskName, tuple[str, str]] = {
    "gsm8k": ("mit", "openai/grade-school-math (MIT)"),
    "svamp": ("mit", "arkilpatel/SVAMP (MIT)"),
    "strategyqa": ("mit", "eladsegal/strategyqa (MIT; HF ChilleD/StrategyQA is tagged MIT)"),
    "logiqa": ("other", "lgw863/LogiQA-dataset (no licence stated)"),
}
# A task the config defines: its data's licence is the user's to state (`[hub] license`).
DEFINED_LICENSE = ("other", "the run's own data (set `[hub] license` to its licence)")


def card_license(cfg: Config) -> str:
    """`[hub] license`, else the sources' shared licence, else `other`."""
    if cfg.hub.license:
        return cfg.hub.license
    licenses = {SOURCE_LICENSES.get(d.task, DEFINED_LICENSE)[0] for d in cfg.datasets}
    return licenses.pop() if len(licenses) == 1 else "other"


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for n rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _sample_row(sample: DecidedSample) -> dict:
    row = msgspec.to_builtins(sample)
    for r in row["rationales"]:
        r["scores"] = [{"reviewer": k, "score": v} for k, v in sorted(r["scores"].items())]
        r["skipped"] = [{"reviewer": k, "reason": v} for k, v in sorted(r["skipped"].items())]
    return row


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train_rows(path: Path) -> list[dict]:
    """train.jsonl's records as Arrow rows (older files' `gold_answer` read as `gold`)."""
    if not path.is_file():
        return []
    records = decode_lines(path, path.read_bytes().splitlines(), RecordDecoder(TrainRecord), "training record")
    return [msgspec.to_builtins(r) for r in records]


def export_dataset(cfg: Config, report: RunReport) -> Path | None:
    """Write `out_dir/hf_dataset/` (loadable with `datasets.load_from_disk`) and its card; None without data."""
    from datasets import Dataset, DatasetDict

    out = cfg.out_dir
    samples_path = out / "dataset.jsonl"
    if not samples_path.is_file():
        return None
    decoder = RecordDecoder(DecidedSample)
    samples = [_sample_row(decoder.decode(line)) for line in samples_path.read_bytes().splitlines() if line.strip()]
    splits = {"train": _train_rows(out / "train.jsonl"), "samples": samples,
              "preferences": _read_jsonl(out / "preferences.jsonl")}  # fmt: skip
    target = out / "hf_dataset"
    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items() if rows}).save_to_disk(str(target))
    (target / "README.md").write_text(dataset_card(cfg, report, {k: len(v) for k, v in splits.items()}))
    log.info("dataset exported: %s", target)
    return target


def dataset_card(cfg: Config, report: RunReport, sizes: dict[str, int]) -> str:
    """The dataset card: the Hub's YAML header, then how the data was made and what it cost."""
    header = {
        "license": card_license(cfg),
        "language": ["en"],
        "task_categories": ["text-generation", "question-answering"],
        "size_categories": [size_category(max(sizes.values(), default=0))],
        "pretty_name": f"Committee distillation: {cfg.run.name}",
        "tags": ["distillation", "reasoning", "synthetic", "peer-review", "fair"],
    }
    lines = ["---", card_yaml(header), "---", "", f"# {header['pretty_name']}", ""]
    lines += [
        'Reasoning data distilled with FAIR (Li et al., ACL Findings 2025, "Learning from Committee"): a student '
        "model sat an exam; each mistake got a rationale and feedback from every teacher, and each rationale was "
        "peer-reviewed by the other teachers (accepted at a mean score "
        f"{'>' if cfg.review.strict else '>='} {cfg.review.threshold}).",
        "",
        "| split | rows | what |",
        "|---|---|---|",
        f"| `train` | {sizes['train']} | instruction records: question, the student's wrong answer, one feedback, one "
        "accepted rationale |",
        f"| `samples` | {sizes['samples']} | every decided mistake with all rationales, peer scores and feedback |",
        f"| `preferences` | {sizes['preferences']} | DPO pairs (TRL conversational format) of rationales of the same "
        f"question, chosen mean score - rejected >= {cfg.dpo.min_margin} |",
        "",
        "## Teachers",
        "",
        "| name | provider | model | temperature | max tokens |",
        "|---|---|---|---|---|",
        *[f"| {t.name} | {t.provider} | {t.model} | {t.temperature} | {t.max_tokens} |" for t in cfg.teachers],
        "",
        "## Acceptance and cost per dataset",
        "",
        "| dataset | samples | included | USD | USD per included sample | acceptance per teacher |",
        "|---|---|---|---|---|---|",
    ]
    for section in report.datasets:
        cost = section.cost
        if cost is None:
            continue
        accept = ", ".join(f"{t} {a.rate:.0%}" for t, a in sorted(cost.acceptance.items()) if a.rate is not None)
        lines.append(f"| {section.task} | {cost.samples} | {cost.included} | {_usd(cost.total.usd)} | "
                     f"{_usd(cost.usd_per_included)} | {accept or 'n/a'} |")  # fmt: skip
    lines += ["", "## Sources and licences", ""]
    for d in cfg.datasets:
        lines.append(f"- {d.task}: {SOURCE_LICENSES.get(d.task, DEFINED_LICENSE)[1]}; questions from `{d.source}`.")
    lines += [
        "- The rationales, feedback and scores were written by the teacher models above; their providers' terms "
        "of use apply to them as well.",
        "",
        "## Prompts",
        "",
    ]
    for fam in sorted({family(d.task) for d in cfg.datasets}):
        names = (f"teacher_rationale_{fam}", f"teacher_feedback_{fam}", f"review_{fam}")
        # A family of the user's own has no built-in wording to show.
        for name in [n for n in names if BUILTIN.has(n)]:
            lines += [f"<details><summary><code>{name}</code></summary>", "", "```", template(name).strip(), "```",
                      "", "</details>", ""]  # fmt: skip
    lines += ["## Load it", "", "```python", "from datasets import load_from_disk",
              "data = load_from_disk(\"hf_dataset\")", "```", ""]  # fmt: skip
    return "\n".join(lines)


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def card_yaml(header: dict) -> str:
    """A flat YAML mapping of strings and lists of strings (all a card header needs); JSON-quoted scalars are YAML."""
    out = []
    for key, value in header.items():
        if isinstance(value, list):
            out.append(f"{key}:")
            out += [f"- {json.dumps(v)}" for v in value]
        else:
            out.append(f"{key}: {json.dumps(value)}")
    return "\n".join(out)
