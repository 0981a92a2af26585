"""The runtime-spec ``linux.seccomp`` object: validated, compiled with libseccomp, loaded.

``validate`` runs when the config is parsed and needs no libseccomp; the library is
imported (and opened) only by ``load``, ``export_bpf``/``export_pfc`` and ``features``,
so a container without seccomp never pays for it.

Behaviour follows runc (libcontainer/seccomp and specconv), so a profile means the same
thing under both runtimes:

- syscall names this libseccomp does not know are skipped, not errors;
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- a rule that compares the same argument twice is split into one rule per comparison,
  which turns the comparisons into an OR (libseccomp cannot AND two tests of one arg);
- ``SCMP_ACT_KILL`` is ``SCMP_ACT_KILL_THREAD``; errno defaults to EPERM;
- ``flags`` absent (not merely empty) means SPEC_ALLOW where libseccomp and the kernel
  support it, as Docker expects;
- libseccomp is told not to set no_new_privs: the runtime decides that from
  ``process.noNewPrivileges``.
"""

from __future__ import annotations

import errno
import os

from pallet.errors import InvalidArgument, NotSupported, SystemFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from pallet.linux.seccomp import Filter, Program

WHERE: Final = "linux.seccomp"

ACT_KILL: Final = "SCMP_ACT_KILL"
ACT_KILL_PROCESS: Final = "SCMP_ACT_KILL_PROCESS"
ACT_KILL_THREAD: Final = "SCMP_ACT_KILL_THREAD"
ACT_TRAP: Final = "SCMP_ACT_TRAP"
ACT_ERRNO: Final = "SCMP_ACT_ERRNO"
ACT_TRACE: Final = "SCMP_ACT_TRACE"
ACT_ALLOW: Final = "SCMP_ACT_ALLOW"
ACT_LOG: Final = "SCMP_ACT_LOG"
ACT_NOTIFY: Final = "SCMP_ACT_NOTIFY"

ACTIONS: Final = (
    ACT_KILL, ACT_KILL_PROCESS, ACT_KILL_THREAD, ACT_TRAP, ACT_ERRNO, ACT_TRACE,
    ACT_ALLOW, ACT_LOG, ACT_NOTIFY,
)
# Only these actions carry a return value (errnoRet / defaultErrnoRet).
ERRNO_ACTIONS: Final = (ACT_ERRNO, ACT_TRACE)

# Operator name -> enum scmp_compare value (stable libseccomp ABI).
OPERATORS: Final = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# Spec architecture name -> libseccomp's name for seccomp_arch_resolve_name().
ARCHS: Final = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_SH": "sh",
    "SCMP_ARCH_SHEB": "sheb",
}

FLAG_TSYNC: Final = "SECCOMP_FILTER_FLAG_TSYNC"
FLAG_SPEC_ALLOW: Final = "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
FLAG_LOG: Final = "SECCOMP_FILTER_FLAG_LOG"
FLAG_WAIT_KILLABLE_RECV: Final = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
# runc's order, then the one runc does not know yet.
KNOWN_FLAGS: Final = (FLAG_TSYNC, FLAG_SPEC_ALLOW, FLAG_LOG, FLAG_WAIT_KILLABLE_RECV)

MAX_ARGS: Final = 6  # a Linux syscall has at most six arguments
MAX_RET: Final = 0xFFFF  # SECCOMP_RET_DATA is 16 bits wide
MAX_U64: Final = (1 << 64) - 1
OPTIMIZE_ABOVE: Final = 32  # rules; runc's threshold for libseccomp's binary tree


# --- the parsed profile ------------------------------------------------------------------

class Arg:
    """One comparison of one syscall argument."""

    __slots__ = ("index", "op", "value", "value_two")

    def __init__(self, index: int, op: str, value: int, value_two: int) -> None:
        self.index = index
        self.op = op
        self.value = value
        self.value_two = value_two


class Rule:
    """One ``syscalls[]`` entry: several names sharing an action and conditions."""

    __slots__ = ("action", "args", "errno_ret", "names")

    def __init__(self, names: list[str], action: str, errno_ret: int | None,
                 args: list[Arg]) -> None:
        self.names = names
        self.action = action
        self.errno_ret = errno_ret
        self.args = args


