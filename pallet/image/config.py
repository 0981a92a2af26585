"""The image config blob (OCI image-spec config.md, Docker's image JSON), and the ids
derived from it.

An image's id is the sha256 of its config bytes, so those bytes are sacred: parsing keeps
the raw document, and ``config_to_json`` hands back the original bytes unchanged when
nothing was changed, and otherwise rewrites only the fields that changed, keeping every
field pallet does not model (``container_config``, ``docker_version``, ``os.version``…).
New bytes are written as moby writes image JSON: compact, top-level keys sorted (moby's
``Image.MarshalJSON`` goes through a map), container-config keys in Go struct order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument
from pallet.image.digest import Digest, digest_error
from pallet.image.manifest import go_json

# Go struct order of moby's container.Config, for keys a new config gains.
_CONTAINER_KEY_ORDER = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
)


def _bad(where: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid image config: {where}: {why}", op="parse image config",
                           obj=where)


def _str(v: object, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad(where, "must be a string")
    return v


def _opt_str_list(v: object, where: str) -> list[str] | None:
    if v is None:
        return None
    # Docker's strslice accepts a bare string for Cmd/Entrypoint/Shell and means [string].
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(where, "must be a list of strings")
    return list(v)


def _set(v: object, where: str) -> dict[str, dict[str, Any]]:
    """A Go ``map[string]struct{}`` (ExposedPorts, Volumes)."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(where, "must be an object")
    return {k: {} for k in v}


def _str_map(v: object, where: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise _bad(where, "must be an object of strings")
    return dict(v)


def _int(v: object, where: str) -> int:
    if v is None:
        return 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(where, "must be an integer")
    return v


def _obj(v: object, where: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(where, "must be an object")
    return v


@dataclass(slots=True)
class Healthcheck:
    """Durations in nanoseconds, as Docker stores them."""

    test: list[str] | None = None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)



@dataclass(slots=True)
class ContainerConfig:
    user: str = ""
    exposed_ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    args_escaped: bool = False
    on_build: list[str] | None = None
    shell: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)




@dataclass(slots=True)
class History:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


# Go struct order of moby's image.History.
_HISTORY_KEY_ORDER = ("created", "author", "created_by", "comment", "empty_layer")


@dataclass(slots=True)
class RootFS:
    type: str = "layers"
    diff_ids: list[Digest] = field(default_factory=list)


@dataclass(slots=True)
class ImageConfig:
    architecture: str = ""
    os: str = ""
    variant: str = ""
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    rootfs: RootFS = field(default_factory=RootFS)
    history: list[History] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # The bytes this config was parsed from; returned as they are if nothing changed.
    source: bytes | None = field(default=None, repr=False, compare=False)


def _healthcheck(v: object, where: str) -> Healthcheck | None:
    if v is None:
        return None
    d = _obj(v, where)
    return Healthcheck(
        test=_opt_str_list(d.get("Test"), f"{where}.Test"),
        interval=_int(d.get("Interval"), f"{where}.Interval"),
        timeout=_int(d.get("Timeout"), f"{where}.Timeout"),
        start_period=_int(d.get("StartPeriod"), f"{where}.StartPeriod"),
        start_interval=_int(d.get("StartInterval"), f"{where}.StartInterval"),
        retries=_int(d.get("Retries"), f"{where}.Retries"),
        raw=d,
    )


def _container_config(v: object) -> ContainerConfig:
    d = _obj(v, "config")
    args_escaped = d.get("ArgsEscaped", False)
    if not isinstance(args_escaped, bool):
        raise _bad("config.ArgsEscaped", "must be a boolean")
    return ContainerConfig(
        user=_str(d.get("User"), "config.User"),
        exposed_ports=_set(d.get("ExposedPorts"), "config.ExposedPorts"),
        env=_opt_str_list(d.get("Env"), "config.Env"),
        entrypoint=_opt_str_list(d.get("Entrypoint"), "config.Entrypoint"),
        cmd=_opt_str_list(d.get("Cmd"), "config.Cmd"),
        volumes=_set(d.get("Volumes"), "config.Volumes"),
        working_dir=_str(d.get("WorkingDir"), "config.WorkingDir"),
        labels=_str_map(d.get("Labels"), "config.Labels"),
        stop_signal=_str(d.get("StopSignal"), "config.StopSignal"),
        healthcheck=_healthcheck(d.get("Healthcheck"), "config.Healthcheck"),
        args_escaped=args_escaped,
        on_build=_opt_str_list(d.get("OnBuild"), "config.OnBuild"),
        shell=_opt_str_list(d.get("Shell"), "config.Shell"),
        raw=d,
    )


