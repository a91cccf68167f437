"""Plain-text tables for the terminal."""
from __future__ import annotations

__all__ = ["table"]


def table(rows: list[list], header: list[str]) -> str:
    """Left-aligned columns with a dashed rule under the header."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
