"""Signals, stop, pause and update of running containers: ContainerService's, kept
apart. Each goes to pallet-monitor, which holds the containers; the record follows
(a stop or kill by hand also tells the restart policy to leave the container be).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pallet.engine import ocispec
from pallet.engine.containerconf import block_devices, check_host_config
from pallet.engine.containerparts import ServiceParts
from pallet.errors import Conflict, InvalidArgument, InvalidState, NotFound
from pallet.linux import signals

DEFAULT_STOP_TIMEOUT = 10


def parse_signal(raw: str | int | None, default: int = 15) -> int:
    """SIGTERM, TERM, 15, RTMIN+1 -> its number; InvalidArgument for anything else."""
    if raw is None or raw == "":
        return default
    try:
        return signals.parse(str(raw))
    except ValueError:
        raise InvalidArgument(f"Invalid signal: {raw}") from None


class Control(ServiceParts):
    if TYPE_CHECKING:  # more of what ContainerService brings
        runtime_root: str

        def _exit_future(self, cid: str) -> asyncio.Future[None]: ...

    def kill(self, ref: str, signal: str | int | None = None) -> None:
        doc = self.get(ref)
        sig = parse_signal(signal, 9)
        if not doc["State"]["Running"]:
            raise Conflict(f"Container {doc['Id']} is not running")
        if sig in (9, 15, parse_signal(doc["Config"].get("StopSignal"), 15)):
            with self._lock:
                doc["State"]["ManuallyStopped"] = True  # as dockerd: no restart after kill
                self._save(doc)
        try:
            self.monitor.call("kill", id=doc["Id"], signal=sig)
        except (NotFound, InvalidState):
            raise Conflict(f"Container {doc['Id']} is not running") from None
        self._event(doc, "kill", signal=str(sig))

    async def stop(self, ref: str, timeout: int | None = None,
                   signal: str | None = None) -> bool:
        """SIGTERM (or the stop signal), SIGKILL after ``timeout``; False if not running."""
        doc = await asyncio.to_thread(self.get, ref)
        st = doc["State"]
        if st.get("Restarting"):
            with self._lock:  # a restart waiting out its back-off is called off
                st.update(Restarting=False, Status="exited", ManuallyStopped=True)
                self._save(doc)
            return True
        if not st["Running"]:
            return False
        sig = parse_signal(signal or doc["Config"].get("StopSignal"), 15)
        if timeout is None:
            t = doc["Config"].get("StopTimeout")
            timeout = int(t) if t is not None else DEFAULT_STOP_TIMEOUT
        with self._lock:
            st["ManuallyStopped"] = True  # the restart policy leaves it stopped
            self._save(doc)
        waiter = self._exit_future(doc["Id"])
        try:
            if doc["State"]["Paused"]:
                await asyncio.to_thread(self.monitor.call, "kill", id=doc["Id"], signal=9,
                                        all=True)
            else:
                await asyncio.to_thread(self.monitor.call, "kill", id=doc["Id"], signal=sig)
            self._event(doc, "kill", signal=str(sig))
        except (NotFound, InvalidState):
            pass  # exited on its own meanwhile
        if timeout < 0:
            await waiter
        else:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                try:
                    await asyncio.to_thread(self.monitor.call, "kill", id=doc["Id"],
                                            signal=9, all=True)
                    self._event(doc, "kill", signal="9")
                except (NotFound, InvalidState):
                    pass
                await waiter
        self._event(doc, "stop")
        return True

    def pause(self, ref: str) -> None:
        doc = self.get(ref)
        st = doc["State"]
        if not st["Running"]:
            raise Conflict(f"Container {doc['Id']} is not running")
        if st["Paused"]:
            raise Conflict(f"Container {doc['Id']} is already paused")
        self.monitor.call("pause", id=doc["Id"])
        with self._lock:
            st.update(Paused=True, Status="paused")
            self._save(doc)
        self._event(doc, "pause")

    def unpause(self, ref: str) -> None:
        doc = self.get(ref)
        st = doc["State"]
        if not st["Paused"]:
            raise Conflict(f"Container {doc['Id']} is not paused")
        self.monitor.call("resume", id=doc["Id"])
        with self._lock:
            st.update(Paused=False, Status="running")
            self._save(doc)
        self._event(doc, "unpause")

    UPDATABLE = ("CpuShares", "Memory", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
                 "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
                 "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
                 "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "MemoryReservation",
                 "MemorySwap", "MemorySwappiness", "NanoCpus", "OomKillDisable", "PidsLimit",
                 "KernelMemory", "KernelMemoryTCP", "RestartPolicy")

    def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change resources (live, if it runs) and the restart policy."""
        doc = self.get(ref)
        unknown = [k for k in body if k not in self.UPDATABLE and body[k] not in (None, 0,
                                                                                   "", [])]
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}")
        with self._lock:
            hc = dict(doc["HostConfig"])
            for key, value in body.items():
                if key in self.UPDATABLE and value is not None and (
                        value not in (0, "", []) or key in hc):
                    hc[key] = value
            if hc.get("AutoRemove") and (hc.get("RestartPolicy") or {}).get("Name",
                                                                             "no") != "no":
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove is "
                                      "enabled for the container")
            if hc.get("NanoCpus") and (body.get("CpuQuota") or body.get("CpuPeriod")):
                hc["NanoCpus"] = 0
            if body.get("NanoCpus"):
                hc["CpuQuota"] = hc["CpuPeriod"] = 0
            check_host_config(hc)
            if doc["State"]["Running"]:
                self._update_cgroup(doc, hc)
            doc["HostConfig"] = hc
            self._save(doc)
        self._event(doc, "update")
        return {"Warnings": []}

    def _update_cgroup(self, doc: dict[str, Any], hc: dict[str, Any]) -> None:
        from pallet.oci.resources import parse_resources
        from pallet.runtime import inspect_verbs

        ctx = ocispec.Context(cid=doc["Id"], rootfs="/",
                              block_devices=block_devices(hc))
        res = ocispec.resources(hc, ctx, bool(hc.get("Privileged")))
        res.pop("devices", None)  # never changed by update, as with dockerd and runc
        inspect_verbs.update(self.runtime_root, doc["Id"], parse_resources(res))
