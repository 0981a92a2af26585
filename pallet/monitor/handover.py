"""Restarting or upgrading pallet-monitor without losing a container or a log line.

Two ways, one description of a container's holdings (``box_state``/``restore_box``):

- ``upgrade`` re-executes the monitor in place: the same process (so the containers
  stay its children, their exits still its to reap), new code. Everything it holds goes
  across the exec: the listening socket, every container's stdio pipes and terminal,
  the connections of palletd's watch and of attach streams, as open descriptors; what
  they mean (which container, which stream, what is buffered, how far each log file
  is) as a JSON description in a memfd whose descriptor the new program is given.
  Nothing is closed, so nothing a container writes in between is lost: it waits in its
  pipe until the new program reads it.
- a monitor that dies (a crash, SIGKILL, SIGTERM) is restarted by its keeper
  (keeper.py), which has been handed each container's descriptors over SCM_RIGHTS as
  the monitor took them; the new monitor gets them back the same way.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

from pallet.monitor import keeper, logfile
from pallet.oci import jsonfast

if TYPE_CHECKING:
    from pallet.monitor.server import Box, Monitor


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    return base64.b64decode(str(text or ""))


def box_fds(box: Box) -> list[int]:
    """The descriptors ``box`` holds, in the order ``box_state`` names them."""
    return sorted({box.master, box.stdin, *box.outputs} - {-1})


def box_state(box: Box, now: float, full: bool = True) -> dict[str, Any]:
    """What ``box`` is and holds; without ``full``, only what stays true between the
    moments the monitor tells its keeper (no buffers, no partial log lines)."""
    log = None
    if box.log is not None:
        w = box.log
        log = {"path": w.path, "max_size": w.max_size, "max_file": w.max_file,
               "compress": w.compress, "attrs": w.attrs,
               "partial": {k: _b64(v) for k, v in w._partial.items()} if full else {}}
    return {
        "id": box.id, "container": box.container, "state_dir": box.state_dir,
        "tty": box.tty, "pid": box.pid, "master": box.master, "stdin": box.stdin,
        "stdin_once": box.stdin_once, "stdin_buf": _b64(box.stdin_buf) if full else "",
        "stdin_closing": box.stdin_closing and full,
        "outputs": {str(fd): s for fd, s in box.outputs.items()}, "log": log,
        "started_at": box.started_at, "exit_code": box.exit_code,
        "finished_at": box.finished_at, "oom_killed": box.oom_killed,
        "deadline": max(0.0, box.deadline - now) if box.deadline and full else 0.0,
        "done": box.done, "fds": box_fds(box),
    }


def restore_box(mon: Monitor, b: dict[str, Any], fds: list[int], now: float) -> Box:
    """Rebuild a container ``box_state`` described, now holding ``fds`` (the same
    descriptors, numbered as this process has them), and watch its output."""
    import select

    from pallet.monitor.server import Box

    renumber = dict(zip((int(fd) for fd in b["fds"]), fds, strict=True))
    renumber[-1] = -1
    box = Box(b["id"], b["state_dir"], bool(b["tty"]), container=b["container"])
    box.pid = int(b["pid"])
    box.master, box.stdin = renumber[int(b["master"])], renumber[int(b["stdin"])]
    box.stdin_once, box.stdin_closing = bool(b["stdin_once"]), bool(b["stdin_closing"])
    box.stdin_buf = _unb64(b["stdin_buf"])
    box.outputs = {renumber[int(fd)]: s for fd, s in b["outputs"].items()}
    box.started_at, box.finished_at = float(b["started_at"]), float(b["finished_at"])
    box.exit_code = b["exit_code"]
    box.oom_killed, box.done = bool(b["oom_killed"]), bool(b["done"])
    box.deadline = now + float(b["deadline"]) if b["deadline"] else 0.0
    if b["log"]:
        lg = b["log"]
        box.log = logfile.LogWriter(lg["path"], int(lg["max_size"]), int(lg["max_file"]),
                                    bool(lg["compress"]), lg.get("attrs"))
        box.log._partial = {k: _unb64(v) for k, v in lg["partial"].items()}
    for fd in fds:
        os.set_inheritable(fd, False)
    mon.boxes[box.id] = box
    if not box.done and box.pid and box.exit_code is None:
        mon.by_pid[box.pid] = box
    for fd in box.outputs:
        os.set_blocking(fd, False)
        mon.out_fds[fd] = box
        mon.ep.register(fd, select.EPOLLIN)
    if box.stdin >= 0:
        os.set_blocking(box.stdin, False)
    if box.stdin_buf:
        mon._poll_stdin(box, True)
    return box


def describe(mon: Monitor) -> tuple[dict[str, Any], list[int]]:
    """The monitor's state, and the descriptors it names (to keep open across exec)."""
    import time

    now = time.monotonic()
    fds = [mon.listener.fileno()]
    boxes = []
    for box in mon.boxes.values():
        boxes.append(box_state(box, now))
        fds += box_fds(box)
    conns = []
    for conn in mon.conns.values():
        waiting = next((cid for cid, ws in mon.waiting.items() if conn in ws), "")
        conns.append({
            "fd": conn.fd, "mode": conn.mode, "box_id": conn.box_id, "stdin": conn.stdin,
            "streams": list(conn.streams), "closing": conn.closing,
            "read_eof": conn.read_eof, "inbuf": _b64(conn.inbuf),
            "outbuf": _b64(bytes(conn.outbuf)), "pending": _b64(conn.pending),
            "attached": conn.box is not None, "waiting": waiting,
        })
        fds.append(conn.fd)
    keeper = mon.keeper.fileno() if mon.keeper is not None else -1
    if keeper >= 0:
        fds.append(keeper)
    return {"listener": mon.listener.fileno(), "boxes": boxes, "conns": conns,
            "keeper": keeper, "generation": mon.generation}, sorted(set(fds))


