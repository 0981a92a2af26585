"""Capabilities, seccomp, no_new_privs, masked and read-only paths, user, rlimits, sysctl."""

from __future__ import annotations

import errno
import os

import pytest

from pallet.linux.caps import BY_NAME
from tests.support.runtime import Bundle, Runtime, ok, run_sh

pytestmark = pytest.mark.root


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def status_fields(lines: list[str]) -> dict[str, str]:
    """/proc/self/status lines -> {field: value}."""
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def mask(names: list[str]) -> str:
    """The hex form /proc/PID/status prints for a capability set."""
    bits = 0
    for name in names:
        bits |= 1 << BY_NAME[name]
    return f"{bits:016x}"


def set_caps(bundle: Bundle, **sets: list[str]) -> None:
    bundle.process["capabilities"] = {k: list(v) for k, v in sets.items()}


def test_default_capabilities(rt: Runtime, bundle: Bundle) -> None:
    st = status_fields(ok(run_sh(rt, bundle, "grep ^Cap /proc/self/status")))
    default = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == mask(default)
    assert st["CapInh"] == mask([])


def test_capability_sets_are_what_was_configured(rt: Runtime, bundle: Bundle) -> None:
    eff = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    bnd = [*eff, "CAP_KILL", "CAP_SETUID", "CAP_SETGID"]
    # effective == permitted, as engines write it: execve as root (with no_new_privs)
    # keeps the permitted set and makes it effective.
    set_caps(bundle, bounding=bnd, effective=eff, permitted=eff, inheritable=["CAP_CHOWN"],
             ambient=[])
    st = status_fields(ok(run_sh(rt, bundle, "grep ^Cap /proc/self/status")))
    assert st["CapEff"] == mask(eff)
    assert st["CapPrm"] == mask(eff)
    assert st["CapBnd"] == mask(bnd)
    assert st["CapInh"] == mask(["CAP_CHOWN"])
    assert st["CapAmb"] == mask([])


def test_capabilities_are_enforced(rt: Runtime, bundle: Bundle) -> None:
    set_caps(bundle, bounding=["CAP_KILL"], effective=["CAP_KILL"], permitted=["CAP_KILL"])
    proc = run_sh(rt, bundle, "chown 1:1 /tmp; hostname other")
    assert "Operation not permitted" in proc.stderr
    assert os.stat(os.path.join(bundle.rootfs, "tmp")).st_uid == 0


def test_non_root_user_with_ambient_capabilities(rt: Runtime, bundle: Bundle) -> None:
    caps = ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
    set_caps(bundle, bounding=caps, effective=caps, permitted=caps, inheritable=caps,
             ambient=caps)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    st = status_fields(ok(run_sh(rt, bundle, "grep -E '^(Cap|Uid|Gid)' /proc/self/status")))
    assert st["CapEff"] == st["CapAmb"] == mask(caps)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1000"] * 4


def test_non_root_user_without_capabilities(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 1000, 2000],
                              "umask": 0o077}
    out = ok(run_sh(rt, bundle, "id -u; id -g; id -G; umask; grep CapEff /proc/self/status; "
                                "touch /tmp/f; stat -c %a /tmp/f"))
    assert out[:2] == ["1000", "1000"]
    assert sorted(out[2].split()) == ["1000", "2000", "5"]
    assert out[3] == "0077"
    assert out[4].split()[1] == mask([])
    assert out[5] == "600"


