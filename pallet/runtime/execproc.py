"""`pallet-runtime exec`: one more process in a container's namespaces, cgroup and limits.

    parent (pallet-runtime exec)                 child (becomes the user's process)
    ----------------------------                 ----------------------------------
    check status; open /proc/<init>/ns/*; check
    init is still the same process; build and
    validate the process; compile seccomp;
    connect the console socket (or socketpair);
    set non-dumpable (the child inherits it);
    setns(pid), setns(time): they only place
    the children we fork next
    fork ---------------------------------------> pdeathsig; cloexec every fd above the
                                                  preserved ones; setns user, ipc, uts,
                                                  net, cgroup, then mnt (the container's
                      <-------------------------- root and cwd); JOINED on the error pipe
    add the child to the container's cgroup
    write GO ----------------------------------->
                                                  pty from the container's /dev/ptmx ->
                                                  master over the console socket; rlimits,
                                                  labels, seccomp, capabilities, user,
                      <-------------------------- cwd, look up args[0]; on failure: the
    read the error pipe to EOF                    error on the error pipe, _exit(1)
    EOF, no text: the exec succeeded             execve (the error pipe is close-on-exec)
    pid file; -d: exit 0; else wait (or relay
    the pty) and exit with the process's code

The child is non-dumpable from the fork to its execve: nothing in the container can
open /proc/<child>/exe (the runtime's interpreter on the host) or its memory while the
runtime's code runs in there (the CVE-2019-5736 class). execve makes it dumpable again.
After setns(mnt) the host's files are out of reach: everything the child uses is
imported (and libseccomp loaded, the filter compiled) before the fork.
"""

from __future__ import annotations

import os

from pallet.errors import (
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    PalletError,
    SystemFailure,
)
from pallet.linux import keys, prctl, proc, sched
from pallet.oci import spec as ocispec
from pallet.runtime import lifecycle, process, state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.runtime.cli import Args
    from pallet.runtime.seccomp import Prepared

# /proc/<pid>/ns/<name> -> setns flag; the order the child joins them in. The user
# namespace comes first (it grants the rights for the rest), mount last (after it the
# host's paths are gone). pid and time are joined by the parent: they take effect for
# the children it forks.
CHILD_JOIN_ORDER = (
    ("user", sched.CLONE_NEWUSER), ("ipc", sched.CLONE_NEWIPC), ("uts", sched.CLONE_NEWUTS),
    ("net", sched.CLONE_NEWNET), ("cgroup", sched.CLONE_NEWCGROUP), ("mnt", sched.CLONE_NEWNS),
)
PARENT_JOIN_ORDER = (("pid", sched.CLONE_NEWPID), ("time", sched.CLONE_NEWTIME))

JOINED = b"\0"  # never the first byte of an error report ("<ErrorClass>\n<message>")
GO = b"g"
# Error classes the child may report; anything else comes back as SystemFailure.
_ERRORS: dict[str, type[PalletError]] = {
    cls.__name__: cls
    for cls in (InvalidArgument, InvalidState, NotFound, NotSupported, SystemFailure)
}
TTY_DETACH_ERROR = (
    "cannot allocate tty if pallet-runtime will detach without setting console socket"
)


# --- the process: from -p, or from config.json and the flags ---------------------------

