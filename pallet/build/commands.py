"""The typed instructions a Dockerfile parses into.

Each instruction is a frozen value so the executor can substitute variables into a copy
(``dockerfile.expand``) without the parsed file changing underneath a cache key. Values are
kept as written until then: quotes in ``ENV a="x y"`` are removed by substitution, exactly
when Docker removes them, not by the parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument


class DockerfileError(InvalidArgument):
    """A Dockerfile Docker would refuse; ``line`` is the 1-based line of the instruction (or
    directive, or heredoc start) at fault, and the message names it as Docker's does."""

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(f"dockerfile parse error on line {line}: {message}", op="build")
        self.line = line
        self.reason = message


@dataclass(frozen=True)
class Heredoc:
    """A ``<<NAME`` body. ``content`` keeps its final newline, as BuildKit hands it on, and
    has already lost its leading tabs when ``chomp`` (``<<-NAME``). ``expand`` is false when
    the delimiter was quoted: the body is then taken literally."""

    name: str
    content: str
    expand: bool
    chomp: bool


@dataclass(frozen=True)
class Command:
    """``line`` is where the instruction starts; ``original`` is how the classic builder
    prints it in ``Step N/M : ...`` (continuations joined, comments inside them dropped)."""

    line: int
    original: str


@dataclass(frozen=True)
class From(Command):
    base: str
    name: str | None
    platform: str | None


@dataclass(frozen=True)
class Arg(Command):
    pairs: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Env(Command):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Label(Command):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Run(Command):
    """``flags`` maps each given ``--mount``/``--network``/``--security`` to its raw values in
    order (``--mount`` may repeat)."""

    cmd: tuple[str, ...]
    shell_form: bool
    heredocs: tuple[Heredoc, ...] = ()
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def mounts(self) -> tuple[str, ...]:
        return self.flags.get("mount", ())

    @property
    def network(self) -> str | None:
        values = self.flags.get("network", ())
        return values[-1] if values else None

    @property
    def security(self) -> str | None:
        values = self.flags.get("security", ())
        return values[-1] if values else None

    def shell_script(self) -> str:
        """The shell-form command with its heredoc bodies inlined, so ``sh -c`` sees the
        same text a shell would have read from the Dockerfile (BuildKit's approach when a
        heredoc is not the whole command)."""
        parts = [self.cmd[0] if self.cmd else ""]
        parts.extend(doc.content + doc.name for doc in self.heredocs)
        return "\n".join(parts)


@dataclass(frozen=True)
class Cmd(Command):
    cmd: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Entrypoint(Command):
    cmd: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Shell(Command):
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Expose(Command):
    ports: tuple[str, ...]


@dataclass(frozen=True)
class Workdir(Command):
    path: str


@dataclass(frozen=True)
class User(Command):
    user: str


@dataclass(frozen=True)
class Volume(Command):
    paths: tuple[str, ...]


@dataclass(frozen=True)
class StopSignal(Command):
    signal: str


@dataclass(frozen=True)
class Maintainer(Command):
    name: str


@dataclass(frozen=True)
class Copy(Command):
    """``sources`` are context (or ``from_`` stage) paths; heredoc sources are in
    ``heredocs``, each to be written as a file named after its delimiter."""

    sources: tuple[str, ...]
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True)
class Add(Copy):
    """COPY's fields, and what only ADD has."""

    checksum: str | None = None
    keep_git_dir: bool = False


@dataclass(frozen=True)
class Healthcheck(Command):
    """Durations in nanoseconds, 0 meaning "not set" (the image config then omits them and
    the daemon's defaults apply)."""

    test: tuple[str, ...] | None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def config(self) -> dict[str, Any]:
        """The image config's ``Healthcheck`` object; zero fields are left out as Docker's
        ``omitempty`` leaves them out."""
        out: dict[str, Any] = {}
        if self.test is not None:
            out["Test"] = list(self.test)
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True)
class OnBuild(Command):
    """``expression`` is the trigger as the image config stores it (``RUN echo hi``); a
    heredoc trigger carries its body and terminator after a newline."""

    expression: str


@dataclass
class Stage:
    index: int
    name: str | None
    from_: From
    commands: list[Command] = field(default_factory=list)


@dataclass
class Dockerfile:
    meta_args: list[Arg]
    stages: list[Stage]
    escape: str = "\\"
    syntax: str | None = None

    def stage(self, name_or_index: str) -> Stage | None:
        """The stage ``--target``/``COPY --from`` names: by name (case-insensitive), else by
        index."""
        for stage in self.stages:
            if stage.name is not None and stage.name == name_or_index.lower():
                return stage
        if name_or_index.isdecimal() and int(name_or_index) < len(self.stages):
            return self.stages[int(name_or_index)]
        return None
