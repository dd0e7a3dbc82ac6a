"""Property-based tests (hypothesis): for any table pandas can write, the store reads back what
``pandas.read_csv`` reads; for any corruption of a good file, the ingest accounts for every row or refuses with one
line. Examples per test: HYPOTHESIS_EXAMPLES (default 30); CI runs a fixed (derandomized) sequence."""

from __future__ import annotations

import os
import pathlib
import tempfile

import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from ingest import IngestConfig, ingest as run_ingest  # noqa: E402
from store import open_store  # noqa: E402
from tests.helpers import assert_same_values  # noqa: E402
from tests.ingest.test_fuzz import GOOD, check_accounted_or_refused  # noqa: E402

SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "30")), deadline=None,
                    derandomize=os.environ.get("CI") == "true", database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# No "\r": pandas.to_csv writes it unquoted, and a bare CR ends a record for every CSV reader (pandas too), so
# such a file does not hold the table (the ingest names the CR as the cause: tests/ingest/test_bad_rows.py).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), min_size=1, max_size=6)
_VALUES = {
    "int": st.integers(-2**63 + 1, 2**63 - 1),
    "small_int": st.integers(-130, 130),
    "float": st.floats(allow_nan=False, width=64),
    "bool": st.booleans(),
    "text": _TEXT,
}


@st.composite
def tables(draw):
    """A DataFrame of 1-40 rows, 1-5 columns of random kinds, some with missing values."""
    rows = draw(st.integers(1, 40))
    kinds = draw(st.lists(st.sampled_from(sorted(_VALUES)), min_size=1, max_size=5))
    data = {}
    for i, kind in enumerate(kinds):
        missing = draw(st.booleans())
        value = _VALUES[kind] | st.none() if missing else _VALUES[kind]
        data[f"c{i}_{kind}"] = draw(st.lists(value, min_size=rows, max_size=rows))
    return pd.DataFrame(data)


@SETTINGS
@given(table=tables(), batch=st.integers(1, 16), workers=st.sampled_from([1, 2]))
def test_store_values_equal_pandas_read_csv(table, batch, workers):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.csv")
        table.to_csv(path, index=False)
        expected = pd.read_csv(path)
        out = os.path.join(tmp, "s.zarr")
        run_ingest(IngestConfig([path], out, batch_size=batch, shuffle=False, workers=workers, progress=False))
        assert_same_values(open_store(out).read_frame("train"), expected)


_EDITS = st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["insert", "delete", "flip"]),
                            st.binary(min_size=1, max_size=8) | st.sampled_from(
                                [b'"', b"\x00", b"\xff", b",", b"\n", b"\r", b"1e999", b"NaN", b"-", b"x" * 5000])),
                  min_size=1, max_size=6)


@SETTINGS
@given(edits=_EDITS, typed=st.booleans())
def test_corrupted_csv_is_accounted_or_refused(edits, typed):
    data = bytearray(GOOD.encode())
    for where, op, payload in edits:
        pos = int(where * len(data))
        if op == "insert":
            data[pos:pos] = payload
        elif op == "delete":
            del data[pos:pos + len(payload)]
        elif data:
            data[min(pos, len(data) - 1)] ^= payload[0] or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "hostile.csv"
        path.write_bytes(bytes(data))
        check_accounted_or_refused(path, pathlib.Path(tmp), workers=1,
                                   dtypes={"id": "int", "score": "float"} if typed else {})
