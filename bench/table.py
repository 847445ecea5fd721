"""Plain-text tables for benchmark output."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(title: str, rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return f"{title}\n  (no rows)"
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join("-" * w for w in widths)
    out = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), line]
    out += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return "" if value is None else str(value)


def print_table(title: str, rows: Sequence[dict[str, object]]) -> None:
    print(format_table(title, rows), end="\n\n", flush=True)
