"""libseccomp through ctypes: build a seccomp BPF filter and load it.

The library is opened by soname on first use, never at import: a container whose
config has no seccomp section must not pay for it. Every libseccomp call that fails
returns a negative errno; the wrappers here raise ``OSError(errno, ...)`` naming the
call (and the syscall, for rules) instead.

Only what the OCI runtime needs is wrapped. The constants keep their names from
``<seccomp.h>`` (libseccomp 2.5).
"""

from __future__ import annotations

import ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

SONAME = "libseccomp.so.2"

# Actions (uint32).  SCMP_ACT_KILL is the historical name of KILL_THREAD.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000


def SCMP_ACT_ERRNO(errno: int) -> int:
    """SCMP_ACT_ERRNO(x): fail the syscall with ``errno`` (the C macro)."""
    return _SCMP_ACT_ERRNO | (errno & 0xFFFF)


def SCMP_ACT_TRACE(msg: int) -> int:
    """SCMP_ACT_TRACE(x): notify a ptrace tracer with ``msg`` (the C macro)."""
    return _SCMP_ACT_TRACE | (msg & 0xFFFF)


# enum scmp_compare
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

# enum scmp_filter_attr
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_TSKIP = 5
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9
SCMP_FLTATR_CTL_WAITKILL = 10  # libseccomp >= 2.6

SCMP_ARCH_NATIVE = 0
NR_SCMP_ERROR = -1  # __NR_SCMP_ERROR: the name is unknown to this libseccomp

# What seccomp_api_get() levels mean (see seccomp_api_get(3)).
API_TSYNC = 2
API_LOG = 3  # also SCMP_ACT_LOG and SCMP_ACT_KILL_PROCESS
API_SSB = 4
API_NOTIFY = 5
API_NOTIFY_TSYNC = 6  # notify together with TSYNC (kernel TSYNC_ESRCH)
API_WAITKILL = 7


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: one comparison of one syscall argument."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint),
        ("minor", ctypes.c_uint),
        ("micro", ctypes.c_uint),
    ]


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """libseccomp, opened (and its prototypes declared) on the first call."""
    global _lib
    if _lib is None:
        _lib = _declare(ctypes.CDLL(SONAME))
    return _lib


def available() -> bool:
    """Whether libseccomp can be opened on this host."""
    try:
        lib()
    except OSError:
        return False
    return True


