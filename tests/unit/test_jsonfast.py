"""pallet.oci.jsonfast against the json module: same values in, same text out."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from pallet.oci import jsonfast
from pallet.oci.defaults import default_spec

SAMPLES: list[Any] = [
    None, True, False, 0, -1, 2**64, 1.5, -0.0, 1e300, "", "plain", "caf\u00e9 \u2603 \U0001f600",
    "quote\" backslash\\ nl\n tab\t nul\x00 ctrl\x1f", [], {}, [1, [2, [3, {}]]],
    {"a": 1, "b": [True, None], "c": {"d": "e"}}, {"": ""}, default_spec(),
]


@pytest.mark.parametrize("value", SAMPLES)
def test_dumps_matches_json_compact(value: Any) -> None:
    assert jsonfast.dumps(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("value", SAMPLES)
def test_round_trip(value: Any) -> None:
    assert jsonfast.loads(jsonfast.dumps(value)) == value
    assert jsonfast.loads(json.dumps(value, indent=2)) == value


@pytest.mark.parametrize("text", [
    '{"a": [1, 2.5, -3e2, true, false, null], "b": "\\u00e9\\n\\ud83d\\ude00"}',
    "  \n\t[ ]  \r\n", "0", "-0", '"\\/"', '{"dup": 1, "dup": 2}', "1E400",
])
def test_loads_matches_json(text: str) -> None:
    assert jsonfast.loads(text) == json.loads(text)
    assert jsonfast.loads(text.encode()) == json.loads(text)


def test_loads_bytes_are_utf8() -> None:
    assert jsonfast.loads('"caf\u00e9"'.encode()) == "caf\u00e9"
    with pytest.raises(UnicodeDecodeError):
        jsonfast.loads(b'"\xff"')


def test_constants_as_json_reads_them() -> None:
    v = jsonfast.loads("[NaN, Infinity, -Infinity]")
    assert math.isnan(v[0]) and v[1] == math.inf and v[2] == -math.inf


@pytest.mark.parametrize("text", [
    "", "   ", "{", "[1,]", "{'a': 1}", '{"a" 1}', '{"a": 1}}', "[1] [2]", "tru", '"open',
    '"\\x"', "01", '"tab\tinside"', "{}x",
])
def test_errors_are_jsonerror_with_offset(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(jsonfast.JSONError) as info:
        jsonfast.loads(text)
    assert isinstance(info.value, ValueError)
    assert 0 <= info.value.pos <= len(text)
    assert f"at offset {info.value.pos}" in str(info.value)


def test_error_offsets_match_json() -> None:
    for text in ('{"a" 1}', "[1,]", '{"a": 1}}', "[1] [2]"):
        with pytest.raises(json.JSONDecodeError) as ref:
            json.loads(text)
        with pytest.raises(jsonfast.JSONError) as got:
            jsonfast.loads(text)
        assert got.value.pos == ref.value.pos, text


def test_dumps_refuses_what_json_refuses() -> None:
    for bad in ({1, 2}, object(), b"bytes"):
        with pytest.raises(TypeError, match="is not JSON serializable"):
            jsonfast.dumps(bad)
    with pytest.raises(TypeError):
        jsonfast.dumps({(1, 2): "tuple key"})


def test_dumps_keeps_insertion_order_and_stringifies_keys() -> None:
    assert jsonfast.dumps({"b": 1, "a": 2}) == '{"b":1,"a":2}'
    assert jsonfast.dumps({1: "x", None: "y", False: "z", 2.5: "f"}) == \
        json.dumps({1: "x", None: "y", False: "z", 2.5: "f"}, separators=(",", ":"))


def test_errors_without_the_json_module_loaded() -> None:
    # _json finds JSONDecodeError only in sys.modules: a fresh process must still get
    # a JSONError (not a SystemError) for every kind of malformed input.
    code = ("import sys; import pallet.oci.jsonfast as j\n"
            "for t in ['{\"a\" 1}', '{\"a\": 1', '[1,]', '\"open', '']:\n"
            "    try:\n        j.loads(t)\n"
            "    except j.JSONError as e:\n        print(e.pos)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "7", "3", "0", "0"]


def test_import_does_not_pull_json_or_re() -> None:
    # site may import re itself: compare what using jsonfast adds.
    code = ("import sys; before = set(sys.modules); import pallet.oci.jsonfast as j; "
            "j.loads(b'[1]'); j.dumps({'a': 1}); "
            "print(sorted(m for m in ('json', 're', 'enum') if m in set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dumps_indented_matches_json() -> None:
    import json

    from pallet.oci import jsonfast

    doc = {"ociVersion": "1.2.0", "id": "x", "pid": 7, "annotations": {"a": "b"}, "l": [1, {}],
           "e": [], "n": None, "t": True}
    assert jsonfast.dumps_indented(doc) == json.dumps(doc, indent=2)
