"""The Dockerfile front end: text to typed stages, and Docker's variable substitution.

Parsing follows BuildKit's Dockerfile frontend (the behaviour ``docker build`` users see
today), error messages included, so a Dockerfile pallet refuses is one Docker refuses with
the same words. Substitution is kept apart (``expand``) because its input, the ARG and ENV
values in force, is only known while the executor walks the stage.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pallet.build.commands import (
    Add,
    Arg,
    Cmd,
    Command,
    Copy,
    Dockerfile,
    DockerfileError,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Heredoc,
    Label,
    Maintainer,
    OnBuild,
    Run,
    Shell,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from pallet.build.lexer import LexError, expand_heredoc, expand_word, expand_words
from pallet.build.reader import Node, RawHeredoc, looks_like_json, parse_heredoc_word, read

# HEALTHCHECK's durations: Go's time.ParseDuration, in nanoseconds
from pallet.oci.duration import parse_go_duration as parse_duration

__all__ = [
    "Add",
    "Arg",
    "Cmd",
    "Command",
    "Copy",
    "Dockerfile",
    "DockerfileError",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Heredoc",
    "Label",
    "Maintainer",
    "OnBuild",
    "Run",
    "Shell",
    "Stage",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "expand",
    "expand_heredoc",
    "expand_word",
    "expand_words",
    "parse",
    "parse_duration",
    "parse_instruction",
]

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_MIN_HEALTH_DURATION = 1_000_000  # 1ms, Docker's container.MinimumDuration

_BOOL, _STRING, _STRINGS = "bool", "string", "strings"


def parse(text: str) -> Dockerfile:
    """The whole Dockerfile; raises DockerfileError naming the offending line."""
    result = read(text)
    if not result.nodes:
        raise DockerfileError("file with no instructions", line=max(result.line_count, 1))
    meta_args: list[Arg] = []
    stages: list[Stage] = []
    for node in result.nodes:
        cmd = _build(node)
        if isinstance(cmd, From):
            if cmd.name is not None and any(s.name == cmd.name for s in stages):
                raise DockerfileError(f"duplicate stage name {cmd.name!r}", line=node.line)
            stages.append(Stage(len(stages), cmd.name, cmd))
        elif stages:
            stages[-1].commands.append(cmd)
        elif isinstance(cmd, Arg):
            meta_args.append(cmd)
        else:
            raise DockerfileError("no build stage in current context", line=node.line)
    if not stages:
        raise DockerfileError("dockerfile contains no stages to build", line=result.nodes[-1].line)
    return Dockerfile(meta_args, stages, result.escape, result.syntax)


def parse_instruction(text: str, escape: str = "\\", line: int = 1) -> Command:
    """One instruction (an ONBUILD trigger from an image config, which may carry a heredoc
    body after its first line)."""
    result = read(text, escape=escape, directives=False, first_line=line)
    if not result.nodes:
        raise DockerfileError("file with no instructions", line=line)
    if len(result.nodes) > 1:
        raise DockerfileError("expected a single instruction", line=result.nodes[1].line)
    return _build(result.nodes[0])


# -- flags ----------------------------------------------------------------------------------


def _flags(node: Node, spec: Mapping[str, str]) -> dict[str, list[str]]:
    """The instruction's ``--flags`` checked against what it accepts (BuildKit's BFlags):
    bools may be bare, strings need ``=value``, only ``--mount``-like flags repeat."""
    found: dict[str, list[str]] = {}
    for flag in node.flags:
        if not flag.startswith("--"):
            raise _error(node, f"arg should start with -- : {flag}")
        name, eq, value = flag[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise _error(node, f"unknown flag: {name}")
        if name in found and kind != _STRINGS:
            raise _error(node, f"duplicate flag specified: {name}")
        if kind == _BOOL:
            if eq and not value:
                raise _error(node, f"missing a value on flag: {name}")
            lowered = value.lower() or "true"
            if lowered not in ("true", "false"):
                raise _error(node, f"expecting boolean value for flag {name}, not: {value}")
            value = lowered
        elif not eq:
            raise _error(node, f"missing a value on flag: {name}")
        found.setdefault(name, []).append(value)
    return found


def _one(flags: Mapping[str, list[str]], name: str) -> str | None:
    values = flags.get(name)
    return values[-1] if values else None


def _error(node: Node, message: str) -> DockerfileError:
    return DockerfileError(message, line=node.line)


# -- argument shapes --------------------------------------------------------------------------


def _json_or_none(node: Node) -> list[str] | None:
    """The JSON form's strings, or None for the shell form. An array holding anything but
    strings is an error rather than shell text, as in Docker."""
    if not looks_like_json(node.rest):
        return None
    values = json.loads(node.rest.lstrip())
    if not all(isinstance(v, str) for v in values):
        raise _error(node, "when using JSON array syntax, arrays must be comprised of strings only")
    return [str(v) for v in values]


def _list_args(node: Node) -> tuple[list[str], bool]:
    """COPY/ADD/VOLUME: a JSON array, else whitespace-separated words (quotes kept)."""
    values = _json_or_none(node)
    if values is not None:
        return values, True
    return ([w for w in _WHITESPACE.split(node.rest) if w] if node.rest else []), False


def _command_line(node: Node) -> tuple[tuple[str, ...], bool]:
    """RUN/CMD/ENTRYPOINT: the JSON list, or the whole text as one shell-form string."""
    values = _json_or_none(node)
    if values is not None:
        return tuple(values), False
    if not node.rest:
        return (), False
    return (node.rest,), True


def _parse_words(rest: str, escape: str) -> list[str]:
    """Words split on whitespace outside quotes, with quotes and escapes kept for the later
    substitution to remove (BuildKit's ``parseWords`` for ENV/LABEL/ARG); an escape at the
    very end is dropped."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank_ok = False
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == len(rest):
                    break
                word.append(ch)
                pos += 1
                ch = rest[pos]
        elif ch.isspace():
            if word or blank_ok:
                words.append("".join(word))
            word, blank_ok = [], False
            pos += 1
            continue
        elif ch in "'\"":
            quote, blank_ok = ch, True
        elif ch == escape:
            if pos + 1 == len(rest):
                break
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if word or blank_ok:
        words.append("".join(word))
    return words


def _name_values(node: Node, keyword: str) -> tuple[tuple[str, str], ...]:
    """ENV/LABEL pairs in both syntaxes: ``K v w`` (one pair, the value is the rest of the
    line) or ``K=v K2="v 2"``."""
    words = _parse_words(node.rest, node.escape)
    if not words:
        raise _error(node, f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = _WHITESPACE.split(node.rest, maxsplit=1)
        if len(parts) < 2:
            raise _error(node, f"{keyword} must have two arguments")
        pairs = [(parts[0], parts[1])]
    else:
        pairs = []
        for word in words:
            if "=" not in word:
                raise _error(
                    node,
                    f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value',
                )
            key, _, value = word.partition("=")
            pairs.append((key, value))
    for key, _ in pairs:
        if not key:
            raise _error(node, f"{keyword} names can not be blank")
    return tuple(pairs)


# -- instructions -----------------------------------------------------------------------------


def _build(node: Node) -> Command:
    builder = _BUILDERS.get(node.keyword)
    if builder is None:
        raise _error(node, f"unknown instruction: {node.original.split()[0]}")
    return builder(node)


def _from(node: Node) -> From:
    flags = _flags(node, {"platform": _STRING})
    args = [w for w in _WHITESPACE.split(node.rest) if w] if node.rest else []
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _error(
                node,
                f'invalid name for build stage: "{args[2]}", '
                "name can't start with a number or contain symbols",
            )
    elif len(args) != 1:
        raise _error(node, "FROM requires either one or three arguments")
    return From(node.line, node.original, args[0], name, _one(flags, "platform"))


def _arg(node: Node) -> Arg:
    _flags(node, {})
    words = _parse_words(node.rest, node.escape)
    if not words:
        raise _error(node, "ARG requires at least one argument")
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and not key:
            raise _error(node, "ARG names can not be blank")
        pairs.append((key, value if eq else None))
    return Arg(node.line, node.original, tuple(pairs))


def _env(node: Node) -> Env:
    _flags(node, {})
    return Env(node.line, node.original, _name_values(node, "ENV"))


def _label(node: Node) -> Label:
    _flags(node, {})
    return Label(node.line, node.original, _name_values(node, "LABEL"))


def _heredocs(node: Node) -> tuple[Heredoc, ...]:
    return tuple(_heredoc(raw) for raw in node.heredocs)


def _heredoc(raw: RawHeredoc) -> Heredoc:
    content = raw.content
    if raw.word.chomp:
        content = re.sub(r"(?m)^\t+", "", content)
    return Heredoc(raw.word.name, content, raw.word.expand, raw.word.chomp)


def _run(node: Node) -> Run:
    flags = _flags(node, {"mount": _STRINGS, "network": _STRING, "security": _STRING})
    cmd, shell_form = _command_line(node)
    if not node.rest:
        raise _error(node, "RUN requires at least one argument")
    frozen = {name: tuple(values) for name, values in flags.items()}
    return Run(node.line, node.original, cmd, shell_form, _heredocs(node), frozen)


def _cmd(node: Node) -> Cmd:
    _flags(node, {})
    return Cmd(node.line, node.original, *_command_line(node))


def _entrypoint(node: Node) -> Entrypoint:
    _flags(node, {})
    return Entrypoint(node.line, node.original, *_command_line(node))


def _shell(node: Node) -> Shell:
    _flags(node, {})
    values = _json_or_none(node)
    if not node.rest or values == []:
        raise _error(node, "SHELL requires at least one argument")
    if values is None:
        raise _error(node, "SHELL requires the arguments to be in JSON form")
    return Shell(node.line, node.original, tuple(values))


def _single(node: Node, keyword: str) -> str:
    _flags(node, {})
    if not node.rest:
        raise _error(node, f"{keyword} requires exactly one argument")
    return node.rest


def _expose(node: Node) -> Expose:
    _flags(node, {})
    if not node.rest:
        raise _error(node, "EXPOSE requires at least one argument")
    return Expose(node.line, node.original, tuple(_WHITESPACE.split(node.rest)))


def _volume(node: Node) -> Volume:
    _flags(node, {})
    values, _ = _list_args(node)
    if not values:
        raise _error(node, "VOLUME requires at least one argument")
    paths = tuple(v.strip() for v in values)
    if not all(paths):
        raise _error(node, "VOLUME specified can not be an empty string")
    return Volume(node.line, node.original, paths)


def _sources(node: Node, keyword: str) -> tuple[tuple[str, ...], str, tuple[Heredoc, ...]]:
    """COPY/ADD arguments: path sources, the destination, and heredoc sources (matched to
    the bodies read after the line by delimiter name)."""
    args, _ = _list_args(node)
    if len(args) < 2:
        raise _error(
            node,
            f"{keyword} requires at least two arguments, but only one was provided. "
            "Destination could not be determined",
        )
    *srcs, dest = args
    if parse_heredoc_word(dest) is not None:
        raise _error(node, f"{keyword} cannot accept a heredoc as a destination")
    bodies = {raw.word.name: _heredoc(raw) for raw in node.heredocs}
    paths: list[str] = []
    docs: list[Heredoc] = []
    for src in srcs:
        word = parse_heredoc_word(src)
        if word is None:
            paths.append(src)
        else:
            docs.append(bodies.get(word.name, Heredoc(word.name, "", word.expand, word.chomp)))
    return tuple(paths), dest, tuple(docs)


def _copy(node: Node) -> Copy:
    flags, common = _copying(node, "COPY", {"from": _STRING})
    return Copy(**common, from_=_one(flags, "from") or None)


def _add(node: Node) -> Add:
    flags, common = _copying(node, "ADD", {"keep-git-dir": _BOOL, "checksum": _STRING})
    return Add(**common, checksum=_one(flags, "checksum") or None,
               keep_git_dir=_one(flags, "keep-git-dir") == "true")


def _copying(node: Node, keyword: str, own: Mapping[str, str]) -> tuple[
        dict[str, list[str]], dict[str, Any]]:
    """COPY's and ADD's flags (the shared ones and ``own``), and the fields the two
    commands share."""
    flags = _flags(node, {"chown": _STRING, "chmod": _STRING, "link": _BOOL, **own})
    sources, dest, docs = _sources(node, keyword)
    return flags, {"line": node.line, "original": node.original, "sources": sources,
                   "dest": dest, "chown": _one(flags, "chown") or None,
                   "chmod": _one(flags, "chmod") or None,
                   "link": _one(flags, "link") == "true", "heredocs": docs}


def _healthcheck(node: Node) -> Healthcheck:
    parts = _WHITESPACE.split(node.rest, maxsplit=1) if node.rest else []
    if not parts:
        raise _error(node, "HEALTHCHECK requires at least one argument")
    kind = parts[0].upper()
    rest = parts[1] if len(parts) > 1 else ""
    if kind == "NONE":
        if rest:
            raise _error(node, "HEALTHCHECK NONE takes no arguments")
        return Healthcheck(node.line, node.original, ("NONE",))
    names = ("interval", "timeout", "start-period", "start-interval", "retries")
    flags = _flags(node, dict.fromkeys(names, _STRING))
    if kind != "CMD":
        raise _error(node, f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    sub = dataclasses.replace(node, rest=rest)
    cmd, shell_form = _command_line(sub)
    if not cmd:
        raise _error(node, "Missing command after HEALTHCHECK CMD")
    test = ("CMD-SHELL", *cmd) if shell_form else ("CMD", *cmd)
    durations: dict[str, int] = {}
    for name in names[:4]:
        value = _one(flags, name) or ""
        try:
            nanos = parse_duration(value) if value else 0
        except ValueError as exc:
            raise _error(node, str(exc)) from None
        if 0 != nanos < _MIN_HEALTH_DURATION:
            raise _error(node, f'Interval "{name}" cannot be less than 1ms')
        durations[name] = nanos
    retries = 0
    raw_retries = _one(flags, "retries") or ""
    if raw_retries:
        if not re.fullmatch(r"[-+]?\d+", raw_retries):
            raise _error(node, f'strconv.ParseInt: parsing "{raw_retries}": invalid syntax')
        retries = int(raw_retries)
        if retries < 0:
            raise _error(node, f"--retries cannot be negative ({retries})")
    return Healthcheck(
        node.line,
        node.original,
        test,
        interval=durations["interval"],
        timeout=durations["timeout"],
        start_period=durations["start-period"],
        start_interval=durations["start-interval"],
        retries=retries,
    )


def _onbuild(node: Node) -> OnBuild:
    _flags(node, {})
    if not node.rest:
        raise _error(node, "ONBUILD requires at least one argument")
    trigger = node.rest.split()[0].upper()
    if trigger == "ONBUILD":
        raise _error(node, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _error(node, f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    for raw in node.heredocs:
        expression += "\n" + raw.content + raw.word.name
    return OnBuild(node.line, node.original, expression)


_BUILDERS: dict[str, Callable[[Node], Command]] = {
    "from": _from,
    "arg": _arg,
    "env": _env,
    "label": _label,
    "run": _run,
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "shell": _shell,
    "expose": _expose,
    "workdir": lambda n: Workdir(n.line, n.original, _single(n, "WORKDIR")),
    "user": lambda n: User(n.line, n.original, _single(n, "USER")),
    "stopsignal": lambda n: StopSignal(n.line, n.original, _single(n, "STOPSIGNAL")),
    "maintainer": lambda n: Maintainer(n.line, n.original, _single(n, "MAINTAINER")),
    "volume": _volume,
    "copy": _copy,
    "add": _add,
    "healthcheck": _healthcheck,
    "onbuild": _onbuild,
}


# -- substitution -----------------------------------------------------------------------------


def expand(cmd: Command, env: Mapping[str, str], escape: str = "\\") -> Command:
    """A copy of ``cmd`` with variables substituted and quotes removed in exactly the places
    Docker does it. RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK text is left for the shell (a RUN's
    ``--mount`` values are expanded, as BuildKit does); ONBUILD waits for the child build;
    heredoc bodies are the executor's (``expand_heredoc``)."""

    def word(text: str) -> str:
        return expand_word(text, env, escape)

    def maybe(text: str | None) -> str | None:
        return None if text is None else word(text)

    try:
        match cmd:
            case From():
                return dataclasses.replace(cmd, base=word(cmd.base), platform=maybe(cmd.platform))
            case Arg():
                pairs = tuple((word(k), maybe(v)) for k, v in cmd.pairs)
                return dataclasses.replace(cmd, pairs=pairs)
            case Env() | Label():
                kvs = tuple((word(k), word(v)) for k, v in cmd.pairs)
                return dataclasses.replace(cmd, pairs=kvs)
            case Expose():
                ports = tuple(p for port in cmd.ports for p in expand_words(port, env, escape))
                return dataclasses.replace(cmd, ports=ports)
            case Workdir():
                return dataclasses.replace(cmd, path=word(cmd.path))
            case User():
                return dataclasses.replace(cmd, user=word(cmd.user))
            case StopSignal():
                return dataclasses.replace(cmd, signal=word(cmd.signal))
            case Volume():
                return dataclasses.replace(cmd, paths=tuple(word(p) for p in cmd.paths))
            case Copy() | Add():
                changes: dict[str, object] = {
                    "sources": tuple(word(s) for s in cmd.sources),
                    "dest": word(cmd.dest),
                    "from_": maybe(cmd.from_),
                    "chown": maybe(cmd.chown),
                    "chmod": maybe(cmd.chmod),
                }
                if isinstance(cmd, Add):
                    changes["checksum"] = maybe(cmd.checksum)
                return dataclasses.replace(cmd, **changes)  # type: ignore[arg-type]
            case Run() if cmd.mounts:
                flags = dict(cmd.flags)
                flags["mount"] = tuple(word(m) for m in cmd.mounts)
                return dataclasses.replace(cmd, flags=flags)
            case _:
                return cmd
    except LexError as exc:
        raise DockerfileError(str(exc), line=cmd.line) from None
