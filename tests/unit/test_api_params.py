"""Query parameter parsing as the Engine API spells it, and the error table."""

from __future__ import annotations

import pytest

from pallet.api import errors, params
from pallet.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    PalletError,
    SystemFailure,
)


def test_filters_both_forms() -> None:
    assert params.filters('{"label":["a=b","c"]}') == {"label": ["a=b", "c"]}
    assert params.filters('{"label":{"a=b":true,"x":false}}') == {"label": ["a=b"]}
    assert params.filters(None) == {} and params.filters("") == {}
    for bad in ("notjson", "[1]", '{"a":"b"}', '{"a":[1]}'):
        with pytest.raises(InvalidArgument):
            params.filters(bad)


def test_booleans_as_docker() -> None:
    assert params.boolean(None, default=True) is True
    for false in ("", "0", "no", "false", "False", "none"):
        assert params.boolean(false) is False
    for true in ("1", "true", "yes", "anything"):
        assert params.boolean(true) is True


def test_timestamps() -> None:
    assert params.timestamp("1700000000.5") == 1700000000.5
    assert params.timestamp("10m", now=1000.0) == 400.0
    assert params.timestamp("2023-11-14T22:13:20Z") == 1700000000.0
    assert params.timestamp("2023-11-14T22:13:20.123456789Z") == pytest.approx(1700000000.123456)
    assert params.timestamp(None) is None
    with pytest.raises(InvalidArgument):
        params.timestamp("yesterday")


@pytest.mark.parametrize("exc, status", [
    (NotFound("x"), 404), (Conflict("x"), 409), (InvalidState("x"), 409),
    (InvalidArgument("x"), 400), (NotSupported("x"), 501), (SystemFailure("x"), 500),
    (PalletError("x"), 500), (RuntimeError("bug"), 500),
])
def test_one_table_maps_errors_to_statuses(exc: BaseException, status: int) -> None:
    assert errors.status_of(exc) == status
