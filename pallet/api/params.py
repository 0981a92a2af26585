"""Query parameters as the Engine API spells them: filters, booleans, timestamps."""

from __future__ import annotations

import json
import re
import time

from pallet.errors import InvalidArgument
from pallet.image.timefmt import parse_rfc3339

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def filters(raw: str | None) -> dict[str, list[str]]:
    """``filters={"label":["a=b"]}`` — or the legacy ``{"label":{"a=b":true}}`` form."""
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid filter: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid filter: must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in doc.items():
        if isinstance(values, dict):
            out[key] = [k for k, on in values.items() if on]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[key] = list(values)
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return out


def boolean(raw: str | None, default: bool = False) -> bool:
    """Docker's boolValue: absent means default; "", "0", "no", "false", "none" are false."""
    if raw is None:
        return default
    return raw.strip().lower() not in ("", "0", "no", "false", "none")


def timestamp(raw: str | None, now: float | None = None) -> float | None:
    """A point in time: unix seconds (with fraction), RFC 3339, or a Go duration before now."""
    if raw is None or raw == "":
        return None
    now = time.time() if now is None else now
    try:
        return float(raw)
    except ValueError:
        pass
    m = _DURATION.match(raw)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise InvalidArgument(f"invalid timestamp: {raw!r}") from None
