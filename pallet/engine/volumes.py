"""Volumes of the local driver: create, list, inspect, remove, prune; and their use by
containers (claimed at create, mounted while a container runs).

A volume ``name`` lives at ``<data_root>/volumes/<name>/_data``; its record (driver,
labels, options, creation time) is a row of ``<data_root>/volumes.db``. The row is the
commit point: create makes the directory, then the row; remove deletes the row, then
the directory. A directory without a row is what a crash left, and ``sweep`` removes it.

A volume with options (``type``, ``device``, ``o``: a tmpfs, a bind of a host path, a
block device) is mounted on its ``_data`` when the first user comes and unmounted when
the last goes. Users are counted by reference (a container id, or an export, import or
copy in progress); after a palletd restart ``restore`` counts the running containers.

A volume is in use while any container names it, running or not, or while a create
that names it is under way (``claim`` .. ``settle``): removing it then is refused with
dockerd's 409. Locks: this service never calls into the container service while holding
its own lock; the container service may call in while holding its own.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pallet.engine import mounts
from pallet.engine.config import DaemonConfig
from pallet.engine.events import EventBus, make_event
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError, SystemFailure
from pallet.storage import tree

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL              -- Driver, Labels, Options, CreatedAt (JSON)
);
"""
_LIST_FILTERS = ("dangling", "name", "driver", "label")
_PRUNE_FILTERS = ("label", "label!", "all")
_TRUE = ("1", "true", "True", "TRUE", "t", "T")
_FALSE = ("0", "false", "False", "FALSE", "f", "F")