def test_no_new_privileges(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["noNewPrivileges"] = True
    assert ok(run_sh(rt, bundle, "grep NoNewPrivs /proc/self/status")) == ["NoNewPrivs:\t1"]
    bundle.process["noNewPrivileges"] = False
    assert ok(run_sh(rt, bundle, "grep NoNewPrivs /proc/self/status")) == ["NoNewPrivs:\t0"]


def mkdir_blocking_profile(**rule: object) -> dict[str, object]:
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", **rule}]}


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_blocks_mkdir_with_eperm(rt: Runtime, bundle: Bundle, nnp: bool) -> None:
    bundle.process["noNewPrivileges"] = nnp
    bundle.linux["seccomp"] = mkdir_blocking_profile()
    proc = run_sh(rt, bundle, "grep Seccomp: /proc/self/status; mkdir /tmp/x; touch /tmp/y "
                              "&& echo touch-ok")
    assert proc.stdout.splitlines() == ["Seccomp:\t2", "touch-ok"]
    assert "Operation not permitted" in proc.stderr
    assert not os.path.exists(os.path.join(bundle.rootfs, "tmp", "x"))


def test_seccomp_errno_ret(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["seccomp"] = mkdir_blocking_profile(errnoRet=errno.ENOSPC)
    proc = run_sh(rt, bundle, "mkdir /tmp/x")
    assert proc.returncode == 1
    assert "No space left on device" in proc.stderr


def test_seccomp_kill_process(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    bundle.process["args"] = ["mkdir", "/tmp/x"]
    bundle.write()
    proc = rt("run", "--bundle", bundle.path, rt.new_id(), check=False)
    assert proc.returncode == 128 + 31  # SIGSYS


def test_masked_paths_read_empty(rt: Runtime, bundle: Bundle) -> None:
    out = ok(run_sh(rt, bundle, "wc -c < /proc/keys; wc -c < /proc/timer_list; "
                                "ls -A /sys/firmware | wc -l; "
                                "test -e /proc/kcore || echo no-kcore"))
    assert out == ["0", "0", "0", "no-kcore"]
    assert read("/proc/timer_list"), "the host's /proc/timer_list has content: the mask is real"


def test_masked_paths_cannot_be_unmasked_by_writes(rt: Runtime, bundle: Bundle) -> None:
    proc = run_sh(rt, bundle, "echo x > /proc/keys; ls /sys/firmware; touch /sys/firmware/x")
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr


def test_readonly_proc_sys(rt: Runtime, bundle: Bundle) -> None:
    for name in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][name].append("CAP_SYS_ADMIN")
    proc = run_sh(rt, bundle, "cat /proc/sys/kernel/hostname; "
                              "echo other > /proc/sys/kernel/hostname; "
                              "echo 3 > /proc/sys/vm/drop_caches")
    assert proc.stdout == "pallet\n"
    assert proc.stderr.count("Read-only file system") == 2


def test_readonly_root(rt: Runtime, bundle: Bundle) -> None:
    bundle.config["root"]["readonly"] = True
    proc = run_sh(rt, bundle, "touch /x; touch /etc/x; touch /dev/shm/x && echo shm-ok; "
                              "grep ' / ' /proc/self/mountinfo | cut -d' ' -f6")
    assert proc.stdout.splitlines()[0] == "shm-ok"
    assert proc.stdout.splitlines()[1].split(",")[0] == "ro"
    assert proc.stderr.count("Read-only file system") == 2
    assert not os.path.exists(os.path.join(bundle.rootfs, "x"))


def test_rlimits(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    out = ok(run_sh(rt, bundle, "ulimit -n; ulimit -Hn; ulimit -u; ulimit -c; "
                                "grep 'Max open files' /proc/self/limits"))
    assert out[:4] == ["256", "512", "1000", "0"]
    assert out[4].split()[3:5] == ["256", "512"]


def our_capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


@pytest.mark.skipif(not our_capabilities() & (1 << BY_NAME["CAP_SYS_RESOURCE"]),
                    reason="this host withholds CAP_SYS_RESOURCE from root")
def test_rlimit_above_the_hosts_hard_limit_as_root(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 1048576}]
    assert ok(run_sh(rt, bundle, "ulimit -n; ulimit -Hn")) == ["4096", "1048576"]


def test_sysctl_in_the_containers_namespaces(rt: Runtime, bundle: Bundle) -> None:
    keys = ("net/ipv4/ip_forward", "kernel/shm_rmid_forced")
    host = {k: read(f"/proc/sys/{k}") for k in keys}
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}
    out = ok(run_sh(rt, bundle, "cat /proc/sys/net/ipv4/ip_forward "
                                "/proc/sys/kernel/shm_rmid_forced"))
    assert out == ["1", "1"]
    for key, value in host.items():
        assert read(f"/proc/sys/{key}") == value, f"{key} changed on the host"


def test_oom_score_adj(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["oomScoreAdj"] = 500
    assert ok(run_sh(rt, bundle, "cat /proc/self/oom_score_adj")) == ["500"]


def test_only_stdio_is_open_in_the_container(rt: Runtime, bundle: Bundle) -> None:
    # None of the runtime's own descriptors (sync pipes, exec fifo, console, seccomp)
    # may reach the user's process: a leaked host fd is a way out of the rootfs.
    bundle.process["args"] = ["ls", "/proc/self/fd"]  # pid 1 itself: no shell's own fds
    bundle.write()
    out = ok(rt("run", "--bundle", bundle.path, rt.new_id()))
    assert out == ["0", "1", "2", "3"]  # stdio, and the directory ls is reading
