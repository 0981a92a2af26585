"""`pallet-runtime`: runc's command line — verbs, flags, exit codes and error style.

The parser is a small table rather than argparse: argparse costs ~20 ms to import
here, most of the runtime's whole budget. Errors go out as runc's logrus lines
(``time="…" level=error msg="…"``) on stderr, or to --log in the chosen --log-format.
"""

from __future__ import annotations

import os
import sys

from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"

BOOL, STR, INT, MULTI = "bool", "str", "int", "multi"

# flag spelling(s) -> (destination, kind)
GLOBAL_FLAGS: dict[str, tuple[str, str]] = {
    "--root": ("root", STR), "--log": ("log", STR), "--log-format": ("log_format", STR),
    "--debug": ("debug", BOOL), "--systemd-cgroup": ("systemd_cgroup", BOOL),
    "--criu": ("criu", STR), "--rootless": ("rootless", STR),
    "--help": ("help", BOOL), "-h": ("help", BOOL), "--version": ("version", BOOL),
    "-v": ("version", BOOL),
}
_CREATE = {
    "--bundle": ("bundle", STR), "-b": ("bundle", STR), "--console-socket": ("console_socket", STR),
    "--pid-file": ("pid_file", STR), "--no-pivot": ("no_pivot", BOOL),
    "--no-new-keyring": ("no_new_keyring", BOOL), "--preserve-fds": ("preserve_fds", INT),
}
_UPDATE_VALUES = (
    "blkio-weight", "cpu-period", "cpu-quota", "cpu-burst", "cpu-share", "cpu-rt-period",
    "cpu-rt-runtime", "cpu-idle", "cpuset-cpus", "cpuset-mems", "memory", "memory-reservation",
    "memory-swap", "pids-limit", "l3-cache-schema", "mem-bw-schema", "kernel-memory",
    "kernel-memory-tcp",
)
# verb -> (flags, minimum positional args, maximum positional args (-1: any), usage)
VERBS: dict[str, tuple[dict[str, tuple[str, str]], int, int, str]] = {
    "spec": ({"--bundle": ("bundle", STR), "-b": ("bundle", STR),
              "--rootless": ("rootless", BOOL)}, 0, 0, "spec"),
    "create": (_CREATE, 1, 1, "create [command options] <container-id>"),
    "run": ({**_CREATE, "--detach": ("detach", BOOL), "-d": ("detach", BOOL),
             "--keep": ("keep", BOOL)}, 1, 1, "run [command options] <container-id>"),
    "start": ({}, 1, 1, "start <container-id>"),
    "state": ({}, 1, 1, "state <container-id>"),
    "kill": ({"--all": ("all", BOOL), "-a": ("all", BOOL)}, 1, 2,
             "kill [command options] <container-id> [signal]"),
    "delete": ({"--force": ("force", BOOL), "-f": ("force", BOOL)}, 1, -1,
               "delete [command options] <container-id>"),
    "list": ({"--format": ("format", STR), "-f": ("format", STR), "--quiet": ("quiet", BOOL),
              "-q": ("quiet", BOOL)}, 0, 0, "list [command options]"),
    "ps": ({"--format": ("format", STR), "-f": ("format", STR)}, 1, -1,
           "ps [command options] <container-id> [ps options]"),
    "exec": ({"--console-socket": ("console_socket", STR), "--cwd": ("cwd", STR),
              "--env": ("env", MULTI), "-e": ("env", MULTI), "--tty": ("tty", BOOL),
              "-t": ("tty", BOOL), "--user": ("user", STR), "-u": ("user", STR),
              "--additional-gids": ("additional_gids", MULTI), "-g": ("additional_gids", MULTI),
              "--process": ("process", STR), "-p": ("process", STR),
              "--detach": ("detach", BOOL), "-d": ("detach", BOOL),
              "--pid-file": ("pid_file", STR), "--process-label": ("process_label", STR),
              "--apparmor": ("apparmor", STR), "--no-new-privs": ("no_new_privs", BOOL),
              "--cap": ("cap", MULTI), "-c": ("cap", MULTI),
              "--preserve-fds": ("preserve_fds", INT), "--cgroup": ("cgroup", MULTI),
              "--ignore-paused": ("ignore_paused", BOOL)}, 1, -1,
             "exec [command options] <container-id> <command> [command options]"),
    "pause": ({}, 1, 1, "pause <container-id>"),
    "resume": ({}, 1, 1, "resume <container-id>"),
    "update": ({"--resources": ("resources", STR), "-r": ("resources", STR),
                **{f"--{n}": (n.replace("-", "_"), STR) for n in _UPDATE_VALUES}}, 1, 1,
               "update [command options] <container-id>"),
    "events": ({"--stats": ("stats", BOOL), "--interval": ("interval", STR)}, 1, 1,
               "events [command options] <container-id>"),
    "features": ({}, 0, 0, "features"),
}


_Str = str
_Bool = bool
_Int = int
_List = list


class Args:
    """Parsed flags by destination name; absent flags read as their zero value."""

    def __init__(self) -> None:
        self.values: dict[_Str, object] = {}
        self.positional: _List[_Str] = []

    def str(self, name: _Str, default: _Str = "") -> _Str:
        v = self.values.get(name)
        return v if isinstance(v, _Str) else default

    def bool(self, name: _Str) -> _Bool:
        return _Bool(self.values.get(name))

    def int(self, name: _Str) -> _Int:
        v = self.values.get(name)
        return v if isinstance(v, _Int) else 0

    def list(self, name: _Str) -> _List[_Str]:
        v = self.values.get(name)
        return v if isinstance(v, _List) else []

    def has(self, name: _Str) -> _Bool:
        return name in self.values