def build_process(config_process: dict[str, object], args: list[str], *, cwd: str = "",
                  env: list[str] | None = None, tty: bool = False, user: str = "",
                  additional_gids: list[str] | None = None, caps: list[str] | None = None,
                  apparmor: str = "", process_label: str = "",
                  no_new_privs: bool | None = None) -> dict[str, object]:
    """The runtime-spec process runc's getProcess makes from the config and exec's flags.

    Starts from the container's process (env, cwd, user, capabilities, rlimits,
    noNewPrivileges, labels) and applies the flags: args replace, -e appends (a later
    value of a name wins), --cap adds to bounding, effective and permitted (and ambient
    where the config has an inheritable set), terminal is -t alone.
    """
    import copy

    if not args:
        raise InvalidArgument("exec args cannot be empty")
    p = copy.deepcopy(config_process)
    p["args"] = list(args)
    if cwd:
        p["cwd"] = cwd
    if apparmor:
        p["apparmorProfile"] = apparmor
    if process_label:
        p["selinuxLabel"] = process_label
    if caps:
        c = p.get("capabilities")
        capsets: dict[str, object] = dict(c) if isinstance(c, dict) else {}
        sets = ["bounding", "effective", "permitted"]
        if capsets.get("inheritable") is not None:
            # A capability can only be ambient if it is also inheritable; runc's --cap
            # does not add to inheritable, so it adds to ambient only where that exists.
            sets.append("ambient")
        for name in sets:
            have = capsets.get(name)
            current = list(have) if isinstance(have, list) else []
            capsets[name] = current + [cap for cap in caps if cap not in current]
        p["capabilities"] = capsets
    if env:
        for e in env:
            if "=" not in e:
                raise InvalidArgument(f"invalid environment variable {e!r}: missing '='")
        base = p.get("env")
        p["env"] = merge_env(list(base) if isinstance(base, list) else [], env)
    p["terminal"] = tty
    if no_new_privs is not None:
        p["noNewPrivileges"] = no_new_privs
    u = p.get("user")
    usr: dict[str, object] = dict(u) if isinstance(u, dict) else {}
    if user:
        uid_text, sep, gid_text = user.partition(":")
        if sep:
            usr["gid"] = _id(gid_text, "gid")
        usr["uid"] = _id(uid_text, "uid")
    if additional_gids:
        have = usr.get("additionalGids")
        gids = list(have) if isinstance(have, list) else []
        for g in additional_gids:
            try:
                gid = int(g)
            except ValueError:
                raise InvalidArgument(f"invalid value {g!r} for flag --additional-gids") \
                    from None
            if gid < 0:
                raise InvalidArgument(f"additional-gids must be a positive number {gid}")
            gids.append(gid)
        usr["additionalGids"] = gids
    p["user"] = usr
    return p


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """``base`` then ``extra``; a name set twice keeps its first place and its last value."""
    merged: dict[str, str] = {}
    for e in [*base, *extra]:
        name = e.partition("=")[0]
        merged[name] = e
    return list(merged.values())


def _id(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgument(f"bad {what}: {text!r} is not a number") from None
    if value < 0:
        raise InvalidArgument(f"bad {what}: {value} is negative")
    return value


def load_process_file(path: str) -> dict[str, object]:
    """A process.json (-p): a runtime-spec process object."""
    from pallet.oci import jsonfast

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"process file {path} does not exist") from None
    try:
        obj = jsonfast.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"process file {path}: invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"process file {path}: must hold a JSON object")
    return obj


def sub_cgroup_paths(paths: dict[str, str], args: list[str]) -> dict[str, str]:
    """The container's cgroup paths with --cgroup's sub-cgroups applied.

    Each argument is ``controller[,controller...]:path`` (cgroup v1) or a lone ``path``
    (every hierarchy). Controllers mounted together share one directory, so naming one
    of them moves them all. The sub-cgroup must exist and stay inside the container's.
    """
    if not args:
        return paths
    wanted: dict[str, str] = {}
    for arg in args:
        ctls, sep, sub = arg.partition(":")
        if not sep:
            if len(args) != 1:
                raise InvalidArgument(
                    f"invalid --cgroup argument: {arg} (missing <controller>: prefix)")
            wanted[""] = arg
            continue
        for ctl in ctls.split(","):
            if not ctl:
                raise InvalidArgument(
                    f"invalid --cgroup argument: {arg} (empty <controller> prefix)")
            if ctl in wanted:
                raise InvalidArgument(
                    f"invalid --cgroup argument(s): controller {ctl} specified multiple times")
            wanted[ctl] = sub
    out = dict(paths)
    for ctl, sub in wanted.items():
        if ctl == "":
            keys = list(paths)
        elif ctl in paths:
            keys = [k for k, d in paths.items() if d == paths[ctl]]
        else:
            raise InvalidArgument(f"invalid --cgroup argument: controller {ctl} is not in use "
                                  "by this container")
        if ocispec.escapes(sub) or not sub.strip("/"):
            raise InvalidArgument(f"invalid --cgroup argument: {sub!r} must name a cgroup "
                                  "inside the container's")
        for key in keys:
            target = os.path.normpath(os.path.join(paths[key], sub.strip("/")))
            if not os.path.isdir(target):
                raise NotFound(f"--cgroup: sub-cgroup {target} does not exist")
            out[key] = target
    return out


# --- the verb ---------------------------------------------------------------------------

