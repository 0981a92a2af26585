"""Containers: create, start, stop, kill, wait, remove, inspect, list — over the monitor.

palletd holds no container as a child: pallet-monitor forks and reaps them, and this
service keeps their records (SQLite) and follows the monitor's feed of exits. palletd
can die at any moment: a record is written before an operation is acknowledged, and
on restart ``reconcile`` folds in whatever the monitor saw meanwhile.

This module creates, starts, connects, renames and removes; the service's other parts
live beside it: containercontrol (kill, stop, pause, update), containerexits (the
monitor's feed, restart policies, wait), containerexec (exec, health checks),
containerfs (diff, cp/export roots, commit) and containerread (inspect, list).

Paths of a container ``id``:
  <data_root>/containers/<id>/    hostname, hosts, resolv.conf, <id>-json.log
  <exec_root>/containers/<id>/    config.json (the bundle), exit.json (the monitor's)
  <data_root>/snapshots/<id>/     its writable layer, mounted at .../merged while it runs
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from typing import Any

from pallet.engine import mounts, names, ocispec
from pallet.engine.config import DaemonConfig
from pallet.engine.containerconf import (
    HOSTS,
    block_devices,
    cgroupns_default,
    check_host_config,
    host_device,
    host_devices,
    link_env,
    merge_config,
    resolv_conf,
    resolve_user,
)
from pallet.engine.containercontrol import Control
from pallet.engine.containerdb import ContainerDB
from pallet.engine.containerexec import ExecsAndHealth, healthcheck
from pallet.engine.containerexits import ExitsAndRestarts
from pallet.engine.containerfs import Filesystem, _is_mountpoint
from pallet.engine.containerread import Reading
from pallet.engine.containerview import (
    label_filters,
    rfc3339,
    state_of,
)
from pallet.engine.events import EventBus, make_event
from pallet.engine.images import ImageService
from pallet.engine.monitorclient import MonitorClient
from pallet.engine.sandbox import Sandboxes, mode_of
from pallet.engine.volumes import VolumeService, image_may_hold
from pallet.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    PalletError,
    start_exit_code,
)
from pallet.monitor import logfile
from pallet.oci import jsonfast
from pallet.storage.snapshot import choose_driver, init_layer

log = logging.getLogger("palletd")
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
class ContainerService(Control, Reading, Filesystem, ExitsAndRestarts, ExecsAndHealth):
    def __init__(self, cfg: DaemonConfig, events: EventBus, images: ImageService,
                 sandboxes: Sandboxes, volumes: VolumeService | None = None) -> None:
        self.cfg = cfg
        self.events = events
        self.images = images
        self.sandboxes = sandboxes
        self.volumes = volumes if volumes is not None else VolumeService(cfg, events)
        self.root = cfg.path("containers")
        self.run_root = os.path.join(cfg.exec_root, "containers")
        for d in (self.root, self.run_root):
            os.makedirs(d, mode=0o710, exist_ok=True)
        self.db = ContainerDB(cfg.path("containers.db"))
        self.snapshots = choose_driver(cfg.data_root)
        self.init_layer = init_layer(cfg.path("init-layer"))
        self.monitor = MonitorClient(cfg.exec_root)
        self.runtime_root = os.path.join(cfg.exec_root, "runtime")  # the monitor's
        self._lock = threading.RLock()
        self.docs: dict[str, dict[str, Any]] = {d["Id"]: d for d in self.db.all()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exits: dict[str, list[asyncio.Future[None]]] = {}
        self._removals: dict[str, list[asyncio.Future[None]]] = {}
        self.ready = asyncio.Event()  # set once the monitor's view is folded in
        self.execs: dict[str, dict[str, Any]] = {}  # exec id -> its record (not kept)
        self._rootfs_users: dict[str, int] = {}  # container -> copies/exports reading it
        self._backoff: dict[str, float] = {}  # container -> its last restart delay
        self._health_tasks: dict[str, asyncio.Task[None]] = {}
        self._exec_exits: dict[str, list[asyncio.Future[None]]] = {}
        images.in_use = self._image_in_use
        self.volumes.references = self._volume_users

    # --- lookup ------------------------------------------------------------------------------

    def get(self, ref: str) -> dict[str, Any]:
        """A container by full id, name, or unique id prefix; NotFound otherwise."""
        with self._lock:
            if ref in self.docs:
                return self.docs[ref]
            name = ref.lstrip("/")
            for doc in self.docs.values():
                if doc["Name"] == "/" + name:
                    return doc
            if ref:
                hits = [d for i, d in self.docs.items() if i.startswith(ref)]
                if len(hits) == 1:
                    return hits[0]
                if len(hits) > 1:
                    raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}", obj=ref)

    def _save(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self.db.update(doc["Id"], doc)

    def _event(self, doc: dict[str, Any], action: str, **extra: str) -> None:
        attrs = {**(doc["Config"].get("Labels") or {}), "image": doc["Config"].get("Image", ""),
                 "name": doc["Name"].lstrip("/"), **extra}
        self.events.publish(make_event("container", action, doc["Id"], attrs))

    def _image_in_use(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of the containers made from ``image_id``."""
        with self._lock:
            return [(d["Id"], bool(d["State"]["Running"])) for d in self.docs.values()
                    if d["Image"] == image_id]

    def _volume_users(self, name: str) -> list[str]:
        """Ids of the containers naming volume ``name``, running or not. Called with the
        volume service's lock held, so without ours (the other order is the one taken):
        list() copies the dict's values in one step under the GIL."""
        return [d["Id"] for d in list(self.docs.values())
                if name in mounts.volume_names(d.get("MountPoints") or [])]

    # --- create ------------------------------------------------------------------------------

    def create(self, body: dict[str, Any], name: str = "") -> dict[str, Any]:
        if name and not NAME_RE.match(name):
            raise InvalidArgument(f"Invalid container name ({name}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        image_name = str(body.get("Image") or "")
        if not image_name:
            raise InvalidArgument("No image specified; an image is required to create a "
                                  "container")
        hc = dict(body.get("HostConfig") or {})
        check_host_config(hc)
        image_id = self.images.resolve(image_name)
        image_cfg = self.images.config(image_id)
        cfg = merge_config(body, image_cfg.get("config") or {})
        image_volumes = (image_cfg.get("config") or {}).get("Volumes") or {}
        if image_volumes:  # dockerd takes the image's VOLUMEs and the request's together
            cfg["Volumes"] = {**image_volumes, **(cfg.get("Volumes") or {})}
        cid = secrets.token_hex(32)
        with self._lock:
            name = name.lstrip("/") if name else self._free_name()
            args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
            if not args:
                raise InvalidArgument("no command specified")
            ocispec.build(cfg, hc, ocispec.Context(  # validate now
                cid=cid, rootfs="/", init_path=self.cfg.init_path,
                block_devices=block_devices(hc)))
            plan = self._mount_plan(cfg, hc)  # every spec checked before anything is made
            data_dir = os.path.join(self.root, cid)
            hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
            log_type = hc["LogConfig"].get("Type") or "json-file"
            hc["LogConfig"]["Type"] = log_type
            logfile.options(log_type, hc["LogConfig"].get("Config") or {})
            hc.setdefault("NetworkMode", "default")
            hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
            doc: dict[str, Any] = {
                "Id": cid, "Created": rfc3339(time.time()), "Path": args[0], "Args": args[1:],
                "State": state_of("created"), "Image": image_id,
                "ResolvConfPath": os.path.join(data_dir, "resolv.conf"),
                "HostnamePath": os.path.join(data_dir, "hostname"),
                "HostsPath": os.path.join(data_dir, "hosts"),
                "LogPath": (os.path.join(data_dir, f"{cid}-json.log")
                            if log_type != "none" else ""),
                "Name": "/" + name, "RestartCount": 0, "Driver": self.snapshots.name,
                "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
                "AppArmorProfile": "", "ExecIDs": None, "HostConfig": hc, "Config": cfg,
                "ImageName": image_name,
                "NetworkSettings": self.sandboxes.settings_at_create(
                    cfg, hc, body.get("NetworkingConfig")),
            }
            lowers = self._root_lowers(image_id)
            if "/" + name in {d["Name"] for d in self.docs.values()}:
                self.db.insert(cid, name, doc)  # raises the Conflict dockerd answers
        # The volumes it names are held for it from here until its record names them.
        doc["MountPoints"], made = self.volumes.claim(cid, plan)
        # What the record names first, the record last: it is the commit point. A crash
        # before it leaves directories no record names, which sweep() removes.
        try:
            os.makedirs(data_dir, mode=0o710)
            self.snapshots.prepare(cid, lowers)
            self._copy_up(doc)
            self._write_files(doc)
            failpoint("create")
            with self._lock:
                self.db.insert(cid, name, doc)
                self.docs[cid] = doc
        except BaseException:
            self._destroy(doc)
            self.volumes.unclaim(cid, made)
            raise
        self.volumes.settle(cid)
        self._event(doc, "create")
        return {"Id": cid, "Warnings": []}

    def _mount_plan(self, cfg: dict[str, Any], hc: dict[str, Any]) -> list[
            mounts.Spec | dict[str, Any]]:
        """The container's mounts, checked (engine/mounts.py), --volumes-from resolved."""
        inherited = []
        for spec in hc.get("VolumesFrom") or []:
            ref, mode = mounts.parse_volumes_from(str(spec))
            try:
                other = self.get(ref)
            except NotFound as exc:
                # 400, not dockerd's 404: on a 404 from create the docker CLI goes off
                # to pull the image, which is there
                raise InvalidArgument(str(exc), obj=ref) from None
            inherited.append((self._mount_points(other), mode))
        return mounts.plan(hc, list(cfg.get("Volumes") or {}), inherited, os.path.exists)

    def _mount_points(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """What the container mounts (a record from before volumes: from its binds)."""
        if "MountPoints" not in doc:
            specs = mounts.plan(doc["HostConfig"], [])
            doc["MountPoints"] = [mounts.point(s) for s in specs if isinstance(s, mounts.Spec)
                                  and s.type != "volume"]
        points: list[dict[str, Any]] = doc["MountPoints"]
        return points

    def _copy_up(self, doc: dict[str, Any]) -> None:
        """Copy what the image holds at a volume's mount point into that volume while it
        is empty (not for --volumes-from, nor with nocopy), as dockerd does at create."""
        lowers = self._lowers(doc["Image"])
        todo = [p for p in doc["MountPoints"] if p["Type"] == "volume"
                and p["Spec"].get("Copy") and self.volumes.may_be_empty(p["Name"])
                and image_may_hold(lowers, p["Destination"])]
        if not todo:
            return
        rootfs = self._mount(doc)
        try:
            for p in todo:
                self.volumes.populate(p["Name"], rootfs, p["Destination"])
        finally:
            self._unmount(doc)

    def _user_mounts(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The runtime-spec mounts of its binds, volumes and --mount tmpfs, their host
        sides ready: volumes held (and mounted, if they have options) until it stops, a
        missing -v host dir made (as dockerd does)."""
        out = []
        for p in self._mount_points(doc):
            source = "tmpfs"
            if p["Type"] == "volume":
                source = self.volumes.acquire(
                    p["Name"], doc["Id"], p["Spec"].get("Subpath") or "",
                    {"container": doc["Id"], "destination": p["Destination"],
                     "read/write": "true" if p["RW"] else "false", "propagation": ""})
            elif p["Type"] == "bind":
                source = p["Source"]
                if not os.path.exists(source):
                    if not p["Spec"].get("CreateSource"):
                        raise InvalidArgument(f'invalid mount config for type "bind": bind '
                                              f"source path does not exist: {source}")
                    os.makedirs(source, mode=0o755, exist_ok=True)
            out.append(mounts.oci_mount(p, source))
        return out

    def sweep(self) -> None:
        """Remove what no record names: the leftovers of a create that did not finish."""
        made = self.snapshots.keys()  # a list of snapshot names (not a dict's keys)
        for key in made:
            if len(key) == 64 and key not in self.docs:
                self._destroy({"Id": key, "State": {}})
        for top in (self.root, self.run_root):
            for name in os.listdir(top):
                if len(name) == 64 and name not in self.docs:
                    shutil.rmtree(os.path.join(top, name), ignore_errors=True)

    def _free_name(self) -> str:
        taken = {d["Name"] for d in self.docs.values()}
        while True:
            name = names.generate()
            if "/" + name not in taken:
                return name

    def _lowers(self, image_id: str) -> list[str]:
        row = self.images.db.image(image_id)
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return self.images.layers.chain_paths(row.top_chain) if row.top_chain else []

    def _root_lowers(self, image_id: str) -> list[str]:
        """A container's lower dirs: the image's under the shared init layer."""
        return [self.init_layer, *self._lowers(image_id)]

    def _write_files(self, doc: dict[str, Any]) -> None:
        cfg, hc = doc["Config"], doc["HostConfig"]
        hostname = cfg.get("Hostname") or doc["Id"][:12]
        host_net = hc.get("NetworkMode") == "host"
        if hc.get("UTSMode") == "host" or host_net:
            hostname = os.uname().nodename
        _write(doc["HostnamePath"], hostname + "\n", fresh=True)
        if host_net:
            with open("/etc/hosts") as f:
                hosts = f.read()
        else:
            hosts = HOSTS
            for extra in hc.get("ExtraHosts") or []:
                host, _, ip = extra.partition(":")
                hosts += f"{ip}\t{host}\n"
        _write(doc["HostsPath"], hosts, fresh=True)
        _write(doc["ResolvConfPath"], resolv_conf(hc, host_net, False, self.cfg.dns),
               fresh=True)

    # --- start ---------------------------------------------------------------------------------

    def start(self, ref: str, policy: bool = False) -> bool:
        """Start the container; False if it was running already (HTTP 304). ``policy``:
        its restart policy restarts it (counted in RestartCount)."""
        doc = self.get(ref)
        with self._lock:
            st = doc["State"]
            if st["Running"]:
                return False
            st.pop("ManuallyStopped", None)
            if policy:
                doc["RestartCount"] = int(doc.get("RestartCount") or 0) + 1
            elif st.get("Restarting"):
                st["Restarting"] = False
            if st.get("Removing") or st["Status"] == "removing":
                raise Conflict(f"container {doc['Id']} is marked for removal and cannot be "
                               "started")
            rootfs = self._mount(doc)
            try:
                netns, link_vars = self._network_up(doc)
                pid, started = self._spawn(doc, rootfs, netns, link_vars)
            except PalletError as exc:
                self.sandboxes.down(doc)
                self._unmount(doc)
                st.update(Error=str(exc), ExitCode=start_exit_code(str(exc), 128))
                self._save(doc)
                if doc["HostConfig"].get("AutoRemove"):
                    self._remove_stopped(doc)  # as dockerd: --rm holds for a failed start
                raise
            except BaseException:
                self.sandboxes.down(doc)
                self._unmount(doc)
                raise
            st.update(state_of("running"))
            st.update(Pid=pid, StartedAt=rfc3339(started))
            self._save(doc)
        self._event(doc, "start")
        if self._loop is not None and healthcheck(doc) is not None:
            self._loop.call_soon_threadsafe(self._watch_health, doc)
        return True

    def _mount(self, doc: dict[str, Any]) -> str:
        target = os.path.join(self.snapshots.path(doc["Id"]), "merged")
        if not _is_mountpoint(target):
            self.snapshots.mount(doc["Id"], self._root_lowers(doc["Image"]))
        return target

    def _unmount(self, doc: dict[str, Any]) -> None:
        self.volumes.release_all(doc["Id"])  # the last user of a volume unmounts it
        target = os.path.join(self.snapshots.path(doc["Id"]), "merged")
        if self._rootfs_users.get(doc["Id"]):
            return  # a copy or export reads it; the last one unmounts
        if _is_mountpoint(target):
            try:
                self.snapshots.unmount(target)
            except PalletError:
                pass

    def _network_up(self, doc: dict[str, Any]) -> tuple[str | None, list[str]]:
        """The sandbox, the files that depend on its addresses, and the environment
        legacy links give (the netns path, the variables)."""
        if "NetworkSettings" not in doc:  # a record from before networks
            doc["NetworkSettings"] = self.sandboxes.settings_at_create(
                doc["Config"], doc["HostConfig"], None)
        links = self._legacy_links(doc)
        path = self.sandboxes.up(doc)
        self._write_net_files(doc, [(ip, alias, name) for ip, alias, name, _ in links])
        parent = doc["Name"].lstrip("/")
        env = [v for ip, alias, _, other in links for v in link_env(alias, parent, other, ip)]
        return path, env

    def _legacy_links(self, doc: dict[str, Any]) -> list[tuple[str, str, str,
                                                                dict[str, Any]]]:
        """--link on the default bridge: (address, alias, name, the linked container)."""
        hc = doc["HostConfig"]
        out: list[tuple[str, str, str, dict[str, Any]]] = []
        if mode_of(hc) != "bridge":
            return out  # on user-defined networks links are names the DNS answers
        for link in hc.get("Links") or []:
            target, _, alias = str(link).partition(":")
            other = self.get(target.lstrip("/"))
            name = other["Name"].lstrip("/")
            alias = alias.rsplit("/", 1)[-1] or name
            ep = (other.get("NetworkSettings") or {}).get("Networks", {}).get("bridge") or {}
            if not other["State"]["Running"] or not ep.get("IPAddress"):
                raise Conflict(f"Cannot link to a non running container: /{name} AS "
                               f"{doc['Name']}/{alias}")
            out.append((str(ep["IPAddress"]), alias, name, other))
        return out

    def _write_net_files(self, doc: dict[str, Any], links: list[tuple[str, str, str]]) -> None:
        cfg, hc = doc["Config"], doc["HostConfig"]
        mode = mode_of(hc)
        if mode == "host" or mode.startswith("container:"):
            return
        hostname = cfg.get("Hostname") or doc["Id"][:12]
        if hc.get("UTSMode") == "host":
            hostname = os.uname().nodename
        hosts = HOSTS
        for extra in hc.get("ExtraHosts") or []:
            host, _, ip = extra.partition(":")
            hosts += f"{ip}\t{host}\n"
        for ip, alias, name in links:
            hosts += f"{ip}\t{alias} {name}\n" if alias != name else f"{ip}\t{name}\n"
        for ep in doc["NetworkSettings"]["Networks"].values():
            for key in ("IPAddress", "GlobalIPv6Address"):
                if ep.get(key):
                    short = hostname.split(".")[0]
                    names = hostname if short == hostname else f"{hostname} {short}"
                    hosts += f"{ep[key]}\t{names}\n"
        _write(doc["HostsPath"], hosts)
        embedded = self.sandboxes.wants_dns(doc)
        _write(doc["ResolvConfPath"], resolv_conf(hc, False, embedded, self.cfg.dns))

    def _spawn(self, doc: dict[str, Any], rootfs: str, netns: str | None = None,
               link_vars: list[str] | None = None) -> tuple[int, float]:
        cid = doc["Id"]
        cfg, hc = doc["Config"], doc["HostConfig"]
        if link_vars:  # before the container's own, which win (as dockerd orders them)
            cfg = {**cfg, "Env": [*link_vars, *(cfg.get("Env") or [])]}
        if hc.get("Init") and not os.path.exists(self.cfg.init_path):
            raise NotSupported(f"--init: {self.cfg.init_path} is not installed "
                               "(apt-get install tini)")
        ctx = ocispec.Context(cid=cid, rootfs=rootfs, cgroup_parent=self.cfg.cgroup_parent,
                              init_path=self.cfg.init_path,
                              cgroupns_default=cgroupns_default(), files={
            "hostname": doc["HostnamePath"], "hosts": doc["HostsPath"],
            "resolv.conf": doc["ResolvConfPath"]})
        ctx.uid, ctx.gid, ctx.groups = resolve_user(rootfs, str(cfg.get("User") or ""),
                                                    hc.get("GroupAdd") or [])
        ctx.devices = [host_device(d) for d in hc.get("Devices") or []]
        if hc.get("Privileged"):
            ctx.devices = host_devices()
        ctx.block_devices = block_devices(hc)
        if netns is not None:
            ctx.ns_paths["network"] = netns
        for kind, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("network", "NetworkMode"),
                          ("uts", "UTSMode")):
            mode = str(hc.get(key) or "")
            if mode.startswith("container:"):
                other = self.get(mode.partition(":")[2])
                if not other["State"]["Running"]:
                    raise InvalidState(f"cannot join the namespaces of container "
                                       f"{other['Id']}: it is not running")
                ns = {"network": "net"}.get(kind, kind)
                ctx.ns_paths[kind] = f"/proc/{other['State']['Pid']}/ns/{ns}"
        ctx.mounts = self._user_mounts(doc)  # held until _unmount, as the rootfs is
        spec = ocispec.build(cfg, hc, ctx)
        bundle = os.path.join(self.run_root, cid)
        os.makedirs(bundle, mode=0o700, exist_ok=True)
        _write(os.path.join(bundle, "config.json"), jsonfast.dumps(spec), 0o600)
        log: dict[str, object] = {}
        lc = hc.get("LogConfig") or {}
        if doc["LogPath"]:
            max_size, max_file, compress = logfile.options(lc.get("Type") or "json-file",
                                                           lc.get("Config") or {})
            log = {"path": doc["LogPath"], "max_size": max_size, "max_file": max_file,
                   "compress": compress, "attrs": logfile.attributes(
                       lc.get("Config") or {}, cfg.get("Labels") or {}, cfg.get("Env") or [])}
        reply = self.monitor.call_started(
            "start", id=cid, bundle=bundle, state_dir=bundle, tty=bool(cfg.get("Tty")),
            stdin=bool(cfg.get("OpenStdin")), stdin_once=bool(cfg.get("StdinOnce")), log=log)
        return int(str(reply["pid"])), float(str(reply["startedAt"]))

    # --- networks -------------------------------------------------------------------------------

    def connect(self, net_ref: str, ref: str, endpoint: dict[str, Any] | None) -> None:
        net = self.sandboxes.nets.get(net_ref)
        doc = self.get(ref)
        with self._lock:
            self.sandboxes.connect(doc, net, endpoint)
            if doc["State"]["Running"]:
                self._write_net_files(doc, [])
            self._save(doc)
        self.sandboxes.nets.event(net, "connect", container=doc["Id"])

    def disconnect(self, net_ref: str, ref: str, force: bool = False) -> None:
        net = self.sandboxes.nets.get(net_ref)
        try:
            doc = self.get(ref)
        except NotFound:
            if force:
                return
            raise
        with self._lock:
            self.sandboxes.disconnect(doc, net)
            self._save(doc)
        self.sandboxes.nets.event(net, "disconnect", container=doc["Id"])

    # --- rename ------------------------------------------------------------------------------

    def rename(self, ref: str, new: str) -> None:
        doc = self.get(ref)
        new = new.lstrip("/")
        if not new or not NAME_RE.match(new):
            raise InvalidArgument(f"Invalid container name ({new}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self._lock:
            old = doc["Name"]
            if old == "/" + new:
                raise Conflict("Renaming a container with the same name as its current "
                               "name")
            doc["Name"] = "/" + new
            try:
                self.db.rename(doc["Id"], new, doc)
            except Conflict:
                doc["Name"] = old
                raise
        self._event(doc, "rename", oldName=old)

    # --- remove -------------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """``volumes``: its anonymous volumes go too (rm -v), unless another container
        names them."""
        doc = await asyncio.to_thread(self.get, ref)
        if doc["State"]["Running"]:
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {doc['Id']}. Stop the container "
                    "before attempting removal or force remove")
            waiter = self._exit_future(doc["Id"])
            try:
                await asyncio.to_thread(self.monitor.call, "kill", id=doc["Id"], signal=9,
                                        all=True)
            except (NotFound, InvalidState):
                pass
            if doc["State"]["Running"]:
                await waiter
            if doc["Id"] not in self.docs:
                return  # --rm removed it meanwhile
        await asyncio.to_thread(self._remove_stopped, doc, volumes)

    def _remove_stopped(self, doc: dict[str, Any], volumes: bool = False) -> None:
        with self._lock:
            if doc["Id"] not in self.docs:
                return
            if doc["State"]["Running"]:
                raise Conflict(f"You cannot remove a running container {doc['Id']}")
            doc["State"]["Status"] = "removing"
            self._save(doc)
        failpoint("remove")
        self._destroy(doc, volumes)
        self._event(doc, "destroy")

    def _destroy(self, doc: dict[str, Any], volumes: bool = False) -> None:
        """Remove everything of the container, its record last; then its anonymous
        volumes if ``volumes`` or it was run with --rm (as dockerd)."""
        cid = doc["Id"]
        self._unmount(doc)
        try:
            self.snapshots.remove(cid)
        except NotFound:
            pass
        for d in (os.path.join(self.root, cid), os.path.join(self.run_root, cid)):
            shutil.rmtree(d, ignore_errors=True)
        with self._lock:
            self.db.delete(cid)
            self.docs.pop(cid, None)
            for eid in doc.get("ExecIDs") or []:
                self.execs.pop(eid, None)
        if volumes or (doc.get("HostConfig") or {}).get("AutoRemove"):
            self.volumes.remove_anonymous(doc.get("MountPoints") or [])
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._removed, cid)

    def _removed(self, cid: str) -> None:
        for fut in self._removals.pop(cid, []) + self._exits.pop(cid, []):
            if not fut.done():
                fut.set_result(None)

    def prune(self, filters: dict[str, list[str]], until: float | None = None) -> dict[str, Any]:
        """Remove every stopped container matching the label filters (and created
        before ``until``)."""
        deleted, reclaimed = [], 0
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        for doc in list(self.docs.values()):
            if doc["State"]["Running"] or not label_filters(doc, filters):
                continue
            if until is not None and logfile.parse_time(doc["Created"]) >= until:
                continue
            try:
                reclaimed += self.snapshots.usage(doc["Id"])
            except PalletError:
                pass
            self._remove_stopped(doc)
            deleted.append(doc["Id"])
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def log_path(self, ref: str) -> tuple[dict[str, Any], str]:
        doc = self.get(ref)
        lc = doc["HostConfig"].get("LogConfig") or {}
        if lc.get("Type") == "none" or not doc["LogPath"]:
            raise InvalidArgument('configured logging driver does not support reading')
        return doc, doc["LogPath"]


# --- helpers (pure, or reading only the files they name) -----------------------------------

def failpoint(name: str) -> None:
    """Die here as if killed with SIGKILL, when PALLET_FAILPOINT names this point (tests
    of what a crash in the middle of an operation leaves)."""
    if os.environ.get("PALLET_FAILPOINT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _write(path: str, text: str, mode: int = 0o644, fresh: bool = False) -> None:
    """Put ``text`` in ``path`` atomically; ``fresh``: in a directory just made, where
    nobody can see a half-written file (no temp file, no rename)."""
    if fresh:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return
    try:  # most starts write what is there already (hosts, resolv.conf): leave it be
        with open(path) as f:
            if f.read() == text and stat.S_IMODE(os.fstat(f.fileno()).st_mode) == mode:
                return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)
