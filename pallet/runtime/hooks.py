"""OCI hooks: the container's state on stdin, a timeout, failures named by hook."""

from __future__ import annotations

import os

from pallet.errors import PalletError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.spec import Hook


class HookFailed(PalletError):
    """A hook exited non-zero, was killed, or ran past its timeout."""


def run(kind: str, hooks: list[Hook], state_json: bytes) -> None:
    """Run each hook of ``kind`` in order; the first failure raises HookFailed."""
    for i, hook in enumerate(hooks):
        run_one(f"{kind}[{i}] {hook.path}", hook, state_json)


def run_one(name: str, hook: Hook, state_json: bytes) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    # stdout/stderr of the hook go to ours; the state goes to its stdin.
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            os.setsid()
            env = dict(e.partition("=")[::2] for e in hook.env)
            os.execve(hook.path, hook.args or [hook.path], env)
        except OSError as exc:
            os.write(2, f"hook {name}: {exc.strerror}\n".encode())
        os._exit(127)
    os.close(r)
    try:
        os.write(w, state_json)
    except BrokenPipeError:
        pass  # the hook need not read its stdin
    finally:
        os.close(w)
    status = _wait(pid, hook.timeout)
    if status is None:
        raise HookFailed(f"hook {name}: timed out after {hook.timeout}s")
    if os.WIFSIGNALED(status):
        raise HookFailed(f"hook {name}: killed by signal {os.WTERMSIG(status)}")
    code = os.WEXITSTATUS(status)
    if code != 0:
        raise HookFailed(f"hook {name}: exit status {code}")


def _wait(pid: int, timeout: int | None) -> int | None:
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    pidfd = os.pidfd_open(pid)
    try:
        import select

        ready, _, _ = select.select([pidfd], [], [], timeout)
        if not ready:
            os.killpg(pid, 9)
            os.waitpid(pid, 0)
            return None
        return os.waitpid(pid, 0)[1]
    finally:
        os.close(pidfd)