class Plan:
    """What the child needs, handed over in the fork's copy of memory."""

    __slots__ = ("console_fd", "err_w", "go_r", "keyring", "ns_fds", "preserve_fds", "proc",
                 "seccomp", "seccomp_early", "sigmask", "stdio", "userns")

    def __init__(self, proc: ocispec.Process, ns_fds: list[tuple[int, int]],
                 preserve_fds: int, console_fd: int, seccomp: Prepared | None,
                 go_r: int, err_w: int) -> None:
        self.proc = proc
        self.ns_fds = ns_fds
        self.userns = any(flag == sched.CLONE_NEWUSER for _, flag in ns_fds)
        self.preserve_fds = preserve_fds
        self.console_fd = console_fd
        self.seccomp = seccomp
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the
        # capabilities go; with it, as late as possible (as init does).
        self.seccomp_early = not proc.no_new_privileges
        self.go_r = go_r
        self.err_w = err_w
        self.sigmask: set[int] | None = None  # to restore, if the parent blocked signals
        self.keyring = ""  # the container's session keyring, joined as init joined it
        self.stdio: tuple[int, int, int] | None = None  # fds to become 0, 1, 2


def verb_exec(root: str, a: Args) -> int:
    from pallet.runtime.verbs import preserved_fds

    ctr = state.load(root, a.positional[0])
    preserve = preserved_fds(a)
    if a.str("process"):
        pdict = load_process_file(a.str("process"))
    else:
        cfg_proc = ctr.config.get("process")
        pdict = build_process(
            cfg_proc if isinstance(cfg_proc, dict) else {}, a.positional[1:],
            cwd=a.str("cwd"), env=a.list("env"), tty=a.bool("tty"), user=a.str("user"),
            additional_gids=a.list("additional_gids"), caps=a.list("cap"),
            apparmor=a.str("apparmor"), process_label=a.str("process_label"),
            no_new_privs=a.bool("no_new_privs") if a.has("no_new_privs") else None,
        )
    proc_spec = ocispec.Process(pdict)
    process.check_security_labels(proc_spec)
    detach = a.bool("detach")
    console_socket = a.str("console_socket")
    if proc_spec.terminal and detach and not console_socket:
        raise InvalidArgument(TTY_DETACH_ERROR)
    if console_socket and not proc_spec.terminal:
        raise InvalidArgument("cannot use console socket if pallet-runtime will not allocate tty")
    cg_paths = sub_cgroup_paths(ctr.cgroup_paths, a.list("cgroup"))
    console_fd = -1
    relay_fd = -1
    try:
        if proc_spec.terminal:
            from pallet.runtime import console

            console.preload()
            if console_socket:
                console_fd = console.connect(console_socket)
            else:
                from pallet.runtime import ttyrelay

                relay_fd, console_fd = ttyrelay.socketpair()
        pid = start_in(ctr, proc_spec, preserve=preserve, console_fd=console_fd,
                       cg_paths=cg_paths, forward_signals=not detach,
                       ignore_paused=a.bool("ignore_paused"))
    except BaseException:
        if relay_fd >= 0:
            os.close(relay_fd)
        raise
    finally:
        if console_fd >= 0:
            os.close(console_fd)

    try:
        master = -1
        if relay_fd >= 0:
            from pallet.runtime import ttyrelay

            master = ttyrelay.recv_master(relay_fd)
            relay_fd = -1
        pid_file = a.str("pid_file")
        if pid_file:
            state.write_atomic(os.path.abspath(pid_file), f"{pid}".encode(), 0o644)
    except BaseException:
        if relay_fd >= 0:
            os.close(relay_fd)
        lifecycle.kill_and_reap(pid)
        raise
    if detach:
        return 0
    from pallet.runtime import ttyrelay

    if master >= 0:
        return ttyrelay.relay(master, pid)
    from pallet.runtime.lifecycle import wait_exit

    return wait_exit(pid)  # signals are forwarded since the fork


def start_in(ctr: state.Container, proc_spec: ocispec.Process, *, preserve: int = 0,
             console_fd: int = -1, cg_paths: dict[str, str] | None = None,
             forward_signals: bool = False, ignore_paused: bool = False,
             stdio: tuple[int, int, int] | None = None, keep_ours: bool = False) -> int:
    """Start ``proc_spec`` in the running container ``ctr``; its pid once it has exec'd.

    Joins the pid and time namespaces itself (they place the children it forks next);
    with ``keep_ours`` it goes back to its own right after the fork, for callers that
    live on (pallet-monitor). ``stdio``: the process's stdin, stdout, stderr.
    """
    lock = ctr.lock()
    try:
        _check_status(ctr, ignore_paused)
        ns_fds, parent_ns = _open_namespaces(ctr)
    finally:
        os.close(lock)
    filt = None
    try:
        spec = ocispec.Spec(ctr.config)
        if spec.linux.seccomp is not None:
            from pallet.runtime import seccomp

            # compiled now, while libseccomp is reachable; loaded by the child
            filt = seccomp.prepare(spec.linux.seccomp)
        # Used by the child after setns(mnt), where nothing can be imported any more.
        import resource  # noqa: F401 - process.set_rlimits
        import signal  # noqa: F401 - _child_setup

        if proc_spec.terminal:
            from pallet.runtime import console

            console.preload()
        return _spawn(proc_spec, ns_fds, parent_ns, preserve, console_fd, filt,
                      ctr.cgroup_paths if cg_paths is None else cg_paths,
                      forward_signals=forward_signals, keyring=f"_ses.{ctr.id}",
                      stdio=stdio, keep_ours=keep_ours)
    finally:
        for fd, _ in ns_fds + parent_ns:
            os.close(fd)
        if filt is not None:
            filt.release()


