"""The user's process: identity, capabilities, limits, and the final execve.

Shared by init (the container's first process) and `exec` (a process joining it).
"""

from __future__ import annotations

import errno
import os

from pallet.errors import InvalidArgument, NotSupported
from pallet.linux import caps as capslib
from pallet.linux import prctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.spec import Process

_RLIMIT_NAMES = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                   "SCHED_IDLE": 5}
_PERSONA = {"LINUX": 0x0000, "LINUX32": 0x0008}
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def set_rlimits(proc: Process) -> None:
    import resource

    for r in proc.rlimits:
        try:
            resource.setrlimit(_RLIMIT_NAMES[r.type], (r.soft, r.hard))
        except (ValueError, OSError) as exc:
            raise OSError(errno.EPERM, f"setrlimit {r.type} soft={r.soft} hard={r.hard}: {exc}") \
                from exc


def apply_attributes(proc: Process) -> None:
    """rlimits, OOM score, I/O priority and scheduler: set before the user changes (some
    need privileges the process is about to lose)."""
    set_rlimits(proc)
    if proc.oom_score_adj is not None:
        set_oom_score_adj(proc.oom_score_adj)
    if proc.io_priority:
        set_io_priority(proc.io_priority)
    if proc.scheduler:
        set_scheduler(proc.scheduler)


def set_oom_score_adj(value: int) -> None:
    with open("/proc/self/oom_score_adj", "wb", buffering=0) as f:
        f.write(str(value).encode())


def set_io_priority(io: tuple[str, int]) -> None:
    prctl.ioprio_set(prctl.IOPRIO_CLASSES[io[0]], io[1])


def set_scheduler(sched: dict[str, object]) -> None:
    policy = str(sched.get("policy"))
    if policy not in _SCHED_POLICIES:
        raise NotSupported(f"process.scheduler.policy: {policy} is not supported by pallet-runtime")
    prio = sched.get("priority", 0)
    nice = sched.get("nice", 0)
    if isinstance(nice, int) and nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    os.sched_setscheduler(0, _SCHED_POLICIES[policy],
                          os.sched_param(prio if isinstance(prio, int) else 0))


def set_personality(domain: str) -> None:
    prctl.personality(_PERSONA[domain])


def check_security_labels(proc: Process) -> None:
    """Refuse labels the host cannot apply. Runs on the host, before any namespace is
    entered: a container's /sys has no securityfs to look at."""
    if proc.apparmor_profile and not os.path.isdir("/sys/kernel/security/apparmor"):
        raise NotSupported(
            f"apparmor profile {proc.apparmor_profile!r} requested but AppArmor is not "
            "enabled on this host"
        )
    if proc.selinux_label and not os.path.isdir("/sys/fs/selinux"):
        raise NotSupported(
            f"selinux label {proc.selinux_label!r} requested but SELinux is not enabled "
            "on this host"
        )


def set_security_labels(proc: Process) -> None:
    """AppArmor profile and SELinux label for the next execve (checked by the caller)."""
    if proc.apparmor_profile:
        attr = "/proc/self/attr/apparmor/exec"
        if not os.path.exists(attr):
            attr = "/proc/self/attr/exec"
        with open(attr, "wb", buffering=0) as f:
            f.write(f"exec {proc.apparmor_profile}".encode())
    if proc.selinux_label:
        with open("/proc/self/attr/exec", "wb", buffering=0) as f:
            f.write(proc.selinux_label.encode())


def set_user(proc: Process) -> None:
    """Switch to the process's uid/gid/groups, keeping capabilities for capset after."""
    u = proc.user
    try:
        os.setgroups(u.additional_gids)
    except PermissionError:
        # In a user namespace with setgroups denied only an empty list could work.
        if u.additional_gids:
            raise
    prctl.set_keepcaps(True)
    os.setresgid(u.gid, u.gid, u.gid)
    os.setresuid(u.uid, u.uid, u.uid)
    prctl.set_keepcaps(False)
    if u.umask is not None:
        os.umask(u.umask)


def drop_bounding(proc: Process) -> None:
    if proc.capabilities is not None:
        capslib.drop_bounding(capslib.mask(proc.capabilities.get("bounding")))


def set_capabilities(proc: Process) -> None:
    """The effective, permitted and inheritable sets, then the ambient set."""
    c = proc.capabilities
    if c is None:
        if proc.user.uid != 0:
            capslib.capset(0, 0, 0)
        return
    capslib.capset(capslib.mask(c.get("effective")), capslib.mask(c.get("permitted")),
                   capslib.mask(c.get("inheritable")))
    ambient = capslib.mask(c.get("ambient"))
    if ambient:
        capslib.set_ambient(ambient)


def find_executable(proc: Process) -> str:
    """args[0] resolved with the container's PATH, as execvp would, checked up front."""
    name = proc.args[0]
    if "/" in name:
        if not os.path.exists(name):
            raise InvalidArgument(f'exec: "{name}": stat {name}: no such file or directory')
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise InvalidArgument(f'exec: "{name}": permission denied')
        return name
    search = proc.env_value("PATH") or _DEFAULT_PATH
    for d in search.split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise InvalidArgument(f'exec: "{name}": executable file not found in $PATH')


def chdir(proc: Process) -> None:
    try:
        os.chdir(proc.cwd)
    except FileNotFoundError:
        if proc.user.uid != 0:
            raise
        os.makedirs(proc.cwd, 0o755, exist_ok=True)
        os.chdir(proc.cwd)
    # A cwd reached through a leaked host descriptor would show as "(unreachable)".
    if not os.getcwd().startswith("/"):
        raise OSError(errno.EPERM, "current working directory is outside the container")


def execve(path: str, proc: Process) -> None:
    env = proc.env if proc.env_value("PATH") is not None else [*proc.env, f"PATH={_DEFAULT_PATH}"]
    envd = {}
    for e in env:
        k, _, v = e.partition("=")
        envd[k] = v
    # Python ignores SIGPIPE and SIGXFSZ for itself; ignored signals survive execve, and
    # `yes | head` inside would never end. _signal is built in: usable after pivot_root.
    import _signal  # type: ignore[import-not-found]

    _signal.signal(13, _signal.SIG_DFL)
    _signal.signal(25, _signal.SIG_DFL)
    os.execve(path, proc.args, envd)
