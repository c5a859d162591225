"""Which database errors are data (dead-letter the entry) and which are outages (retry)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError

from store.ingest import Entry, InvalidEntry, _replace_nul, _rows, is_data_error, sqlstate


class DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: any class, the SQLSTATE as an attribute."""

    def __init__(self, code: str, attr: str = "sqlstate"):
        super().__init__(f"driver error {code}")
        setattr(self, attr, code)


def wrapped(code: str, attr: str = "sqlstate") -> DBAPIError:
    return DBAPIError("INSERT ...", {}, DriverError(code, attr))


@pytest.mark.parametrize(
    ("exc", "data"),
    [
        (wrapped("22021"), True),  # U+0000 in text (asyncpg: a generic DBAPIError)
        (wrapped("22P05"), True),  # U+0000 in jsonb
        (wrapped("23514", "pgcode"), True),  # a CHECK, as psycopg spells it
        (wrapped("08006"), False),  # connection failure: retry
        (wrapped("57P01"), False),  # admin shutdown: retry
        (OperationalError("SELECT 1", {}, ConnectionRefusedError()), False),
        (StatementError("bind", "INSERT", {}, ValueError("naive datetime")), True),
        (InvalidEntry("no created_at"), True),
        (OSError("unreachable"), False),
    ],
)
def test_data_errors_are_told_by_sqlstate_class_whatever_the_exception_type(exc, data):
    assert is_data_error(exc) is data


def test_sqlstate_is_found_through_causes():
    try:
        try:
            raise DriverError("22001")
        except DriverError as inner:
            raise RuntimeError("adapter") from inner
    except RuntimeError as outer:
        assert sqlstate(outer) == "22001"


def test_entries_that_cannot_become_rows_are_invalid_not_crashes():
    for entry in (Entry("undecodable", {}), Entry("interaction", {"id": "x"}), Entry("feedback", {})):
        with pytest.raises(InvalidEntry):
            _rows([entry])


def test_nul_is_replaced_in_strings_keys_and_nested_values_only():
    value = {"a\x00": ["x\x00y", {"k": "\x00"}, 3, None, True], "n": 1.5}
    assert _replace_nul(value) == {"a\u2400": ["x\u2400y", {"k": "\u2400"}, 3, None, True], "n": 1.5}
