"""User namespaces: writing id maps, and namespaces made only to describe a mapping."""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.spec import IDMapping


def format_map(mappings: list[IDMapping]) -> bytes:
    return "".join(f"{x.container_id} {x.host_id} {x.size}\n" for x in mappings).encode()


def write_maps(pid: int, uid_map: list[IDMapping], gid_map: list[IDMapping]) -> None:
    """Give process ``pid``'s user namespace its maps (written once, from outside)."""
    with open(f"/proc/{pid}/uid_map", "wb", buffering=0) as f:
        f.write(format_map(uid_map))
    with open(f"/proc/{pid}/gid_map", "wb", buffering=0) as f:
        f.write(format_map(gid_map))


def mapped_namespace_fd(uid_map: list[IDMapping], gid_map: list[IDMapping]) -> int:
    """An fd of a fresh user namespace with these maps (for idmapped mounts).

    A helper child enters a new user namespace and holds it until we have its maps
    written and its namespace opened. Must run in the host's pid namespace (it names the
    helper in /proc by pid).
    """
    from pallet.linux import sched

    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the helper: unshare, say so, wait until released
        code = 1
        try:
            os.close(go_r)
            os.close(done_w)
            sched.unshare(sched.CLONE_NEWUSER)
            os.write(go_w, b"1")
            os.read(done_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(go_w)
    os.close(done_r)
    try:
        if os.read(go_r, 1) != b"1":
            raise OSError(errno.EPERM, "could not create a user namespace for an id mapping")
        write_maps(pid, uid_map, gid_map)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(go_r)
        os.close(done_w)
        os.waitpid(pid, 0)
