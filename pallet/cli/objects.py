"""What the noun commands (image, network, volume) share: filters, inspect, archives."""

from __future__ import annotations

import os
import sys

from pallet.client.transport import APIError, Response, Transport


def filters(values: object) -> dict[str, list[str]]:
    """``--filter k=v`` flags as the API's filters map."""
    out: dict[str, list[str]] = {}
    for f in values if isinstance(values, list) else []:
        k, _, v = str(f).partition("=")
        out.setdefault(k, []).append(v)
    return out


def inspect_each(host: str | None, names: list[str], path: str, fmt: object,
                 missing: str = "") -> int:
    """GET ``path`` (with {} for the name) for each name; print the JSON array or each
    rendered with ``fmt``. A 404 prints ``missing`` (or the daemon's message) and makes
    the exit status 1, the others still shown, as the docker CLI does."""
    t = Transport(host)
    found, code = [], 0
    for name in names:
        try:
            found.append(t.get_json(path.format(name)))
        except APIError as exc:
            if exc.status != 404:
                raise
            sys.stderr.write((missing.format(name) if missing else
                              f"Error response from daemon: {exc.message}") + "\n")
            code = 1
    if isinstance(fmt, str):
        from pallet.cli import template

        sys.stdout.write("".join(template.render(fmt, obj) + "\n" for obj in found))
    else:
        import json

        sys.stdout.write(json.dumps(found, indent=4) + "\n")
    return code


def write_stream(resp: Response, output: str) -> None:
    """A streamed body to stdout, or to ``output`` as docker's CopyToFile does: a temp
    file beside it, renamed when complete, so a failure never leaves a partial file."""
    try:
        if not output:
            sys.stdout.flush()
            for chunk in resp.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(output)),
                                   prefix=".pallet_temp_")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in resp.chunks():
                    f.write(chunk)
            os.rename(tmp, output)
        except BaseException:
            os.unlink(tmp)
            raise
    finally:
        resp.close()
