"""What runs inside the new namespaces, from clone until the user's execve.

The parent side and the message order are drawn in ``sync``. Nothing here returns:
the process either execs the user's program or exits after reporting why it could not.
"""

from __future__ import annotations

import os

from pallet.linux import sched
from pallet.runtime import sync

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.spec import Spec
    from pallet.runtime.seccomp import Prepared

NS_FLAGS = {
    "pid": sched.CLONE_NEWPID, "network": sched.CLONE_NEWNET, "mount": sched.CLONE_NEWNS,
    "ipc": sched.CLONE_NEWIPC, "uts": sched.CLONE_NEWUTS, "user": sched.CLONE_NEWUSER,
    "cgroup": sched.CLONE_NEWCGROUP, "time": sched.CLONE_NEWTIME,
}
NS_PROC_NAMES = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
    "user": "user", "cgroup": "cgroup", "time": "time",
}
# Joining order: the user namespace first (it grants the rights for the rest), mount last.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "time", "cgroup", "mount")


class InitConfig:
    """What the parent hands to init across the fork (inherited memory, not a message)."""

    __slots__ = ("cgroup_mounts", "channel", "console_fd", "fifo_fd", "hooks", "idmapped",
                 "keyring", "no_pivot", "preserve_fds", "rootfs", "seccomp", "spec", "state",
                 "stdio")

    def __init__(self, spec: Spec, rootfs_path: str, channel: sync.Channel, fifo_fd: int,
                 console_fd: int, no_pivot: bool, preserve_fds: int,
                 cgroup_mounts: list[tuple[str, str, str, str]]) -> None:
        self.spec = spec
        self.rootfs = rootfs_path
        self.channel = channel
        self.fifo_fd = fifo_fd
        self.console_fd = console_fd
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.cgroup_mounts = cgroup_mounts
        self.state = b"{}"  # the OCI state for hooks, sent with GO once the pid is known
        self.hooks = False  # whether the parent has prestart/createRuntime hooks to run
        self.idmapped: dict[int, int] = {}  # mount index -> detached id-mapped tree
        self.keyring = ""  # the session keyring to join ("" with --no-new-keyring)
        self.seccomp: Prepared | None = None  # compiled before the fork, loaded in init
        self.stdio: tuple[int, int, int] | None = None  # fds to become 0, 1, 2


def preload(spec: Spec) -> None:
    """Import now what init needs after pivot_root, where the host's files are gone.

    The runtime calls it before the clone (init inherits the modules; importing in the
    child measured no faster and pays copy-on-write faults); init calls it again as a
    cheap guarantee.
    """
    import resource  # noqa: F401 - used by process.set_rlimits
    import select  # noqa: F401 - used by hooks with a timeout

    from pallet.linux import keys, prctl  # noqa: F401
    from pallet.runtime import hooks, process, rootfs  # noqa: F401

    assert spec.process is not None
    if spec.process.terminal:
        from pallet.runtime import console

        console.preload()


def main(cfg: InitConfig) -> None:
    """Entry point in the child. Never returns."""
    ch = cfg.channel
    try:
        _setup(cfg)
    except BaseException as exc:  # every failure must reach the parent
        try:
            ch.send(sync.ERROR, message=_message(exc))
        finally:
            os._exit(1)
    os._exit(1)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


