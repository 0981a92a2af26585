"""docker-style flags: `-it`, `-e A=1 -e B=2`, `--name=x`, `--rm`, globals before the verb.

A table per command instead of argparse: the CLI's hot verbs start a process each,
and argparse alone costs ~20 ms to import here.
"""

from __future__ import annotations

BOOL, STR, INT, LIST = "bool", "str", "int", "list"


class UsageError(Exception):
    """Bad flags or arguments: the message is what docker prints, exit status 125."""


class Flag:
    __slots__ = ("default", "dest", "help", "kind", "names")

    def __init__(self, names: str, kind: str = BOOL, help: str = "",
                 default: object = None) -> None:
        self.names = tuple(names.split(","))
        self.kind = kind
        # the long name, if there is one, names the value: "-e,--env" -> "env"
        longest = max(self.names, key=len)
        self.dest = longest.lstrip("-").replace("-", "_")
        self.help = help
        self.default = default


class Parsed:
    def __init__(self, flags: list[Flag]) -> None:
        self.values: dict[str, object] = {}
        for f in flags:
            self.values[f.dest] = (
                f.default if f.default is not None
                else [] if f.kind == LIST else False if f.kind == BOOL else None
            )
        self.args: list[str] = []

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def parse(argv: list[str], flags: list[Flag], interspersed: bool = True) -> Parsed:
    """Parse ``argv``; with ``interspersed`` False parsing stops at the first argument
    (what follows belongs to the command, as for `run IMAGE CMD -x`)."""
    by_name = {n: f for f in flags for n in f.names}
    out = Parsed(flags)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.args.extend(argv[i + 1:])
            break
        if not arg.startswith("-") or arg == "-":
            if not interspersed:
                out.args.extend(argv[i:])
                break
            out.args.append(arg)
            i += 1
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            flag = by_name.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: {name}")
            i = _take(out, flag, name, value if eq else None, argv, i)
            continue
        # short flags, possibly combined: -it, -p80:80, -e A=1
        letters = arg[1:]
        j = 0
        while j < len(letters):
            name = "-" + letters[j]
            flag = by_name.get(name)
            if flag is None:
                raise UsageError(f"unknown shorthand flag: '{letters[j]}' in {arg}")
            if flag.kind == BOOL:
                out.values[flag.dest] = True
                j += 1
                continue
            rest = letters[j + 1:]
            i = _take(out, flag, name, rest.lstrip("=") if rest else None, argv, i)
            break
        else:
            i += 1
    return out


def _take(out: Parsed, flag: Flag, name: str, inline: str | None, argv: list[str],
          i: int) -> int:
    if flag.kind == BOOL:
        if inline is None:
            out.values[flag.dest] = True
        elif inline.lower() in ("true", "1", "false", "0"):
            out.values[flag.dest] = inline.lower() in ("true", "1")
        else:
            raise UsageError(f'invalid argument "{inline}" for "{name}" flag: '
                             'strconv.ParseBool: parsing: invalid syntax')
        return i + 1
    if inline is None:
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: {name}")
        value, i = argv[i + 1], i + 2
    else:
        value, i = inline, i + 1
    if flag.kind == INT:
        try:
            out.values[flag.dest] = int(value)
        except ValueError:
            raise UsageError(f'invalid argument "{value}" for "{name}" flag') from None
    elif flag.kind == LIST:
        lst = out.values[flag.dest]
        assert isinstance(lst, list)
        lst.append(value)
    else:
        out.values[flag.dest] = value
    return i
