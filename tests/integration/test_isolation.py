"""Namespaces, seen from inside: uts, pid, cgroup, net, ipc, user, and joining by path."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.support.leftovers import cgroup_dirs
from tests.support.runtime import Bundle, Runtime, make_bundle, ok, run_sh

pytestmark = pytest.mark.root


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_hostname_and_domainname(rt: Runtime, bundle: Bundle) -> None:
    bundle.config["hostname"] = "box-1"
    bundle.config["domainname"] = "example.org"
    before = socket.gethostname()
    out = ok(run_sh(rt, bundle, "hostname; cat /proc/sys/kernel/domainname; uname -n"))
    assert out == ["box-1", "example.org", "box-1"]
    assert socket.gethostname() == before


def test_pid_1_is_the_process(rt: Runtime, bundle: Bundle) -> None:
    out = ok(run_sh(rt, bundle,
                    "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                    "ls /proc | grep -c '^[0-9][0-9]*$'"))
    assert out[0] == "1"
    assert out[1].startswith("sh -c echo $$;")
    # sh, and the pipeline's ls and grep: nothing of the host
    assert int(out[2]) <= 3


def test_cgroup_path_without_cgroup_namespace(rt: Runtime, bundle: Bundle) -> None:
    cid = rt.new_id()
    parent = f"{cid}-parent"
    bundle.linux["cgroupsPath"] = f"/{parent}/{cid}"
    bundle.process["args"] = ["cat", "/proc/self/cgroup"]
    bundle.write()
    try:
        out = ok(rt("run", "--bundle", bundle.path, cid))
    finally:
        # As with runc, delete removes the container's own cgroup, not parents it named.
        for d in cgroup_dirs(parent):
            os.rmdir(d)
    by_ctl = {line.split(":")[1]: line.split(":", 2)[2] for line in out}
    with open("/proc/self/cgroup") as f:
        host = [line.split(":")[1] for line in f]
    for ctl in ("memory", "pids", "freezer", "devices", "blkio", "cpu", "cpuacct", "cpuset"):
        if ctl in host:
            assert by_ctl[ctl] == f"/{parent}/{cid}", out


def test_cgroup_namespace_hides_the_path(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["namespaces"].append({"type": "cgroup"})
    out = ok(run_sh(rt, bundle, "cat /proc/self/cgroup"))
    for line in out:
        ctl, path = line.split(":")[1], line.split(":", 2)[2]
        if ctl in ("memory", "pids", "freezer", "devices"):
            assert path == "/", out


def test_default_cgroup_is_under_pallet_named_by_id(rt: Runtime, bundle: Bundle) -> None:
    cid = rt.new_id()
    bundle.process["args"] = ["cat", "/proc/self/cgroup"]
    bundle.write()
    out = ok(rt("run", "--bundle", bundle.path, cid))
    assert any(line.endswith(f":memory:/pallet/{cid}") for line in out), out


def host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def test_each_namespace_is_new(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["namespaces"].append({"type": "cgroup"})
    kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
    out = ok(run_sh(rt, bundle, " ".join(f"readlink /proc/self/ns/{k};" for k in kinds)))
    for kind, inside in zip(kinds, out, strict=True):
        assert inside.startswith(f"{kind}:[") and inside != host_ns(kind), kind
    # the user namespace was not asked for: it is the host's
    assert ok(run_sh(rt, bundle, "readlink /proc/self/ns/user")) == [host_ns("user")]


def test_network_namespace_has_only_loopback(rt: Runtime, bundle: Bundle) -> None:
    out = ok(run_sh(rt, bundle, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"))
    assert out == ["lo"]


def test_ipc_namespace_is_private(rt: Runtime, bundle: Bundle) -> None:
    from ctypes import CDLL, get_errno

    libc = CDLL(None, use_errno=True)
    ipc_creat, ipc_rmid = 0o1000, 0
    shmid = libc.shmget(0, 4096, ipc_creat | 0o600)
    assert shmid >= 0, get_errno()
    try:
        out = ok(run_sh(rt, bundle, "tail -n +2 /proc/sysvipc/shm | wc -l"))
        assert out == ["0"]
    finally:
        libc.shmctl(shmid, ipc_rmid, None)


def test_env_cwd_and_args(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["env"] = ["PATH=/bin:/usr/bin", "GREETING=hello world", "EMPTY="]
    bundle.process["cwd"] = "/var/made/by/runtime"
    out = ok(run_sh(rt, bundle, 'echo "$GREETING"; echo "[$EMPTY]"; pwd; env | sort | head -3'))
    assert out[:3] == ["hello world", "[]", "/var/made/by/runtime"]
    assert "GREETING=hello world" in out[3:]


def test_join_another_containers_namespaces_by_path(rt: Runtime, bundle: Bundle,
                                                    tmp_path: str) -> None:
    first = rt.new_id()
    bundle.config["hostname"] = "first-box"
    bundle.process["args"] = ["sleep", "100"]
    bundle.write()
    rt("run", "-d", "--bundle", bundle.path, first)
    pid = rt.state(first)["pid"]

    other = make_bundle(str(tmp_path), ["sh", "-c", "hostname; readlink /proc/self/ns/net"])
    other.config["hostname"] = ""
    for ns in other.linux["namespaces"]:
        if ns["type"] == "uts":
            ns["path"] = f"/proc/{pid}/ns/uts"
        if ns["type"] == "network":
            ns["path"] = f"/proc/{pid}/ns/net"
    other.write()
    out = ok(rt("run", "--bundle", other.path, rt.new_id()))
    assert out == ["first-box", os.readlink(f"/proc/{pid}/ns/net")]
    rt("delete", "--force", first)


@pytest.fixture
def open_dir() -> Iterator[str]:
    """A directory every uid may traverse (pytest's tmp dirs are 0700 to root)."""
    d = tempfile.mkdtemp(prefix="pallet-test-userns-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def userns_bundle(base: str, args: list[str]) -> Bundle:
    b = make_bundle(base, args)
    os.chmod(b.path, 0o755)
    b.linux["namespaces"].append({"type": "user"})
    b.linux["uidMappings"] = USERNS_MAP
    b.linux["gidMappings"] = USERNS_MAP
    return b


def test_user_namespace_maps_ids(rt: Runtime, open_dir: str) -> None:
    shared = os.path.join(open_dir, "shared")
    os.mkdir(shared)
    os.chown(shared, 100000, 100000)
    b = userns_bundle(open_dir, ["sh", "-c",
                                 "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                                 "touch /shared/made-inside; mkdir /shared/dir; "
                                 "stat -c '%u %g' /shared/made-inside /bin/busybox"])
    # Container root is uid 100000 on the host: it cannot mkdir in a root-owned rootfs.
    os.mkdir(os.path.join(b.rootfs, "shared"))
    b.config["mounts"].append({"destination": "/shared", "type": "bind", "source": shared,
                               "options": ["rbind", "rw"]})
    b.write()
    out = ok(rt("run", "--bundle", b.path, rt.new_id()))
    assert [line.split() for line in out[:2]] == [["0", "100000", "65536"]] * 2
    assert out[2] == "0"
    assert out[3] == "0 0"  # root inside...
    assert out[4] == "65534 65534"  # ...and the host's root-owned files are nobody's
    for name in ("made-inside", "dir"):
        st = os.stat(os.path.join(shared, name))
        assert (st.st_uid, st.st_gid) == (100000, 100000), name  # ...is 100000 outside


def test_user_namespace_root_cannot_touch_host_owned_files(rt: Runtime, open_dir: str) -> None:
    b = userns_bundle(open_dir, ["sh", "-c", "echo x >> /etc/passwd"])
    b.write()
    proc = rt("run", "--bundle", b.path, rt.new_id(), check=False)
    assert proc.returncode != 0
    assert "Permission denied" in proc.stderr
