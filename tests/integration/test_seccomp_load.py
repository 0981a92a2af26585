"""linux.seccomp loaded for real: in a forked child, never in the test process.

Each test forks; the child loads a filter with ``pallet.runtime.seccomp.load`` (as the
container init would, without no_new_privs, so it relies on being root), probes the
syscalls it filtered, and reports a JSON line through a pipe before ``_exit``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pallet.runtime import seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="loading a filter without NNP needs root"),
]

libc = ctypes.CDLL("libc.so.6", use_errno=True)
PER_LINUX32 = 0x0008
PER_QUERY = 0xFFFFFFFF


def status(field: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def errno_of(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def in_child(obj: dict[str, object], probe: Callable[[int | None], dict[str, object]],
             ) -> tuple[dict[str, object], int]:
    """Run ``probe(load(obj))`` in a forked child; its report and its wait status."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.close(r)
            report = probe(seccomp.load(obj))
        except BaseException as exc:
            report, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
        try:
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, wstatus = os.waitpid(pid, 0)
    return (json.loads(data) if data else {}), wstatus


@pytest.fixture(autouse=True)
def parent_is_never_filtered() -> Iterator[None]:
    before = status("Seccomp")
    yield
    assert status("Seccomp") == before
    assert errno_of(os.getcwd) == 0


def test_errno_rules_and_custom_errno(tmp_path: Path) -> None:
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENXIO},
        {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
    ]}
    target = str(tmp_path / "d")

    def probe(fd: int | None) -> dict[str, object]:
        return {
            "fd": fd,
            "seccomp": status("Seccomp"),
            "nnp": status("NoNewPrivs"),
            "mkdir": errno_of(lambda: os.mkdir(target)),
            "getcwd": errno_of(os.getcwd),
            "uname": errno_of(os.uname),
            "getpid": errno_of(os.getpid),
        }

    report, wstatus = in_child(obj, probe)
    assert os.waitstatus_to_exitcode(wstatus) == 0, report
    assert report == {
        "fd": None,
        "seccomp": "2",
        "nnp": "0",  # libseccomp was told not to set no_new_privs
        "mkdir": errno.EPERM,
        "getcwd": errno.ENXIO,
        "uname": errno.ENOSYS,
        "getpid": 0,
    }
    assert not os.path.exists(target)


def test_argument_match() -> None:
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": PER_LINUX32, "op": "SCMP_CMP_EQ"}]},
    ]}

    def personality(persona: int) -> int:
        ret = libc.personality(ctypes.c_ulong(persona))
        return ctypes.get_errno() if ret == -1 else 0

    def probe(_: int | None) -> dict[str, object]:
        return {"query": personality(PER_QUERY), "linux32": personality(PER_LINUX32)}

    report, wstatus = in_child(obj, probe)
    assert os.waitstatus_to_exitcode(wstatus) == 0, report
    assert report == {"query": 0, "linux32": errno.EACCES}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall number")
def test_same_argument_twice_matches_either_value() -> None:
    nr_umask = 95
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0o077, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 0o007, "op": "SCMP_CMP_EQ"}]},
    ]}

    def probe(_: int | None) -> dict[str, object]:
        # umask(2) cannot fail: a -1 is the filter's answer (and errno its errno).
        out: dict[str, object] = {}
        for mask in (0o077, 0o007, 0o022):
            ret = libc.syscall(nr_umask, mask)
            out[oct(mask)] = ctypes.get_errno() if ret == -1 else 0
        return out

    report, wstatus = in_child(obj, probe)
    assert os.waitstatus_to_exitcode(wstatus) == 0, report
    assert report == {"0o77": errno.EPERM, "0o7": errno.EPERM, "0o22": 0}


def test_kill_process_action_kills_with_sigsys() -> None:
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]}

    def probe(_: int | None) -> dict[str, object]:
        os.uname()
        return {"survived": True}

    report, wstatus = in_child(obj, probe)
    assert report == {}
    assert os.WIFSIGNALED(wstatus) and os.WTERMSIG(wstatus) == signal.SIGSYS


def test_default_errno_with_an_allow_list() -> None:
    # Everything but what Python needs to report and exit fails with ENXIO.
    allowed = ["write", "exit_group", "exit", "close", "munmap", "rt_sigaction",
               "rt_sigprocmask", "brk", "mmap", "futex", "getpid", "madvise"]
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENXIO,
           "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}

    def probe(_: int | None) -> dict[str, object]:
        return {"getcwd": errno_of(os.getcwd), "getpid": errno_of(os.getpid)}

    report, wstatus = in_child(obj, probe)
    assert os.waitstatus_to_exitcode(wstatus) == 0, report
    assert report == {"getcwd": errno.ENXIO, "getpid": 0}


def test_notify_returns_the_listener_fd() -> None:
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
           "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}

    def probe(fd: int | None) -> dict[str, object]:
        # The child never makes the notified call: no agent is answering.
        assert fd is not None
        return {"link": os.readlink(f"/proc/self/fd/{fd}"), "seccomp": status("Seccomp")}

    report, wstatus = in_child(obj, probe)
    assert os.waitstatus_to_exitcode(wstatus) == 0, report
    assert report == {"link": "anon_inode:seccomp notify", "seccomp": "2"}
