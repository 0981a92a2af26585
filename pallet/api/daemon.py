"""`palletd`: the Engine API on a unix socket (and on TCP only with TLS client certs)."""

from __future__ import annotations

import argparse
import asyncio
import grp
import logging
import os
import signal
import ssl
import sys

from aiohttp import web

import pallet
from pallet.api.app import make_app
from pallet.engine.config import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT, DEFAULT_SOCKET, DaemonConfig
from pallet.engine.daemon import Engine
from pallet.errors import InvalidArgument, PalletError

log = logging.getLogger("palletd")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="palletd", description="pallet's daemon: the Docker "
                                "Engine API over a unix socket")
    p.add_argument("-H", "--host", action="append", default=[],
                   help=f"where to listen: unix:///path (default unix://{DEFAULT_SOCKET}) "
                        "or tcp://addr:port (requires --tlsverify)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    p.add_argument("--exec-root", default=DEFAULT_EXEC_ROOT)
    p.add_argument("--group", default="pallet",
                   help="group owning the unix socket, if it exists (default: pallet)")
    p.add_argument("--tlsverify", action="store_true")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--insecure-registry", action="append", default=[])
    p.add_argument("--registry-mirror", action="append", default=[])
    p.add_argument("--cgroup-parent", default="/pallet",
                   help="parent cgroup of containers without their own (default /pallet)")
    p.add_argument("--init-path", default="/usr/bin/tini-static",
                   help="the init --init runs as pid 1 (default Debian's tini-static)")
    p.add_argument("-b", "--bridge", default="pallet0",
                   help="the default network's bridge interface (default pallet0)")
    p.add_argument("--bip", default="",
                   help="the default bridge's address and prefix, e.g. 172.17.0.1/16 "
                        "(default: a free pool)")
    p.add_argument("--firewall-table", default="pallet",
                   help="the nftables table holding pallet's rules (default pallet)")
    p.add_argument("--dns", action="append", default=[],
                   help="DNS server for containers (default: the host's); the embedded "
                        "DNS of user-defined networks forwards to it")
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("-v", "--version", action="store_true")
    return p.parse_args(argv)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    if not (args.tlsverify and args.tlscacert and args.tlscert and args.tlskey):
        raise InvalidArgument("palletd listens on TCP only with TLS client certificates: "
                              "--tlsverify --tlscacert --tlscert --tlskey")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.tlscacert)
    ctx.load_cert_chain(args.tlscert, args.tlskey)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve(args: argparse.Namespace, cfg: DaemonConfig) -> None:
    # Bad flags are refused before anything starts (the monitor, the stores).
    tls: ssl.SSLContext | None = None
    for host in cfg.hosts:
        if host.startswith("tcp://"):
            tls = tls_context(args)
        elif not host.startswith("unix://"):
            raise InvalidArgument(f"invalid host: {host}")
    engine = Engine(cfg)
    # A client that goes away cancels its request (a `wait` or `logs -f` nobody reads
    # any more must not linger), and stopping palletd does not wait for long streams.
    runner = web.AppRunner(make_app(engine), access_log=None, handler_cancellation=True,
                           shutdown_timeout=2.0)
    await runner.setup()
    # Bridges and firewall rules as the records say, then containers as the monitor
    # sees them (exits while palletd was away take their sandboxes down), before the
    # first request is served.
    engine.sandboxes.loop = asyncio.get_running_loop()
    await asyncio.to_thread(engine.sandboxes.restore)
    follow = asyncio.create_task(engine.containers.follow_monitor())
    try:
        await asyncio.wait_for(engine.containers.ready.wait(), 30)
    except TimeoutError:
        log.warning("pallet-monitor does not answer; containers are shown as last recorded")
    await asyncio.to_thread(engine.sandboxes.resume, list(engine.containers.docs.values()))
    sites: list[web.BaseSite] = []
    for host in cfg.hosts:
        if host.startswith("unix://"):
            path = host[len("unix://"):]
            os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)  # a stale socket of an earlier palletd
            site: web.BaseSite = web.UnixSite(runner, path)
            await site.start()
            _secure_socket(path, args.group)
        elif host.startswith("tcp://"):
            addr, _, port = host[len("tcp://"):].rpartition(":")
            site = web.TCPSite(runner, addr or "127.0.0.1", int(port), ssl_context=tls)
            await site.start()
        else:
            raise InvalidArgument(f"invalid host: {host}")
        sites.append(site)
        log.info("listening on %s", host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)  # as dockerd dumps its goroutines
    await stop.wait()
    follow.cancel()
    await runner.cleanup()
    await engine.sandboxes.close()
    for host in cfg.hosts:
        if host.startswith("unix://"):
            try:
                os.unlink(host[len("unix://"):])
            except FileNotFoundError:
                pass


def _dump_tasks() -> None:
    import io

    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}\n")
        coro: object = task.get_coro()
        while coro is not None:  # the whole chain of awaits, innermost last
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                out.write(f"  {frame.f_code.co_filename}:{frame.f_lineno} "
                          f"{frame.f_code.co_name}\n")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    log.info("task dump:\n%s", out.getvalue())


def _secure_socket(path: str, group: str) -> None:
    """root:root 0660, or root:<group> when that group exists (as docker's socket)."""
    gid = 0
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(f"palletd version {pallet.__version__}")
        return 0
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="time=%(asctime)s level=%(levelname)s msg=%(message)s")
    cfg = DaemonConfig(
        data_root=args.data_root, exec_root=args.exec_root,
        hosts=tuple(args.host) or (f"unix://{DEFAULT_SOCKET}",),
        insecure_registries=tuple(args.insecure_registry),
        registry_mirrors=tuple(args.registry_mirror), debug=args.debug,
        cgroup_parent=args.cgroup_parent, init_path=args.init_path,
        bridge=args.bridge, bip=args.bip, firewall_table=args.firewall_table,
        dns=tuple(args.dns),
    )
    import resource

    # Two DNS sockets per container on a user-defined network, one per forwarded query:
    # the soft limit goes up to the hard one, as dockerd's does.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(serve(args, cfg))
    except PalletError as exc:
        print(f"palletd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
