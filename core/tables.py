"""One table, two renderings: Markdown for the report files, rich for the terminal.

Reports build `Table`s of already formatted cells once and render them both ways,
so report.md and the screen never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import rich.table

UNKNOWN = "unknown"


class Table(msgspec.Struct, kw_only=True):
    """A titled table of formatted cells: the first `text_columns` are labels (left), the rest figures (right)."""

    title: str
    headers: list[str]
    rows: list[list[str]] = []
    note: str = ""
    text_columns: int = 1


def to_markdown(table: Table) -> str:
    """The table as a GitHub-flavoured Markdown section (a bold title line, then the grid)."""
    lines = [f"**{table.title}**", ""]
    if table.rows:
        lines.append("| " + " | ".join(table.headers) + " |")
        aligns = ["---" if i < table.text_columns else "---:" for i in range(len(table.headers))]
        lines.append("|" + "|".join(aligns) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table.rows]
    else:
        lines.append("(none)")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def to_rich(table: Table) -> rich.table.Table:
    """The table as a rich Table for the terminal."""
    out = rich.table.Table(title=table.title, caption=table.note or None, title_justify="left")
    for i, header in enumerate(table.headers):
        out.add_column(header, justify="left" if i < table.text_columns else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


def fmt_usd(value: float | None) -> str:
    """USD with enough digits for cheap calls; "unknown" for a missing price (never 0)."""
    if value is None:
        return UNKNOWN
    return f"${value:,.4f}" if abs(value) < 10 else f"${value:,.2f}"


def fmt_num(value: float | int | None, digits: int = 1) -> str:
    """An int with thousands separators, a float with `digits` decimals; "-" when absent."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def fmt_pct(value: float | None) -> str:
    """A 0..1 fraction as a percentage; "-" when absent."""
    return "-" if value is None else f"{100 * value:.1f}%"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as "1h02m", "3m05s" or "12.3s"."""
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


def join_markdown(title: str, sections: Sequence[str]) -> str:
    """A Markdown document: a top-level title, then the sections separated by blank lines."""
    return f"# {title}\n\n" + "\n".join(sections)
