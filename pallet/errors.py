"""One exception hierarchy for the whole house.

Every error names the operation that failed and the object it failed on, so a message
that travels up through several layers still says what happened to what. The API layer
maps these classes (and only these) to HTTP status codes; the runtime CLI prints them
as one line on stderr.
"""

from __future__ import annotations


class PalletError(Exception):
    """Base of every error pallet raises on purpose."""

    def __init__(self, message: str, *, op: str = "", obj: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.obj = obj

    def __str__(self) -> str:
        return self.message


class NotFound(PalletError):
    """The named object does not exist."""


class Conflict(PalletError):
    """The object exists already, or is in use."""


class InvalidArgument(PalletError):
    """The caller's input is malformed or out of range."""


class InvalidState(PalletError):
    """The operation is not allowed in the object's current state."""

    def __init__(self, message: str, *, op: str = "", obj: str = "", state: str = "") -> None:
        super().__init__(message, op=op, obj=obj)
        self.state = state


class Forbidden(PalletError):
    """The request is well-formed but refused (an address pool overlapping another)."""


class NotSupported(PalletError):
    """The host (kernel, filesystem, libraries) cannot do what was asked."""


class SystemFailure(PalletError):
    """A kernel or system call failed; carries the errno and path when there is one."""

    def __init__(
        self, message: str, *, op: str = "", obj: str = "", errno: int = 0, path: str = ""
    ) -> None:
        super().__init__(message, op=op, obj=obj)
        self.errno = errno
        self.path = path


def start_exit_code(message: str, otherwise: int) -> int:
    """The exit code a process that could not start is given, from the reason: 127 for a
    command not found, 126 for one not executable, else ``otherwise`` (Docker's rules:
    dockerd records 128 in the container's state, the docker CLI exits 125)."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message.lower():
        return 126
    return otherwise