def reexec(mon: Monitor) -> None:
    """Replace this process's program with a fresh monitor that takes over. Raises
    OSError if the exec fails (the old program then goes on as before)."""
    desc, fds = describe(mon)
    for box in mon.boxes.values():
        if box.log is not None:
            os.fsync(box.log.fd)  # the new program appends where this one stopped
    keeper.reexec(mon.exec_root, mon.sock_path, "--resume-fd", jsonfast.dumps(desc).encode(),
                  fds)


def resume(mon: Monitor, memfd: int) -> None:
    """Rebuild ``mon`` (fresh, not serving yet) from what the previous program left."""
    import select
    import socket
    import time

    from pallet.monitor.server import Conn

    desc = keeper.read_state(memfd)
    mon.listener.close()
    mon.listener = socket.socket(fileno=int(desc["listener"]))
    mon.listener.setblocking(False)
    os.set_inheritable(mon.listener.fileno(), False)
    if int(desc.get("keeper", -1)) >= 0:
        mon.use_keeper(socket.socket(fileno=int(desc["keeper"])))
    now = time.monotonic()
    for b in desc["boxes"]:
        restore_box(mon, b, [int(fd) for fd in b["fds"]], now)
    for c in desc["conns"]:
        sock = socket.socket(fileno=int(c["fd"]))
        sock.setblocking(False)
        os.set_inheritable(sock.fileno(), False)
        conn = Conn(sock)
        conn.mode, conn.box_id, conn.stdin = str(c["mode"]), str(c["box_id"]), bool(c["stdin"])
        conn.streams = (bool(c["streams"][0]), bool(c["streams"][1]))
        conn.closing, conn.read_eof = bool(c["closing"]), bool(c["read_eof"])
        conn.inbuf = _unb64(c["inbuf"])
        conn.outbuf = bytearray(_unb64(c["outbuf"]))
        conn.pending = _unb64(c["pending"])
        mon.conns[conn.fd] = conn
        mon.ep.register(conn.fd, select.EPOLLIN)
        conn.events = select.EPOLLIN
        owner = mon.boxes.get(conn.box_id)
        if c["attached"] and owner is not None:
            owner.attached.append(conn)
            conn.box = owner
        elif c["waiting"]:
            mon.waiting.setdefault(str(c["waiting"]), []).append(conn)
        mon._modify(conn)
    mon.generation = int(desc.get("generation", 0)) + 1
