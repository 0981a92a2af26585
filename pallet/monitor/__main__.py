"""``pallet-monitor [--exec-root DIR] [--socket PATH] [--daemon]``.

palletd starts it when its socket does not answer. ``--daemon`` returns once the socket
is bound and the monitor runs on in its own session, no child of whoever started it.
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
    a = p.parse_args(argv)
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

    mon = Monitor(a.exec_root, a.socket or os.path.join(a.exec_root, "monitor.sock"))
    if a.resume_fd >= 0:
        from pallet.monitor import handover

        handover.resume(mon, a.resume_fd)
        mon.serve()
        return
    mon.bind()
    if a.daemon:
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
    mon.serve()


if __name__ == "__main__":
    main()
