"""`--format`: the subset of Go templates the docker CLI's users write.

Text with actions: ``{{.Field.Sub}}``, ``{{.}}``, ``{{json .X}}``, ``{{join .X ", "}}``,
``{{upper .X}}``, ``{{lower .X}}``, ``{{title .X}}``, ``{{truncate .X 12}}``,
``{{println .X}}``; a leading ``table`` renders aligned columns with a header row as
docker does (tabwriter: min width 10, padding 3). Anything else is a clear error.
"""

from __future__ import annotations

# json through _json, no re, no shlex: `pallet ps` renders a template per row and
# every module imported is paid by every command.
from pallet.oci import jsonfast as json

_TOKENS: dict[str, list[str]] = {}  # action text -> its tokens (parsed once per command)


class TemplateError(ValueError):
    """The template cannot be parsed or evaluated."""


def _lookup(obj: object, path: str) -> object:
    if path == ".":
        return obj
    cur = obj
    for part in path.lstrip(".").split("."):
        if isinstance(cur, dict):
            if part not in cur:
                raise TemplateError(f"can't evaluate field {part}")
            cur = cur[part]
        elif hasattr(cur, part):
            cur = getattr(cur, part)
        else:
            raise TemplateError(f"can't evaluate field {part} in type {type(cur).__name__}")
    return cur


def _go_str(v: object) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(_go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_str(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def _arg(token: str, obj: object) -> object:
    if token.startswith("."):
        return _lookup(obj, token)
    if token[:1] in "\"'`":
        return token[1:-1]
    if token.lstrip("-").isdigit():
        return int(token)
    raise TemplateError(f"function {token!r} not defined")


def _tokens(action: str) -> list[str]:
    """Words of an action; a quoted string ("", '' or ``) stays one token, quotes kept."""
    cached = _TOKENS.get(action)
    if cached is not None:
        return cached
    out: list[str] = []
    i, n = 0, len(action)
    while i < n:
        c = action[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'`":
            end = action.find(c, i + 1)
            while c == '"' and end > 0 and action[end - 1] == "\\":
                end = action.find(c, end + 1)
            if end < 0:
                raise TemplateError("template parsing error: unterminated quoted string")
            out.append(action[i:end + 1])
            i = end + 1
            continue
        j = i
        while j < n and not action[j].isspace():
            j += 1
        out.append(action[i:j])
        i = j
    _TOKENS[action] = out
    return out


def _eval(action: str, obj: object) -> str:
    tokens = _tokens(action)
    if not tokens:
        raise TemplateError("template parsing error: empty action")
    head, args = tokens[0], [_arg(t, obj) for t in tokens[1:]]
    if head.startswith("."):
        if args:
            raise TemplateError(f"can't give argument to non-function {head}")
        return _go_str(_lookup(obj, head))
    if head == "json":
        return json.dumps(args[0] if args else obj)
    if head == "join" and len(args) == 2 and isinstance(args[0], list):
        return str(args[1]).join(_go_str(x) for x in args[0])
    if head in ("upper", "lower", "title") and len(args) == 1:
        text = _go_str(args[0])
        return text.upper() if head == "upper" else text.lower() if head == "lower" \
            else text.title()
    if head == "truncate" and len(args) == 2 and isinstance(args[1], int):
        return _go_str(args[0])[: args[1]]
    if head == "println":
        return " ".join(_go_str(a) for a in args) + "\n"
    raise TemplateError(f"template: unsupported action {{{{{action}}}}}")


def render(template: str, obj: object) -> str:
    """Render ``template`` for one object (no table handling)."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    out = []
    pos = 0
    for start, end, action in _actions(template):
        out.append(template[pos:start])
        out.append(_eval(action, obj))
        pos = end
    out.append(template[pos:])
    return "".join(out)


def _actions(template: str) -> list[tuple[int, int, str]]:
    """(start, end, action text) of each {{...}} (with Go's {{- -}} trim markers)."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        start = template.find("{{", pos)
        if start < 0:
            return found
        end = template.find("}}", start + 2)
        if end < 0:
            raise TemplateError("template parsing error: unclosed action")
        inner = template[start + 2:end]
        if inner.startswith("-"):
            inner = inner[1:]
        if inner.endswith("-"):
            inner = inner[:-1]
        found.append((start, end + 2, inner.strip()))
        pos = end + 2


def header(template: str, names: dict[str, str] | None = None) -> str:
    """The header row of a table template: each field action becomes its column name."""
    names = names or {}
    template = template.replace("\\t", "\t")
    out = []
    pos = 0
    for start, end, action in _actions(template):
        field = next((t for t in action.split() if t.startswith(".")), ".")
        key = field.lstrip(".").split(".")[-1] or "."
        out.append(template[pos:start])
        out.append(names.get(key, _upper_snake(key)))
        pos = end
    out.append(template[pos:])
    return "".join(out)


def _upper_snake(key: str) -> str:
    """CreatedSince -> CREATED SINCE (a space before each capital after a lower/digit)."""
    out = []
    for i, c in enumerate(key):
        if c.isupper() and i and (key[i - 1].islower() or key[i - 1].isdigit()):
            out.append(" ")
        out.append(c)
    return "".join(out).upper()


def tabulate(rows: list[str]) -> str:
    """Align tab-separated rows as Go's tabwriter(minwidth 10, padding 3) does."""
    cells = [r.split("\t") for r in rows]
    widths: list[int] = []
    for row in cells:
        for i, cell in enumerate(row[:-1]):
            w = max(len(cell) + 3, 10)
            if i >= len(widths):
                widths.append(w)
            else:
                widths[i] = max(widths[i], w)
    return "".join(
        "".join(c.ljust(widths[i]) for i, c in enumerate(row[:-1])) + row[-1] + "\n"
        for row in cells
    )


def format_all(fmt: str, objs: list[object], names: dict[str, str] | None = None) -> str:
    """docker's formatter: ``table …`` (header + aligned rows), ``json``, or a template."""
    if fmt == "json":
        return "".join(json.dumps(o) + "\n" for o in objs)
    if fmt.startswith("table"):
        body = fmt[len("table"):].lstrip() or "{{json .}}"
        rows = [header(body, names)] + [render(body, o) for o in objs]
        return tabulate(rows)
    return "".join(render(fmt, o) + "\n" for o in objs)


def show(flag: object, default: str, rows: list[dict[str, object]],
         names: dict[str, str] | None = None) -> str:
    """Rows under the user's --format (``flag``, if given) or the command's default table."""
    return format_all(flag if isinstance(flag, str) else default, list(rows), names)
