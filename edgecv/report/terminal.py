"""The report's tables in the terminal (rich): same rows as report.md and report.html."""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgecv.report.summary import Table as ReportTable

TONE_STYLES = {"measured": "green", "estimated": "yellow", "pass": "green", "fail": "bold red", "worse": "red",
               "ship": "bold", "muted": "dim"}


def rich_table(t: ReportTable, title: str | None = None) -> Table:
    """A report table as a rich Table: tones as colours, notes as the caption."""
    table = Table(title=title, caption="\n".join(t.notes) or None, caption_justify="left", caption_style="dim",
                  box=box.SIMPLE_HEAD, title_style="bold")
    for i, (header, align) in enumerate(zip(t.header, t.align)):
        table.add_column(header, justify="right" if align == "right" else "left", no_wrap=i == 0)
    for row in t.rows:
        table.add_row(*(Text(c.text, style=TONE_STYLES.get(c.tone) or "") for c in row))
    return table


def wide(console: Console, width: int = 240) -> Console:
    """`console`, or, when it writes to a file or a CI log (no terminal, so rich assumes 80 columns), a
    console of the same stream wide enough for the summary table's columns."""
    if console.is_terminal or console.width >= width:
        return console
    return Console(file=console.file, width=width, no_color=console.no_color, highlight=False)
