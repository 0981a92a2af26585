"""linux.seccomp: validation (pure) and filter construction with libseccomp (no loading).

Filters are checked through what libseccomp exports: the BPF program itself (decoded
into struct sock_filter) and its pseudo filter code, so no root is needed.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from pallet.errors import InvalidArgument, NotSupported
from pallet.linux import seccomp as lib
from pallet.runtime import seccomp

if not lib.available():  # pragma: no cover - libseccomp2 is a package dependency
    pytest.skip("libseccomp.so.2 is not installed", allow_module_level=True)

X86_64 = os.uname().machine == "x86_64"
needs_x86_64 = pytest.mark.skipif(not X86_64, reason="syscall numbers are x86_64's")

BPF_RET_K = 0x06
BPF_JEQ_K = 0x15
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
NR_MKDIR = 83
NR_GETCWD = 79


def profile(*rules: dict[str, object], **top: object) -> dict[str, object]:
    return {"defaultAction": "SCMP_ACT_ALLOW", **top, "syscalls": list(rules)}


def bpf(obj: dict[str, object]) -> list[tuple[int, int, int, int]]:
    """The exported program as (code, jt, jf, k) instructions."""
    prog = seccomp.export_bpf(obj)
    assert len(prog) % 8 == 0 and prog
    return list(struct.iter_unpack("=HBBI", prog))


def returns(obj: dict[str, object]) -> set[int]:
    return {k for code, _, _, k in bpf(obj) if code == BPF_RET_K}


def compared(obj: dict[str, object]) -> set[int]:
    return {k for code, _, _, k in bpf(obj) if code == BPF_JEQ_K}


# --- validation --------------------------------------------------------------------

DOCKERISH = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "exit_group", "not_a_syscall_yet"],
         "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
    ],
}


def test_validate_accepts_a_docker_style_profile() -> None:
    seccomp.validate(DOCKERISH)
    p = seccomp.parse(DOCKERISH)
    assert p is not None
    assert p.default_errno_ret == 1 and p.flags is None and not p.notify
    assert [r.names[0] for r in p.rules] == ["read", "clone3", "personality", "socket"]
    assert p.rules[2].args[0].op == "SCMP_CMP_EQ"


@pytest.mark.parametrize("obj", [None, {}, {"defaultAction": ""}, {"syscalls": []}])
def test_no_default_action_and_no_syscalls_disables_seccomp(obj: object) -> None:
    assert seccomp.parse(obj) is None
    if obj is not None:
        assert seccomp.load(obj) is None  # type: ignore[arg-type]
        assert seccomp.export_bpf(obj) == b""  # type: ignore[arg-type]


def test_every_action_operator_arch_and_flag_validates() -> None:
    for action in seccomp.ACTIONS:
        if action != "SCMP_ACT_NOTIFY":
            seccomp.validate({"defaultAction": action})
        seccomp.validate(profile({"names": ["getpid"], "action": action}, listenerPath="/s"))
    for op in seccomp.OPERATORS:
        seccomp.validate(profile({"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 5, "value": 1, "op": op}]}))
    seccomp.validate(profile(architectures=list(seccomp.ARCHS), flags=[]))
    seccomp.validate(profile(flags=list(seccomp.KNOWN_FLAGS)))


ERR = "SCMP_ACT_ERRNO"
BAD = [
    ([], "linux.seccomp: must be an object"),
    ({"defaultAction": 7}, "linux.seccomp.defaultAction: must be a string"),
    ({"defaultAction": "SCMP_ACT_FOO"},
     'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"'),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/s"},
     "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"),
    ({"syscalls": [{"names": ["getpid"], "action": ERR}]},
     "linux.seccomp.defaultAction: required when syscalls are listed"),
    ({"defaultAction": ERR, "defaultErrnoRet": -1},
     "linux.seccomp.defaultErrnoRet: must be an integer from 0 to 65535"),
    ({"defaultAction": ERR, "defaultErrnoRet": True},
     "linux.seccomp.defaultErrnoRet: must be an integer from 0 to 65535"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
     'linux.seccomp.defaultErrnoRet: not allowed with defaultAction "SCMP_ACT_ALLOW"'),
    ({"defaultAction": ERR, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
     'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX"'),
    ({"defaultAction": ERR, "architectures": "SCMP_ARCH_X86_64"},
     "linux.seccomp.architectures: must be an array of strings"),
    ({"defaultAction": ERR, "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]},
     'linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_NEW_LISTENER"'),
    ({"defaultAction": ERR, "listenerPath": 3}, "linux.seccomp.listenerPath: must be a string"),
    ({"defaultAction": ERR, "listenerMetadata": "x"},
     "linux.seccomp.listenerMetadata: must not be set without listenerPath"),
    ({"defaultAction": ERR, "syscalls": {}}, "linux.seccomp.syscalls: must be an array"),
    ({"defaultAction": ERR, "syscalls": ["getpid"]},
     "linux.seccomp.syscalls[0]: must be an object"),
    (profile({"action": ERR}),
     "linux.seccomp.syscalls[0].names: must be a non-empty array of strings"),
    (profile({"names": [], "action": ERR}),
     "linux.seccomp.syscalls[0].names: must be a non-empty array of strings"),
    (profile({"names": ["getpid", ""], "action": ERR}),
     "linux.seccomp.syscalls[0].names[1]: must be a non-empty string"),
    (profile({"names": ["a"], "action": ERR}, {"names": ["b"]}),
     "linux.seccomp.syscalls[1].action: required"),
    (profile({"names": ["a"], "action": ERR}, {"names": ["b"], "action": "SCMP_ACT_FOO"}),
     'linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_FOO"'),
    (profile({"names": ["a"], "action": "SCMP_ACT_KILL", "errnoRet": 1}),
     'linux.seccomp.syscalls[0].errnoRet: not allowed with action "SCMP_ACT_KILL"'),
    (profile({"names": ["a"], "action": ERR, "errnoRet": 70000}),
     "linux.seccomp.syscalls[0].errnoRet: must be an integer from 0 to 65535"),
    (profile({"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/s"),
     "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY cannot be used for write"),
    (profile({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.listenerPath: required when a rule uses SCMP_ACT_NOTIFY"),
    (profile({"names": ["a"], "action": ERR, "args": {}}),
     "linux.seccomp.syscalls[0].args: must be an array"),
    (profile({"names": ["a"], "action": ERR, "args": [5]}),
     "linux.seccomp.syscalls[0].args[0]: must be an object"),
    (profile({"names": ["a"], "action": ERR, "args": [{"value": 1, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].index: required"),
    (profile({"names": ["a"], "action": ERR,
              "args": [{"index": 0, "op": "SCMP_CMP_EQ"}, {"index": 6, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[1].index: must be an integer from 0 to 5"),
    (profile({"names": ["a"], "action": ERR, "args": [{"index": "0", "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].index: must be an integer from 0 to 5"),
    (profile({"names": ["a"], "action": ERR, "args": [{"index": 0, "value": 1}]}),
     "linux.seccomp.syscalls[0].args[0].op: required"),
    (profile({"names": ["a"], "action": ERR, "args": [{"index": 0, "op": "SCMP_CMP_XOR"}]}),
     'linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_XOR"'),
    (profile({"names": ["a"], "action": ERR,
              "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 1 << 64}]}),
     "linux.seccomp.syscalls[0].args[0].value: must be an unsigned 64-bit integer"),
    (profile({"names": ["a"], "action": ERR,
              "args": [{"index": 0, "op": "SCMP_CMP_EQ", "valueTwo": -1}]}),
     "linux.seccomp.syscalls[0].args[0].valueTwo: must be an unsigned 64-bit integer"),
]


@pytest.mark.parametrize(("obj", "message"), BAD, ids=[m.split(": ")[0] for _, m in BAD])
def test_validate_rejects_with_the_field_path(obj: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        seccomp.validate(obj)
    assert str(info.value) == message


def test_validation_does_not_touch_libseccomp_or_banned_modules() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from pallet.runtime import seccomp\n"
        f"seccomp.validate({DOCKERISH!r})\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    banned = {"typing", "dataclasses", "enum", "re", "json", "logging", "asyncio", "argparse",
              "subprocess", "signal", "socket", "pathlib", "inspect", "ctypes",
              "pallet.linux.seccomp"}
    assert not banned & set(out), out


# --- construction --------------------------------------------------------------------

@needs_x86_64
def test_errno_rule_default_eperm_and_custom_errno() -> None:
    obj = profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                  {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6})
    assert {NR_MKDIR, NR_GETCWD} <= compared(obj)
    assert {RET_ERRNO | 1, RET_ERRNO | 6, lib.SCMP_ACT_ALLOW} <= returns(obj)


def test_default_errno_ret_and_trace_default() -> None:
    assert RET_ERRNO | 38 in returns({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert RET_ERRNO | 1 in returns({"defaultAction": "SCMP_ACT_ERRNO"})
    assert RET_TRACE | 1 in returns({"defaultAction": "SCMP_ACT_TRACE"})


def test_kill_is_kill_thread_and_kill_process_differs() -> None:
    rets = returns(profile({"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
                           {"names": ["rmdir"], "action": "SCMP_ACT_KILL_PROCESS"}))
    assert {lib.SCMP_ACT_KILL_THREAD, lib.SCMP_ACT_KILL_PROCESS} <= rets


def test_unknown_syscall_names_are_skipped() -> None:
    pfc = seccomp.export_pfc(profile(
        {"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"}))
    assert '"mkdir"' in pfc and "no_such_syscall" not in pfc


def test_rule_with_the_default_action_is_skipped() -> None:
    obj = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},  # same as default
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
    ]}
    pfc = seccomp.export_pfc(obj)
    assert '"mkdir"' not in pfc and '"rmdir"' in pfc and '"getpid"' in pfc


def test_args_on_distinct_indexes_are_one_rule() -> None:
    pfc = seccomp.export_pfc(profile({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
        {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]}))
    lines = [ln.strip() for ln in pfc.splitlines()]
    # a conjunction: the test of a2 is nested inside the test of a0
    i = next(i for i, ln in enumerate(lines) if ln.startswith("if ($a0") and "16" in ln)
    assert any(ln.startswith("if ($a2") and "9" in ln for ln in lines[i:i + 3])


def test_args_on_the_same_index_are_split_into_rules() -> None:
    two = [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
           {"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}]
    # libseccomp itself refuses two tests of one argument in a rule...
    with lib.Filter(lib.SCMP_ACT_ALLOW) as f, pytest.raises(OSError) as info:
        conds = [(0, lib.SCMP_CMP_EQ, 8, 0), (0, lib.SCMP_CMP_EQ, 9, 0)]
        f.rule_add(lib.SCMP_ACT_ERRNO(1), lib.syscall_resolve_name("personality"), conds,
                   name="personality")
    assert "personality" in str(info.value)
    # ...so, as runc does, each comparison becomes its own rule: an OR.
    pfc = seccomp.export_pfc(profile({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                      "args": two}))
    body = pfc.split('"personality"', 1)[1]
    assert "== 8" in body and "== 9" in body


def test_architectures_are_added_and_native_is_not_an_error() -> None:
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[os.uname().machine]
    other = "SCMP_ARCH_X86" if X86_64 else "SCMP_ARCH_ARM"
    pfc = seccomp.export_pfc(profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                                     architectures=[native, other]))
    assert pfc.count("# filter for arch") == 2


def test_arch_unknown_to_this_libseccomp_is_not_supported() -> None:
    missing = [a for a, n in seccomp.ARCHS.items() if not lib.arch_resolve_name(n)]
    if not missing:
        pytest.skip("this libseccomp knows every architecture")
    with pytest.raises(NotSupported, match=r"architectures\[0\]"):
        seccomp.export_bpf(profile(architectures=missing[:1]))


def built(obj: dict[str, object]) -> lib.Filter:
    p = seccomp.parse(obj)
    assert p is not None
    return seccomp.build(p)


def test_filter_attributes_nnp_off_and_default_spec_allow() -> None:
    with built(profile()) as f:
        assert f.attr_get(lib.SCMP_FLTATR_CTL_NNP) == 0
        if lib.api_get() >= lib.API_SSB:
            assert f.attr_get(lib.SCMP_FLTATR_CTL_SSB) == 1  # flags absent: runc's default
    with built(profile(flags=[])) as f:
        assert f.attr_get(lib.SCMP_FLTATR_CTL_SSB) == 0
        assert f.attr_get(lib.SCMP_FLTATR_CTL_LOG) == 0
    with built(profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"])) as f:
        assert f.attr_get(lib.SCMP_FLTATR_CTL_LOG) == 1
        assert f.attr_get(lib.SCMP_FLTATR_CTL_TSYNC) == 1
        assert f.attr_get(lib.SCMP_FLTATR_CTL_SSB) == 0


def test_long_profiles_use_the_binary_tree() -> None:
    names = ["read", "write", "open", "close", "stat", "fstat", "lstat", "poll", "lseek",
             "mmap", "mprotect", "munmap", "brk", "ioctl", "pread64", "pwrite64", "readv",
             "writev", "access", "pipe", "select", "sched_yield", "mremap", "msync",
             "mincore", "madvise", "dup", "dup2", "pause", "nanosleep", "getitimer",
             "alarm", "setitimer"]
    with built({"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}) as f:
        assert f.attr_get(lib.SCMP_FLTATR_CTL_OPTIMIZE) == 2
    with built(profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})) as f:
        assert f.attr_get(lib.SCMP_FLTATR_CTL_OPTIMIZE) == 1


def test_wait_killable_recv_needs_a_newer_libseccomp() -> None:
    supported = seccomp.features()["supportedFlags"]
    assert isinstance(supported, list)
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in supported:
        pytest.skip("this libseccomp and kernel support WAIT_KILLABLE_RECV")
    with pytest.raises(NotSupported, match=r"flags\[0\]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE"):
        seccomp.export_bpf(profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))


def test_docker_style_profile_builds() -> None:
    pfc = seccomp.export_pfc(DOCKERISH)
    assert "ERRNO(38)" in pfc and "not_a_syscall_yet" not in pfc


def test_features_lists_what_runc_lists() -> None:
    feats = seccomp.features()
    assert feats["enabled"] is True
    assert feats["actions"] == sorted(seccomp.ACTIONS)
    assert feats["operators"] == sorted(seccomp.OPERATORS)
    archs = feats["archs"]
    assert isinstance(archs, list) and archs == sorted(archs)
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(archs)
    assert feats["knownFlags"] == list(seccomp.KNOWN_FLAGS)
    supported = feats["supportedFlags"]
    assert isinstance(supported, list) and set(supported) <= set(seccomp.KNOWN_FLAGS)
    assert "SECCOMP_FILTER_FLAG_TSYNC" in supported
    assert seccomp.libseccomp_version() == ".".join(map(str, lib.version()))


# --- the binding -------------------------------------------------------------------

def test_binding_basics() -> None:
    major, minor, _ = lib.version()
    assert (major, minor) >= (2, 4)
    assert lib.syscall_resolve_name("no_such_syscall") == lib.NR_SCMP_ERROR
    assert lib.arch_resolve_name("vax") == 0
    assert lib.arch_resolve_name("x86_64") == 0xC000003E
    if X86_64:
        assert lib.arch_native() == 0xC000003E
        assert lib.syscall_resolve_name("mkdir") == NR_MKDIR
        assert lib.syscall_resolve_name("mkdir", lib.arch_resolve_name("x86")) == 39
    f = lib.Filter(lib.SCMP_ACT_ALLOW)
    assert f.arch_exist(lib.SCMP_ARCH_NATIVE)
    assert not f.arch_exist(lib.arch_resolve_name("s390x"))
    with pytest.raises(FileExistsError, match="seccomp_arch_add"):
        f.arch_add(lib.arch_native())
    with pytest.raises(PermissionError, match=r"seccomp_rule_add\(getpid\)"):
        f.rule_add(lib.SCMP_ACT_ALLOW, lib.syscall_resolve_name("getpid"), name="getpid")
    f.release()
    f.release()  # idempotent
    with pytest.raises(ValueError, match="released"):
        f.load()


def test_invalid_default_action_is_refused() -> None:
    with pytest.raises(OSError, match="seccomp_init"):
        lib.Filter(0x12345678)
