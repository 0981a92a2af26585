"""Execs and health checks of running containers: ContainerService's, kept apart.

An exec is a record palletd keeps (not on disk: dockerd forgets them at restart too) and
a process the monitor runs in the container's namespaces and cgroup; a health probe is
an exec no one asked for, run on the check's schedule, its last results in State.Health.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from pallet.engine import ocispec
from pallet.engine.containerconf import resolve_user
from pallet.engine.containerparts import ServiceParts
from pallet.engine.containerview import rfc3339
from pallet.engine.monitorclient import frames
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError, start_exit_code
from pallet.oci import jsonfast

if TYPE_CHECKING:
    pass

log = logging.getLogger("palletd")
NS = 1_000_000_000


class ExecsAndHealth(ServiceParts):
    if TYPE_CHECKING:  # more of what ContainerService brings
        _health_tasks: dict[str, asyncio.Task[None]]

        async def stop(self, ref: str, timeout: int | None = None,
                       signal: str | None = None) -> bool: ...

    # --- exec ---------------------------------------------------------------------------------

    def exec_create(self, ref: str, body: dict[str, Any]) -> dict[str, str]:
        doc = self.get(ref)
        st = doc["State"]
        if not st["Running"]:
            raise Conflict(f"Container {doc['Id']} is not running")
        if st["Paused"]:
            raise Conflict(f"Container {doc['Id']} is paused, unpause the container before "
                           "exec")
        cmd = body.get("Cmd") or []
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidArgument("No exec command specified")
        eid = secrets.token_hex(32)
        ex = _exec_record(eid, doc["Id"], cmd, body)
        with self._lock:
            self.execs[eid] = ex
            doc["ExecIDs"] = [*(doc.get("ExecIDs") or []), eid]
        self._event(doc, "exec_create: " + " ".join(cmd), execID=eid)
        return {"Id": eid}

    def exec_get(self, eid: str) -> dict[str, Any]:
        ex = self.execs.get(eid)
        if ex is None:
            raise NotFound(f"No such exec instance: {eid}", obj=eid)
        return ex

    def exec_process(self, ex: dict[str, Any], tty: bool) -> dict[str, Any]:
        """The OCI process to run: the container's, with the exec's command and options."""
        doc = self.get(ex["ContainerID"])
        if not doc["State"]["Running"]:
            raise Conflict(f"Container {doc['Id']} is not running")
        with open(os.path.join(self.run_root, doc["Id"], "config.json"), "rb") as f:
            spec = jsonfast.loads(f.read())
        proc: dict[str, Any] = dict(spec["process"])
        pc = ex["ProcessConfig"]
        proc["args"] = [pc["entrypoint"], *pc["arguments"]]
        proc["terminal"] = tty
        proc.pop("consoleSize", None)
        if tty and ex.get("ConsoleSize") and any(ex["ConsoleSize"]):
            proc["consoleSize"] = {"height": int(ex["ConsoleSize"][0]),
                                   "width": int(ex["ConsoleSize"][1])}
        env = list(proc.get("env") or [])
        for e in ex["Env"]:
            key = e.partition("=")[0]
            env = [x for x in env if x.partition("=")[0] != key] + [e]
        if tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        proc["env"] = env
        if ex["WorkingDir"]:
            proc["cwd"] = ex["WorkingDir"]
        if pc["user"]:
            rootfs = os.path.join(self.snapshots.path(doc["Id"]), "merged")
            uid, gid, groups = resolve_user(rootfs, pc["user"],
                                            doc["HostConfig"].get("GroupAdd") or [])
            proc["user"] = {"uid": uid, "gid": gid, "additionalGids": sorted({gid, *groups})}
        if pc["privileged"]:
            proc["capabilities"] = {k: list(ocispec.bounding_set())
                                    for k in ("bounding", "effective", "permitted")}
        return proc

    async def exec_start(self, eid: str, detach: bool, tty: bool | None = None) -> tuple[
            asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Start the exec; unless ``detach``, the monitor stream of its stdio."""
        ex = self.exec_get(eid)
        with self._lock:
            if ex.get("Started"):
                raise Conflict(f"Exec instance {eid} has already been started")
            ex["Started"] = True
        tty = ex["ProcessConfig"]["tty"] if tty is None else tty
        proc = await asyncio.to_thread(self.exec_process, ex, bool(tty))
        args: dict[str, object] = {
            "id": eid, "container": ex["ContainerID"], "process": proc,
            "stdin": ex["OpenStdin"] and not detach, "stdout": ex["OpenStdout"],
            "stderr": ex["OpenStderr"], "detach": detach}
        self._exec_exits.setdefault(eid, [])
        try:
            if detach:
                reply = await asyncio.to_thread(self.monitor.call, "exec", **args)
                stream = None
            else:
                reader, writer, reply = await self.monitor.open_stream("exec", **args)
                stream = (reader, writer)
        except PalletError as exc:
            ex.update(Running=False, ExitCode=start_exit_code(str(exc), 128))
            raise
        ex.update(Running=True, Pid=int(str(reply["pid"])))
        doc = self.get(ex["ContainerID"])
        self._event(doc, "exec_start: " + " ".join([ex["ProcessConfig"]["entrypoint"],
                                                    *ex["ProcessConfig"]["arguments"]]),
                    execID=eid)
        return stream

    async def exec_wait(self, eid: str, timeout: float = 5.0) -> None:
        """Until the exec's exit is recorded (its stream may end a moment before)."""
        ex = self.exec_get(eid)
        if not ex["Running"]:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._exec_exits.setdefault(eid, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass

    # --- health checks -------------------------------------------------------------------------

    def _watch_health(self, doc: dict[str, Any]) -> None:
        """Probe a running container's health from now until this run of it ends."""
        cid = doc["Id"]
        old = self._health_tasks.pop(cid, None)
        if old is not None:
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._health_loop(doc))
        self._health_tasks[cid] = task
        task.add_done_callback(lambda t: self._health_tasks.pop(cid, None)
                               if self._health_tasks.get(cid) is t else None)

    async def _health_loop(self, doc: dict[str, Any]) -> None:
        check = healthcheck(doc)
        assert check is not None
        test, interval, timeout, retries, start_period, start_interval = check
        st = doc["State"]
        run = st["StartedAt"]
        health: dict[str, Any] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        with self._lock:
            st["Health"] = health
            self._save(doc)
        began = time.monotonic()
        while True:
            in_start = time.monotonic() - began < start_period
            await asyncio.sleep(start_interval if in_start else interval)
            if doc["Id"] not in self.docs or not st["Running"] or st["StartedAt"] != run:
                return
            if st["Paused"]:
                continue
            result = await self._probe(doc, test, timeout)
            with self._lock:
                health["Log"] = [*health["Log"], result][-5:]
                before = health["Status"]
                if result["ExitCode"] == 0:
                    health.update(Status="healthy", FailingStreak=0)
                elif not in_start or before != "starting":
                    health["FailingStreak"] += 1
                    if health["FailingStreak"] >= retries:
                        health["Status"] = "unhealthy"
                self._save(doc)
            if health["Status"] != before:
                self._event(doc, f"health_status: {health['Status']}")
                if health["Status"] == "unhealthy":
                    await self._on_unhealthy(doc)

    async def _probe(self, doc: dict[str, Any], test: list[str],
                     timeout: float) -> dict[str, Any]:
        """Run one probe in the container: its exit code and (at most 4 KiB of) output."""
        start = time.time()
        eid = "health-" + secrets.token_hex(16)
        ex = _exec_record(eid, doc["Id"], test, {"AttachStdout": True, "AttachStderr": True})
        self.execs[eid] = ex  # not in the container's ExecIDs: dockerd lists no probe
        output = b""
        code = -1
        try:
            stream = await self.exec_start(eid, False, False)
            assert stream is not None
            reader, writer = stream
            try:
                async def read_all() -> bytes:
                    return b"".join([data async for _, _, data in frames(reader)])

                output = await asyncio.wait_for(read_all(), timeout)
                await self.exec_wait(eid)
                code = int(ex["ExitCode"] if ex["ExitCode"] is not None else -1)
            except TimeoutError:
                with contextlib.suppress(OSError, PalletError):
                    await asyncio.to_thread(self.monitor.call, "kill", id=eid, signal=9)
                output = f"Health check exceeded timeout ({timeout:g}s)".encode()
            finally:
                writer.close()
        except PalletError as exc:
            output = str(exc).encode()
        finally:
            self.execs.pop(eid, None)
        return {"Start": rfc3339(start), "End": rfc3339(time.time()), "ExitCode": code,
                "Output": output[:4096].decode(errors="replace")}

    async def _on_unhealthy(self, doc: dict[str, Any]) -> None:
        """--health-on-failure: what pallet does to an unhealthy container (Docker: none)."""
        action = doc["HostConfig"].get("HealthOnFailure") or "none"
        try:
            if action == "kill":
                await asyncio.to_thread(self.monitor.call, "kill", id=doc["Id"], signal=9,
                                        all=True)
            elif action == "stop":
                await self.stop(doc["Id"])
            elif action == "restart":
                await self.stop(doc["Id"])
                await asyncio.to_thread(self.start, doc["Id"])
                self._event(doc, "restart")
        except PalletError as exc:
            log.warning("health-on-failure=%s for %s: %s", action, doc["Id"][:12], exc)


