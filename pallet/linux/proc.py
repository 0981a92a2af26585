"""/proc readers: a process's start time and state, its namespaces and cgroups."""

from __future__ import annotations


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name; None if there is no such process.

    Index 0 is the state letter (field 3 of proc(5)); index 19 is starttime (field 22).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(b")") + 2 :].decode().split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def state(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int, started: int) -> bool:
    """True if ``pid`` still names the process that started at ``started`` and is not a zombie."""
    fields = stat_fields(pid)
    if not fields:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == started


def unescape_mountinfo(field: str) -> str:
    """A path field of /proc/*/mountinfo: space, tab, newline, backslash (and in
    options, comma) are written as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