def parse_flags(argv: list[str], flags: dict[str, tuple[str, str]], out: Args,
                stop_at_positional: bool) -> list[str]:
    """Consume flags from ``argv`` into ``out``; returns what is left.

    With ``stop_at_positional`` parsing stops at the first non-flag (the global flags
    before the verb, and exec's command after the id).
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.positional.extend(argv[i + 1:])
            return []
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                return argv[i:]
            out.positional.append(arg)
            i += 1
            continue
        name, eq, inline = arg.partition("=")
        if name not in flags and name.startswith("-") and not name.startswith("--"):
            name = "-" + name.lstrip("-")
        if name not in flags:
            # urfave/cli also accepts --flag for single-letter names and -flag for long ones
            alt = "--" + name.lstrip("-") if not name.startswith("--") else "-" + name[2:]
            if alt not in flags:
                raise InvalidArgument(f"flag provided but not defined: {arg.partition('=')[0]}")
            name = alt
        dest, kind = flags[name]
        if kind == BOOL:
            if eq and inline not in ("true", "false"):
                raise InvalidArgument(f"invalid boolean value {inline!r} for flag {name}")
            out.values[dest] = inline != "false" if eq else True
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise InvalidArgument(f"flag needs an argument: {name}")
            value = argv[i + 1]
            i += 2
        if kind == INT:
            try:
                out.values[dest] = int(value)
            except ValueError:
                raise InvalidArgument(f"invalid value {value!r} for flag {name}") from None
        elif kind == MULTI:
            existing = out.values.setdefault(dest, [])
            assert isinstance(existing, list)
            existing.append(value)
        else:
            out.values[dest] = value
    return []


def _log(g: Args, level: str, msg: str) -> None:
    """One log line as runc writes it: to --log if given (text or json), else stderr."""
    import time

    from pallet.oci import jsonfast

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if g.str("log_format") == "json":
        line = jsonfast.dumps({"level": level, "msg": msg, "time": now}) + "\n"
    else:
        line = f'time="{now}" level={level} msg={jsonfast.dumps(msg)}\n'
    log = g.str("log")
    if log:
        try:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            return
        except OSError:
            pass
    sys.stderr.write(line)


def _log_error(g: Args, msg: str) -> None:
    _log(g, "error", msg)


def _usage(verb: str | None = None) -> str:
    if verb:
        return f"Usage: pallet-runtime {VERBS[verb][3]}\n"
    return (
        "pallet-runtime - an OCI runtime (runc's command line)\n\n"
        "USAGE:\n   pallet-runtime [global options] command [command options] [arguments...]\n\n"
        "COMMANDS:\n   " + "\n   ".join(VERBS) + "\n\n"
        "GLOBAL OPTIONS:\n   --root value  root directory for storage of container state "
        "(default: /run/pallet-runtime)\n   --log value   set the log file to write "
        "runtime logs to\n   --log-format value  text or json (default: text)\n"
        "   --debug       enable debug logging\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    g = Args()
    try:
        rest = parse_flags(argv, GLOBAL_FLAGS, g, stop_at_positional=True)
        if g.bool("version"):
            sys.stdout.write(f"pallet-runtime version {VERSION}\nspec: {SPEC_VERSION}\n")
            return 0
        if not rest or g.bool("help"):
            sys.stdout.write(_usage())
            return 0 if g.bool("help") else 1
        if g.str("log_format") not in ("", "text", "json"):
            raise InvalidArgument(f"invalid log-format: {g.str('log_format')}")
        verb, rest = rest[0], rest[1:]
        if verb not in VERBS:
            raise InvalidArgument(f"no such command: {verb}")
        if verb == "help":
            sys.stdout.write(_usage())
            return 0
        flags, lo, hi, _ = VERBS[verb]
        a = Args()
        if rest and rest[0] in ("--help", "-h"):
            sys.stdout.write(_usage(verb))
            return 0
        left = parse_flags(rest, flags, a, stop_at_positional=verb in ("exec", "ps"))
        a.positional.extend(left)
        if len(a.positional) < lo or (hi >= 0 and len(a.positional) > hi):
            raise InvalidArgument(
                f'"{verb}" requires {"exactly" if lo == hi else "at least"} {lo} argument(s)'
                if lo else f'"{verb}" takes no arguments'
            )
        root = g.str("root") or _default_root()
        if g.bool("debug"):
            _log(g, "debug", f"pallet-runtime {VERSION}: {verb} {' '.join(rest)} (root {root})")
        handler: Callable[[str, Args], int] = getattr(_verbs(), "verb_" + verb)
        return handler(root, a)
    except PalletError as exc:
        _log_error(g, str(exc))
        return 1
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if exc.filename:
            detail += f": {exc.filename}"
        _log_error(g, detail)
        return 1
    except KeyboardInterrupt:
        return 130


def _default_root() -> str:
    from pallet.runtime.state import DEFAULT_ROOT

    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return DEFAULT_ROOT if os.geteuid() == 0 or not xdg else os.path.join(xdg, "pallet-runtime")


def _verbs() -> ModuleType:
    from pallet.runtime import verbs

    return verbs


def run() -> None:
    """The command's entry point: main(), then exit without interpreter finalization.

    Tearing down every module and object costs ~5 ms per verb here and does nothing the
    runtime relies on (files are closed as they are used); flush stdio and leave.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()
