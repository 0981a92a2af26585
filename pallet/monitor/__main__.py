"""``pallet-monitor [--exec-root DIR] [--socket PATH] [--daemon]``.

palletd starts it when its socket does not answer. ``--daemon`` returns once the socket
is bound; what runs on, in its own session and no child of whoever started it, is the
monitor's keeper (keeper.py), which starts the monitor and starts it again if it dies.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pallet-monitor")
    p.add_argument("--exec-root", default="/run/pallet")
    p.add_argument("--socket", default="")
    p.add_argument("--daemon", action="store_true")
    p.add_argument("--resume-fd", type=int, default=-1,
                   help="(internal) take over from the monitor this process was")
    p.add_argument("--listen-fd", type=int, default=-1,
                   help="(internal) the listening socket, from the keeper")
    p.add_argument("--keeper-fd", type=int, default=-1,
                   help="(internal) the channel to the keeper")
    p.add_argument("--keeper-resume-fd", type=int, default=-1,
                   help="(internal) go on as the keeper this process was")
    a = p.parse_args(argv)
    sock_path = a.socket or os.path.join(a.exec_root, "monitor.sock")
    if a.keeper_resume_fd >= 0:
        from pallet.monitor.keeper import Keeper

        Keeper.resume(a.exec_root, sock_path, a.keeper_resume_fd).serve()
        return
    if a.daemon:
        _keep(a.exec_root, sock_path)
        return
    # Imported once here, so that forking a container's init imports nothing.
    import pallet.runtime.cgroups
    import pallet.runtime.console
    import pallet.runtime.execproc
    import pallet.runtime.hooks
    import pallet.runtime.process
    import pallet.runtime.rootfs
    import pallet.runtime.seccomp
    import pallet.runtime.ttyrelay  # noqa: F401
    from pallet.monitor.server import Monitor
    from pallet.runtime import seccomp

    seccomp.enable_cache()  # one compile per profile, not per container
    import gc

    gc.freeze()  # what is imported now stays put: a forked child's GC never touches it

    mon = Monitor(a.exec_root, sock_path)
    if a.resume_fd >= 0:
        from pallet.monitor import handover

        handover.resume(mon, a.resume_fd)
        mon.serve()
        return
    if a.listen_fd >= 0:  # started by the keeper
        import socket

        mon.listener.close()
        mon.listener = socket.socket(fileno=a.listen_fd)
        mon.listener.setblocking(False)
        os.set_inheritable(a.listen_fd, False)
        mon.use_keeper(socket.socket(fileno=a.keeper_fd))
        mon.adopt()
    else:
        mon.bind()
    os.chdir("/")
    mon.serve()


def _keep(exec_root: str, sock_path: str) -> None:
    """Bind the socket, then go on in the background as the keeper; return here once
    it is in its own session."""
    from pallet.monitor.keeper import Keeper, bind_listener

    listener = bind_listener(sock_path)
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        os.read(r, 1)  # the grandchild is in its own session
        os._exit(0)
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.close(w)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    os.chdir("/")
    sys.stdout.flush()
    Keeper(exec_root, sock_path, listener.detach()).serve()
    os._exit(0)


if __name__ == "__main__":
    main()
