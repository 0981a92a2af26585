"""Per-container runtime state: /run/pallet-runtime/<id>/state.json and friends.

state.json is written atomically (temp file, fsync, rename). The status is never
stored: it is derived each time from the init pid AND that pid's start time (a reused
pid is not the container), the exec fifo (present until `start`) and the freezer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from pallet.errors import Conflict, InvalidArgument, InvalidState, NotFound
from pallet.linux import proc
from pallet.oci import jsonfast

DEFAULT_ROOT = "/run/pallet-runtime"
OCI_VERSION = "1.2.0"

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

EXEC_FIFO = "exec.fifo"
STATE_FILE = "state.json"

# Which verbs each status allows; every verb checks here first (one table, one place).
ALLOWED = {
    "start": (CREATED,),
    "kill": (CREATED, RUNNING, PAUSED),
    "pause": (RUNNING,),
    "resume": (PAUSED,),
    "exec": (CREATED, RUNNING),
    "delete": (STOPPED,),
    "update": (CREATED, RUNNING, PAUSED),
    "ps": (CREATED, RUNNING, PAUSED),
    "events": (CREATED, RUNNING, PAUSED),
}


def check_id(cid: str) -> None:
    """Container ids are path components: refuse anything that is not a plain name."""
    ok = cid and len(cid) <= 1024 and cid not in (".", "..") and cid[0] not in "-."
    if ok:
        for ch in cid:
            if not (ch.isascii() and (ch.isalnum() or ch in "_+-.")):
                ok = False
                break
    if not ok:
        raise InvalidArgument(f"invalid container id format: {cid!r}", obj=cid)


class Container:
    """A container's state directory and what it records."""

    def __init__(self, root: str, cid: str, data: dict[str, object]) -> None:
        self.root = root
        self.id = cid
        self.dir = os.path.join(root, cid)
        self.data = data

    # --- what state.json records ------------------------------------------------------

    @property
    def pid(self) -> int:
        pid = self.data.get("pid", 0)
        return pid if isinstance(pid, int) else 0

    @property
    def bundle(self) -> str:
        return str(self.data.get("bundle", ""))

    @property
    def config(self) -> dict[str, object]:
        cfg = self.data.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def cgroup_paths(self) -> dict[str, str]:
        paths = self.data.get("cgroupPaths")
        return paths if isinstance(paths, dict) else {}

    @property
    def annotations(self) -> dict[str, str]:
        ann = self.config.get("annotations")
        return ann if isinstance(ann, dict) else {}

    # --- derived status -----------------------------------------------------------------

    def status(self) -> str:
        started = self.data.get("pidStartTime")
        if not self.pid or not isinstance(started, int) or not proc.alive(self.pid, started):
            return STOPPED
        if os.path.exists(os.path.join(self.dir, EXEC_FIFO)):
            return CREATED
        if self.cgroup_paths and self.frozen():
            return PAUSED
        return RUNNING

    def frozen(self) -> bool:
        from pallet.runtime.cgroups import Cgroup

        return Cgroup.from_paths(self.cgroup_paths).frozen()

    def require(self, verb: str) -> str:
        """The current status, or InvalidState if ``verb`` is not allowed in it."""
        status = self.status()
        if status not in ALLOWED[verb]:
            raise InvalidState(
                f"cannot {verb} container {self.id}: container is {status}"
                + (", not running" if verb in ("pause", "exec") and status == STOPPED else ""),
                op=verb, obj=self.id, state=status,
            )
        return status

    def oci_state(self) -> dict[str, object]:
        status = self.status()
        out: dict[str, object] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": self.pid if status != STOPPED else 0,
            "bundle": self.bundle,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    # --- persistence ----------------------------------------------------------------------

    def save(self) -> None:
        write_atomic(os.path.join(self.dir, STATE_FILE), jsonfast.dumps(self.data).encode())

    def lock(self) -> int:
        """Serialize verbs on this container (flock on its directory); returns the fd."""
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def write_atomic(path: str, data: bytes, mode: int = 0o600, durable: bool = False) -> None:
    """Temp file + rename: readers see the old content or the new, never a torn write.

    Runtime state describes live processes and lives in /run, which does not outlive a
    reboot (and the processes do not either), so by default there is no fsync: it
    would only guard against a power loss after which the state means nothing. Pass
    ``durable`` for files that must survive one.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def new(root: str, cid: str, data: dict[str, object]) -> Container:
    """Reserve ``cid``: mkdir is the atomic test for a duplicate id."""
    check_id(cid)
    os.makedirs(root, mode=0o700, exist_ok=True)
    try:
        os.mkdir(os.path.join(root, cid), 0o700)
    except FileExistsError:
        raise Conflict(f"container with id exists: {cid}", op="create", obj=cid) from None
    data.setdefault("created", rfc3339(time.time()))
    return Container(root, cid, data)


def load(root: str, cid: str) -> Container:
    check_id(cid)
    path = os.path.join(root, cid, STATE_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"container does not exist: {cid}", obj=cid) from None
    except NotADirectoryError:
        raise NotFound(f"container does not exist: {cid}", obj=cid) from None
    data = jsonfast.loads(raw)
    if not isinstance(data, dict):
        raise InvalidState(f"container {cid}: corrupt state file {path}", obj=cid)
    return Container(root, cid, data)


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, STATE_FILE)))


def remove_dir(path: str) -> None:
    """Remove a state directory and its few plain files."""
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def rfc3339(ts: float) -> str:
    t = time.gmtime(ts)
    frac = int((ts % 1) * 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{frac:09d}Z"
