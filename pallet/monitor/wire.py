"""palletd <-> pallet-monitor: one JSON object per line each way; attach then streams.

A request is ``{"op": ..., ...}``; the reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": message, "kind": "NotFound" | "Conflict" | ...}``.

``attach`` turns the connection into a stream: the monitor sends the container's output
in Docker's multiplexed frames (a header of stream byte, three zero bytes and a
big-endian 32-bit length, then the bytes); the client sends raw stdin, and shuts its
write side down for stdin's EOF. ``watch`` turns it into a feed of events, one JSON
object per line.
"""

from __future__ import annotations

import struct

from pallet.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    PalletError,
    SystemFailure,
)
from pallet.oci import jsonfast

STDIN, STDOUT, STDERR = 0, 1, 2
HEADER = struct.Struct(">BxxxI")

_KINDS: dict[str, type[PalletError]] = {
    cls.__name__: cls
    for cls in (NotFound, Conflict, InvalidArgument, InvalidState, NotSupported,
                SystemFailure)
}


def frame(stream: int, data: bytes) -> bytes:
    return HEADER.pack(stream, len(data)) + data


def encode(msg: dict[str, object]) -> bytes:
    return jsonfast.dumps(msg).encode() + b"\n"


def decode(line: bytes) -> dict[str, object]:
    msg = jsonfast.loads(line)
    if not isinstance(msg, dict):
        raise InvalidArgument("monitor message is not a JSON object")
    return msg


def error_reply(exc: BaseException) -> dict[str, object]:
    kind = type(exc).__name__ if type(exc).__name__ in _KINDS else "SystemFailure"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return {"ok": False, "error": text, "kind": kind}


def raise_error(reply: dict[str, object]) -> None:
    """Turn an error reply back into the exception the monitor raised."""
    if reply.get("ok"):
        return
    cls = _KINDS.get(str(reply.get("kind")), SystemFailure)
    raise cls(str(reply.get("error", "pallet-monitor failed")), op="monitor")
