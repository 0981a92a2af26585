"""Docker's sizes as people read them (go-units): ``HumanSize`` and ``BytesSize``."""

from __future__ import annotations

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def human_size(n: float, binary: bool = False, digits: int = 4) -> str:
    """go-units' HumanSize (decimal, four significant digits: progress bars, build
    context), HumanSizeWithPrecision with ``digits`` (3: what `ps -s`, `images`,
    `system df` show) or BytesSize (``binary``, four digits)."""
    base, units = (1024.0, _BINARY) if binary else (1000.0, _DECIMAL)
    size = float(n)
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{4 if binary else digits}g}{units[i]}"
