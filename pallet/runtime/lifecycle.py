"""The verbs after create: start, kill, delete, pause, resume — and waiting on init.

Kept apart from ``container`` (create) so these verbs import only what they use:
each is a whole process start of its own, and imports are most of its cost.
"""

from __future__ import annotations

import os

from pallet.errors import InvalidState, PalletError, SystemFailure
from pallet.oci import jsonfast
from pallet.runtime import state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.spec import Hook
    from pallet.runtime.cgroups import Cgroup


def _hooks(ctr: state.Container, kind: str) -> list[Hook]:
    """The hooks of ``kind`` from the stored config (parsed only when there are some)."""
    raw = ctr.config.get("hooks")
    if not isinstance(raw, dict) or not raw.get(kind):
        return []
    from pallet.oci.spec import Hooks

    return Hooks(raw).get(kind)


def _state_json(ctr: state.Container, status: str) -> bytes:
    st = ctr.oci_state()
    st["status"] = status
    return jsonfast.dumps(st).encode()


def start(ctr: state.Container) -> None:
    ctr.require("start")
    fifo = os.path.join(ctr.dir, state.EXEC_FIFO)
    try:
        # Non-blocking: if init died before opening its end, a blocking open never returns.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidState(f"cannot start container {ctr.id}: already started", op="start",
                           obj=ctr.id) from None
    try:
        data = _await_exec_fifo(ctr, fd)
    finally:
        os.close(fd)
    os.unlink(fifo)
    if data != b"0":
        reason = data[1:].decode(errors="replace") if data[:1] == b"E" else \
            "init exited before start"
        raise SystemFailure(f"cannot start container {ctr.id}: {reason}", op="start",
                            obj=ctr.id)
    poststart = _hooks(ctr, "poststart")
    if poststart:
        from pallet.runtime import hooks

        try:
            hooks.run("poststart", poststart, _state_json(ctr, state.RUNNING))
        except hooks.HookFailed:
            # runtime-spec: a poststart failure is logged and the container keeps running
            import sys

            sys.stderr.write(f"warning: poststart hook failed for {ctr.id}\n")


def _await_exec_fifo(ctr: state.Container, fd: int) -> bytes:
    """init's b"0" once it is about to exec, b"E<reason>", or b"" if it died first."""
    import select

    from pallet.linux import proc

    started = ctr.data.get("pidStartTime")
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                return os.read(fd, 4096)  # b"0", or b"E" and why init gave up
            except BlockingIOError:
                continue
        if not isinstance(started, int) or not proc.alive(ctr.pid, started):
            return b""


def kill(ctr: state.Container, sig: int, all_procs: bool = False) -> None:
    status = ctr.status()
    if status not in state.ALLOWED["kill"]:
        raise InvalidState(f"container {ctr.id} is not running", op="kill", obj=ctr.id,
                           state=status)
    if all_procs and ctr.cgroup_paths:
        from pallet.runtime.cgroups import Cgroup

        cg = Cgroup.from_paths(ctr.cgroup_paths)
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
    import _signal  # type: ignore[import-not-found]  # has pidfd_send_signal, without enum

    from pallet.linux import proc

    try:
        fd = os.pidfd_open(ctr.pid)
    except ProcessLookupError:
        raise InvalidState(f"container {ctr.id} is not running", op="kill", obj=ctr.id) from None
    try:
        started = ctr.data.get("pidStartTime")
        if not isinstance(started, int) or not proc.alive(ctr.pid, started):
            raise InvalidState(f"container {ctr.id} is not running", op="kill", obj=ctr.id)
        _signal.pidfd_send_signal(fd, sig)
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
        from pallet.runtime.cgroups import tree

        tree.destroy(ctr.cgroup_paths.values())
    state.remove_dir(ctr.dir)
    poststop = _hooks(ctr, "poststop")
    if poststop:
        from pallet.runtime import hooks

        try:
            hooks.run("poststop", poststop, _state_json(ctr, state.STOPPED))
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
        if os.WIFSIGNALED(status) or os.WIFEXITED(status):
            return exit_code(status)


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit status, or 128 + the signal."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def kill_and_reap(pid: int) -> None:
    """SIGKILL our child ``pid`` and reap it (a create or exec that failed half-way)."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