def _check_status(ctr: state.Container, ignore_paused: bool) -> None:
    status = ctr.status()
    if status in state.ALLOWED["exec"] or (status == state.PAUSED and ignore_paused):
        return
    if status == state.PAUSED:
        msg = "cannot exec in a paused container (use --ignore-paused to override)"
    elif status == state.STOPPED:
        msg = "cannot exec in a stopped container"
    else:
        msg = f"cannot exec in a {status} container"
    raise InvalidState(f"container {ctr.id}: {msg}", op="exec", obj=ctr.id, state=status)


def _open_namespaces(ctr: state.Container) -> tuple[list[tuple[int, int]],
                                                     list[tuple[int, int]]]:
    """Descriptors of init's namespaces that differ from ours: (for the child, for us).

    Opened, then init's start time re-checked: the descriptors are then known to be the
    container's, not those of a process that reused its pid.
    """
    pid = ctr.pid
    child: list[tuple[int, int]] = []
    parent: list[tuple[int, int]] = []
    try:
        for order, out in ((CHILD_JOIN_ORDER, child), (PARENT_JOIN_ORDER, parent)):
            for name, flag in order:
                fd = _open_ns(pid, name)
                if fd >= 0:
                    out.append((fd, flag))
        started = ctr.data.get("pidStartTime")
        if not isinstance(started, int) or not proc.alive(pid, started):
            raise InvalidState(f"container {ctr.id}: cannot exec in a stopped container",
                               op="exec", obj=ctr.id, state=state.STOPPED)
    except BaseException:
        for fd, _ in child + parent:
            os.close(fd)
        raise
    return child, parent


