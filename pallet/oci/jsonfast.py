"""JSON through the C accelerator alone.

``import json`` costs ~15 ms here because json.decoder and json.encoder import ``re``
(and re imports enum) for their pure-Python fallbacks, which CPython never uses when
the ``_json`` extension is present. The runtime's whole budget is ~20 ms, so its hot
path parses and writes JSON through ``_json`` directly. Output matches ``json.dumps``
with compact separators; tests check both directions against the json module.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WS = " \t\n\r"


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant: Callable[[str], float] | None = None
    memo: dict[str, str] = {}

    def __init__(self) -> None:
        def constant(name: str) -> float:
            return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]

        self.parse_constant = constant


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


class JSONError(ValueError):
    """Malformed JSON, with the character offset where parsing stopped."""

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(f"{msg} at offset {pos}")
        self.pos = pos


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    idx = 0
    n = len(text)
    while idx < n and text[idx] in _WS:
        idx += 1
    try:
        obj, end = _scan(text, idx)
    except StopIteration as exc:
        raise JSONError("expecting a value", exc.value) from None
    except ValueError as exc:  # json.decoder.JSONDecodeError (imported lazily by _json)
        raise JSONError(getattr(exc, "msg", str(exc)), getattr(exc, "pos", idx)) from None
    except SystemError:
        # _json raises its errors as json.decoder.JSONDecodeError, which it only finds in
        # sys.modules: without json.decoder it returns NULL with no exception set. Only
        # malformed input gets here: import it (a cold path) and parse again for the error.
        import sys

        if "json.decoder" in sys.modules:
            raise
        import json.decoder  # noqa: F401

        return loads(text)
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise JSONError("extra data", end)
    return obj


def _unserializable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    None, _unserializable, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def dumps(obj: object) -> str:
    return "".join(_encode(obj, 0))


def dumps_indented(obj: object, indent: str = "  ", _level: int = 0) -> str:
    """As ``json.dumps(obj, indent=...)`` (for small documents like the OCI state)."""
    pad = indent * (_level + 1)
    end = indent * _level
    if isinstance(obj, dict) and obj:
        items = (f"{pad}{dumps(str(k))}: {dumps_indented(v, indent, _level + 1)}"
                 for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{end}}}"
    if isinstance(obj, list) and obj:
        return "[\n" + ",\n".join(f"{pad}{dumps_indented(v, indent, _level + 1)}"
                                  for v in obj) + f"\n{end}]"
    return dumps(obj)
