"""Months of a run: month index ``t`` (0 at ``run.start``) to and from the label 'YYYY-MM'."""

from __future__ import annotations


def month_label(start: str, t: int) -> str:
    """'YYYY-MM' of month index ``t`` counted from ``start``."""
    y, m = (int(x) for x in start.split("-"))
    k = y * 12 + (m - 1) + t
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def month_index(start: str, label: str) -> int:
    """Month index of 'YYYY-MM' counted from ``start``."""
    y0, m0 = (int(x) for x in start.split("-"))
    y, m = (int(x) for x in label.split("-"))
    return (y * 12 + m) - (y0 * 12 + m0)