def _open_ns(pid: int, name: str) -> int:
    """An fd of /proc/<pid>/ns/<name>, or -1 if it is ours already (or the kernel lacks it)."""
    theirs_path = f"/proc/{pid}/ns/{name}"
    try:
        fd = os.open(theirs_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.exists(f"/proc/{pid}"):
            return -1  # this kernel has no such namespace
        raise
    try:
        theirs = os.fstat(fd)
        ours = os.stat(f"/proc/self/ns/{name}")
    except BaseException:
        os.close(fd)
        raise
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        os.close(fd)  # setns into our own user namespace would fail; the rest are no-ops
        return -1
    return fd


def _spawn(proc_spec: ocispec.Process, ns_fds: list[tuple[int, int]],
           parent_ns: list[tuple[int, int]], preserve: int, console_fd: int,
           filt: Prepared | None, cg_paths: dict[str, str], forward_signals: bool,
           keyring: str = "", stdio: tuple[int, int, int] | None = None,
           keep_ours: bool = False) -> int:
    """Fork the child into the container; returns its pid once it has exec'd.

    With ``forward_signals`` the signals a foreground runtime passes on are blocked
    across the fork and forwarded from the moment the child exists: none is lost, and
    none kills the runtime while the process it started goes on.
    """
    import signal

    from pallet.runtime import ttyrelay

    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    plan = Plan(proc_spec, ns_fds, preserve, console_fd, filt, go_r, err_w)
    plan.keyring = keyring
    plan.stdio = stdio
    forwarded = {getattr(signal, name) for name in (*ttyrelay.FORWARDED, "SIGWINCH")}
    ours = [(os.open(f"/proc/self/ns/{'pid' if flag == sched.CLONE_NEWPID else 'time'}",
                     os.O_RDONLY | os.O_CLOEXEC), flag) for _, flag in parent_ns] \
        if keep_ours else []
    try:
        prctl.set_dumpable(False)
        for fd, flag in parent_ns:
            sched.setns(fd, flag)
        old_mask = None
        if forward_signals:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
            plan.sigmask = set(old_mask)
        try:
            pid = os.fork()
            if pid == 0:
                _child(plan)  # never returns
            if forward_signals:
                ttyrelay.forward_signals(pid)
        finally:
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for fd, flag in ours:  # our next children are ours again
                sched.setns(fd, flag)
    except BaseException:
        for fd in (go_r, go_w, err_r, err_w):
            os.close(fd)
        raise
    finally:
        for fd, _ in ours:
            os.close(fd)
    os.close(go_r)
    os.close(err_w)
    try:
        try:
            first = os.read(err_r, 1)
            if first != JOINED:
                report = first + _read_all(err_r)
                lifecycle.kill_and_reap(pid)
                raise _decode_error(report) if report else SystemFailure(
                    "exec: the process died before joining the container", op="exec")
            if cg_paths:
                from pallet.runtime.cgroups import Cgroup

                Cgroup.from_paths(cg_paths).add_pid(pid)
            os.write(go_w, GO)
        finally:
            os.close(go_w)
        report = _read_all(err_r)
    except BaseException:
        lifecycle.kill_and_reap(pid)
        raise
    finally:
        os.close(err_r)
    if report:
        lifecycle.kill_and_reap(pid)
        raise _decode_error(report)
    return pid


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _encode_error(exc: BaseException) -> bytes:
    if isinstance(exc, PalletError):
        kind = type(exc).__name__
        msg = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        kind = "SystemFailure"
        msg = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        kind = "SystemFailure"
        msg = str(exc) or type(exc).__name__
    return f"{kind}\n{msg}".encode(errors="replace")


def _decode_error(report: bytes) -> PalletError:
    kind, _, msg = report.decode(errors="replace").partition("\n")
    return _ERRORS.get(kind, SystemFailure)(msg or "exec failed", op="exec")


# --- the child ------------------------------------------------------------------------

def _child(plan: Plan) -> None:
    """Runs in the forked child. Never returns: execs, or reports and exits."""
    try:
        _child_setup(plan)
    except BaseException as exc:  # every failure must reach the parent
        try:
            os.write(plan.err_w, _encode_error(exc))
        finally:
            os._exit(1)
    os._exit(1)


def _child_setup(plan: Plan) -> None:
    p = plan.proc
    if plan.sigmask is not None:
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, plan.sigmask)
    prctl.set_pdeathsig(9)
    if plan.stdio is not None:
        for target, fd in enumerate(plan.stdio):
            os.dup2(fd, target)
    prctl.cloexec_from(3 + plan.preserve_fds)
    for fd, flag in plan.ns_fds:
        sched.setns(fd, flag)
        os.close(fd)
        if flag == sched.CLONE_NEWUSER:
            # Our host ids mean nothing in there: become the namespace's root (full
            # capabilities in it) until set_user picks the process's ids.
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    # setns(mnt) set our root and cwd to the container's; hold here until the parent
    # has put us in the container's cgroup.
    os.write(plan.err_w, JOINED)
    if os.read(plan.go_r, 1) != GO:
        os._exit(1)  # the parent failed and reports why
    os.close(plan.go_r)
    if plan.keyring:
        keys.join_session_keyring(plan.keyring)
    if p.terminal:
        _setup_console(plan.console_fd, p)
    process.apply_attributes(p)
    process.set_security_labels(p)
    if plan.seccomp is not None and plan.seccomp_early:
        _load_seccomp(plan.seccomp)
    process.drop_bounding(p)
    process.set_user(p)
    process.set_capabilities(p)
    if p.no_new_privileges:
        prctl.set_no_new_privs()
    process.chdir(p)
    path = process.find_executable(p)
    # runc's exec'd process outlives a runtime that dies after starting it.
    prctl.set_pdeathsig(0)
    if plan.seccomp is not None and not plan.seccomp_early:
        _load_seccomp(plan.seccomp)
    process.execve(path, p)


def _load_seccomp(prepared: Prepared) -> None:
    from pallet.runtime import seccomp  # imported by the parent before the fork

    notify_fd = seccomp.install(prepared)
    if notify_fd is not None:
        os.close(notify_fd)  # listenerPath hand-off: refused at create until supported


def _setup_console(console_fd: int, p: ocispec.Process) -> None:
    """A pty from the container's devpts as our stdio; its master goes to console_fd.

    Unlike init's console this one is not bind-mounted on /dev/console: an exec'd
    process must not change the container's console.
    """
    from pallet.runtime import console

    console.setup_in_container(console_fd, p, bind_console=False)
