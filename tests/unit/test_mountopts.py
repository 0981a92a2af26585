"""mountopts.parse: runtime-spec mount options -> mount(2) flags, propagation, data."""

from __future__ import annotations

import pytest

from pallet.errors import InvalidArgument
from pallet.runtime import mountopts

# Kernel values (include/uapi/linux/mount.h), written out so a typo in the module shows.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_SYNCHRONOUS, MS_REMOUNT, MS_NOATIME, MS_BIND = 0x10, 0x20, 0x400, 0x1000
MS_REC, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 0x4000, 0x20000, 0x40000, 0x80000, \
    0x100000
MS_RELATIME, MS_STRICTATIME = 0x200000, 0x1000000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x8
MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME = 0x70, 0x10


def test_empty() -> None:
    o = mountopts.parse([])
    assert (o.flags, o.propagation, o.data, o.extensions, o.attr_set, o.attr_clr) == \
        (0, [], [], [], 0, 0)
    assert not o.is_bind


def test_flags_and_data_of_a_typical_tmpfs() -> None:
    o = mountopts.parse(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert o.flags == MS_NOSUID | MS_STRICTATIME
    assert o.data == ["mode=755", "size=65536k"]


def test_sysfs_defaults() -> None:
    o = mountopts.parse(["nosuid", "noexec", "nodev", "ro"])
    assert o.flags == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY


@pytest.mark.parametrize("opts, flags", [
    (["bind"], MS_BIND),
    (["rbind"], MS_BIND | MS_REC),
    (["rbind", "ro"], MS_BIND | MS_REC | MS_RDONLY),
    (["ro", "rw"], 0),
    (["rw", "ro"], MS_RDONLY),
    (["nosuid", "suid"], 0),
    (["nodev", "dev", "noexec", "exec"], 0),
    (["noatime", "atime"], 0),
    (["relatime", "norelatime"], 0),
    (["sync", "async"], 0),
    (["remount", "ro"], MS_REMOUNT | MS_RDONLY),
    (["defaults"], 0),
])
def test_later_options_win(opts: list[str], flags: int) -> None:
    assert mountopts.parse(opts).flags == flags


def test_is_bind() -> None:
    assert mountopts.parse(["rbind"]).is_bind
    assert mountopts.parse(["bind", "ro"]).is_bind
    assert not mountopts.parse(["ro"]).is_bind


@pytest.mark.parametrize("opt, flags", [
    ("private", MS_PRIVATE), ("rprivate", MS_PRIVATE | MS_REC),
    ("shared", MS_SHARED), ("rshared", MS_SHARED | MS_REC),
    ("slave", MS_SLAVE), ("rslave", MS_SLAVE | MS_REC),
    ("unbindable", MS_UNBINDABLE), ("runbindable", MS_UNBINDABLE | MS_REC),
])
def test_propagation_is_kept_apart_from_flags(opt: str, flags: int) -> None:
    o = mountopts.parse(["bind", opt])
    assert o.flags == MS_BIND
    assert o.propagation == [flags]


def test_propagation_keeps_order() -> None:
    assert mountopts.parse(["rprivate", "shared"]).propagation == [MS_PRIVATE | MS_REC, MS_SHARED]


@pytest.mark.parametrize("opt", ["tmpcopyup", "idmap", "ridmap"])
def test_runtime_extensions_never_reach_the_kernel(opt: str) -> None:
    o = mountopts.parse([opt, "mode=1777"])
    assert o.extensions == [opt]
    assert o.data == ["mode=1777"] and o.flags == 0


def test_recursive_attributes() -> None:
    o = mountopts.parse(["rro", "rnosuid"])
    assert o.attr_set == MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID and o.attr_clr == 0
    assert o.flags == 0
    o = mountopts.parse(["rro", "rrw"])
    assert o.attr_set == 0 and o.attr_clr == MOUNT_ATTR_RDONLY
    o = mountopts.parse(["rnoatime"])
    assert o.attr_set == MOUNT_ATTR_NOATIME and o.attr_clr == MOUNT_ATTR__ATIME
    o = mountopts.parse(["rnoexec", "rexec"])
    assert o.attr_set == 0 and o.attr_clr == MOUNT_ATTR_NOEXEC


def test_unknown_options_are_filesystem_data() -> None:
    o = mountopts.parse(["newinstance", "ptmxmode=0666", "mode=0620", "gid=5", ""])
    assert o.data == ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]


def test_comma_in_an_option_is_refused_with_where() -> None:
    with pytest.raises(InvalidArgument) as info:
        mountopts.parse(["size=1m,mode=700"], "mounts[3] (/tmp)")
    assert str(info.value) == "mounts[3] (/tmp): option 'size=1m,mode=700' must not contain a comma"


def test_every_flag_option_is_known_to_the_table() -> None:
    for name, (_clear, flag) in mountopts.FLAGS.items():
        assert flag or name == "defaults", name
    assert set(mountopts.PROPAGATION).isdisjoint(mountopts.FLAGS)
    assert set(mountopts.RECURSIVE).isdisjoint(mountopts.FLAGS)