def _declare(so: ctypes.CDLL) -> ctypes.CDLL:
    ctx = ctypes.c_void_p
    u32 = ctypes.c_uint32
    cint = ctypes.c_int
    protos: list[tuple[str, object, list[object]]] = [
        ("seccomp_init", ctx, [u32]),
        ("seccomp_release", None, [ctx]),
        ("seccomp_arch_add", cint, [ctx, u32]),
        ("seccomp_arch_exist", cint, [ctx, u32]),
        ("seccomp_arch_native", u32, []),
        ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
        ("seccomp_syscall_resolve_name", cint, [ctypes.c_char_p]),
        ("seccomp_syscall_resolve_name_arch", cint, [u32, ctypes.c_char_p]),
        ("seccomp_rule_add_array", cint, [ctx, u32, cint, ctypes.c_uint, ctypes.POINTER(ArgCmp)]),
        ("seccomp_attr_set", cint, [ctx, cint, u32]),
        ("seccomp_attr_get", cint, [ctx, cint, ctypes.POINTER(u32)]),
        ("seccomp_load", cint, [ctx]),
        ("seccomp_export_bpf", cint, [ctx, cint]),
        ("seccomp_export_pfc", cint, [ctx, cint]),
        ("seccomp_notify_fd", cint, [ctx]),
        ("seccomp_api_get", ctypes.c_uint, []),
        ("seccomp_api_set", cint, [ctypes.c_uint]),
        ("seccomp_version", ctypes.POINTER(_Version), []),
    ]
    for name, restype, argtypes in protos:
        fn = getattr(so, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return so


def _check(ret: int, call: str, what: str = "") -> int:
    if ret < 0:
        err = -ret
        where = f"{call}({what})" if what else call
        raise OSError(err, f"{where}: {os.strerror(err)}")
    return ret


def version() -> tuple[int, int, int]:
    """The version of the libseccomp that was loaded, e.g. (2, 5, 4)."""
    v = lib().seccomp_version().contents
    return (int(v.major), int(v.minor), int(v.micro))


def api_get() -> int:
    """The API level libseccomp supports on this kernel (0 when unknown)."""
    return int(lib().seccomp_api_get())


def api_set(level: int) -> None:
    _check(lib().seccomp_api_set(level), "seccomp_api_set", str(level))


def arch_native() -> int:
    return int(lib().seccomp_arch_native())


def arch_resolve_name(name: str) -> int:
    """The arch token for a libseccomp arch name ("x86_64"); 0 when unknown."""
    return int(lib().seccomp_arch_resolve_name(name.encode()))


def syscall_resolve_name(name: str, arch: int | None = None) -> int:
    """The syscall number on ``arch`` (native when None); NR_SCMP_ERROR when unknown.

    A syscall that exists on some architecture but not the native one resolves to a
    negative pseudo-number, which libseccomp accepts in rules.
    """
    if arch is None:
        return int(lib().seccomp_syscall_resolve_name(name.encode()))
    return int(lib().seccomp_syscall_resolve_name_arch(arch, name.encode()))


class Filter:
    """A libseccomp filter context; release it (or use ``with``) when done."""

    def __init__(self, default_action: int) -> None:
        so = lib()
        ctx = so.seccomp_init(default_action)
        if not ctx:
            # seccomp_init reports neither errno nor a code: NULL means a bad action
            # or no memory, and the action is the one input we control.
            raise OSError(22, f"seccomp_init({default_action:#x}): invalid default action")
        self._so = so
        self._ctx: int | None = ctx
        # Kernel errors come back as -ECANCELED unless asked for raw codes (>= 2.5.0).
        try:
            self.attr_set(SCMP_FLTATR_API_SYSRAWRC, 1)
        except OSError:
            pass

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def ctx(self) -> int:
        if self._ctx is None:
            raise ValueError("seccomp filter already released")
        return self._ctx

    def release(self) -> None:
        if self._ctx is not None:
            self._so.seccomp_release(self._ctx)
            self._ctx = None

    def arch_add(self, token: int) -> None:
        _check(self._so.seccomp_arch_add(self.ctx, token), "seccomp_arch_add", f"{token:#x}")

    def arch_exist(self, token: int) -> bool:
        ret = self._so.seccomp_arch_exist(self.ctx, token)
        if ret == -17:  # -EEXIST means "not present", by libseccomp's odd convention
            return False
        _check(ret, "seccomp_arch_exist", f"{token:#x}")
        return True

    def attr_set(self, attr: int, value: int) -> None:
        _check(self._so.seccomp_attr_set(self.ctx, attr, value), "seccomp_attr_set", str(attr))

    def attr_get(self, attr: int) -> int:
        out = ctypes.c_uint32()
        _check(
            self._so.seccomp_attr_get(self.ctx, attr, ctypes.byref(out)),
            "seccomp_attr_get",
            str(attr),
        )
        return int(out.value)

    def rule_add(
        self,
        action: int,
        syscall: int,
        conds: Iterable[tuple[int, int, int, int]] = (),
        name: str = "",
    ) -> None:
        """Add one rule; ``conds`` are (arg index, op, datum_a, datum_b), AND-ed together."""
        items = list(conds)
        arr = (ArgCmp * len(items))(*(ArgCmp(i, op, a, b) for i, op, a, b in items))
        ret = self._so.seccomp_rule_add_array(self.ctx, action, syscall, len(items), arr)
        _check(ret, "seccomp_rule_add", name or str(syscall))

    def load(self) -> None:
        _check(self._so.seccomp_load(self.ctx), "seccomp_load")

    def notify_fd(self) -> int:
        """The user-notification listener fd of a loaded filter with SCMP_ACT_NOTIFY."""
        return _check(self._so.seccomp_notify_fd(self.ctx), "seccomp_notify_fd")

    def export_bpf(self, fd: int) -> None:
        _check(self._so.seccomp_export_bpf(self.ctx, fd), "seccomp_export_bpf")

    def export_pfc(self, fd: int) -> None:
        _check(self._so.seccomp_export_pfc(self.ctx, fd), "seccomp_export_pfc")


# --- a compiled program, loaded without libseccomp -------------------------------------

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


class Program:
    """A BPF program (struct sock_filter[]) in memory of its own, ready for seccomp(2).

    Made before a fork; ``load`` then needs no library and no file (it runs after
    pivot_root, where the host's are gone).
    """

    def __init__(self, bpf: bytes, flags: int) -> None:
        self.flags = flags
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = ctypes.create_string_buffer(
            struct.pack("=H6xQ", len(bpf) // 8, ctypes.addressof(self._buf)), 16)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._nr = _SYS_SECCOMP[os.uname().machine]

    def load(self) -> None:
        ret = self._libc.syscall(ctypes.c_long(self._nr), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                                 ctypes.c_long(self.flags),
                                 ctypes.c_void_p(ctypes.addressof(self._fprog)))
        if ret != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp: {os.strerror(err)}")
