"""Signal names and numbers, without importing the signal module (it pulls in enum)."""

from __future__ import annotations

# asm-generic numbering, shared by x86_64 and aarch64.
NUMBERS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}
SIGRTMIN = 34
SIGRTMAX = 64


def parse(value: str) -> int:
    """A signal from a name (``TERM``, ``SIGTERM``, ``RTMIN+3``) or a number.

    Raises ValueError for anything the kernel would not take.
    """
    text = value.strip().upper()
    if text.isdigit():
        num = int(text)
        if 1 <= num <= SIGRTMAX:
            return num
        raise ValueError(f"invalid signal: {value}")
    if text.startswith("SIG"):
        text = text[3:]
    if text in NUMBERS:
        return NUMBERS[text]
    for base, num in (("RTMIN", SIGRTMIN), ("RTMAX", SIGRTMAX)):
        if text == base:
            return num
        if text.startswith(base + "+") or text.startswith(base + "-"):
            off = text[len(base):]
            if off[1:].isdigit():
                res = num + int(off)
                if SIGRTMIN <= res <= SIGRTMAX:
                    return res
    raise ValueError(f"invalid signal: {value}")
