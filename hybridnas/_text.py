"""Plain-text output shared by the command lines."""
from __future__ import annotations

__all__ = ["table"]


def table(rows: list[list[str]], header: list[str]) -> str:
    """``rows`` under ``header`` in padded columns (the last one free text)."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    widths[-1] = 0  # last column is free text: no padding
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)
