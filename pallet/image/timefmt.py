"""RFC 3339 times as Go writes them in image configs and the Engine API (nanoseconds)."""

from __future__ import annotations

import time
from datetime import datetime


def now_rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch; raises ValueError for anything else.

    Go writes up to nine fractional digits; datetime takes at most six.
    """
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    return datetime.fromisoformat(text).timestamp()
