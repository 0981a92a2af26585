"""The monitor's side of its keeper (keeper.py): what it hands over, and taking over.

The monitor tells its keeper, over their SOCK_SEQPACKET channel, each container's
descriptors as it takes them and again when they change (``_keep``), and that a
container is done (``drop``); a monitor the keeper started after another died first
takes over what the keeper holds (``adopt``), then hears of the exits of those
containers, which are the keeper's children now, from it (``_from_keeper``).
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import TYPE_CHECKING

from pallet.monitor import handover, keeper, warn
from pallet.runtime import lifecycle, state

if TYPE_CHECKING:
    from pallet.monitor.server import Box


class KeeperLink:
    if TYPE_CHECKING:  # what Monitor brings
        keeper: socket.socket | None
        ep: select.epoll
        boxes: dict[str, Box]
        runtime_root: str

        def _exited(self, pid: int, status: int) -> None: ...

    def use_keeper(self, chan: socket.socket) -> None:
        """From now on tell ``chan``'s keeper what this monitor holds."""
        os.set_inheritable(chan.fileno(), False)
        chan.settimeout(keeper.SEND_TIMEOUT)
        self.keeper = chan
        self.ep.register(chan.fileno(), select.EPOLLIN)

    def adopt(self) -> None:
        """Take over the containers of the monitor this one replaces (a restart): their
        descriptors and the exits the keeper saw since (see keeper.py)."""
        from pallet.monitor.server import DRAIN_SECONDS, Monitor

        assert isinstance(self, Monitor) and self.keeper is not None
        keeper.send(self.keeper, {"op": "adopt"})
        now = time.monotonic()
        while True:
            msg, fds = keeper.recv(self.keeper)
            if msg is None:
                raise OSError("the keeper closed the channel during the hand-over")
            if "box" in msg:
                box = handover.restore_box(self, msg["box"], fds, now)
                if box.exit_code is not None and not box.done:
                    box.deadline = now + DRAIN_SECONDS  # reaped already; draining
                continue
            for pid, status in msg.get("exits", {}).items():
                self._exited(int(pid), int(status))
            break
        # A container the previous monitor was starting when it died was never handed
        # over, and its output has nobody to read it: end it, as palletd ends orphans.
        for cid in state.list_ids(self.runtime_root):
            if cid not in self.boxes:
                try:
                    lifecycle.delete(state.load(self.runtime_root, cid), force=True)
                except Exception as exc:
                    warn(f"ending container {cid}, which nobody held: {exc}")

    def _keep(self, box: Box, full: bool = False) -> None:
        """Hand the keeper ``box``'s descriptors (again, when they changed)."""
        if self.keeper is None or box.done:
            return
        self._tell_keeper({"op": "hold", "box": handover.box_state(
            box, time.monotonic(), full)}, handover.box_fds(box))

    def _tell_keeper(self, msg: dict[str, object], fds: list[int] | None = None) -> None:
        if self.keeper is None:
            return
        try:
            keeper.send(self.keeper, msg, fds)
        except OSError as exc:
            self._lose_keeper(f"telling the keeper: {exc}")

    def _from_keeper(self) -> None:
        assert self.keeper is not None
        try:
            msg, fds = keeper.recv(self.keeper, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lose_keeper(f"reading from the keeper: {exc}")
            return
        for fd in fds:
            os.close(fd)
        if msg is None:
            self._lose_keeper("the keeper is gone")
        elif "exit" in msg:  # a container adopted from an earlier monitor
            self._exited(int(msg["exit"]), int(msg["status"]))

    def _lose_keeper(self, why: str) -> None:
        assert self.keeper is not None
        warn(f"{why}; containers will not outlive this monitor")
        try:
            self.ep.unregister(self.keeper.fileno())
        except (OSError, ValueError):
            pass
        self.keeper.close()
        self.keeper = None

