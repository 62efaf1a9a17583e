"""The run report's PNG plots (matplotlib, Agg backend: no display needed).

Each function draws one figure from data already in hand and returns the file it
wrote, or None when there is nothing to draw, so a partial run simply has fewer plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: report runs happen on headless machines
import matplotlib.pyplot as plt

from accounting.ledger import Series


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_call_rate(rates: Mapping[str, Series], rpm: Mapping[str, float | None], path: Path) -> Path | None:
    """Calls per second per teacher over the run, each against its RPM limit (dashed)."""
    if not rates:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for teacher, series in rates.items():
        (line,) = ax.plot(series.t_s, series.values, label=teacher)
        limit = rpm.get(teacher)
        if limit:
            ax.axhline(
                limit / 60.0,
                color=line.get_color(),
                linestyle="--",
                linewidth=1,
                label=f"{teacher} limit ({limit:g} rpm)",
            )
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("calls per second")
    ax.set_title("Teacher calls per second")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_cumulative_usd(spend: Mapping[str, Series], path: Path) -> Path | None:
    """Cumulative USD per dataset over the run (calls with a known price)."""
    if not spend:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for dataset, series in spend.items():
        ax.step(series.t_s, series.values, where="post", label=dataset)
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("USD")
    ax.set_title("Cumulative spend per dataset")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_train_loss(steps: Sequence[int], curves: Mapping[str, Sequence[float | None]], path: Path) -> Path | None:
    """Training loss curves (joint, feedback, rationale) per optimizer step."""
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, values in curves.items():
        points = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Training loss")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_accuracy(
    bars: Mapping[str, tuple[tuple[float, float, float] | None, tuple[float, float, float] | None]], path: Path
) -> Path | None:
    """Accuracy before and after training per dataset, with 95% intervals.

    `bars` maps a task to (before, after), each (accuracy, ci_low, ci_high) or None.
    """
    if not any(b or a for b, a in bars.values()):
        return None
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(bars) + 2), 4))
    width = 0.38
    for offset, label, which in ((-width / 2, "before", 0), (width / 2, "after", 1)):
        xs, ys, errs = [], [], [[], []]
        for i, pair in enumerate(bars.values()):
            point = pair[which]
            if point is not None:
                acc, lo, hi = point
                xs.append(i + offset)
                ys.append(100 * acc)
                errs[0].append(100 * (acc - lo))
                errs[1].append(100 * (hi - acc))
        if xs:
            ax.bar(xs, ys, width, yerr=errs, capsize=4, label=label)
    ax.set_xticks(range(len(bars)), list(bars))
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Student accuracy before and after FAIR training")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_variants(bars: Mapping[tuple[str, str], tuple[float, float, float]], path: Path) -> Path | None:
    """Accuracy per variant (bars grouped by dataset) with 95% intervals; `bars` maps (variant, task) to
    (accuracy, ci_low, ci_high)."""
    if not bars:
        return None
    variants = list(dict.fromkeys(v for v, _ in bars))
    tasks = list(dict.fromkeys(t for _, t in bars))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(variants) * len(tasks) + 2), 4))
    width = 0.8 / len(variants)
    for k, variant in enumerate(variants):
        xs, ys, errs = [], [], [[], []]
        for i, task in enumerate(tasks):
            if (variant, task) in bars:
                acc, lo, hi = bars[(variant, task)]
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(100 * acc)
                errs[0].append(100 * (acc - lo))
                errs[1].append(100 * (hi - acc))
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=variant)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Baselines and ablations")
    ax.legend(fontsize="small")
    return _save(fig, path)
