"""Go's ``time.ParseDuration``, which Docker's durations are written in (HEALTHCHECK
--interval, --health-interval, events --interval): ``1m30s``, ``500ms``, ``1.5h``.

No ``re``: pallet-runtime reads it too, and keeps that off its imports.
"""

from __future__ import annotations

_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def _number(c: str) -> bool:
    return c.isascii() and (c.isdigit() or c == ".")


def parse_go_duration(text: str) -> int:
    """Nanoseconds; ValueError with Go's message for what Go refuses."""
    rest, sign = text, 1
    if rest[:1] in ("-", "+"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0
    while rest:
        i = 0
        while i < len(rest) and rest[i].isascii() and rest[i].isdigit():
            i += 1
        whole, rest = rest[:i], rest[i:]
        frac = ""
        if rest[:1] == ".":
            j = 1
            while j < len(rest) and rest[j].isascii() and rest[j].isdigit():
                j += 1
            frac, rest = rest[1:j], rest[j:]
        if not whole and not frac:
            raise ValueError(f'time: invalid duration "{text}"')
        k = 0
        while k < len(rest) and not _number(rest[k]):
            k += 1
        unit, rest = rest[:k], rest[k:]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        scale = _UNITS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
    return sign * total
