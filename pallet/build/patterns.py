"""Path patterns of the build: ``.dockerignore`` and COPY/ADD source wildcards.

Two different pattern languages meet here, as they do in Docker. ``.dockerignore`` lines
follow moby's patternmatcher (``**`` crosses directories; a pattern that matches a
directory excludes all beneath it; the last matching line wins and ``!`` re-includes).
COPY sources follow Go's ``filepath.Match`` one path segment at a time (``*`` never
crosses ``/``). Both are pure functions of strings except the two walkers at the end.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from enum import Enum

from pallet.errors import InvalidArgument

# -- Go's filepath.Match ------------------------------------------------------------------


class _BadPattern(ValueError):
    pass


def _class_item(pattern: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a ``[...]`` class, Go's ``getEsc``."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise _BadPattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise _BadPattern(pattern)
    if i + 1 >= len(pattern):
        raise _BadPattern(pattern)  # a class must be closed
    return pattern[i], i + 1


def _go_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= len(pattern):
                raise _BadPattern(pattern)
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            negated = i < len(pattern) and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[str] = []
            first = True
            while first or pattern[i] != "]":
                first = False
                lo, i = _class_item(pattern, i)
                hi = lo
                if pattern[i] == "-":
                    hi, i = _class_item(pattern, i + 1)
                if lo <= hi:  # Go accepts an empty range and matches nothing with it
                    ranges.append(re.escape(lo) + "-" + re.escape(hi))
            i += 1
            if ranges:
                out.append(("[^" if negated else "[") + "".join(ranges) + "]")
            else:
                out.append("." if negated else "(?!)")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def go_match(pattern: str, name: str) -> bool:
    """Go's ``path/filepath.Match``: the whole ``name`` must match; a malformed pattern
    matches nothing (Go returns ErrBadPattern)."""
    try:
        regex = _go_regex(pattern)
    except _BadPattern:
        return False
    return re.fullmatch(regex, name, re.DOTALL) is not None


def _valid_go_pattern(pattern: str) -> bool:
    try:
        _go_regex(pattern)
    except _BadPattern:
        return False
    return True


def _has_meta(path: str) -> bool:
    return any(c in path for c in "*?[\\")


# -- .dockerignore ------------------------------------------------------------------------


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean``: lexical, ``""`` is ``"."``, a leading ``//`` is one ``/``."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_dockerignore(text: str) -> list[str]:
    """The patterns of a ``.dockerignore`` as moby's ``ignorefile.ReadAll`` gives them. A
    ``#`` only starts a comment in the first column; ``/x`` means the context's ``x``."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"  # "dir/**"
    SUFFIX = "suffix"  # "**/name"
    REGEX = "regex"


_REGEX_SPECIALS = frozenset(".+()|{}$")


