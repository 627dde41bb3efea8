"""The report's tables in the terminal (rich): same rows as report.md and report.html."""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from edgecv.report.summary import Table as ReportTable

TONE_STYLES = {"measured": "green", "estimated": "yellow", "pass": "green", "fail": "bold red", "worse": "red",
               "ship": "bold", "muted": "dim"}


def rich_table(t: ReportTable, title: str | None = None) -> Table:
    """A report table as a rich Table: tones as colours, notes as the caption."""
    table = Table(title=title, caption="\n".join(t.notes) or None, caption_justify="left", caption_style="dim",
                  box=box.SIMPLE_HEAD, title_style="bold")
    for header, align in zip(t.header, t.align):
        # names, paths and figures are never cut or wrapped; only prose ("text") columns wrap
        table.add_column(header, justify="right" if align == "right" else "left", no_wrap=align != "text",
                         overflow="fold")
    for row in t.rows:
        table.add_row(*(Text(c.text, style=TONE_STYLES.get(c.tone) or "") for c in row))
    return table


def wide(console: Console, width: int = 240) -> Console:
    """`console`, or, when it writes to a file or a CI log (no terminal, so rich assumes 80 columns), a
    console of the same stream wide enough for the summary table's columns."""
    if console.is_terminal or console.width >= width:
        return console
    return Console(file=console.file, width=width, no_color=console.no_color, highlight=False)


def text_table(*headers: str, prose: tuple[str, ...] = (), right: tuple[str, ...] = (), **options) -> Table:
    """A rich Table whose columns hold IDs, paths and figures (never wrapped, never cut) except the
    `prose` ones (wrapped, a word too long for the column folded, not cut); `right`: right-aligned
    columns. Print it with print_table()."""
    table = Table(**options)
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left", no_wrap=header not in prose,
                         overflow="fold")
    return table


def print_table(console: Console, table: Table, plain_width: int = 240) -> None:
    """Print `table` without cutting a cell of its no_wrap columns (IDs, paths, figures). At a terminal
    the other columns wrap, and the table runs wider than the window only if those cells need it.
    Into a pipe or a file (where rich assumes 80 columns) each row is one line (for grep) up to
    `plain_width` columns; past that the prose columns wrap."""
    options = console.options.update_width(100_000)
    least = natural = 1  # the left border
    for column in table.columns:
        sizes = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
        widest = max(size.maximum for size in sizes)
        least += (widest if column.no_wrap else max(size.minimum for size in sizes)) + 3  # padding, border
        natural += widest + 3
    width = least if console.is_terminal else max(least, min(natural, plain_width))
    if width > console.width:
        console = Console(file=console.file, width=width, no_color=console.no_color, highlight=False)
    console.print(table)
