"""Network namespaces made ahead of the containers that take them.

A new network namespace is about a millisecond of kernel work (each per-network
subsystem sets itself up), which a container's start used to wait for. palletd keeps
a few ready — bind-mounted under <exec_root>/netns with random names, loopback up —
and makes the next in a background thread as soon as one is taken. Spares are
removed when palletd stops; any left by a palletd that was killed are removed by
the next one's start (Sandboxes.resume), as other netns files no container holds.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading

log = logging.getLogger("palletd")

SPARES = 2
# A refill waits this long after a take: not beside the start that took it (on a
# host with few CPUs it would slow that very start).
REFILL_DELAY = 0.05


class NetnsPool:
    def __init__(self, directory: str, size: int = SPARES) -> None:
        self.dir = directory
        self.size = size
        self._spares: list[str] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    def take(self) -> str:
        """A namespace file of the caller's own: a spare, else one made now."""
        with self._cond:
            path = self._spares.pop() if self._spares else ""
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="netns-pool",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        if not path:
            path = self._make()
        return path

    def spares(self) -> set[str]:
        with self._cond:
            return set(self._spares)

    def close(self) -> None:
        """Stop making spares and remove those made."""
        from pallet.linux import netns

        with self._cond:
            self._closing = True
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        with self._cond:
            left, self._spares = self._spares, []
        for path in left:
            try:
                netns.remove(path)
            except OSError as exc:
                log.warning("removing spare netns %s: %s", path, exc)

    def _make(self) -> str:
        from pallet.linux import netns

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        path = os.path.join(self.dir, secrets.token_hex(16))
        netns.create(path)
        return path

    def _run(self) -> None:
        from pallet.linux import netns

        while True:
            with self._cond:
                while not self._closing and len(self._spares) >= self.size:
                    self._cond.wait()
                if self._spares and not self._closing:
                    self._cond.wait(REFILL_DELAY)
                if self._closing:
                    return
            try:
                path = self._make()
            except OSError as exc:
                log.warning("making a spare netns: %s", exc)
                with self._cond:  # no spinning: wait for the next take (or close)
                    self._cond.wait()
                continue
            with self._cond:
                if not self._closing:
                    self._spares.append(path)
                    continue
            netns.remove(path)  # closed meanwhile
            return
