"""Docker's shell-word lexer: quote removal, escapes and ``$var`` substitution.

Docker does not run a shell to expand ``COPY $SRC /x`` or ``ENV a="x y"``; it runs its own
small lexer that imitates one (BuildKit's ``frontend/dockerfile/shell``). Users write
Dockerfiles against that lexer's quirks, so this module reproduces them rather than
``shlex``'s: single quotes take everything literally, double quotes let ``$`` and the escape
character through, an unset variable is the empty string, and splitting into words happens
*after* substitution except inside quotes.

The lexer also runs in a "raw" mode (quotes and escapes kept, unset variables left as
written) which the parser uses to find heredoc words without changing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_UNMATCHED = "unexpected end of statement while looking for matching "


class LexError(ValueError):
    """A word the lexer cannot process (an unclosed quote or ``${``, a bad modifier)."""


@dataclass
class _Words:
    """Accumulates the word split of one lexer run, as BuildKit's ``wordsStruct`` does:
    whitespace that came from the source or from a variable's value splits, whitespace
    inside quotes or behind an escape does not."""

    word: str = ""
    words: list[str] = field(default_factory=list)
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class ShellLex:
    """One lexer configuration; ``process`` may be called many times."""

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        skip_quotes: bool = False,
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes
        self._text = ""
        self._pos = 0
        self._env: Mapping[str, str] = {}
        self._raw_escapes = raw_escapes

    def process(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        """The whole text with substitutions applied, and its split into words."""
        self._text, self._pos, self._env = text, 0, env
        try:
            return self._stop_on(None, self.raw_escapes)
        except LexError as exc:
            raise LexError(f"failed to process {_go_quote(text)}: {exc}") from None

    # -- scanner ---------------------------------------------------------------------------

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _next(self) -> str:
        ch = self._peek()
        if ch:
            self._pos += 1
        return ch

    # -- grammar ---------------------------------------------------------------------------

    def _stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self._raw_escapes = self._raw_escapes, raw_escapes
        try:
            return self._stop_on_inner(stop)
        finally:
            self._raw_escapes = saved

    def _stop_on_inner(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while self._peek():
            ch = self._peek()
            if stop is not None and ch == stop:
                self._next()
                return "".join(result), words.finish()
            if ch == "$":
                value = self._dollar()
                result.append(value)
                words.add_string(value)
            elif ch in "'\"" and not self.skip_quotes:
                value = self._single_quote() if ch == "'" else self._double_quote()
                result.append(value)
                words.add_raw(value)
            else:
                ch = self._next()
                if ch == self.escape:
                    if self._raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self._next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise LexError(_UNMATCHED + stop)
        return "".join(result), words.finish()

    def _single_quote(self) -> str:
        opening = self._next()
        out = [opening] if self.raw_quotes else []
        while True:
            ch = self._next()
            if not ch:
                raise LexError(_UNMATCHED + "single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        opening = self._next()
        out = [opening] if self.raw_quotes else []
        while True:
            ch = self._peek()
            if not ch:
                raise LexError(_UNMATCHED + "double-quote")
            if ch == '"':
                self._next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == self.escape:
                if self._raw_escapes:
                    out.append(ch)
                following = self._peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        name: list[str] = []
        while self._peek():
            ch = self._peek()
            if not name and ch.isdecimal():
                while self._peek().isdecimal():
                    name.append(self._next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self._next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(self._next())
        return "".join(name)

    def _lookup(self, name: str) -> str | None:
        return self._env.get(name)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value = self._lookup(name)
            if value is None:
                return "$" + name if self.skip_unset else ""
            return value
        self._next()
        if not self._peek():
            raise LexError("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise LexError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if ch == "}":
            value = self._lookup(name)
            if value is None:
                return "${" + name + "}" if self.skip_unset else ""
            return value
        if not ch:
            raise LexError("syntax error: missing '}'")
        if ch == "/":
            return self._replace(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%"):
            raise LexError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self._stop_on("}", ch in "#%")
        except LexError:
            if not self._peek():
                raise LexError("syntax error: missing '}'") from None
            raise
        value = self._lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + modifier + word + "}"
        is_set = value is not None
        value = value or ""
        empty = null_is_unset and value == ""
        if ch == "-":
            return word if not is_set or empty else value
        if ch == "+":
            return "" if not is_set or empty else word
        if ch == "?":
            if not is_set:
                raise LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if empty:
                raise LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        return _trim(value, word, suffix=ch == "%", greedy=greedy)

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        try:
            pattern, _ = self._stop_on("/", True)
        except LexError:
            raise LexError("syntax error: missing '/' in ${}") from None
        try:
            replacement, _ = self._stop_on("}", True)
        except LexError:
            raise LexError("syntax error: missing '}'") from None
        value = self._lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _shell_pattern(pattern, greedy=True)
        return regex.sub(lambda _m: replacement, value or "", count=0 if replace_all else 1)


def _shell_pattern(pattern: str, *, greedy: bool) -> re.Pattern[str]:
    """``*`` and ``?`` of a ``${var%pattern}`` as a regex; no bracket expressions, as in
    BuildKit."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            escaped = pattern[i] if i < len(pattern) else ""
            if escaped not in ("*", "?", "\\"):
                raise LexError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'"
                )
            out.append(re.escape(escaped))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim(value: str, pattern: str, *, suffix: bool, greedy: bool) -> str:
    """``${v%p}``/``${v%%p}`` (suffix) and ``${v#p}``/``${v##p}`` (prefix): remove the
    shortest, or with ``greedy`` the longest, matching end of the value."""
    regex = _shell_pattern(pattern, greedy=True)
    cuts = range(len(value) + 1)
    if suffix:
        order = cuts if greedy else reversed(cuts)
        for i in order:
            if regex.fullmatch(value[i:]):
                return value[:i]
    else:
        order = reversed(cuts) if greedy else cuts
        for i in order:
            if regex.fullmatch(value[:i]):
                return value[i:]
    return value


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the plain text Dockerfiles hold."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word with quotes removed and variables substituted; spaces are kept (Docker's
    ``ProcessWord``, used for ENV values, WORKDIR, COPY sources ...)."""
    return ShellLex(escape).process(word, env)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """The text substituted and split into words (Docker's ``ProcessWords``, used for
    EXPOSE so that ``EXPOSE $PORTS`` can name several ports)."""
    return ShellLex(escape).process(text, env)[1]


def raw_words(text: str) -> list[str]:
    """The text split into words with quotes, escapes and ``$`` references left exactly as
    written; an unbalanced quote gives no words, as in BuildKit's heredoc scan."""
    lex = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        return lex.process(text, {})[1]
    except LexError:
        return []


def expand_heredoc(content: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Heredoc content with variables substituted and quotes left alone, as BuildKit treats
    an unquoted ``COPY <<EOF`` body."""
    return ShellLex(escape, skip_quotes=True).process(content, env)[0]