def _history(v: object, where: str) -> History:
    d = _obj(v, where)
    empty = d.get("empty_layer", False)
    if not isinstance(empty, bool):
        raise _bad(f"{where}.empty_layer", "must be a boolean")
    return History(
        created=_str(d.get("created"), f"{where}.created"),
        created_by=_str(d.get("created_by"), f"{where}.created_by"),
        author=_str(d.get("author"), f"{where}.author"),
        comment=_str(d.get("comment"), f"{where}.comment"),
        empty_layer=empty,
        raw=d,
    )


def _rootfs(v: object) -> RootFS:
    if v is None:
        # moby's image.NewFromJSON refuses the same way.
        raise InvalidArgument("invalid image JSON, no RootFS key", op="parse image config",
                              obj="rootfs")
    d = _obj(v, "rootfs")
    kind = _str(d.get("type"), "rootfs.type")
    if kind != "layers":
        raise _bad("rootfs.type", f"must be \"layers\", got {kind!r}")
    ids = d.get("diff_ids")
    if ids is None:
        ids = []
    if not isinstance(ids, list):
        raise _bad("rootfs.diff_ids", "must be a list")
    diff_ids = []
    for i, s in enumerate(ids):
        err = digest_error(s) if isinstance(s, str) else "must be a string"
        if err:
            raise _bad(f"rootfs.diff_ids[{i}]", err)
        diff_ids.append(Digest.parse(s))
    return RootFS(kind, diff_ids)


def parse_config(data: bytes) -> ImageConfig:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid image config: not JSON: {exc}",
                              op="parse image config") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid image config: not a JSON object", op="parse image config")
    history = doc.get("history")
    if history is not None and not isinstance(history, list):
        raise _bad("history", "must be a list")
    return ImageConfig(
        architecture=_str(doc.get("architecture"), "architecture"),
        os=_str(doc.get("os"), "os"),
        variant=_str(doc.get("variant"), "variant"),
        created=_str(doc.get("created"), "created"),
        author=_str(doc.get("author"), "author"),
        config=_container_config(doc.get("config")),
        rootfs=_rootfs(doc.get("rootfs")),
        history=[_history(h, f"history[{i}]") for i, h in enumerate(history or [])],
        raw=doc,
        source=bytes(data),
    )


# --- writing ------------------------------------------------------------------------------
#
# Each known field is written back only if it changed: its new value is compared with what
# the parser made of the raw value, and an unchanged field keeps its raw value verbatim (a
# null Labels stays null, a bare-string Cmd stays a string). Nested objects are merged the
# same way, so they compare equal to their raw value when untouched.

Reader = Callable[[Any], Any]


def _same(v: Any) -> Any:
    return v


def _empty(v: object) -> bool:
    return v is None or v == "" or v is False or v == 0 or v == [] or v == {}


def _merge(raw: dict[str, Any], updates: list[tuple[str, Any, Reader]],
           order: tuple[str, ...] = ()) -> dict[str, Any]:
    """``raw`` with ``updates`` (key, new value, reader of the raw value) applied. Keys it
    had keep their place; new keys appear only when they carry a value, slotted in by
    ``order`` (Go struct order) when given, the way Go's omitempty writers place them."""
    out = dict(raw)
    fresh: list[str] = []
    for key, new, read in updates:
        if key in raw:
            if new != read(raw[key]):
                out[key] = new
        elif not _empty(new):
            out[key] = new
            fresh.append(key)
    if not (order and fresh):
        return out
    rank = {k: i for i, k in enumerate(order)}
    fresh.sort(key=lambda k: rank.get(k, len(order)))
    merged: list[str] = []
    for k in raw:
        # A new key goes before the first kept key that Go would write after it.
        while fresh and rank.get(fresh[0], len(order)) < rank.get(k, len(order)):
            merged.append(fresh.pop(0))
        merged.append(k)
    return {k: out[k] for k in merged + fresh}


