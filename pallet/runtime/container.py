"""Creating a container: validate the bundle, reserve the id, clone init, make its cgroup.

create is the only verb that forks; ``sync`` draws the parent <-> init protocol. The
verbs that follow (start, kill, delete, ...) live in ``lifecycle``.
"""

from __future__ import annotations

import os

from pallet.errors import InvalidArgument, NotFound, SystemFailure
from pallet.linux import sched
from pallet.oci import jsonfast
from pallet.oci import spec as ocispec
from pallet.runtime import init, lifecycle, state, sync

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.runtime.cgroups import Cgroup


class CreateOptions:
    """How to create. ``terminal_relay``: a terminal without a console socket is allowed,
    its master comes back on ``relay_fd`` (set by create) for the caller to relay."""

    __slots__ = ("bundle", "console_socket", "defer_save", "no_new_keyring", "no_pivot",
                 "pid_file", "preserve_fds", "relay_fd", "stdio", "terminal_relay")

    def __init__(self, bundle: str = ".", console_socket: str = "", pid_file: str = "",
                 no_pivot: bool = False, preserve_fds: int = 0, no_new_keyring: bool = False,
                 terminal_relay: bool = False) -> None:
        self.bundle = bundle
        self.console_socket = console_socket
        self.pid_file = pid_file
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.terminal_relay = terminal_relay
        self.relay_fd = -1
        # init's stdin, stdout, stderr (default: the caller's own); pallet-monitor
        # hands in the pipes it reads the container's output from.
        self.stdio: tuple[int, int, int] | None = None
        # The caller saves the state with init's pid itself, once it is done with what
        # is urgent (pallet-monitor: after start). Until then the saved state has pid 0.
        self.defer_save = False


def load_spec(bundle: str) -> ocispec.Spec:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"config.json not found in bundle {bundle}") from None
    spec = ocispec.parse(raw)
    if spec.process is None:
        raise InvalidArgument("process: missing (nothing to run)")
    if spec.root is None:
        raise InvalidArgument("root: missing")
    if spec.linux.seccomp is not None:
        from pallet.runtime import seccomp

        seccomp.validate(spec.linux.seccomp)
        if spec.linux.seccomp.get("listenerPath"):
            raise InvalidArgument(
                "linux.seccomp.listenerPath: seccomp user notification is not supported yet"
            )
    if spec.process.apparmor_profile or spec.process.selinux_label:
        from pallet.runtime import process

        process.check_security_labels(spec.process)
    if spec.linux.intel_rdt is not None:
        raise InvalidArgument("linux.intelRdt: not supported by pallet-runtime")
    return spec


def create(root: str, cid: str, opts: CreateOptions) -> tuple[state.Container, int]:
    """Create the container; returns it and the parent's end of init (for run)."""
    bundle = os.path.abspath(opts.bundle)
    spec = load_spec(bundle)
    assert spec.root is not None and spec.process is not None
    rootfs = spec.root.path
    if not rootfs.startswith("/"):
        rootfs = os.path.join(bundle, rootfs)
    rootfs = os.path.realpath(rootfs)
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs {rootfs} does not exist or is not a directory")
    if spec.process.terminal and not opts.console_socket and not opts.terminal_relay:
        raise InvalidArgument(
            "cannot allocate tty if pallet-runtime will detach without setting console socket"
        )
    ctr = state.new(root, cid, {
        "id": cid, "bundle": bundle, "rootfs": rootfs, "config": spec.raw, "pid": 0,
    })
    cg: Cgroup | None = None
    pid = 0
    try:
        from pallet.runtime.cgroups import Cgroup

        cg = Cgroup.open(spec.linux.cgroups_path, cid)  # resolved now, made after the clone
        ctr.data["cgroupPaths"] = cg.paths()
        # Saved before anything is made: if this process dies mid-create (SIGKILL), init
        # dies with it (pdeathsig) and `delete --force` finds what to remove.
        ctr.save()
        fifo = os.path.join(ctr.dir, state.EXEC_FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # not umask's 0600: init may be a mapped (non-root) uid
        pid = _spawn(ctr, spec, rootfs, cg, opts)
    except BaseException:
        if opts.relay_fd >= 0:
            os.close(opts.relay_fd)
            opts.relay_fd = -1
        if cg is not None:
            cg.destroy()
        state.remove_dir(ctr.dir)
        raise
    return ctr, pid


# runc's AllowedDevices: what every container may use whatever its device rules say
# (init mknods the default devices inside the container's devices cgroup).
_ALLOWED_DEVICES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)


def _allow_container_devices(spec: ocispec.Spec) -> None:
    """Append the default devices and linux.devices to the device rules, as runc does."""
    res = spec.linux.resources
    if res is None or res.devices is None:
        return  # no rules: the devices cgroup stays allow-all
    from pallet.oci.resources import DeviceRule

    extra = [(d.type if d.type != "u" else "c", d.major, d.minor, "rwm")
             for d in spec.linux.devices if d.type != "p"]
    res.devices = res.devices + [
        DeviceRule(allow=True, type=t, major=ma, minor=mi, access=acc)
        for t, ma, mi, acc in (*_ALLOWED_DEVICES, *extra)
    ]


