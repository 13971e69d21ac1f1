"""A run folder's tables in either format: CSV (the default) or Parquet (``abm run --format parquet``).

Writing: :func:`write_parquet` writes the typed columns of :mod:`abm.columns` as one Parquet file, the same
bytes for the same columns (zstd at a fixed level, fixed row groups, no timestamps; pyarrow's own version is
the only thing in the file that is not the data). Integers are int64, money and volumes float64, flags bool,
empty cells nulls, months plain strings, and the low-cardinality texts of :data:`DICTIONARY` (names, types,
kinds, statuses, ...) dictionary-encoded.

Reading: :func:`table_file` finds ``NAME.parquet`` or ``NAME.csv`` in a folder and :func:`read_table` reads
either into the same pandas DataFrame: the same columns, values and dtypes as ``pandas.read_csv`` gives for the
CSV file (texts as ``str``, nulls as NaN, so an integer column with empty cells is float64, as from CSV).
Errors are one line naming the file, raised as the caller's exception class.

This module imports pyarrow only when a Parquet file is written or read.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from abm.columns import Coded, typed_column

SUFFIX = {"csv": ".csv", "parquet": ".parquet"}  # file name ending of a table in each format
# Text columns written dictionary-encoded (few distinct values, many rows); read back as plain text.
DICTIONARY = frozenset({"name", "type", "kind", "payer", "payee", "status", "buyer", "seller", "unit", "event",
                        "agent", "lab"})
# Fixed writer settings: the same columns give the same bytes. Float columns are written with the
# BYTE_STREAM_SPLIT encoding (compresses better than plain doubles), every other column dictionary-encoded in the
# file (months, steps and ids repeat); see parquet_options.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": True, "version": "2.6",
                   "data_page_version": "1.0"}
ROW_GROUP = 1 << 20


class TableError(ValueError):
    """A table that cannot be read (missing, unreadable, a column missing); one line naming the file."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------------------------------------ finding
def table_file(folder: str | Path, name: str) -> Path:
    """``folder/NAME.parquet`` if it exists, else ``folder/NAME.csv`` (which may not exist either)."""
    folder = Path(folder)
    pq_path = folder / f"{name}.parquet"
    return pq_path if pq_path.is_file() else folder / f"{name}.csv"


def has_table(folder: str | Path, name: str) -> bool:
    """Whether ``folder`` holds ``NAME.parquet`` or ``NAME.csv``."""
    return table_file(folder, name).is_file()


def table_format(folder: str | Path, name: str = "timeseries") -> str | None:
    """``"parquet"`` or ``"csv"``: the format of ``folder``'s table ``name``; None if it has neither."""
    path = table_file(folder, name)
    return ("parquet" if path.suffix == ".parquet" else "csv") if path.is_file() else None


# ------------------------------------------------------------------------------------------------ writing
def _arrow_column(name: str, col, dictionary: frozenset[str]):
    import pyarrow as pa

    if isinstance(col, Coded):
        values = pa.array(col.values, type=pa.string())
        codes = pa.array(np.asarray(col.codes, dtype=np.int32), type=pa.int32())
        if name in dictionary:
            return pa.DictionaryArray.from_arrays(codes, values)
        return values.take(codes)
    if isinstance(col, np.ma.MaskedArray):
        return pa.array(np.asarray(col.data), mask=np.ma.getmaskarray(col), type=pa.from_numpy_dtype(col.dtype))
    if isinstance(col, np.ndarray):
        if col.dtype == np.float64:
            return pa.array(col, type=pa.float64(), from_pandas=True)  # NaN: an empty cell
        if col.dtype == bool:
            return pa.array(col, type=pa.bool_())
        if col.dtype.kind in "iu":
            return pa.array(col.astype(np.int64, copy=False), type=pa.int64())
        raise TypeError(f"column {name}: unsupported dtype {col.dtype}")
    arr = pa.array(list(col), type=pa.string())
    return arr.dictionary_encode() if name in dictionary else arr


def arrow_table(columns: dict, dictionary: frozenset[str] = DICTIONARY):
    """A pyarrow Table of typed columns (see :mod:`abm.columns`), in their order."""
    import pyarrow as pa

    names = list(columns)
    arrays = [_arrow_column(n, columns[n], dictionary) for n in names]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal length: {dict(zip(names, map(len, arrays), strict=True))}")
    return pa.table(arrays, names=names)


def parquet_options(schema) -> dict:
    """The writer settings for a table of ``schema``: :data:`PARQUET_OPTIONS` and the encodings by column type."""
    import pyarrow as pa

    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    others = [f.name for f in schema if not pa.types.is_floating(f.type)]
    return {**PARQUET_OPTIONS, "use_dictionary": others, "use_byte_stream_split": floats,
            "row_group_size": ROW_GROUP}


