"""From Dockerfile text to raw instructions: directives, comments, continuations, heredocs.

This is the line-level half of BuildKit's ``parser.Parse``: it decides where each
instruction starts and ends and what text belongs to it, and nothing about what the
instruction means (``dockerfile.py`` does that). Its quirks are Docker's: only whole-line
comments exist, a comment or blank line may sit inside a continuation, continuation lines
keep their leading whitespace, and heredoc bodies are read verbatim after the line that
names them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pallet.build.commands import DockerfileError
from pallet.build.lexer import LexError, ShellLex, raw_words

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$", re.DOTALL)
_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})
_BOM = "\ufeff"


@dataclass(frozen=True)
class HeredocWord:
    """A ``<<NAME`` word as it appears on the instruction line."""

    name: str
    expand: bool
    chomp: bool


@dataclass
class RawHeredoc:
    word: HeredocWord
    content: str  # verbatim, before any tab chomping


@dataclass
class Node:
    """One instruction as read: lower-cased keyword, leading ``--flags``, the rest of the
    line, the original text and where it started."""

    keyword: str
    flags: list[str]
    rest: str
    original: str
    line: int
    escape: str = "\\"
    heredocs: list[RawHeredoc] = field(default_factory=list)


@dataclass
class ReadResult:
    nodes: list[Node]
    escape: str
    syntax: str | None
    line_count: int


def _lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept (heredoc bodies need them); only ``\\n`` splits, as Go's
    scanner does, so a form feed inside a line stays inside it."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _continuation(escape: str) -> re.Pattern[str]:
    esc = re.escape(escape)
    return re.compile(rf"([^{esc}]){esc}[ \t]*$|^{esc}[ \t]*$")


def _is_comment(raw: str) -> bool:
    return raw.rstrip("\r\n").lstrip().startswith("#")


def read(
    text: str, *, escape: str = "\\", directives: bool = True, first_line: int = 1
) -> ReadResult:
    """Split ``text`` into raw instructions. ``directives`` is off for a lone ONBUILD
    trigger, which has no file header to carry them."""
    lines = _lines(text)
    if lines and lines[0].startswith(_BOM):
        lines[0] = lines[0][len(_BOM) :]
    seen: set[str] = set()
    syntax: str | None = None
    looking_for_directives = directives
    continuation = _continuation(escape)
    nodes: list[Node] = []
    i = 0
    while i < len(lines):
        lineno = first_line + i
        token = lines[i].rstrip("\r\n").lstrip()
        i += 1
        if looking_for_directives:
            match = _DIRECTIVE.match(token)
            key = match.group(1).lower() if match else ""
            if match and key in _KNOWN_DIRECTIVES:
                if key in seen:
                    message = f"only one {key} parser directive can be used"
                    raise DockerfileError(message, line=lineno)
                seen.add(key)
                value = match.group(2)
                if key == "escape":
                    if value not in ("`", "\\"):
                        raise DockerfileError(
                            f"invalid escape token '{value}' does not match ` or \\", line=lineno
                        )
                    escape = value
                    continuation = _continuation(escape)
                elif key == "syntax":
                    syntax = value
            else:
                looking_for_directives = False
        if token.startswith("#"):
            token = ""
        line, done = _trim_continuation(token, continuation)
        if done and not line:
            continue
        start = lineno
        while not done and i < len(lines):
            raw = lines[i]
            i += 1
            if _is_comment(raw) or not raw.strip():
                continue
            more, done = _trim_continuation(raw.rstrip("\r\n"), continuation)
            line += more
        node = _node(line, start)
        node.escape = escape
        if _can_contain_heredoc(node):
            for word in _heredoc_words(line, start):
                body: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError("unterminated heredoc", line=start)
                    raw = lines[i]
                    i += 1
                    candidate = raw.rstrip("\r\n")
                    if word.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == word.name:
                        break
                    body.append(raw)
                node.heredocs.append(RawHeredoc(word, "".join(body)))
        nodes.append(node)
    return ReadResult(nodes, escape, syntax, len(lines))


def _trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    """The line without a trailing escape character, and whether the instruction ends here."""
    if continuation.search(line):
        return continuation.sub(lambda m: m.group(1) or "", line, count=1), False
    return line, True


def _node(line: str, start: int) -> Node:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = _extract_flags(parts[1])
    return Node(parts[0].lower(), flags, rest.strip(), line.strip(), start)


def _extract_flags(text: str) -> tuple[str, list[str]]:
    """Leading ``--name[=value]`` words, quotes removed; they end at the first word not
    starting with ``--`` or at a bare ``--``."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith("--", pos):
            return text[pos:], flags
        word: list[str] = []
        quote = ""
        while pos < len(text):
            ch = text[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < len(text):
                    pos += 1
                    word.append(text[pos])
                elif ch != "\\":
                    word.append(ch)
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote = ch
            elif ch == "\\":
                if pos + 1 < len(text):
                    pos += 1
                    word.append(text[pos])
            else:
                word.append(ch)
            pos += 1
        flag = "".join(word)
        if flag == "--":
            return text[pos:], flags
        flags.append(flag)


def _can_contain_heredoc(node: Node) -> bool:
    keyword, rest = node.keyword, node.rest
    if keyword == "onbuild":
        inner = _node(rest, node.line) if rest else None
        if inner is None:
            return False
        keyword, rest = inner.keyword, inner.rest
    if keyword not in _HEREDOC_KEYWORDS or "<<" not in rest:
        return False
    return not looks_like_json(rest)


def looks_like_json(rest: str) -> bool:
    """Whether ``rest`` is the JSON (exec) form; a malformed array is the shell form."""
    stripped = rest.lstrip()
    if not stripped.startswith("["):
        return False
    try:
        return isinstance(json.loads(stripped), list)
    except ValueError:
        return False


def parse_heredoc_word(word: str) -> HeredocWord | None:
    """``<<EOF``, ``<<-EOF``, ``<<"EOF"``, ``3<<EOF`` as a heredoc, else None. A quote
    anywhere in the delimiter turns substitution in the body off, as in a shell."""
    match = _HEREDOC.match(word)
    if match is None or not match.group(3):
        return None
    rest = match.group(3)
    plain = ShellLex("\\", skip_unset=True).process(rest, {})[1]
    if len(plain) != 1:
        return None
    raw = ShellLex("\\", skip_unset=True, raw_quotes=True).process(rest, {})[1]
    quotes = plain[0].count("'") + plain[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"') if raw else -1
    return HeredocWord(plain[0], quotes == raw_quotes, match.group(2) == "-")


def _heredoc_words(line: str, start: int) -> list[HeredocWord]:
    words: list[HeredocWord] = []
    for word in raw_words(line):
        try:
            heredoc = parse_heredoc_word(word)
        except LexError as exc:
            raise DockerfileError(str(exc), line=start) from None
        if heredoc is not None:
            words.append(heredoc)
    return words
