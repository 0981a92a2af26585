"""User namespaces: writing id maps, and namespaces made only to describe a mapping."""

from __future__ import annotations

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
    """An fd of a fresh user namespace with these maps (for idmapped mounts)."""
    from pallet.linux import sched

    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: enter a new user namespace and wait to be killed
        try:
            os.close(w)
            sched.unshare(sched.CLONE_NEWUSER)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    try:
        # the child may not have unshared yet: wait until its user ns differs from ours
        mine = os.stat("/proc/self/ns/user").st_ino
        while os.stat(f"/proc/{pid}/ns/user").st_ino == mine:
            os.sched_yield()
        write_maps(pid, uid_map, gid_map)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(w)
        os.waitpid(pid, 0)