def write_table(path: str | Path, table) -> None:
    """Write a pyarrow Table as Parquet with the fixed settings."""
    import pyarrow.parquet as pq

    pq.write_table(table, str(path), **parquet_options(table.schema))


def write_parquet(path: str | Path, columns: dict, dictionary: frozenset[str] = DICTIONARY) -> None:
    """Write typed columns (see :mod:`abm.columns`) to ``path`` as Parquet."""
    write_table(path, arrow_table(columns, dictionary))


def write_parquet_chunks(path: str | Path, chunks, dictionary: frozenset[str] = DICTIONARY) -> int:
    """Write pieces of one table (an iterable of typed-column dicts, all with the same columns and types) to
    ``path`` as Parquet, one piece in memory at a time; each piece starts a row group. Returns the rows written.
    Nothing is written without a piece."""
    import pyarrow.parquet as pq

    writer = schema = None
    rows = 0
    try:
        for columns in chunks:
            table = arrow_table(columns, dictionary)
            del columns
            if writer is None:
                schema = table.schema
                opts = parquet_options(schema)
                group = opts.pop("row_group_size")
                writer = pq.ParquetWriter(str(path), schema, **opts)
            elif table.schema != schema:
                table = table.cast(schema)
            writer.write_table(table, row_group_size=group)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def parquet_bytes(columns: dict, dictionary: frozenset[str] = DICTIONARY) -> bytes:
    """The bytes :func:`write_parquet` would write."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = arrow_table(columns, dictionary)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table.schema))
    return sink.getvalue().to_pybytes()


_INT = re.compile(r"-?\d+")


def _cell_value(text: str):
    if text == "":
        return None
    if _INT.fullmatch(text):
        return int(text)
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def csv_text_columns(text: str) -> dict:
    """The typed columns of a CSV text written by this project (an empty cell is null; a column of whole
    numbers is int64, of other numbers float64, of True/False bool, else text): the columns the writer would
    have been given for it, so that converting ``timeseries.csv`` gives the bytes of ``timeseries.parquet``."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ValueError("no header")
    header, body = rows[0], rows[1:]
    if any(len(r) != len(header) for r in body):
        raise ValueError("rows of unequal length")
    return {c: typed_column([_cell_value(r[j]) for r in body]) for j, c in enumerate(header)}


# ------------------------------------------------------------------------------------------------ reading
def read_arrow(path: str | Path, columns: Sequence[str] | None = None, error: type[Exception] = TableError):
    """A Parquet file as a pyarrow Table (only ``columns`` that it has, when given)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        if columns is not None:
            have = set(pq.read_schema(str(path)).names)
            columns = [c for c in columns if c in have]
        return pq.read_table(str(path), columns=columns)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise error(f"{path}: cannot read Parquet: {one_line(exc)}") from None


def decoded(table):
    """``table`` with its dictionary-encoded columns as plain columns of their values."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            col = table.column(i)
            plain = pa.chunked_array([c.dictionary_decode() for c in col.chunks], type=field.type.value_type)
            table = table.set_column(i, field.name, plain)
    return table


def frame(table) -> pd.DataFrame:
    """A pyarrow Table as the DataFrame pandas.read_csv gives for the same table in CSV."""
    return decoded(table).to_pandas(split_blocks=True)


def read_table(folder: str | Path, name: str, required: Sequence[str] = (), error: type[Exception] = TableError,
               columns: Sequence[str] | None = None, dtype: dict | None = None, path: Path | None = None,
               **csv_kw) -> pd.DataFrame:
    """Table ``name`` of ``folder`` (``NAME.parquet``, else ``NAME.csv``) as a DataFrame, the same from either
    file: ``columns`` (those the file has; all if None), ``dtype`` as in pandas.read_csv. Raises ``error`` with
    one line naming the file when it is missing, cannot be read or lacks a ``required`` column. ``path``
    overrides the file; ``csv_kw`` go to pandas.read_csv only."""
    path = Path(path) if path is not None else table_file(folder, name)
    if path.suffix == ".parquet":
        df = frame(read_arrow(path, columns, error))
        for c, t in (dtype or {}).items():
            if c in df.columns:
                df[c] = df[c].astype(t)
    else:
        kw = dict(csv_kw)
        if columns is not None:
            wanted = set(columns)
            kw["usecols"] = lambda c: c in wanted
        if dtype:
            kw["dtype"] = dtype
        try:
            df = pd.read_csv(path, **kw)
        except FileNotFoundError:
            raise error(f"{path}: file not found") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise error(f"{path}: cannot parse CSV: {one_line(exc)}") from None
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise error(f"{path}: missing columns {', '.join(missing)}")
    return df