class _Pattern:
    # A plain class, not a dataclass: the CLI reads .dockerignore on every build, and
    # dataclasses costs ~12 ms of imports there.
    __slots__ = ("exclusion", "kind", "regex", "text")

    def __init__(self, text: str, exclusion: bool, kind: _Kind,
                 regex: re.Pattern[str] | None) -> None:
        self.text = text  # cleaned, without "!"
        self.exclusion = exclusion
        self.kind = kind
        self.regex = regex

    def matches(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """moby patternmatcher's conversion: ``**`` may span directories, ``*`` and ``?`` stay
    within one, ``\\`` escapes; plain patterns are compared as strings."""
    regex = ["^"]
    kind = _Kind.EXACT
    i = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch == "*":
            if i < len(text) and text[i] == "*":
                at_start = i == 1
                i += 1
                if i < len(text) and text[i] == "/":
                    i += 1
                if i >= len(text):
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        regex.append(".*")
                        kind = _Kind.REGEX
                else:
                    regex.append("(.*/)?")
                    kind = _Kind.REGEX
                if at_start:
                    kind = _Kind.SUFFIX
            else:
                regex.append("[^/]*")
                kind = _Kind.REGEX
        elif ch == "?":
            regex.append("[^/]")
            kind = _Kind.REGEX
        elif ch in _REGEX_SPECIALS:
            regex.append("\\" + ch)
        elif ch == "\\":
            if i < len(text):
                regex.append(re.escape(text[i]))
                i += 1
                kind = _Kind.REGEX
            else:
                regex.append("\\\\")
        elif ch in "[]":
            regex.append(ch)
            kind = _Kind.REGEX
        else:
            regex.append(ch)  # as moby does: "^" and "-" keep their regex meaning
    if kind is not _Kind.REGEX:
        return _Pattern(text, exclusion, kind, None)
    try:
        compiled = re.compile("".join(regex) + "$", re.DOTALL)
    except re.error as exc:
        raise InvalidArgument(f"syntax error in pattern: {text}", op="build") from exc
    return _Pattern(text, exclusion, kind, compiled)


class Matcher:
    """A ``.dockerignore`` pattern list, answering for paths relative to the context root
    (``a/b``, no leading ``./``)."""

    def __init__(self, patterns: list[str]) -> None:
        self._patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"', op="build")
                text = text[1:]
            if not _valid_go_pattern(text):
                raise InvalidArgument(f"syntax error in pattern: {text}", op="build")
            self._patterns.append(_compile(text, exclusion))
        self.has_exclusions = any(p.exclusion for p in self._patterns)

    def excluded(self, rel_path: str) -> bool:
        """Whether the path stays out of the context: the last pattern matching it, or
        matching one of its parent directories, decides."""
        path = go_clean(rel_path)
        parent = posixpath.dirname(path)
        parents: list[str] = []
        if parent:
            parts = parent.split("/")
            parents = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = False
        for pattern in self._patterns:
            # An exclusion can only undo a match, an inclusion only make one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.matches(path) or any(pattern.matches(p) for p in parents)
            if hit:
                matched = not pattern.exclusion
        return matched

    def can_skip_dir(self, rel_dir: str) -> bool:
        """Whether a walk may skip the directory's contents: it is excluded and no ``!``
        pattern could match anything beneath it. Errs towards descending."""
        path = go_clean(rel_dir)
        if not self.excluded(path):
            return False
        dir_parts = path.split("/")
        return not any(
            p.exclusion and _could_match_below(p.text, dir_parts) for p in self._patterns
        )


def _could_match_below(pattern: str, dir_parts: list[str]) -> bool:
    """Whether ``pattern`` might match the directory, an ancestor (which re-includes the
    whole subtree), or something under it. Segment by segment; ``**`` could be anything."""
    parts = pattern.split("/")
    for i, segment in enumerate(parts):
        if "**" in segment:
            return True
        if i >= len(dir_parts):
            return True  # the pattern goes on below the directory
        if not go_match(segment, dir_parts[i]):
            return False
    return True  # the pattern names the directory or one of its ancestors


# -- walking the context --------------------------------------------------------------------


def walk_context(root: str, matcher: Matcher) -> Iterator[str]:
    """Relative paths under ``root`` that go into the build context, each directory before
    its entries, entries in byte order as Go's ``filepath.Walk``. An excluded directory
    still appears when something beneath it is re-included, since that entry cannot exist
    without it. Symlinks are entries, never followed."""
    yield from _walk(root, "", matcher)


def _walk(root: str, rel: str, matcher: Matcher) -> Iterator[str]:
    try:
        names = sorted(os.listdir(os.path.join(root, rel) if rel else root))
    except FileNotFoundError:
        return
    for name in names:
        path = f"{rel}/{name}" if rel else name
        full = os.path.join(root, path)
        is_dir = os.path.isdir(full) and not os.path.islink(full)
        if not matcher.excluded(path):
            yield path
            if is_dir:
                yield from _walk(root, path, matcher)
        elif is_dir and not matcher.can_skip_dir(path):
            below = _walk(root, path, matcher)
            first = next(below, None)
            if first is not None:
                yield path
                yield first
                yield from below


def glob_context(root: str, pattern: str) -> list[str]:
    """COPY/ADD source wildcards over the context, Go's ``filepath.Glob`` rooted at
    ``root``: paths relative to it, sorted per directory, hidden files included. A path
    cannot climb out of the context (``../x`` is the context's ``x``, as in BuildKit)."""
    cleaned = go_clean("/" + pattern).lstrip("/") or "."
    if not _has_meta(cleaned):
        return [cleaned] if os.path.lexists(os.path.join(root, cleaned)) else []
    if not _valid_go_pattern(cleaned):
        return []
    return _glob(root, cleaned)


def _glob(root: str, pattern: str) -> list[str]:
    directory, base = posixpath.split(pattern)
    if not directory:
        dirs = ["."]
    elif _has_meta(directory):
        dirs = _glob(root, directory)
    else:
        dirs = [directory]
    found: list[str] = []
    for d in dirs:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        try:
            names = sorted(os.listdir(full))
        except OSError:
            continue
        for name in names:
            if go_match(base, name):
                found.append(name if d == "." else f"{d}/{name}")
    return found