def _healthcheck_json(h: Healthcheck) -> dict[str, Any]:
    return _merge(h.raw, [
        ("Test", h.test, lambda v: _opt_str_list(v, "Test")),
        ("Interval", h.interval, lambda v: _int(v, "Interval")),
        ("Timeout", h.timeout, lambda v: _int(v, "Timeout")),
        ("StartPeriod", h.start_period, lambda v: _int(v, "StartPeriod")),
        ("StartInterval", h.start_interval, lambda v: _int(v, "StartInterval")),
        ("Retries", h.retries, lambda v: _int(v, "Retries")),
    ])


def _container_json(c: ContainerConfig) -> dict[str, Any]:
    def strs(v: Any) -> Any:
        return _opt_str_list(v, "config")

    health = _healthcheck_json(c.healthcheck) if c.healthcheck is not None else None
    return _merge(c.raw, [
        ("User", c.user, lambda v: _str(v, "User")),
        ("ExposedPorts", {k: {} for k in c.exposed_ports}, lambda v: _set(v, "ExposedPorts")),
        ("Env", c.env, strs),
        ("Cmd", c.cmd, strs),
        ("Healthcheck", health, _same),
        ("ArgsEscaped", c.args_escaped, _same),
        ("Volumes", {k: {} for k in c.volumes}, lambda v: _set(v, "Volumes")),
        ("WorkingDir", c.working_dir, lambda v: _str(v, "WorkingDir")),
        ("Entrypoint", c.entrypoint, strs),
        ("OnBuild", c.on_build, strs),
        ("Labels", c.labels, lambda v: _str_map(v, "Labels")),
        ("StopSignal", c.stop_signal, lambda v: _str(v, "StopSignal")),
        ("Shell", c.shell, strs),
    ], _CONTAINER_KEY_ORDER)


def _history_json(h: History) -> dict[str, Any]:
    return _merge(h.raw, [
        ("created", h.created, lambda v: _str(v, "created")),
        ("author", h.author, lambda v: _str(v, "author")),
        ("created_by", h.created_by, lambda v: _str(v, "created_by")),
        ("comment", h.comment, lambda v: _str(v, "comment")),
        ("empty_layer", h.empty_layer, _same),
    ], _HISTORY_KEY_ORDER)


def _rootfs_json(r: RootFS, raw: object) -> dict[str, Any]:
    return _merge(raw if isinstance(raw, dict) else {}, [
        ("type", r.type, _same),
        ("diff_ids", [str(d) for d in r.diff_ids], lambda v: v or []),
    ])


def _config_document(cfg: ImageConfig) -> dict[str, Any]:
    def text(v: Any) -> Any:
        return _str(v, "image config")

    return _merge(cfg.raw, [
        ("architecture", cfg.architecture, text),
        ("os", cfg.os, text),
        ("variant", cfg.variant, text),
        ("created", cfg.created, text),
        ("author", cfg.author, text),
        ("config", _container_json(cfg.config), _same),
        ("rootfs", _rootfs_json(cfg.rootfs, cfg.raw.get("rootfs")), _same),
        ("history", [_history_json(h) for h in cfg.history], _same),
    ])


def config_to_json(cfg: ImageConfig) -> bytes:
    """The config's bytes: the parsed bytes themselves if nothing changed, else moby's form."""
    doc = _config_document(cfg)
    if cfg.source is not None:
        try:
            if json.loads(cfg.source) == doc:
                return cfg.source
        except ValueError:
            pass
    return go_json(dict(sorted(doc.items())))


def image_id(config_bytes: bytes) -> Digest:
    """An image's id: the digest of its config blob."""
    return Digest.of_bytes(config_bytes)


def chain_ids(diff_ids: list[Digest]) -> list[Digest]:
    """OCI ChainIDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
    DiffID(Ln)), over the digests' string forms. Names a layer together with all below it."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            text = f"{out[-1]} {diff_id}".encode()
            out.append(Digest("sha256", hashlib.sha256(text).hexdigest()))
    return out