class Profile:
    """A validated ``linux.seccomp`` object."""

    __slots__ = ("architectures", "default_action", "default_errno_ret", "flags",
                 "listener_metadata", "listener_path", "rules")

    def __init__(self, default_action: str, default_errno_ret: int | None,
                 architectures: list[str], flags: list[str] | None, listener_path: str,
                 listener_metadata: str, rules: list[Rule]) -> None:
        self.default_action = default_action
        self.default_errno_ret = default_errno_ret
        self.architectures = architectures
        self.flags = flags  # None: not given, so the runtime's default applies
        self.listener_path = listener_path
        self.listener_metadata = listener_metadata
        self.rules = rules

    @property
    def notify(self) -> bool:
        """Whether any rule hands syscalls to a user-space agent (SCMP_ACT_NOTIFY)."""
        return any(r.action == ACT_NOTIFY for r in self.rules)


# --- validation (pure) -------------------------------------------------------------------

def validate(obj: object) -> None:
    """Check a ``linux.seccomp`` object; raise InvalidArgument naming the bad field."""
    parse(obj)


def parse(obj: object) -> Profile | None:
    """The profile in ``obj``, or None when it disables seccomp.

    As in runc, an object with neither a defaultAction nor syscalls turns seccomp off.
    """
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{WHERE}: must be an object")
    default = _opt_str(obj.get("defaultAction"), f"{WHERE}.defaultAction")
    raw_rules = obj.get("syscalls")
    if raw_rules is not None and not isinstance(raw_rules, list):
        raise InvalidArgument(f"{WHERE}.syscalls: must be an array")
    if not default:
        if raw_rules:
            raise InvalidArgument(f"{WHERE}.defaultAction: required when syscalls are listed")
        return None
    _action(default, f"{WHERE}.defaultAction")
    if default == ACT_NOTIFY:
        # The runtime must still write the listener fd to its parent, which a
        # notifying default would block on (runc refuses it for the same reason).
        raise InvalidArgument(f"{WHERE}.defaultAction: {ACT_NOTIFY} cannot be the default action")
    default_ret = _ret(obj.get("defaultErrnoRet"), default, f"{WHERE}.defaultErrnoRet",
                       "defaultAction")

    archs = _strs(obj.get("architectures"), f"{WHERE}.architectures")
    for i, arch in enumerate(archs):
        if arch not in ARCHS:
            raise InvalidArgument(f'{WHERE}.architectures[{i}]: unknown architecture "{arch}"')

    flags: list[str] | None = None
    if obj.get("flags") is not None:
        flags = _strs(obj.get("flags"), f"{WHERE}.flags")
        for i, flag in enumerate(flags):
            if flag not in KNOWN_FLAGS:
                raise InvalidArgument(f'{WHERE}.flags[{i}]: unknown flag "{flag}"')

    listener = _opt_str(obj.get("listenerPath"), f"{WHERE}.listenerPath")
    metadata = _opt_str(obj.get("listenerMetadata"), f"{WHERE}.listenerMetadata")
    if metadata and not listener:
        raise InvalidArgument(f"{WHERE}.listenerMetadata: must not be set without listenerPath")

    rules = [_rule(r, f"{WHERE}.syscalls[{i}]") for i, r in enumerate(raw_rules or ())]
    profile = Profile(default, default_ret, archs, flags, listener, metadata, rules)
    if profile.notify and not listener:
        raise InvalidArgument(f"{WHERE}.listenerPath: required when a rule uses {ACT_NOTIFY}")
    return profile


def _rule(obj: object, where: str) -> Rule:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: must be an object")
    names = obj.get("names")
    if not isinstance(names, list) or not names:
        raise InvalidArgument(f"{where}.names: must be a non-empty array of strings")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"{where}.names[{i}]: must be a non-empty string")
    act = obj.get("action")
    if act is None:
        raise InvalidArgument(f"{where}.action: required")
    action = _action(act, f"{where}.action")
    if action == ACT_NOTIFY and "write" in names:
        # The runtime reports the listener fd to its parent with write(2).
        raise InvalidArgument(f"{where}.action: {ACT_NOTIFY} cannot be used for write")
    ret = _ret(obj.get("errnoRet"), action, f"{where}.errnoRet", "action")
    raw_args = obj.get("args")
    if raw_args is not None and not isinstance(raw_args, list):
        raise InvalidArgument(f"{where}.args: must be an array")
    args = [_arg(a, f"{where}.args[{i}]") for i, a in enumerate(raw_args or ())]
    return Rule(list(names), action, ret, args)


