"""One function per pallet-runtime verb: parse what the CLI gathered, call the container."""

from __future__ import annotations

import os
import sys

from pallet.errors import InvalidArgument, NotFound
from pallet.oci import jsonfast
from pallet.runtime import lifecycle, state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.runtime.cli import Args
    from pallet.runtime.container import CreateOptions


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def verb_spec(root: str, a: Args) -> int:
    import json

    from pallet.oci.defaults import default_spec

    path = os.path.join(a.str("bundle", "."), "config.json")
    if os.path.exists(path):
        raise InvalidArgument("File config.json exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(), f, indent="\t")
        f.write("\n")
    return 0


def preserved_fds(a: Args) -> int:
    """How many descriptors after stdio reach the process: --preserve-fds plus the
    socket-activation ones ($LISTEN_FDS), as runc counts them."""
    preserve = a.int("preserve_fds")
    if preserve < 0:
        raise InvalidArgument("--preserve-fds must not be negative")
    listen = os.environ.get("LISTEN_FDS", "")
    return preserve + int(listen) if listen.isdigit() else preserve


def _create_opts(a: Args) -> CreateOptions:
    from pallet.runtime.container import CreateOptions

    preserve = preserved_fds(a)
    return CreateOptions(
        bundle=a.str("bundle", "."), console_socket=a.str("console_socket"),
        pid_file=a.str("pid_file"), no_pivot=a.bool("no_pivot"), preserve_fds=preserve,
        no_new_keyring=a.bool("no_new_keyring"),
    )


def verb_create(root: str, a: Args) -> int:
    from pallet.runtime import container

    container.create(root, a.positional[0], _create_opts(a))
    return 0


def verb_start(root: str, a: Args) -> int:
    ctr = state.load(root, a.positional[0])
    lock = ctr.lock()
    try:
        lifecycle.start(ctr)
    finally:
        os.close(lock)
    return 0


def verb_run(root: str, a: Args) -> int:
    cid = a.positional[0]
    opts = _create_opts(a)
    opts.terminal_relay = not a.bool("detach")  # runc relays a terminal in the foreground
    from pallet.runtime import container

    ctr, pid = container.create(root, cid, opts)
    master = -1
    try:
        if opts.relay_fd >= 0:
            from pallet.runtime import ttyrelay

            master = ttyrelay.recv_master(opts.relay_fd)
        lifecycle.start(ctr)
    except BaseException:
        if master >= 0:
            os.close(master)
        lifecycle.delete(ctr, force=True)
        raise
    if a.bool("detach"):
        return 0
    if master >= 0:
        code = ttyrelay.relay(master, pid)
        if not a.bool("keep"):
            lifecycle.delete(state.load(root, cid), force=True)
        return code
    # Foreground: we are init's parent. Forward the signals a shell would send, wait,
    # then remove the container as runc does (unless --keep).
    forward_signals(pid)
    code = lifecycle.wait_exit(pid)
    if not a.bool("keep"):
        lifecycle.delete(state.load(root, cid), force=True)
    return code


# Signals a foreground run or exec passes on to the container's process.
FORWARDED = ("INT", "TERM", "HUP", "QUIT", "USR1", "USR2", "WINCH")


def forward_signals(pid: int) -> None:
    """Pass the signals a shell sends on to ``pid``.

    Through _signal (already loaded by the interpreter): the signal module imports
    enum, ~8 ms here.
    """
    import _signal  # type: ignore[import-not-found]

    from pallet.linux import signals

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for name in FORWARDED:
        _signal.signal(signals.NUMBERS[name], forward)


def verb_state(root: str, a: Args) -> int:
    ctr = state.load(root, a.positional[0])
    st = ctr.oci_state()
    st["rootfs"] = ctr.data.get("rootfs", "")
    st["created"] = ctr.data.get("created", "")
    st["owner"] = ""
    _out(jsonfast.dumps_indented(st) + "\n")
    return 0


def verb_kill(root: str, a: Args) -> int:
    from pallet.linux import signals

    ctr = state.load(root, a.positional[0])
    sig_text = a.positional[1] if len(a.positional) > 1 else "SIGTERM"
    try:
        sig = signals.parse(sig_text)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    lifecycle.kill(ctr, sig, all_procs=a.bool("all"))
    return 0


def verb_delete(root: str, a: Args) -> int:
    code = 0
    for cid in a.positional:
        try:
            ctr = state.load(root, cid)
        except NotFound:
            if a.bool("force"):
                continue  # runc: delete --force of a missing container succeeds
            raise
        lock = ctr.lock()
        try:
            lifecycle.delete(ctr, force=a.bool("force"))
        finally:
            os.close(lock)
    return code


def verb_list(root: str, a: Args) -> int:
    fmt = a.str("format", "table")
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"invalid format option: {fmt}")
    rows = []
    for cid in state.list_ids(root):
        try:
            ctr = state.load(root, cid)
        except NotFound:
            continue  # deleted while we listed
        st = ctr.oci_state()
        rows.append({
            "ociVersion": st["ociVersion"], "id": cid, "pid": st["pid"], "status": st["status"],
            "bundle": ctr.bundle, "rootfs": ctr.data.get("rootfs", ""),
            "created": ctr.data.get("created", ""), "annotations": ctr.annotations or None,
            "owner": "root" if os.geteuid() == 0 else str(os.geteuid()),
        })
    if a.bool("quiet"):
        _out("".join(f"{r['id']}\n" for r in rows))
    elif fmt == "json":
        _out(jsonfast.dumps(rows if rows else None) + "\n")
    else:
        table = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        table += [(str(r["id"]), str(r["pid"]), str(r["status"]), str(r["bundle"]),
                   str(r["created"]), str(r["owner"])) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        _out("".join(
            "".join(c.ljust(max(widths[i] + 2, 12)) for i, c in enumerate(row)).rstrip() + "\n"
            for row in table
        ))
    return 0


def verb_pause(root: str, a: Args) -> int:
    lifecycle.pause(state.load(root, a.positional[0]))
    return 0


def verb_resume(root: str, a: Args) -> int:
    lifecycle.resume(state.load(root, a.positional[0]))
    return 0


def verb_exec(root: str, a: Args) -> int:
    from pallet.runtime import execproc

    return execproc.verb_exec(root, a)


def verb_ps(root: str, a: Args) -> int:
    from pallet.runtime import inspect_verbs

    return inspect_verbs.verb_ps(root, a)


def verb_events(root: str, a: Args) -> int:
    from pallet.runtime import inspect_verbs

    return inspect_verbs.verb_events(root, a)


def verb_update(root: str, a: Args) -> int:
    from pallet.runtime import inspect_verbs

    return inspect_verbs.verb_update(root, a)


def verb_features(root: str, a: Args) -> int:
    from pallet.runtime import inspect_verbs

    return inspect_verbs.verb_features(root, a)