class VolumeDB:
    """One row per volume; every write synced before it is acknowledged."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def insert(self, name: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT INTO volumes VALUES (?,?)", (name, json.dumps(doc)))

    def delete(self, name: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT name, doc FROM volumes").fetchall()
        return {str(r[0]): json.loads(r[1]) for r in rows}

    def close(self) -> None:
        self._conn.close()


def _rfc3339(ts: float) -> str:
    """Go's time.RFC3339 of the local time (what dockerd shows as CreatedAt)."""
    local = time.localtime(ts)
    off = local.tm_gmtoff or 0
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:" \
        f"{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone


def _is_mountpoint(path: str) -> bool:
    """From mountinfo: a bind of a directory of the same filesystem (``o=bind``) looks
    like no mount point to os.path.ismount."""
    try:
        return os.path.normpath(path) in tree.mounts_using(path)[0]
    except OSError:
        return False


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Every ``key`` or ``key=value`` of ``wanted`` is among ``labels``."""
    for spec in wanted:
        key, eq, value = spec.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class VolumeService:
    def __init__(self, cfg: DaemonConfig, events: EventBus) -> None:
        self.events = events
        self.root = cfg.path("volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.db = VolumeDB(cfg.path("volumes.db"))
        self.docs = self.db.all()
        # container ids naming a volume; the container service sets this
        self.references: Callable[[str], list[str]] = lambda name: []
        self._pending: dict[str, set[str]] = {}  # name -> creates under way that name it
        self._active: dict[str, set[str]] = {}  # name -> who has it mounted now
        self._lock = threading.RLock()
        self.sweep()

    # --- records ------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def sweep(self) -> None:
        """Remove the directories no record names (a create or remove cut short)."""
        for name in os.listdir(self.root):
            if name in self.docs:
                continue
            data = self.path(name)
            if _is_mountpoint(data):
                self._umount(data)
            tree.remove(os.path.join(self.root, name))

    def get(self, name: str) -> dict[str, Any]:
        rec = self.docs.get(name)
        if rec is None:
            raise NotFound(f"get {name}: no such volume", obj=name)
        return rec

    def inspect(self, name: str) -> dict[str, Any]:
        return self._view(name, self.get(name))

    def _view(self, name: str, rec: dict[str, Any]) -> dict[str, Any]:
        return {"CreatedAt": _rfc3339(float(rec["CreatedAt"])), "Driver": rec["Driver"],
                "Labels": dict(rec["Labels"]), "Mountpoint": self.path(name), "Name": name,
                "Options": dict(rec["Options"]), "Scope": "local"}

    def create(self, name: str = "", driver: str = "", opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        """POST /volumes/create: a new volume, or the one of that name already there.
        No name: a random one, labelled anonymous (as dockerd does)."""
        opts = {str(k): str(v) for k, v in (opts or {}).items()}
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        with self._lock:
            rec, _ = self._ensure(name, driver, opts, labels)
            return self._view(rec[0], rec[1])

    def _ensure(self, name: str, driver: str, opts: dict[str, str],
                labels: dict[str, str]) -> tuple[tuple[str, dict[str, Any]], bool]:
        """((name, record), made now?) — under the lock."""
        if name:
            mounts.check_volume_name(name)
        driver = mounts.check_driver(driver)
        if name in self.docs:
            rec = self.docs[name]
            if rec["Driver"] != driver:
                raise Conflict(f"create {name}: driver '{rec['Driver']}' already has volume "
                               f"'{name}': volume name must be unique", obj=name)
            return (name, rec), False
        if not name:
            name = secrets.token_hex(32)
            labels = {**labels, mounts.ANONYMOUS_LABEL: ""}
        mounts.check_local_options(name, opts)
        rec = {"Driver": driver, "Labels": labels, "Options": opts, "CreatedAt": time.time()}
        top = os.path.join(self.root, name)
        try:
            os.mkdir(top, 0o701)
            os.mkdir(self.path(name), 0o755)
            tree.fsync_dir(self.root)
            self.db.insert(name, rec)
        except BaseException as exc:
            tree.remove(top)
            if isinstance(exc, OSError):
                raise SystemFailure(f"create {name}: {exc.strerror}", op="create", obj=name,
                                    errno=exc.errno or 0, path=top) from exc
            raise
        self.docs[name] = rec
        self.events.publish(make_event("volume", "create", name, {"driver": driver}))
        return (name, rec), True

    def users(self, name: str) -> list[str]:
        """Who holds the volume: containers naming it, creates under way, mounts."""
        with self._lock:
            extra = self._pending.get(name, set()) | self._active.get(name, set())
        refs = self.references(name)
        return refs + sorted(r for r in extra if r not in refs)

    def remove(self, name: str, force: bool = False) -> None:
        """DELETE /volumes/{name}: refused while in use, even with ``force`` (which only
        makes a missing volume no error, as with dockerd)."""
        with self._lock:
            if name not in self.docs:
                if force:
                    return
                self.get(name)
            users = self.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]",
                               op="remove", obj=name)
            rec = self.docs[name]
            data = self.path(name)
            if rec["Options"] and _is_mountpoint(data):
                self._umount(data)
            self.db.delete(name)
            del self.docs[name]
            tree.remove(os.path.join(self.root, name))
        self.events.publish(make_event("volume", "destroy", name, {"driver": rec["Driver"]}))

    # --- listing and prune ------------------------------------------------------------------

    def listing(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        for key in filters:
            if key not in _LIST_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling: bool | None = None
        for v in filters.get("dangling", []):
            if v not in _TRUE + _FALSE:
                raise InvalidArgument(f"invalid filter 'dangling={v}'")
            dangling = v in _TRUE
        out = []
        for name, rec in sorted(self.docs.items()):
            if filters.get("driver") and rec["Driver"] not in filters["driver"]:
                continue
            if filters.get("name") and not any(v == name or _search(v, name)
                                               for v in filters["name"]):
                continue
            if not _labels_match(rec["Labels"], filters.get("label", [])):
                continue
            if dangling is not None and (not self.users(name)) != dangling:
                continue
            out.append(self._view(name, rec))
        return {"Volumes": out, "Warnings": []}

    def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        """Remove the unused local volumes without options that match; only anonymous
        ones unless ``all=true`` (API 1.42 on; the handler adds it for older clients)."""
        for key in filters:
            if key not in _PRUNE_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        every = filters.get("all", [])
        if len(every) > 1:
            raise InvalidArgument(f"invalid filter 'all={every}': only one value is expected")
        if every and every[0] not in _TRUE + _FALSE:
            raise InvalidArgument(f"invalid filter 'all': invalid syntax: {every[0]!r}")
        wanted = list(filters.get("label", []))
        if not (every and every[0] in _TRUE):
            wanted.append(mounts.ANONYMOUS_LABEL)
        deleted, reclaimed = [], 0
        for name, rec in sorted(self.docs.items()):
            if rec["Driver"] != mounts.LOCAL or rec["Options"]:
                continue
            if not _labels_match(rec["Labels"], wanted):
                continue
            unwanted = filters.get("label!", [])
            if unwanted and _labels_match(rec["Labels"], unwanted):
                continue
            if self.users(name):
                continue
            try:
                size = tree.usage(self.path(name))
            except OSError:
                size = 0
            try:
                self.remove(name)
            except (Conflict, NotFound):
                continue
            deleted.append(name)
            reclaimed += size
        self.events.publish(make_event("volume", "prune", "", {"reclaimed": str(reclaimed)}))
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def disk_usage(self) -> list[dict[str, Any]]:
        """`system df`'s volumes: those without options (as dockerd: one with options
        is a tmpfs or another filesystem, not local space), each with its size and how
        many containers name it."""
        out = []
        for name, rec in sorted(self.docs.items()):
            if rec["Options"]:
                continue
            view = self._view(name, rec)
            try:
                size = tree.usage(self.path(name))
            except OSError:
                size = -1
            view["UsageData"] = {"Size": size, "RefCount": len(self.references(name))}
            out.append(view)
        return out

    # --- containers' use ------------------------------------------------------------------

    def claim(self, cid: str, plan: Iterable[mounts.Spec | dict[str, Any]]) -> tuple[
            list[dict[str, Any]], list[str]]:
        """The mount points of container ``cid`` (being created): volumes it names are
        made if missing and held for it until ``settle``. Returns the points and the
        volumes made now (``unclaim`` removes them should the create fail)."""
        points: list[dict[str, Any]] = []
        made: list[str] = []
        try:
            with self._lock:
                for entry in plan:
                    if isinstance(entry, dict):  # --volumes-from: the other's point
                        if entry["Type"] == "volume":
                            self.get(entry["Name"])
                            self._pending.setdefault(entry["Name"], set()).add(cid)
                        points.append(entry)
                        continue
                    if entry.type != "volume":
                        points.append(mounts.point(entry))
                        continue
                    (name, rec), new = self._ensure(entry.source, entry.driver,
                                                    entry.driver_opts, entry.labels)
                    if new:
                        made.append(name)
                    self._pending.setdefault(name, set()).add(cid)
                    points.append(mounts.point(entry, name=name, source=self.path(name),
                                               driver=rec["Driver"]))
        except BaseException:
            self.unclaim(cid, made)
            raise
        return points, made

    def settle(self, cid: str) -> None:
        """The create of ``cid`` is over: its record now names what it uses."""
        with self._lock:
            for refs in self._pending.values():
                refs.discard(cid)

    def unclaim(self, cid: str, made: list[str]) -> None:
        """The create of ``cid`` failed: let go, and remove the volumes it made."""
        self.settle(cid)
        for name in made:
            try:
                self.remove(name)
            except (Conflict, NotFound):
                pass

    def remove_anonymous(self, points: Iterable[dict[str, Any]]) -> None:
        """`rm -v` and `run --rm`: the anonymous volumes of a removed container, unless
        another container still names them."""
        for name in mounts.volume_names(points):
            rec = self.docs.get(name)
            if rec is None or mounts.ANONYMOUS_LABEL not in rec["Labels"]:
                continue
            try:
                self.remove(name)
            except (Conflict, NotFound):
                pass

    def may_be_empty(self, name: str) -> bool:
        """Whether the volume holds nothing, as far as can be told without mounting it
        (one with options can only be told once mounted: True)."""
        rec = self.get(name)
        if rec["Options"]:
            return True
        try:
            return not os.listdir(self.path(name))
        except FileNotFoundError:
            return True

    def populate(self, name: str, rootfs: str, dest: str) -> None:
        """Copy what the image has at ``dest`` (under ``rootfs``) into the volume, if the
        volume is empty: ownership, modes, symlinks, hard links and xattrs kept."""
        from pallet.runtime.paths import secure_join

        src = secure_join(rootfs, dest)
        try:
            st = os.stat(src)
        except (FileNotFoundError, NotADirectoryError):
            return
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"cannot mount volume over existing file, file exists {src}")
        ref = "copy-" + secrets.token_hex(8)
        data = self.acquire(name, ref)
        try:
            if os.listdir(data):
                return
            try:
                tree.apply_layer(src, data)
                os.chown(data, st.st_uid, st.st_gid)
                os.chmod(data, stat.S_IMODE(st.st_mode))
            except OSError as exc:
                _empty(data)  # as it was
                raise SystemFailure(f"copying {dest} of the image into volume {name}: "
                                    f"{exc.strerror or exc}", op="create", obj=name,
                                    errno=exc.errno or 0, path=src) from exc
        finally:
            self.release(name, ref)

    def acquire(self, name: str, ref: str, subpath: str = "",
                container: dict[str, str] | None = None) -> str:
        """The host path of the volume (or its ``subpath``) for ``ref`` to use; a volume
        with options is mounted for its first user. ``container``: the mount event's
        attributes, when ``ref`` is a container starting."""
        with self._lock:
            rec = self.get(name)
            data = self.path(name)
            os.makedirs(data, mode=0o755, exist_ok=True)
            if rec["Options"] and not self._active.get(name) and not _is_mountpoint(data):
                self._mount(name, rec["Options"], data)
            self._active.setdefault(name, set()).add(ref)
        if container is not None:
            self.events.publish(make_event("volume", "mount", name,
                                           {"driver": rec["Driver"], **container}))
        if not subpath:
            return data
        from pallet.runtime.paths import secure_join

        path = secure_join(data, subpath)
        if not os.path.exists(path):
            self.release(name, ref)
            raise InvalidArgument(f"cannot access path {path}: no such file or directory "
                                  f"(subpath {subpath!r} of volume {name})")
        return path

    def release(self, name: str, ref: str) -> None:
        """``ref`` is done with the volume; the last user unmounts one with options."""
        with self._lock:
            refs = self._active.get(name)
            if refs is None or ref not in refs:
                return
            refs.discard(ref)
            if refs:
                return
            del self._active[name]
            rec = self.docs.get(name)
            data = self.path(name)
            if rec is not None and rec["Options"] and _is_mountpoint(data):
                self._umount(data)
        if rec is not None and len(ref) == 64:
            self.events.publish(make_event("volume", "unmount", name,
                                           {"driver": rec["Driver"], "container": ref}))

    def release_all(self, ref: str) -> None:
        with self._lock:
            names = [n for n, refs in self._active.items() if ref in refs]
        for name in names:
            self.release(name, ref)

    def restore(self, holders: dict[str, list[str]]) -> None:
        """After a palletd restart: the running containers (id -> the volumes they
        name) hold their volumes again; a mounted volume nobody holds is unmounted."""
        with self._lock:
            for cid, names in holders.items():
                for name in names:
                    if name in self.docs:
                        self._active.setdefault(name, set()).add(cid)
            for name, rec in self.docs.items():
                if rec["Options"] and not self._active.get(name) and \
                        _is_mountpoint(self.path(name)):
                    try:
                        self._umount(self.path(name))
                    except PalletError:
                        pass

    def _mount(self, name: str, opts: dict[str, str], data: str) -> None:
        from pallet.linux import mount as m
        from pallet.runtime import mountopts

        o = mountopts.parse([x for x in opts.get("o", "").split(",") if x], f"volume {name}")
        fstype = opts.get("type") or None
        device = opts.get("device", "")
        try:
            m.mount(device, data, None if fstype == "none" else fstype, o.flags,
                    ",".join(o.data))
            for prop in o.propagation:
                m.mount(None, data, None, prop)
        except OSError as exc:
            raise SystemFailure(f"error while mounting volume '{data}': failed to mount local "
                                f"volume: mount {device}:{data}, flags: {o.flags:#x}, data: "
                                f"{','.join(o.data)}: {exc.strerror or exc}", op="mount",
                                obj=name, errno=exc.errno or 0, path=data) from exc

    def _umount(self, data: str) -> None:
        from pallet.linux import mount as m

        try:
            m.umount(data)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                m.umount(data, m.MNT_DETACH)  # still in someone's way: let it go lazily
            elif exc.errno != errno.EINVAL:  # EINVAL: not mounted (any more)
                raise SystemFailure(f"unmounting volume {data}: {exc.strerror}", op="unmount",
                                    path=data, errno=exc.errno or 0) from exc

    # --- export and import ------------------------------------------------------------------

    def export_begin(self, name: str) -> tuple[str, str]:
        """(path, ref) of the volume to read; ``release(name, ref)`` when done."""
        ref = "export-" + secrets.token_hex(8)
        return self.acquire(name, ref), ref

    def import_begin(self, name: str) -> tuple[str, str, bool]:
        """(path, ref, made now) of the volume to fill: created if missing; it must be
        empty. Finish with ``import_end``."""
        ref = "import-" + secrets.token_hex(8)
        with self._lock:
            _, made = self._ensure(name, "", {}, {})
            try:
                path = self.acquire(name, ref)
                if os.listdir(path):
                    raise Conflict(f"import {name}: the volume is not empty: import fills an "
                                   "empty volume (remove it first, or import into a new one)",
                                   op="import", obj=name)
            except BaseException:
                self.release(name, ref)
                if made:
                    self.remove(name)
                raise
        return path, ref, made

    def import_end(self, name: str, ref: str, made: bool, ok: bool) -> None:
        """Done: on failure what was written goes (and a volume made for it with it)."""
        if not ok:
            _empty(self.path(name))
        self.release(name, ref)
        if made and not ok:
            try:
                self.remove(name)
            except (Conflict, NotFound):
                pass


def image_may_hold(lowers: Iterable[str], dest: str) -> bool:
    """Whether the image (its layer dirs ``lowers``) may have something at ``dest``: the
    path in some layer, or a symlink on the way there (which only the mounted image can
    resolve). Spares mounting the image at create for a mount point it has nothing at."""
    parts = [p for p in dest.split("/") if p and p != "."]
    for low in lowers:
        cur = low
        for part in parts:
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                break
            if stat.S_ISLNK(st.st_mode) or part == "..":
                return True
        else:
            return True
    return False


def _empty(path: str) -> None:
    """Remove what is in directory ``path`` (a volume's data), keeping the directory."""
    for entry in os.listdir(path):
        sub = os.path.join(path, entry)
        if os.path.isdir(sub) and not os.path.islink(sub):
            tree.remove(sub)
        else:
            os.unlink(sub)


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False