def _setup(cfg: InitConfig) -> None:
    spec = cfg.spec
    proc = spec.process
    assert proc is not None
    lx = spec.linux
    ch = cfg.channel
    if cfg.stdio is not None:
        for target, fd in enumerate(cfg.stdio):
            os.dup2(fd, target)
    # Our own descriptors are close-on-exec; so is everything else above the preserved ones.
    from pallet.linux import prctl

    prctl.cloexec_from(3 + cfg.preserve_fds)
    prctl.set_pdeathsig(9)
    # Until execve this process is the host's Python interpreter: keep a process in the
    # container (an exec into a created container) from opening /proc/1/exe and
    # writing through it once we are gone (the class of runc's CVE-2019-5736). execve
    # makes the user's program dumpable again.
    prctl.set_dumpable(False)
    preload(spec)
    from pallet.runtime import hooks, process, rootfs

    userns = lx.namespace("user")
    cgroupns = lx.namespace("cgroup")
    waited = False

    def wait_go() -> None:
        """GO: the parent has written our id maps and put us in the cgroup."""
        nonlocal waited
        if waited:
            return
        waited = True
        go = ch.expect(sync.GO)
        cfg.state = str(go.get("state", "{}")).encode()
        cfg.hooks = bool(go.get("hooks"))
        if cgroupns is not None and not cgroupns.path:
            sched.unshare(sched.CLONE_NEWCGROUP)  # now, inside the container's cgroup

    if userns is not None and not userns.path:
        wait_go()  # nothing privileged works before the maps are written
    for kind in JOIN_ORDER:
        ns = lx.namespace(kind)
        if ns is not None and ns.path:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sched.setns(fd, NS_FLAGS[kind])
            finally:
                os.close(fd)
    if userns is not None:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if cfg.keyring:
        # Not the caller's session keyring: the host's keys stay out of the container.
        from pallet.linux import keys

        keys.join_session_keyring(cfg.keyring)
    if spec.hostname:
        prctl.sethostname(spec.hostname)
    if spec.domainname:
        prctl.setdomainname(spec.domainname)

    mountns = lx.namespace("mount")
    if mountns is not None and not mountns.path:
        # The mounts go ahead while the parent makes the cgroup; a cgroup mount waits
        # for it (the dirs it binds must exist, a cgroup namespace must see them).
        rootfs.prepare(spec, cfg.rootfs, in_userns=userns is not None,
                       cgroup_mounts=cfg.cgroup_mounts, cgroupns=cgroupns is not None,
                       before_cgroup=wait_go, idmapped=cfg.idmapped)
    wait_go()
    if cfg.hooks:
        ch.send(sync.HOOKS)
        ch.expect(sync.HOOKS_DONE)
    if spec.hooks.createContainer:
        hooks.run("createContainer", spec.hooks.createContainer, cfg.state)
    if mountns is not None and not mountns.path:
        rootfs.pivot(cfg.rootfs, cfg.no_pivot)
    for key, value in lx.sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "wb", buffering=0) as f:
            f.write(value.encode())
    rootfs.finish(spec)
    if proc.terminal:
        _setup_console(cfg)
    process.apply_attributes(proc)
    if lx.personality:
        process.set_personality(lx.personality)
    process.set_security_labels(proc)
    if cfg.seccomp is not None and not proc.no_new_privileges:
        _load_seccomp(cfg)
    process.drop_bounding(proc)
    process.set_user(proc)
    process.set_capabilities(proc)
    if proc.no_new_privileges:
        prctl.set_no_new_privs()
    process.chdir(proc)
    path = process.find_executable(proc)
    # Outlive `create`, which exits once we are ready (runc restores pdeathsig here too).
    prctl.set_pdeathsig(0)
    ch.send(sync.READY)
    ch.close()

    # Block until `start` opens the fifo for reading. Reopen through /proc: the fifo is
    # on the host, outside the new root.
    fifo = os.open(f"/proc/self/fd/{cfg.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.close(cfg.fifo_fd)
    if spec.hooks.startContainer:
        try:
            hooks.run("startContainer", spec.hooks.startContainer, cfg.state)
        except hooks.HookFailed as exc:
            # The channel is closed: the fifo carries the reason to `start` instead.
            os.write(fifo, b"E" + str(exc).encode()[:4000])
            raise
    # Only now: `start` runs poststart hooks once it reads this (after startContainer).
    os.write(fifo, b"0")
    os.close(fifo)
    if cfg.seccomp is not None and proc.no_new_privileges:
        _load_seccomp(cfg)
    process.execve(path, proc)


def _load_seccomp(cfg: InitConfig) -> None:
    from pallet.runtime import seccomp  # imported by the parent before the fork

    notify_fd = seccomp.install(cfg.seccomp)
    if notify_fd is not None:
        os.close(notify_fd)  # listenerPath hand-off: refused at create until supported


def _setup_console(cfg: InitConfig) -> None:
    """A pty from the container's devpts; its master goes out over the console socket."""
    from pallet.runtime import console

    assert cfg.spec.process is not None
    console.setup_in_container(cfg.console_fd, cfg.spec.process)
