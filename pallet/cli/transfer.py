"""pallet save, pallet load: docker's verbs, flags, messages and exit codes."""

from __future__ import annotations

import os
import sys

from pallet.cli.flags import STR, Flag, UsageError, parse
from pallet.client.transport import Transport

# json through _json alone, as the client does (the json package imports re).
from pallet.oci import jsonfast as json


def _fail(message: str) -> int:
    """A client-side refusal: docker prints the bare message and exits 1."""
    sys.stderr.write(message + "\n")
    return 1


FORMATS = ("docker-archive", "oci-archive", "oci-dir")


def save(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-o,--output", STR, "Write to a file, instead of STDOUT"),
                     Flag("--format", STR, "docker-archive (default), oci-archive, oci-dir")])
    if not a.args:
        raise UsageError('"pallet save" requires at least 1 argument.')
    output = a.output if isinstance(a.output, str) else ""
    fmt = a.format if isinstance(a.format, str) else "docker-archive"
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: want one of {', '.join(FORMATS)}")
    if fmt == "oci-dir":
        # The archive palletd writes is an OCI layout already (as docker 25+'s): its
        # layout files go into the directory.
        if not output:
            raise UsageError("--format oci-dir needs -o DIRECTORY")
        if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
            return _fail(f"failed to save image: {output} exists and is not an empty "
                         "directory")
        from pallet.cli.ocidir import extract_layout

        resp = Transport(host).request("GET", "/images/get", {"names": None},
                                       repeated={"names": list(a.args)})
        try:
            extract_layout(resp.chunks(), output)
        finally:
            resp.close()
        return 0
    if not output and os.isatty(sys.stdout.fileno()):
        return _fail("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if output:
        directory = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(directory):
            return _fail(f'failed to save image: invalid output path: directory "{directory}" '
                         "does not exist")
    # names go as ?names=a&names=b, which `repeated` sends (it needs a query to ride on).
    from pallet.cli.objects import write_stream

    write_stream(Transport(host).request("GET", "/images/get", {"names": None},
                                         repeated={"names": list(a.args)}), output)
    return 0


def load(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-i,--input", STR, "Read from tar archive file, instead of STDIN"),
                     Flag("-q,--quiet", help="Suppress the load output")])
    if a.args:
        raise UsageError('"pallet load" accepts no arguments.')
    source = a.input if isinstance(a.input, str) else ""
    if not source and os.isatty(sys.stdin.fileno()):
        return _fail("requested load from stdin, but stdin is empty")
    try:
        if source and os.path.isdir(source):  # an OCI layout directory: sent as its tar
            from pallet.cli.ocidir import pack_layout

            data = pack_layout(source)
        else:
            data = open(source, "rb") if source else sys.stdin.buffer  # noqa: SIM115
    except OSError as exc:
        return _fail(f"open {source}: {(exc.strerror or str(exc)).lower()}")
    # As docker: progress only for a terminal to draw it on.
    quiet = bool(a.quiet) or not os.isatty(sys.stdout.fileno())
    resp = Transport(host).request("POST", "/images/load", {"quiet": quiet}, body=data,
                                   headers={"Content-Type": "application/x-tar"})
    try:
        for line in resp.lines():
            msg = json.loads(line)
            if not isinstance(msg, dict):
                continue
            if msg.get("error"):
                return _fail(str(msg["error"]))
            if isinstance(msg.get("stream"), str):
                sys.stdout.write(msg["stream"])
            elif msg.get("status"):
                sys.stdout.write(f"{msg.get('id', '')}: {msg['status']} "
                                 f"{msg.get('progress', '')}\n")
            sys.stdout.flush()
    finally:
        resp.close()
    return 0
