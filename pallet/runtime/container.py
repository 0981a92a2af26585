"""The verbs of the runtime: create, start, run, kill, delete, pause, resume.

Each verb loads the container, refreshes its status and checks the transition table in
``state`` before acting. create is the only verb that forks: see ``sync`` for the
parent <-> init protocol.
"""

from __future__ import annotations

import errno
import os

from pallet.errors import InvalidArgument, InvalidState, NotFound, PalletError, SystemFailure
from pallet.linux import sched
from pallet.oci import jsonfast
from pallet.oci import spec as ocispec
from pallet.runtime import hooks, init, state, sync

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.runtime.cgroups import Cgroup


class CreateOptions:
    """How to create. ``terminal_relay``: a terminal without a console socket is allowed,
    its master comes back on ``relay_fd`` (set by create) for the caller to relay."""

    __slots__ = ("bundle", "console_socket", "no_pivot", "pid_file", "preserve_fds",
                 "relay_fd", "terminal_relay")

    def __init__(self, bundle: str = ".", console_socket: str = "", pid_file: str = "",
                 no_pivot: bool = False, preserve_fds: int = 0,
                 terminal_relay: bool = False) -> None:
        self.bundle = bundle
        self.console_socket = console_socket
        self.pid_file = pid_file
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.terminal_relay = terminal_relay
        self.relay_fd = -1


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
    made: list[str] = ["statedir"]
    cg: Cgroup | None = None
    pid = 0
    try:
        from pallet.runtime.cgroups import Cgroup

        cg = Cgroup.open(spec.linux.cgroups_path, cid)
        cg.create()
        if spec.linux.resources is not None:
            _allow_container_devices(spec)
            cg.apply(spec.linux.resources)
        ctr.data["cgroupPaths"] = cg.paths()
        fifo = os.path.join(ctr.dir, state.EXEC_FIFO)
        os.mkfifo(fifo, 0o622)
        pid = _spawn(ctr, spec, rootfs, cg, opts)
    except BaseException:
        if pid:
            _kill_and_reap(pid)
        if opts.relay_fd >= 0:
            os.close(opts.relay_fd)
            opts.relay_fd = -1
        if cg is not None:
            cg.destroy()
        state.remove_dir(ctr.dir)
        raise
    del made
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
    if pidns is not None and pidns.path:
        # setns(pid) only affects children: join it here, the clone below lands in it.
        _setns_path(pidns.path, sched.CLONE_NEWPID)
    timens = lx.namespace("time")
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
    if lx.seccomp is not None:
        from pallet.runtime import seccomp

        cfg.seccomp = seccomp.prepare(lx.seccomp)
    pid = sched.clone_fork(flags)
    if pid == 0:
        parent.close()
        init.main(cfg)  # never returns
    child.close()
    os.close(fifo_fd)
    if cfg.seccomp is not None:
        cfg.seccomp.filter.release()  # init has its own copy
    if console_fd >= 0:
        os.close(console_fd)
    try:
        _parent_side(ctr, spec, cg, pid, parent)
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        parent.close()
    if opts.pid_file:
        state.write_atomic(os.path.abspath(opts.pid_file), f"{pid}".encode(), 0o644)
    return pid


def _parent_side(ctr: state.Container, spec: ocispec.Spec, cg: Cgroup, pid: int,
                 ch: sync.Channel) -> None:
    from pallet.linux import proc

    lx = spec.linux
    userns = lx.namespace("user")
    try:
        if userns is not None and not userns.path:
            from pallet.runtime import userns as uns

            uns.write_maps(pid, lx.uid_mappings, lx.gid_mappings)
        cg.add_pid(pid)
        started = proc.start_time(pid)
        ctr.data["pid"] = pid
        ctr.data["pidStartTime"] = started
        ch.send(sync.GO, state=_state_json(ctr, state.CREATING))
        ch.expect(sync.HOOKS)
        st = _state_json(ctr, state.CREATED).encode()
        hooks.run("prestart", spec.hooks.prestart, st)
        hooks.run("createRuntime", spec.hooks.createRuntime, st)
        ch.send(sync.HOOKS_DONE)
        ch.expect(sync.READY)
    except sync.ChildError as exc:
        raise SystemFailure(str(exc), op="create", obj=ctr.id) from None
    except sync.ProtocolError as exc:
        raise SystemFailure(f"container init exited unexpectedly ({exc})", op="create",
                            obj=ctr.id) from exc
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


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def start(ctr: state.Container) -> None:
    ctr.require("start")
    fifo = os.path.join(ctr.dir, state.EXEC_FIFO)
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidState(f"cannot start container {ctr.id}: already started", op="start",
                           obj=ctr.id) from None
    try:
        data = os.read(fd, 1)
    finally:
        os.close(fd)
    os.unlink(fifo)
    if data != b"0":
        raise SystemFailure(f"cannot start container {ctr.id}: init exited before start",
                            op="start", obj=ctr.id)
    spec = ocispec.Spec(ctr.config)
    if spec.hooks.poststart:
        try:
            hooks.run("poststart", spec.hooks.poststart, _state_json(ctr, state.RUNNING).encode())
        except hooks.HookFailed:
            # runtime-spec: a poststart failure is logged and the container keeps running
            import sys

            sys.stderr.write(f"warning: poststart hook failed for {ctr.id}\n")


