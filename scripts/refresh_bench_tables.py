"""Rewrite the bench tables quoted in the README and docs/ from the committed cells.

    python scripts/refresh_bench_tables.py [DIR=RENDER_FROM ...]

Every table between `<!-- bench: DIR [columns=a,b] [reference=c] -->` and `<!-- /bench -->` is
replaced by the table `titok bench --render DIR [--columns a,b] [--reference c]` prints with the
same header, keeping the rows the page quotes (by their first cell). The test
`test_documented_tables_are_rendered_from_committed_cells` checks the result. `DIR=RENDER_FROM`
renders DIR's blocks from another folder's cells: a copy of only the committed ones while a bench
is still writing cells into DIR. Prose around the tables is not touched: read it again.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from titok_bench.report import MARKDOWN_TABLE, QUOTED_BENCH, render_quoted

ROOT = Path(__file__).resolve().parents[1]


def first_cell(row: str) -> str:
    return row.split("|")[1].strip()


def refreshed(table: str, rendered: str) -> str | None:
    """The rendered table with `table`'s header and quoted rows, or None if there is none."""
    if table in rendered:
        return table
    header, *rows = table.splitlines(keepends=True)
    for candidate in MARKDOWN_TABLE.findall(rendered):
        new_header, *new_rows = candidate.splitlines(keepends=True)
        if new_header != header:
            continue
        quoted = {first_cell(row) for row in rows[1:]}  # rows[0] is the |---| line
        kept = [row for row in new_rows[1:] if first_cell(row) in quoted]
        text = "".join([new_header, new_rows[0], *kept])
        if len(kept) == len(rows) - 1 and text in rendered:
            return text
    return None


def main(argv: list[str]) -> int:
    sources = dict(arg.split("=", 1) for arg in argv)
    failures = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()

        def refresh_block(match: re.Match[str], page: Path = page) -> str:
            nonlocal failures
            opening, folder, columns, reference, block, closing = match.groups()
            rendered = render_quoted(Path(sources.get(folder, ROOT / folder)), columns, reference)
            for table in MARKDOWN_TABLE.findall(block):
                new = refreshed(table, rendered)
                if new is None:
                    failures += 1
                    print(f"{page.name}: {folder}: no rendered table for:\n{table}")
                elif new != table:
                    block = block.replace(table, new)
            return opening + block + closing

        new_text = QUOTED_BENCH.sub(refresh_block, text)
        if new_text != text:
            page.write_text(new_text)
            print(f"refreshed {page.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