def _arg(obj: object, where: str) -> Arg:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: must be an object")
    index = obj.get("index")
    if index is None:
        raise InvalidArgument(f"{where}.index: required")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_ARGS:
        raise InvalidArgument(f"{where}.index: must be an integer from 0 to {MAX_ARGS - 1}")
    op = obj.get("op")
    if op is None:
        raise InvalidArgument(f"{where}.op: required")
    if not isinstance(op, str):
        raise InvalidArgument(f"{where}.op: must be a string")
    if op not in OPERATORS:
        raise InvalidArgument(f'{where}.op: unknown operator "{op}"')
    # value is REQUIRED by the spec but Go tools treat a missing one as 0, as runc does.
    value = _u64(obj.get("value"), f"{where}.value")
    value_two = _u64(obj.get("valueTwo"), f"{where}.valueTwo")
    return Arg(index, op, value, value_two)


def _u64(v: object, where: str) -> int:
    if v is None:
        return 0
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_U64:
        raise InvalidArgument(f"{where}: must be an unsigned 64-bit integer")
    return v


def _opt_str(v: object, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidArgument(f"{where}: must be a string")
    return v


def _strs(v: object, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"{where}: must be an array of strings")
    return list(v)


def _action(v: object, where: str) -> str:
    if not isinstance(v, str):
        raise InvalidArgument(f"{where}: must be a string")
    if v not in ACTIONS:
        raise InvalidArgument(f'{where}: unknown action "{v}"')
    return v


def _ret(v: object, action: str, where: str, field: str) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_RET:
        raise InvalidArgument(f"{where}: must be an integer from 0 to {MAX_RET}")
    if action not in ERRNO_ACTIONS:
        # The spec: "When the action doesn't support an errno, the runtime MUST ... fail."
        raise InvalidArgument(f'{where}: not allowed with {field} "{action}"')
    return v


# --- compiling and loading (libseccomp) ----------------------------------------------
#
# pallet.linux.seccomp is imported inside the functions below, never at the top: it
# brings in ctypes and opens libseccomp, which validate() and seccomp-less configs skip.

class Prepared:
    """A compiled filter waiting to be loaded: built before the fork (libseccomp must be
    opened while the host's libraries are reachable), loaded in the child. Either a
    libseccomp filter, or (from the cache) the BPF program it compiled to."""

    __slots__ = ("filter", "profile", "program")

    def __init__(self, profile: Profile, filt: Filter | None,
                 program: Program | None = None) -> None:
        self.profile = profile
        self.filter = filt
        self.program = program

    def release(self) -> None:
        if self.filter is not None:
            self.filter.release()


# Compiled programs by profile, for a process that creates many containers
# (pallet-monitor): libseccomp takes ~10 ms to compile Docker's default profile.
_CACHE: dict[str, tuple[bytes, int]] | None = None


def enable_cache() -> None:
    global _CACHE
    if _CACHE is None:
        _CACHE = {}


def prepare(obj: dict[str, object]) -> Prepared | None:
    """Compile ``obj``; None when it disables seccomp. Raises as ``load`` does."""
    profile = parse(obj)
    if profile is None:
        return None
    if _CACHE is None or profile.notify:
        return Prepared(profile, build(profile))
    from pallet.linux import seccomp as lib
    from pallet.oci import jsonfast

    key = jsonfast.dumps(obj)
    hit = _CACHE.get(key)
    if hit is None:
        filt = build(profile)
        try:
            hit = (_export_filter(filt, pfc=False), _kernel_flags(filt))
        finally:
            filt.release()
        _CACHE[key] = hit
    return Prepared(profile, None, lib.Program(*hit))


def _kernel_flags(filt: Filter) -> int:
    """The seccomp(2) flags libseccomp would load ``filt`` with."""
    from pallet.linux import seccomp as lib

    flags = 0
    for attr, flag in ((lib.SCMP_FLTATR_CTL_TSYNC, lib.SECCOMP_FILTER_FLAG_TSYNC),
                       (lib.SCMP_FLTATR_CTL_LOG, lib.SECCOMP_FILTER_FLAG_LOG),
                       (lib.SCMP_FLTATR_CTL_SSB, lib.SECCOMP_FILTER_FLAG_SPEC_ALLOW),
                       (lib.SCMP_FLTATR_CTL_WAITKILL,
                        lib.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)):
        try:
            if filt.attr_get(attr):
                flags |= flag
        except OSError:
            continue  # an attribute this libseccomp does not know is not set
    return flags


def install(prepared: Prepared | None) -> int | None:
    """Load a prepared filter into the calling process and release it.

    Returns the user-notification fd when a rule uses SCMP_ACT_NOTIFY, else None. Without
    no_new_privs set beforehand the caller needs CAP_SYS_ADMIN.
    """
    if prepared is None:
        return None
    if prepared.program is not None:
        try:
            prepared.program.load()
        except OSError as exc:
            hint = (" (needs CAP_SYS_ADMIN or no_new_privs)"
                    if exc.errno in (errno.EACCES, errno.EPERM) else "")
            raise SystemFailure(f"{WHERE}: loading the filter: {exc.strerror}{hint}",
                                op="seccomp_load", errno=exc.errno or 0) from exc
        return None
    filt = prepared.filter
    assert filt is not None
    try:
        try:
            filt.load()
        except OSError as exc:
            hint = (" (needs CAP_SYS_ADMIN or no_new_privs)"
                    if exc.errno in (errno.EACCES, errno.EPERM) else "")
            raise SystemFailure(f"{WHERE}: loading the filter: {exc.strerror}{hint}",
                                op="seccomp_load", errno=exc.errno or 0) from exc
        if not prepared.profile.notify:
            return None
        try:
            return filt.notify_fd()
        except OSError as exc:
            raise SystemFailure(f"{WHERE}: getting the notify fd: {exc.strerror}",
                                op="seccomp_notify_fd", errno=exc.errno or 0) from exc
    finally:
        filt.release()


def load(obj: dict[str, object]) -> int | None:
    """Build the filter in ``obj`` and load it into the calling process (see install).

    Raises InvalidArgument, NotSupported or SystemFailure.
    """
    return install(prepare(obj))


def export_bpf(obj: dict[str, object]) -> bytes:
    """The BPF program ``load`` would install (struct sock_filter[]), without loading it."""
    return _export(obj, pfc=False)


def export_pfc(obj: dict[str, object]) -> str:
    """libseccomp's human-readable pseudo filter code for ``obj``, for debugging."""
    return _export(obj, pfc=True).decode()


def _export(obj: dict[str, object], pfc: bool) -> bytes:
    profile = parse(obj)
    if profile is None:
        return b""
    filt = build(profile)
    try:
        return _export_filter(filt, pfc)
    finally:
        filt.release()


def _export_filter(filt: Filter, pfc: bool) -> bytes:
    fd = os.memfd_create("pallet-seccomp", os.MFD_CLOEXEC)
    try:
        try:
            if pfc:
                filt.export_pfc(fd)
            else:
                filt.export_bpf(fd)
        except OSError as exc:
            raise SystemFailure(f"{WHERE}: exporting the filter: {exc.strerror}",
                                op="seccomp_export", errno=exc.errno or 0) from exc
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def _version() -> str:
    from pallet.linux import seccomp as lib

    return ".".join(map(str, lib.version()))


def _value(action: str, ret: int | None) -> int:
    from pallet.linux import seccomp as lib

    if action == ACT_ERRNO:
        return lib.SCMP_ACT_ERRNO(errno.EPERM if ret is None else ret)
    if action == ACT_TRACE:
        return lib.SCMP_ACT_TRACE(errno.EPERM if ret is None else ret)
    return {
        ACT_KILL: lib.SCMP_ACT_KILL_THREAD,
        ACT_KILL_THREAD: lib.SCMP_ACT_KILL_THREAD,
        ACT_KILL_PROCESS: lib.SCMP_ACT_KILL_PROCESS,
        ACT_TRAP: lib.SCMP_ACT_TRAP,
        ACT_ALLOW: lib.SCMP_ACT_ALLOW,
        ACT_LOG: lib.SCMP_ACT_LOG,
        ACT_NOTIFY: lib.SCMP_ACT_NOTIFY,
    }[action]


def _flag_attr(flag: str) -> int:
    from pallet.linux import seccomp as lib

    return {
        FLAG_TSYNC: lib.SCMP_FLTATR_CTL_TSYNC,
        FLAG_LOG: lib.SCMP_FLTATR_CTL_LOG,
        FLAG_SPEC_ALLOW: lib.SCMP_FLTATR_CTL_SSB,
        FLAG_WAIT_KILLABLE_RECV: lib.SCMP_FLTATR_CTL_WAITKILL,
    }[flag]


def build(profile: Profile) -> Filter:
    """A libseccomp filter for ``profile``, not loaded yet; the caller releases it.

    Building is separate from loading so that a filter can be compiled before a fork
    and only loaded in the child.
    """
    from pallet.linux import seccomp as lib

    if not lib.available():
        raise NotSupported(f"{WHERE}: cannot open {lib.SONAME}", op="seccomp")
    if profile.notify and lib.api_get() < lib.API_NOTIFY:
        raise NotSupported(f"{WHERE}: {ACT_NOTIFY} is not supported by libseccomp "
                           f"{_version()} on this kernel (API level {lib.api_get()})",
                           op="seccomp")
    default = _value(profile.default_action, profile.default_errno_ret)
    try:
        filt = lib.Filter(default)
    except OSError as exc:
        raise SystemFailure(f"{WHERE}: {exc.strerror}", op="seccomp_init",
                            errno=exc.errno or 0) from exc
    try:
        _setup(filt, profile)
        _add_rules(filt, profile, default)
    except BaseException:
        filt.release()
        raise
    return filt


def _setup(filt: Filter, profile: Profile) -> None:
    from pallet.linux import seccomp as lib

    for i, arch in enumerate(profile.architectures):
        where = f"{WHERE}.architectures[{i}]"
        token = lib.arch_resolve_name(ARCHS[arch])
        if not token:
            raise NotSupported(f"{where}: {arch} is not supported by libseccomp {_version()}",
                               op="seccomp")
        try:
            filt.arch_add(token)
        except OSError as exc:
            if exc.errno != errno.EEXIST:  # the native arch is always there
                raise SystemFailure(f"{where}: adding {arch}: {exc.strerror}",
                                    op="seccomp_arch_add", errno=exc.errno or 0) from exc

    if profile.flags is None:
        try:  # runc's default when no flags are given; Docker relies on it for speed
            filt.attr_set(lib.SCMP_FLTATR_CTL_SSB, 1)
        except OSError:
            pass  # libseccomp or kernel too old for it: keep the mitigation
    else:
        for i, flag in enumerate(profile.flags):
            try:
                filt.attr_set(_flag_attr(flag), 1)
            except OSError as exc:
                raise NotSupported(f"{WHERE}.flags[{i}]: {flag} is not supported by "
                                   f"libseccomp {_version()} on this kernel",
                                   op="seccomp") from exc

    try:
        # Never let libseccomp set no_new_privs: that is process.noNewPrivileges' call.
        filt.attr_set(lib.SCMP_FLTATR_CTL_NNP, 0)
    except OSError as exc:
        raise SystemFailure(f"{WHERE}: clearing the NNP attribute: {exc.strerror}",
                            op="seccomp_attr_set", errno=exc.errno or 0) from exc

    if sum(len(r.names) for r in profile.rules) > OPTIMIZE_ABOVE:
        try:  # a binary tree of syscalls: fewer instructions per syscall on long lists
            filt.attr_set(lib.SCMP_FLTATR_CTL_OPTIMIZE, 2)
        except OSError:
            pass  # older libseccomp: the linear filter is correct, only slower


def _add_rules(filt: Filter, profile: Profile, default: int) -> None:
    from pallet.linux import seccomp as lib

    for i, rule in enumerate(profile.rules):
        where = f"{WHERE}.syscalls[{i}]"
        action = _value(rule.action, rule.errno_ret)
        if action == default:
            continue  # redundant, and libseccomp would refuse it
        conds = [(a.index, OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
        indexes = [a.index for a in rule.args]
        # libseccomp cannot test one argument twice in a rule; like runc, give each
        # comparison its own rule then (which makes them alternatives, not a conjunction).
        groups = [conds] if len(set(indexes)) == len(indexes) else [[c] for c in conds]
        for name in rule.names:
            nr = lib.syscall_resolve_name(name)
            if nr == lib.NR_SCMP_ERROR:
                continue  # unknown to this libseccomp: runc skips it too
            for group in groups:
                try:
                    filt.rule_add(action, nr, group, name=name)
                except OSError as exc:
                    bad_rule = exc.errno in (errno.EINVAL, errno.EEXIST, errno.EDOM)
                    cls = InvalidArgument if bad_rule else SystemFailure
                    raise cls(f"{where}: adding a rule for {name}: {exc.strerror}",
                              op="seccomp_rule_add", obj=name) from exc


# --- features --------------------------------------------------------------------------

def features() -> dict[str, object]:
    """The ``linux.seccomp`` part of ``pallet-runtime features`` (runtime-spec features.md)."""
    from pallet.linux import seccomp as lib

    if not lib.available():
        return {"enabled": False}
    archs = sorted(a for a, name in ARCHS.items() if lib.arch_resolve_name(name))
    supported = []
    with lib.Filter(lib.SCMP_ACT_ALLOW) as probe:
        for flag in KNOWN_FLAGS:
            try:
                probe.attr_set(_flag_attr(flag), 1)
            except OSError:
                continue
            supported.append(flag)
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": list(KNOWN_FLAGS),
        "supportedFlags": supported,
    }


def libseccomp_version() -> str:
    """``"2.5.4"``, for the ``io.github.seccomp.libseccomp.version`` feature annotation."""
    from pallet.linux import seccomp as lib

    return ".".join(map(str, lib.version())) if lib.available() else ""