def _spawn(ctr: state.Container, spec: ocispec.Spec, rootfs: str, cg: Cgroup,
           opts: CreateOptions) -> int:
    lx = spec.linux
    flags = 0
    for ns in lx.namespaces:
        if not ns.path and ns.type not in ("cgroup", "time"):
            flags |= init.NS_FLAGS[ns.type]
    pidns = lx.namespace("pid")
    timens = lx.namespace("time")
    # pid and time namespaces are joined (or made) here for the clone below to land in;
    # ours come back right after it, for a caller that creates more (pallet-monitor).
    ours = [(os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag)
            for name, flag, ns in (("pid_for_children", sched.CLONE_NEWPID, pidns),
                                   ("time_for_children", sched.CLONE_NEWTIME, timens))
            if ns is not None and (ns.path or flag == sched.CLONE_NEWTIME)]
    try:
        return _spawn_in(ctr, spec, rootfs, cg, opts, flags, pidns, timens)
    finally:
        for fd, flag in ours:
            sched.setns(fd, flag)
            os.close(fd)


def _spawn_in(ctr: state.Container, spec: ocispec.Spec, rootfs: str, cg: Cgroup,
              opts: CreateOptions, flags: int, pidns: ocispec.Namespace | None,
              timens: ocispec.Namespace | None) -> int:
    lx = spec.linux
    if pidns is not None and pidns.path:
        # setns(pid) only affects children: join it here, the clone below lands in it.
        _setns_path(pidns.path, sched.CLONE_NEWPID)
    if timens is not None:
        if timens.path:
            _setns_path(timens.path, sched.CLONE_NEWTIME)
        else:
            sched.unshare(sched.CLONE_NEWTIME)
            with open("/proc/self/timens_offsets", "wb", buffering=0) as f:
                for clock, (secs, nsecs) in lx.time_offsets.items():
                    f.write(f"{clock} {secs} {nsecs}\n".encode())
    console_fd = -1
    if opts.console_socket:
        from pallet.runtime import console

        console_fd = console.connect(opts.console_socket)
    elif opts.terminal_relay and spec.process is not None and spec.process.terminal:
        from pallet.runtime import ttyrelay

        opts.relay_fd, console_fd = ttyrelay.socketpair()
    fifo_fd = os.open(os.path.join(ctr.dir, state.EXEC_FIFO), os.O_PATH | os.O_CLOEXEC)
    init.preload(spec)
    parent, child = sync.pair()
    cfg = init.InitConfig(spec, rootfs, child, fifo_fd, console_fd, opts.no_pivot,
                          opts.preserve_fds, cg.mounts())
    cfg.stdio = opts.stdio
    if not opts.no_new_keyring:
        cfg.keyring = f"_ses.{ctr.id}"  # runc's name: exec'd processes join the same
    if lx.seccomp is not None:
        from pallet.runtime import seccomp

        cfg.seccomp = seccomp.prepare(lx.seccomp)
    if any(mnt.uid_mappings for mnt in spec.mounts):
        from pallet.runtime import rootfs as rootfs_setup

        cfg.idmapped = rootfs_setup.prepare_idmapped(spec)
    pid = sched.clone_fork(flags)
    if pid == 0:
        parent.close()
        init.main(cfg)  # never returns
    child.close()
    os.close(fifo_fd)
    if cfg.seccomp is not None:
        cfg.seccomp.release()  # init has its own copy
    if console_fd >= 0:
        os.close(console_fd)
    for tree in cfg.idmapped.values():
        os.close(tree)  # init holds its own copies
    try:
        _parent_side(ctr, spec, cg, pid, parent, opts.defer_save)
    except BaseException:
        lifecycle.kill_and_reap(pid)
        raise
    finally:
        parent.close()
    if opts.pid_file:
        state.write_atomic(os.path.abspath(opts.pid_file), f"{pid}".encode(), 0o644)
    return pid


def _parent_side(ctr: state.Container, spec: ocispec.Spec, cg: Cgroup, pid: int,
                 ch: sync.Channel, defer_save: bool) -> None:
    from pallet.linux import proc

    lx = spec.linux
    userns = lx.namespace("user")
    ctr.data["pid"] = pid
    try:
        # init is already importing and mounting; the id maps and the cgroup are made
        # meanwhile (init waits for GO before anything that needs them).
        if userns is not None and not userns.path:
            from pallet.runtime import userns as uns

            uns.write_maps(pid, lx.uid_mappings, lx.gid_mappings)
        cg.create()
        if lx.resources is not None:
            _allow_container_devices(spec)
            cg.apply(lx.resources)
        cg.add_pid(pid)
        run_hooks = bool(spec.hooks.prestart or spec.hooks.createRuntime)
        ch.send(sync.GO, state=_state_json(ctr, state.CREATING), hooks=run_hooks)
        ctr.data["pidStartTime"] = proc.start_time(pid)  # while init goes on
        if run_hooks:
            from pallet.runtime import hooks

            ch.expect(sync.HOOKS)
            st = _state_json(ctr, state.CREATED).encode()
            hooks.run("prestart", spec.hooks.prestart, st)
            hooks.run("createRuntime", spec.hooks.createRuntime, st)
            ch.send(sync.HOOKS_DONE)
        ch.expect(sync.READY)
    except sync.ChildError as exc:
        raise SystemFailure(str(exc), op="create", obj=ctr.id) from None
    except sync.ProtocolError as exc:
        # init may have failed first and left its reason in the channel.
        reason = ch.pending_error()
        if reason:
            raise SystemFailure(reason, op="create", obj=ctr.id) from None
        raise SystemFailure(f"container init exited unexpectedly ({exc})", op="create",
                            obj=ctr.id) from exc
    if not defer_save:
        ctr.save()


def _state_json(ctr: state.Container, status: str) -> str:
    st = ctr.oci_state() if status != state.CREATING else {
        "ociVersion": state.OCI_VERSION, "id": ctr.id, "status": status, "pid": ctr.pid,
        "bundle": ctr.bundle,
    }
    st["status"] = status
    return jsonfast.dumps(st)


def _setns_path(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sched.setns(fd, nstype)
    finally:
        os.close(fd)