def healthcheck(doc: dict[str, Any]) -> tuple[list[str], float, float, int, float,
                                               float] | None:
    """(argv, interval, timeout, retries, start period, start interval) in seconds, with
    Docker's defaults; None when the container has no health check."""
    hc = doc["Config"].get("Healthcheck") or {}
    test = list(hc.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(test[1:])]
    elif test[0] == "CMD":
        argv = test[1:]
    else:
        argv = test
    if not argv:
        return None
    return (argv, (hc.get("Interval") or 30 * NS) / NS, (hc.get("Timeout") or 30 * NS) / NS,
            int(hc.get("Retries") or 3), (hc.get("StartPeriod") or 0) / NS,
            (hc.get("StartInterval") or 5 * NS) / NS)


def _exec_record(eid: str, cid: str, cmd: list[str], body: dict[str, Any]) -> dict[str, Any]:
    """What palletd keeps of an exec (GET /exec/{id}/json's fields and the request's)."""
    return {
        "ID": eid, "ContainerID": cid, "Running": False, "ExitCode": None,
        "Pid": 0, "CanRemove": False, "DetachKeys": body.get("DetachKeys") or "",
        "OpenStdin": bool(body.get("AttachStdin")),
        "OpenStdout": bool(body.get("AttachStdout")),
        "OpenStderr": bool(body.get("AttachStderr")),
        "ProcessConfig": {"tty": bool(body.get("Tty")), "entrypoint": cmd[0],
                          "arguments": cmd[1:], "privileged": bool(body.get("Privileged")),
                          "user": body.get("User") or ""},
        "Env": list(body.get("Env") or []), "WorkingDir": body.get("WorkingDir") or "",
        "ConsoleSize": body.get("ConsoleSize"),
    }
