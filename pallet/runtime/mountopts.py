"""Mount options of runtime-spec ``mounts[].options``, as flags and data (pure)."""

from __future__ import annotations

from pallet.errors import InvalidArgument
from pallet.linux import mount as m

# option -> (clear the flag?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, m.MS_SYNCHRONOUS),
    "atime": (True, m.MS_NOATIME),
    "bind": (False, m.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, m.MS_NODEV),
    "diratime": (True, m.MS_NODIRATIME),
    "dirsync": (False, m.MS_DIRSYNC),
    "exec": (True, m.MS_NOEXEC),
    "iversion": (False, m.MS_I_VERSION),
    "lazytime": (False, m.MS_LAZYTIME),
    "loud": (True, m.MS_SILENT),
    "mand": (False, m.MS_MANDLOCK),
    "noatime": (False, m.MS_NOATIME),
    "nodev": (False, m.MS_NODEV),
    "nodiratime": (False, m.MS_NODIRATIME),
    "noexec": (False, m.MS_NOEXEC),
    "noiversion": (True, m.MS_I_VERSION),
    "nolazytime": (True, m.MS_LAZYTIME),
    "nomand": (True, m.MS_MANDLOCK),
    "norelatime": (True, m.MS_RELATIME),
    "nostrictatime": (True, m.MS_STRICTATIME),
    "nosuid": (False, m.MS_NOSUID),
    "nosymfollow": (False, m.MS_NOSYMFOLLOW),
    "rbind": (False, m.MS_BIND | m.MS_REC),
    "relatime": (False, m.MS_RELATIME),
    "remount": (False, m.MS_REMOUNT),
    "ro": (False, m.MS_RDONLY),
    "rw": (True, m.MS_RDONLY),
    "silent": (False, m.MS_SILENT),
    "strictatime": (False, m.MS_STRICTATIME),
    "suid": (True, m.MS_NOSUID),
    "sync": (False, m.MS_SYNCHRONOUS),
    "symfollow": (True, m.MS_NOSYMFOLLOW),
}

PROPAGATION = {
    "private": m.MS_PRIVATE,
    "rprivate": m.MS_PRIVATE | m.MS_REC,
    "shared": m.MS_SHARED,
    "rshared": m.MS_SHARED | m.MS_REC,
    "slave": m.MS_SLAVE,
    "rslave": m.MS_SLAVE | m.MS_REC,
    "unbindable": m.MS_UNBINDABLE,
    "runbindable": m.MS_UNBINDABLE | m.MS_REC,
}

# Recursive mount attributes, applied with mount_setattr(AT_RECURSIVE):
# option -> (attributes to set, attributes to clear)
RECURSIVE: dict[str, tuple[int, int]] = {
    "rro": (m.MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, m.MOUNT_ATTR_RDONLY),
    "rnosuid": (m.MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, m.MOUNT_ATTR_NOSUID),
    "rnodev": (m.MOUNT_ATTR_NODEV, 0),
    "rdev": (0, m.MOUNT_ATTR_NODEV),
    "rnoexec": (m.MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, m.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (m.MOUNT_ATTR_NODIRATIME, 0),
    "rdiratime": (0, m.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (m.MOUNT_ATTR_RELATIME, m.MOUNT_ATTR__ATIME),
    "rnorelatime": (0, m.MOUNT_ATTR__ATIME),
    "rnoatime": (m.MOUNT_ATTR_NOATIME, m.MOUNT_ATTR__ATIME),
    "ratime": (0, m.MOUNT_ATTR_NOATIME),
    "rstrictatime": (m.MOUNT_ATTR_STRICTATIME, m.MOUNT_ATTR__ATIME),
    "rnostrictatime": (0, m.MOUNT_ATTR__ATIME),
    "rnosymfollow": (m.MOUNT_ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, m.MOUNT_ATTR_NOSYMFOLLOW),
}

# Options of pallet's own (and runc's) that are not passed to the kernel.
EXTENSIONS = ("tmpcopyup", "idmap", "ridmap")


class Options:
    """A mount's options split into what mount(2) takes and what the runtime does."""

    __slots__ = ("attr_clr", "attr_set", "data", "extensions", "flags", "propagation")

    def __init__(self) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        self.data: list[str] = []
        self.extensions: list[str] = []
        self.attr_set = 0
        self.attr_clr = 0

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & m.MS_BIND)


def parse(options: list[str], where: str = "mount") -> Options:
    out = Options()
    for opt in options:
        if opt in FLAGS:
            clear, flag = FLAGS[opt]
            out.flags = out.flags & ~flag if clear else out.flags | flag
        elif opt in PROPAGATION:
            out.propagation.append(PROPAGATION[opt])
        elif opt in EXTENSIONS:
            out.extensions.append(opt)
        elif opt in RECURSIVE:
            attr_set, attr_clr = RECURSIVE[opt]
            out.attr_set = (out.attr_set & ~attr_clr) | attr_set
            out.attr_clr = (out.attr_clr & ~attr_set) | attr_clr
        elif opt:
            if "," in opt:
                raise InvalidArgument(f"{where}: option {opt!r} must not contain a comma")
            out.data.append(opt)
    return out