def kill(ctr: state.Container, sig: int, all_procs: bool = False) -> None:
    status = ctr.status()
    if status not in state.ALLOWED["kill"]:
        raise InvalidState(f"container {ctr.id} is not running", op="kill", obj=ctr.id,
                           state=status)
    if all_procs and ctr.cgroup_paths:
        from pallet.runtime.cgroups import Cgroup

        cg = Cgroup.from_paths(ctr.cgroup_paths)
        if sig == 9 and status == state.PAUSED:
            pass
        for pid in cg.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if status == state.PAUSED and sig == 9:
            cg.thaw()
        return
    _signal_init(ctr, sig)


def _signal_init(ctr: state.Container, sig: int) -> None:
    """Signal init through a pidfd opened after re-checking its start time (no pid reuse)."""
    from pallet.linux import pidfd, proc

    try:
        fd = os.pidfd_open(ctr.pid)
    except ProcessLookupError:
        raise InvalidState(f"container {ctr.id} is not running", op="kill", obj=ctr.id) from None
    try:
        started = ctr.data.get("pidStartTime")
        if not isinstance(started, int) or not proc.alive(ctr.pid, started):
            raise InvalidState(f"container {ctr.id} is not running", op="kill", obj=ctr.id)
        pidfd.send_signal(fd, sig)
    finally:
        os.close(fd)


def delete(ctr: state.Container, force: bool = False) -> None:
    status = ctr.status()
    if status != state.STOPPED:
        if not force:
            raise InvalidState(
                f"cannot delete container {ctr.id} that is not stopped: {status}",
                op="delete", obj=ctr.id, state=status,
            )
        _force_stop(ctr, status)
    destroy(ctr)


def _force_stop(ctr: state.Container, status: str) -> None:
    from pallet.linux import proc

    if ctr.cgroup_paths:
        from pallet.runtime.cgroups import Cgroup

        cg = Cgroup.from_paths(ctr.cgroup_paths)
        for pid in cg.pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if status == state.PAUSED:
            cg.thaw()
    try:
        _signal_init(ctr, 9)
    except PalletError:
        pass
    # Wait for init to die (it may not be our child: poll its start time).
    import time

    started = ctr.data.get("pidStartTime")
    deadline = time.monotonic() + 10
    while isinstance(started, int) and proc.alive(ctr.pid, started):
        try:
            os.waitpid(ctr.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            raise SystemFailure(f"container {ctr.id}: init did not die after SIGKILL",
                                op="delete", obj=ctr.id)
        time.sleep(0.001)


def destroy(ctr: state.Container) -> None:
    """Remove the cgroup and the state directory; run poststop hooks."""
    if ctr.cgroup_paths:
        from pallet.runtime.cgroups import Cgroup

        Cgroup.from_paths(ctr.cgroup_paths).destroy()
    state.remove_dir(ctr.dir)
    spec = ocispec.Spec(ctr.config)
    if spec.hooks.poststop:
        st = ctr.oci_state()
        st["status"] = state.STOPPED
        try:
            hooks.run("poststop", spec.hooks.poststop, jsonfast.dumps(st).encode())
        except hooks.HookFailed as exc:
            import sys

            sys.stderr.write(f"warning: {exc}\n")


def pause(ctr: state.Container) -> None:
    ctr.require("pause")
    _cgroup(ctr, "pause").freeze()


def resume(ctr: state.Container) -> None:
    ctr.require("resume")
    _cgroup(ctr, "resume").thaw()


def _cgroup(ctr: state.Container, op: str) -> Cgroup:
    from pallet.runtime.cgroups import Cgroup

    if not ctr.cgroup_paths:
        raise InvalidState(f"container {ctr.id} has no cgroup", op=op, obj=ctr.id)
    return Cgroup.from_paths(ctr.cgroup_paths)


def wait_exit(pid: int) -> int:
    """Wait for our child ``pid``; its exit code as a shell reports it (128+signal)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)


__all__ = ["CreateOptions", "create", "delete", "destroy", "errno", "kill", "pause", "resume",
           "start", "wait_exit"]
