"""Exits and restarts: ContainerService's following of the monitor, kept apart.

palletd learns of every container's end from pallet-monitor's feed: at start it folds in
the monitor's whole view (``reconcile``: what ended while palletd was away, what the
monitor no longer knows), then each exit as it comes — recorded, announced, waited on,
and answered with Docker's restart policies and back-off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from pallet.engine.containerexec import healthcheck
from pallet.engine.containerparts import ServiceParts
from pallet.engine.containerview import ZERO_TIME, rfc3339, state_of
from pallet.errors import InvalidArgument, NotFound, PalletError
from pallet.monitor import logfile
from pallet.oci import jsonfast

if TYPE_CHECKING:
    from pallet.engine.sandbox import Sandboxes

log = logging.getLogger("palletd")


class ExitsAndRestarts(ServiceParts):
    if TYPE_CHECKING:  # more of what ContainerService brings
        sandboxes: Sandboxes
        runtime_root: str
        ready: asyncio.Event
        _loop: asyncio.AbstractEventLoop | None
        _exits: dict[str, list[asyncio.Future[None]]]
        _removals: dict[str, list[asyncio.Future[None]]]
        _backoff: dict[str, float]

        def sweep(self) -> None: ...
        def _destroy(self, doc: dict[str, Any], volumes: bool = False) -> None: ...
        def _remove_stopped(self, doc: dict[str, Any], volumes: bool = False) -> None: ...
        def _watch_health(self, doc: dict[str, Any]) -> None: ...

    async def follow_monitor(self) -> None:
        """Fold in the monitor's view now, then each exit as it happens (forever)."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.to_thread(self.monitor.ensure)
                reader, writer, snap = await self.monitor.open_stream("watch")
            except (OSError, PalletError):
                await asyncio.sleep(0.5)
                continue
            try:
                records = snap.get("containers")
                await self._reconcile(records if isinstance(records, list) else [])
                self.ready.set()
                while True:
                    line = await reader.readline()
                    if not line:
                        break
                    rec = jsonfast.loads(line)
                    if isinstance(rec, dict) and rec.get("event") == "exit":
                        await self._exited(rec)
            finally:
                writer.close()

    async def _reconcile(self, records: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.sweep)
        known = {str(r["id"]): r for r in records if isinstance(r, dict)}
        for doc in list(self.docs.values()):
            st = doc["State"]
            rec = known.get(doc["Id"])
            if rec is not None and not rec.get("running"):
                await self._exited(rec)
            elif st["Running"] and rec is None:
                # The monitor is not the one that started it (host or monitor restart):
                # what it left on disk says how it ended, else it is lost.
                saved = _read_exit(os.path.join(self.run_root, doc["Id"]))
                if saved is None:
                    # A monitor that died leaves its containers running with nobody
                    # holding their output: they are ended and cleaned up, not orphaned.
                    await asyncio.to_thread(self._end_orphan, doc["Id"])
                await self._exited(saved or {"id": doc["Id"], "exitCode": 255,
                                             "finishedAt": time.time(), "oomKilled": False})
            elif st["Status"] == "removing":
                await asyncio.to_thread(self._destroy, doc)
        for doc in list(self.docs.values()):
            st = doc["State"]
            if st["Running"] and healthcheck(doc) is not None:
                self._watch_health(doc)
            if st.get("Restarting") or (not st["Running"] and self._should_restart(doc, True)):
                # always/unless-stopped come back with palletd (and after a host reboot)
                self._schedule_restart(doc, 0.0)

    async def _exited(self, rec: dict[str, Any]) -> None:
        cid = str(rec.get("id"))
        if rec.get("container"):
            self._exec_exited(cid, rec)
            await asyncio.to_thread(self._forget, cid)
            return
        doc = self.docs.get(cid)
        if doc is None:
            await asyncio.to_thread(self._forget, cid)
            return
        await asyncio.to_thread(self._record_exit, doc, rec)
        self._event(doc, "die", exitCode=str(doc["State"]["ExitCode"]))
        if doc["State"]["OOMKilled"]:
            self._event(doc, "oom")
        for fut in self._exits.pop(cid, []):
            if not fut.done():
                fut.set_result(None)
        if doc["HostConfig"].get("AutoRemove"):
            try:
                await asyncio.to_thread(self._remove_stopped, doc)
            except PalletError:
                pass
        elif self._should_restart(doc):
            self._schedule_restart(doc)

    def _should_restart(self, doc: dict[str, Any], boot: bool = False) -> bool:
        """Docker's restart policies. ``boot``: palletd is starting (on-failure and no
        leave a stopped container as it is then)."""
        policy = doc["HostConfig"].get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        st = doc["State"]
        if doc["Id"] not in self.docs or doc["HostConfig"].get("AutoRemove"):
            return False
        if boot and name == "always":
            return True  # even one stopped by hand comes back when palletd does
        if st.get("ManuallyStopped"):
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and not boot:
            most = int(policy.get("MaximumRetryCount") or 0)
            return st["ExitCode"] != 0 and (most == 0 or doc["RestartCount"] < most)
        return False

    def _schedule_restart(self, doc: dict[str, Any], delay: float | None = None) -> None:
        """Start it again after Docker's back-off: 100 ms, doubling up to a minute,
        back to 100 ms once it ran for 10 s."""
        cid = doc["Id"]
        st = doc["State"]
        ran = logfile.parse_time(st.get("FinishedAt") or ZERO_TIME) - \
            logfile.parse_time(st.get("StartedAt") or ZERO_TIME)
        if delay is None:
            delay = self._backoff.get(cid, 0.0)
            delay = 0.1 if ran >= 10 or not delay else min(delay * 2, 60.0)
        self._backoff[cid] = delay
        with self._lock:
            st.update(Restarting=True, Status="restarting")
            self._save(doc)
        asyncio.get_running_loop().create_task(self._restart_after(doc, delay))

    async def _restart_after(self, doc: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        st = doc["State"]
        if doc["Id"] not in self.docs or not st.get("Restarting") or st["Running"]:
            return
        try:
            await asyncio.to_thread(self.start, doc["Id"], True)
        except PalletError as exc:
            log.warning("restarting %s: %s", doc["Id"][:12], exc)
            with self._lock:
                st.update(Restarting=False, Status="exited")
                self._save(doc)
            if self._should_restart(doc):
                self._schedule_restart(doc)

    def _end_orphan(self, cid: str) -> None:
        from pallet.runtime import lifecycle, state

        try:
            lifecycle.delete(state.load(self.runtime_root, cid), force=True)
        except NotFound:
            pass
        except (PalletError, OSError) as exc:
            log.warning("ending orphaned container %s: %s", cid[:12], exc)

    def _exec_exited(self, eid: str, rec: dict[str, Any]) -> None:
        ex = self.execs.get(eid)
        if ex is not None:
            ex.update(Running=False, Pid=0, ExitCode=int(rec.get("exitCode") or 0))
            doc = self.docs.get(ex["ContainerID"])
            if doc is not None:
                self._event(doc, "exec_die", execID=eid, exitCode=str(ex["ExitCode"]))
        for fut in self._exec_exits.pop(eid, []):
            if not fut.done():
                fut.set_result(None)

    def _record_exit(self, doc: dict[str, Any], rec: dict[str, Any]) -> None:
        with self._lock:
            st = doc["State"]
            st.update(state_of("exited"))
            code = rec.get("exitCode")
            st.update(ExitCode=int(code) if code is not None else 255,
                      FinishedAt=rfc3339(float(rec.get("finishedAt") or time.time())),
                      OOMKilled=bool(rec.get("oomKilled")), StartedAt=st["StartedAt"])
            self.sandboxes.down(doc)
            self._save(doc)
        self._unmount(doc)
        self._forget(doc["Id"])

    def _forget(self, cid: str) -> None:
        try:
            self.monitor.call("forget", id=cid)
        except (OSError, PalletError):
            pass
        try:
            os.unlink(os.path.join(self.run_root, cid, "exit.json"))
        except FileNotFoundError:
            pass

    def _exit_future(self, cid: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._exits.setdefault(cid, []).append(fut)
        return fut

    async def wait(self, ref: str, condition: str = "not-running") -> dict[str, Any]:
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        doc = await asyncio.to_thread(self.get, ref)
        cid = doc["Id"]
        if condition == "removed":
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._removals.setdefault(cid, []).append(fut)
            if cid not in self.docs:
                fut.set_result(None)
            await fut
        elif condition == "next-exit" or doc["State"]["Running"]:
            await self._exit_future(cid)
        st = doc["State"]
        return {"StatusCode": st["ExitCode"], "Error": (
            {"Message": st["Error"]} if st.get("Error") else None)}


def _read_exit(run_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(run_dir, "exit.json"), "rb") as f:
            rec = jsonfast.loads(f.read())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None
