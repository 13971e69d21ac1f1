"""Append-only logs of records with fixed fields (the events ledger, the training runs), kept as columns.

At 100,000 labs a run logs millions of funding rounds and training runs; as a list of dicts they would take
gigabytes and much of the run's time. A :class:`ColumnLog` keeps each appended batch as columns (a value
shared by the batch once, a sequence, or numbers with a format applied only when read) and reads as a list
of dicts, in order, for the code that wants records.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import numpy as np


class Formatted:
    """A column of strings made from numbers when read: ``fmt.format(x)`` for each ``x``."""

    __slots__ = ("fmt", "values")

    def __init__(self, fmt: str, values):
        self.fmt = fmt
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def tolist(self) -> list[str]:
        vals = self.values.tolist() if isinstance(self.values, np.ndarray) else self.values
        return [self.fmt.format(x) for x in vals]


def _as_list(col, n: int) -> list:
    if isinstance(col, Formatted | np.ndarray):
        return col.tolist()
    if isinstance(col, list | tuple):
        return list(col)
    return [col] * n  # one value for the whole batch


class ColumnLog(Sequence):
    """Records with the fields ``fields``, appended a batch at a time with :meth:`extend`; reads as a
    sequence of dicts (``log[i]``, iteration, ``len``), and as columns with :meth:`columns`."""

    def __init__(self, fields: Sequence[str]):
        self.fields = tuple(fields)
        self._batches: list[tuple[int, dict]] = []
        self._ends: list[int] = []  # cumulative record count after each batch
        self._n = 0

    def extend(self, **cols) -> None:
        """Append a batch: each field a sequence (list, tuple, numpy array or :class:`Formatted`) of the
        batch's length, or one value for every record of the batch. Numpy arrays read back as Python
        numbers (``tolist``)."""
        missing = set(self.fields) - set(cols)
        if missing or len(cols) != len(self.fields):
            raise ValueError(f"ColumnLog.extend: fields {sorted(missing)} missing or unknown fields given")
        lengths = {len(v) for v in cols.values() if isinstance(v, list | tuple | np.ndarray | Formatted)}
        if len(lengths) != 1:
            raise ValueError(f"ColumnLog.extend: columns of different lengths {sorted(lengths)}")
        n = lengths.pop()
        if n == 0:
            return
        self._batches.append((n, cols))
        self._n += n
        self._ends.append(self._n)

    def __len__(self) -> int:
        return self._n

    def _batch_rows(self, n: int, cols: dict) -> list[dict]:
        lists = [_as_list(cols[f], n) for f in self.fields]
        f = self.fields
        return [dict(zip(f, vals, strict=True)) for vals in zip(*lists, strict=True)]

    def __iter__(self) -> Iterator[dict]:
        for n, cols in self._batches:
            yield from self._batch_rows(n, cols)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self)[i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("ColumnLog index out of range")
        b = bisect.bisect_right(self._ends, i)
        n, cols = self._batches[b]
        start = self._ends[b] - n
        return self._batch_rows(n, cols)[i - start]

    def columns(self) -> dict[str, list]:
        """Every field as one list, in record order."""
        out: dict[str, list] = {f: [] for f in self.fields}
        for n, cols in self._batches:
            for f in self.fields:
                out[f].extend(_as_list(cols[f], n))
        return out

    def __eq__(self, other) -> bool:
        if isinstance(other, ColumnLog | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return repr(list(self))
