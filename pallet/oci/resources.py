"""runtime-spec ``linux.resources``: typed records, a validating parser, and update merging.

Plain classes with ``__slots__`` rather than dataclasses: ``dataclasses`` imports ``re``,
``inspect`` and ``enum``, which would blow the runtime's start-up budget on its own.
Every attribute is optional (``None`` = "not in the JSON"), because the cgroup layer must
tell "leave alone" from "set to a value" — the difference matters for ``update``.

Values follow runtime-spec 1.x: byte counts are int64 with -1 meaning unlimited, and, as
runc does, a memory/swap/reservation/kernel value of 0 also means "not set".
"""

from __future__ import annotations

from pallet.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn, TypeVar

    _R = TypeVar("_R", bound="_Record")

U16 = (1 << 16) - 1
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

_ROOT = "linux.resources"


def _spec(*names: str) -> tuple[tuple[str, str], ...]:
    """("kernel_tcp=kernelTCP", "limit") -> ((attribute, JSON key), ...)."""
    return tuple((n.partition("=")[0], n.partition("=")[2] or n) for n in names)


def _slots(fields: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    return tuple(attr for attr, _key in fields)


class _Record:
    """Equality, repr and JSON output driven by each class's ``_fields`` table."""

    __slots__ = ()
    # (attribute name, runtime-spec JSON key)
    _fields: tuple[tuple[str, str], ...] = ()

    def __init__(self, **values: object) -> None:
        for attr, _key in self._fields:
            setattr(self, attr, values.pop(attr, None))
        if values:
            raise TypeError(f"{type(self).__name__}: unknown fields {sorted(values)}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a, _ in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [
            f"{a}={getattr(self, a)!r}" for a, _ in self._fields if getattr(self, a) is not None
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self) -> dict[str, object]:
        """The runtime-spec JSON shape (omitting unset fields)."""
        out: dict[str, object] = {}
        for attr, key in self._fields:
            value = getattr(self, attr)
            if value is not None:
                out[key] = _to_json(value)
        return out


def _to_json(value: object) -> object:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


class DeviceRule(_Record):
    """One devices-cgroup rule. ``major``/``minor`` None means every number ('*')."""

    _fields = _spec("allow", "type", "major", "minor", "access")
    __slots__ = _slots(_fields)
    allow: bool
    type: str  # "a", "b" or "c"
    major: int | None
    minor: int | None
    access: str  # some of "rwm"


class Memory(_Record):
    _fields = _spec(
        "limit",
        "reservation",
        "swap",
        "kernel",
        "kernel_tcp=kernelTCP",
        "swappiness",
        "disable_oom_killer=disableOOMKiller",
        "use_hierarchy=useHierarchy",
        "check_before_update=checkBeforeUpdate",
    )
    __slots__ = _slots(_fields)
    limit: int | None
    reservation: int | None
    swap: int | None  # memory+swap, as in cgroup v1's memsw
    kernel: int | None
    kernel_tcp: int | None
    swappiness: int | None
    disable_oom_killer: bool | None
    use_hierarchy: bool | None
    check_before_update: bool | None


class CPU(_Record):
    _fields = _spec(
        "shares",
        "quota",
        "burst",
        "period",
        "realtime_runtime=realtimeRuntime",
        "realtime_period=realtimePeriod",
        "cpus",
        "mems",
        "idle",
    )
    __slots__ = _slots(_fields)
    shares: int | None
    quota: int | None
    burst: int | None
    period: int | None
    realtime_runtime: int | None
    realtime_period: int | None
    cpus: str | None
    mems: str | None
    idle: int | None


class Pids(_Record):
    _fields = _spec("limit")
    __slots__ = _slots(_fields)
    limit: int | None  # <= 0 means unlimited


class WeightDevice(_Record):
    _fields = _spec("major", "minor", "weight", "leaf_weight=leafWeight")
    __slots__ = _slots(_fields)
    major: int
    minor: int
    weight: int | None
    leaf_weight: int | None


class ThrottleDevice(_Record):
    _fields = _spec("major", "minor", "rate")
    __slots__ = _slots(_fields)
    major: int
    minor: int
    rate: int  # 0 removes the limit


class BlockIO(_Record):
    _fields = _spec(
        "weight",
        "leaf_weight=leafWeight",
        "weight_device=weightDevice",
        "throttle_read_bps=throttleReadBpsDevice",
        "throttle_write_bps=throttleWriteBpsDevice",
        "throttle_read_iops=throttleReadIOPSDevice",
        "throttle_write_iops=throttleWriteIOPSDevice",
    )
    __slots__ = _slots(_fields)
    weight: int | None
    leaf_weight: int | None
    weight_device: list[WeightDevice] | None
    throttle_read_bps: list[ThrottleDevice] | None
    throttle_write_bps: list[ThrottleDevice] | None
    throttle_read_iops: list[ThrottleDevice] | None
    throttle_write_iops: list[ThrottleDevice] | None


class HugepageLimit(_Record):
    _fields = _spec("page_size=pageSize", "limit")
    __slots__ = _slots(_fields)
    page_size: str  # "2MB", "1GB", "64KB": the kernel's file-name spelling
    limit: int


class InterfacePriority(_Record):
    _fields = _spec("name", "priority")
    __slots__ = _slots(_fields)
    name: str
    priority: int


class Network(_Record):
    _fields = _spec("class_id=classID", "priorities")
    __slots__ = _slots(_fields)
    class_id: int | None
    priorities: list[InterfacePriority] | None


class Rdma(_Record):
    _fields = _spec("hca_handles=hcaHandles", "hca_objects=hcaObjects")
    __slots__ = _slots(_fields)
    hca_handles: int | None
    hca_objects: int | None


class Resources(_Record):
    _fields = _spec(
        "devices",
        "memory",
        "cpu",
        "pids",
        "block_io=blockIO",
        "hugepage_limits=hugepageLimits",
        "network",
        "rdma",
        "unified",
    )
    __slots__ = _slots(_fields)
    devices: list[DeviceRule] | None
    memory: Memory | None
    cpu: CPU | None
    pids: Pids | None
    block_io: BlockIO | None
    hugepage_limits: list[HugepageLimit] | None
    network: Network | None
    rdma: dict[str, Rdma] | None
    unified: dict[str, str] | None


# ---------------------------------------------------------------------------------------
# Parsing


def _fail(path: str, what: str) -> NoReturn:
    raise InvalidArgument(f"{path}: {what}", op="parse", obj=path)


def _object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        _fail(path, "must be an object")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        _fail(path, "must be an array")
    return value


def _int(obj: dict[str, object], key: str, path: str, lo: int, hi: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int subclass; JSON true is not a number.
    if type(value) is not int:
        _fail(f"{path}.{key}", "must be an integer")
    if not lo <= value <= hi:
        _fail(f"{path}.{key}", f"must be between {lo} and {hi}")
    return value


def _req_int(obj: dict[str, object], key: str, path: str, lo: int, hi: int) -> int:
    value = _int(obj, key, path, lo, hi)
    if value is None:
        _fail(f"{path}.{key}", "is required")
    return value


def _bool(obj: dict[str, object], key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        _fail(f"{path}.{key}", "must be a boolean")
    return value


def _str(obj: dict[str, object], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        _fail(f"{path}.{key}", "must be a string")
    return value


def _bytes(obj: dict[str, object], key: str, path: str) -> int | None:
    """An int64 byte count where -1 means unlimited."""
    value = _int(obj, key, path, I64_MIN, I64_MAX)
    if value is not None and value < -1:
        _fail(f"{path}.{key}", "must be -1 (unlimited) or a byte count")
    return value


def _cpu_list(obj: dict[str, object], key: str, path: str) -> str | None:
    """A cpuset list such as "0-3,6": checked here so a typo fails before any fs write."""
    value = _str(obj, key, path)
    if value is None:
        return None
    for part in value.strip().split(","):
        bounds = part.split("-")
        if part and (len(bounds) > 2 or not all(b.isdigit() for b in bounds)):
            _fail(f"{path}.{key}", f"{value!r} is not a list like '0-3,6'")
    return value.strip()


def _device_rule(value: object, path: str) -> DeviceRule:
    obj = _object(value, path)
    allow = _bool(obj, "allow", path)
    if allow is None:
        _fail(f"{path}.allow", "is required")
    kind = _str(obj, "type", path) or "a"
    if kind not in ("a", "b", "c"):
        _fail(f"{path}.type", f"must be 'a', 'b' or 'c', not {kind!r}")
    access = _str(obj, "access", path) or "rwm"
    if not set(access) <= set("rwm") or len(set(access)) != len(access):
        _fail(f"{path}.access", f"must be a combination of 'r', 'w' and 'm', not {access!r}")
    major = _int(obj, "major", path, -1, I64_MAX)
    minor = _int(obj, "minor", path, -1, I64_MAX)
    # -1 is how some producers spell the wildcard; keep one spelling.
    return DeviceRule(
        allow=allow,
        type=kind,
        major=None if major == -1 else major,
        minor=None if minor == -1 else minor,
        access=access,
    )


def _memory(value: object, path: str) -> Memory:
    obj = _object(value, path)
    swappiness = _int(obj, "swappiness", path, -1, U64)
    # runc treats -1 (and its uint64 spelling) as "leave the kernel default".
    if swappiness in (-1, U64):
        swappiness = None
    if swappiness is not None and swappiness > 100:
        _fail(f"{path}.swappiness", "must be between 0 and 100")
    return Memory(
        limit=_bytes(obj, "limit", path),
        reservation=_bytes(obj, "reservation", path),
        swap=_bytes(obj, "swap", path),
        kernel=_bytes(obj, "kernel", path),
        kernel_tcp=_bytes(obj, "kernelTCP", path),
        swappiness=swappiness,
        disable_oom_killer=_bool(obj, "disableOOMKiller", path),
        use_hierarchy=_bool(obj, "useHierarchy", path),
        check_before_update=_bool(obj, "checkBeforeUpdate", path),
    )


def _cpu(value: object, path: str) -> CPU:
    obj = _object(value, path)
    quota = _int(obj, "quota", path, I64_MIN, I64_MAX)
    if quota is not None and quota < -1:
        _fail(f"{path}.quota", "must be -1 (unlimited) or a positive number of microseconds")
    return CPU(
        shares=_int(obj, "shares", path, 0, U64),
        quota=quota,
        burst=_int(obj, "burst", path, 0, U64),
        period=_int(obj, "period", path, 0, U64),
        realtime_runtime=_int(obj, "realtimeRuntime", path, -1, I64_MAX),
        realtime_period=_int(obj, "realtimePeriod", path, 0, U64),
        cpus=_cpu_list(obj, "cpus", path),
        mems=_cpu_list(obj, "mems", path),
        idle=_int(obj, "idle", path, 0, 1),
    )


def _weight(obj: dict[str, object], key: str, path: str) -> int | None:
    value = _int(obj, key, path, 0, U16)
    # 0 means "not set" (runc); otherwise the kernel's blkio range.
    if value and not 10 <= value <= 1000:
        _fail(f"{path}.{key}", "must be between 10 and 1000")
    return value


def _weight_devices(value: object, path: str) -> list[WeightDevice]:
    out = []
    for i, item in enumerate(_list(value, path)):
        p = f"{path}[{i}]"
        obj = _object(item, p)
        out.append(
            WeightDevice(
                major=_req_int(obj, "major", p, 0, I64_MAX),
                minor=_req_int(obj, "minor", p, 0, I64_MAX),
                weight=_weight(obj, "weight", p),
                leaf_weight=_weight(obj, "leafWeight", p),
            )
        )
    return out


def _throttles(value: object, path: str) -> list[ThrottleDevice]:
    out = []
    for i, item in enumerate(_list(value, path)):
        p = f"{path}[{i}]"
        obj = _object(item, p)
        out.append(
            ThrottleDevice(
                major=_req_int(obj, "major", p, 0, I64_MAX),
                minor=_req_int(obj, "minor", p, 0, I64_MAX),
                rate=_req_int(obj, "rate", p, 0, U64),
            )
        )
    return out


def _block_io(value: object, path: str) -> BlockIO:
    obj = _object(value, path)

    def devices(key: str) -> list[ThrottleDevice] | None:
        raw = obj.get(key)
        return None if raw is None else _throttles(raw, f"{path}.{key}")

    raw_wd = obj.get("weightDevice")
    return BlockIO(
        weight=_weight(obj, "weight", path),
        leaf_weight=_weight(obj, "leafWeight", path),
        weight_device=None if raw_wd is None else _weight_devices(raw_wd, f"{path}.weightDevice"),
        throttle_read_bps=devices("throttleReadBpsDevice"),
        throttle_write_bps=devices("throttleWriteBpsDevice"),
        throttle_read_iops=devices("throttleReadIOPSDevice"),
        throttle_write_iops=devices("throttleWriteIOPSDevice"),
    )


def _page_size(obj: dict[str, object], path: str) -> str:
    size = _str(obj, "pageSize", path)
    if size is None:
        _fail(f"{path}.pageSize", "is required")
    # The kernel names its files hugetlb.<N><unit>.*: "2MB", "1GB", "64KB".
    if not (len(size) > 2 and size[:-2].isdigit() and size[-2:] in ("KB", "MB", "GB", "TB")):
        _fail(f"{path}.pageSize", f"{size!r} is not a size like '2MB' or '1GB'")
    return size


def _hugepages(value: object, path: str) -> list[HugepageLimit]:
    out = []
    for i, item in enumerate(_list(value, path)):
        p = f"{path}[{i}]"
        obj = _object(item, p)
        limit = _req_int(obj, "limit", p, 0, U64)
        out.append(HugepageLimit(page_size=_page_size(obj, p), limit=limit))
    return out


def _network(value: object, path: str) -> Network:
    obj = _object(value, path)
    prios = None
    raw = obj.get("priorities")
    if raw is not None:
        prios = []
        for i, item in enumerate(_list(raw, f"{path}.priorities")):
            p = f"{path}.priorities[{i}]"
            entry = _object(item, p)
            name = _str(entry, "name", p)
            if not name or " " in name or "/" in name:
                _fail(f"{p}.name", "must be an interface name")
            priority = _req_int(entry, "priority", p, 0, U32)
            prios.append(InterfacePriority(name=name, priority=priority))
    return Network(class_id=_int(obj, "classID", path, 0, U32), priorities=prios)


def _rdma(value: object, path: str) -> dict[str, Rdma]:
    out = {}
    for name, item in _object(value, path).items():
        p = f"{path}.{name}"
        if not name or " " in name or "/" in name:
            _fail(p, "must be an RDMA device name")
        obj = _object(item, p)
        out[name] = Rdma(
            hca_handles=_int(obj, "hcaHandles", p, 0, U32),
            hca_objects=_int(obj, "hcaObjects", p, 0, U32),
        )
    return out


def _unified(value: object, path: str) -> dict[str, str]:
    out = {}
    for key, item in _object(value, path).items():
        p = f"{path}.{key}"
        # A key names a file in the container's own cgroup directory and nothing else.
        if "/" in key or "." not in key or key.startswith(".") or "\n" in key:
            _fail(p, "must name a cgroup v2 interface file such as 'memory.high'")
        if not isinstance(item, str):
            _fail(p, "must be a string")
        out[key] = item
    return out


def parse_resources(obj: object, path: str = _ROOT) -> Resources:
    """Validate the ``linux.resources`` JSON value (already decoded) into a Resources."""
    d = _object(obj, path)
    res = Resources()
    if d.get("devices") is not None:
        res.devices = [
            _device_rule(v, f"{path}.devices[{i}]")
            for i, v in enumerate(_list(d["devices"], f"{path}.devices"))
        ]
    if d.get("memory") is not None:
        res.memory = _memory(d["memory"], f"{path}.memory")
    if d.get("cpu") is not None:
        res.cpu = _cpu(d["cpu"], f"{path}.cpu")
    if d.get("pids") is not None:
        p = f"{path}.pids"
        res.pids = Pids(limit=_int(_object(d["pids"], p), "limit", p, I64_MIN, I64_MAX))
    if d.get("blockIO") is not None:
        res.block_io = _block_io(d["blockIO"], f"{path}.blockIO")
    if d.get("hugepageLimits") is not None:
        res.hugepage_limits = _hugepages(d["hugepageLimits"], f"{path}.hugepageLimits")
    if d.get("network") is not None:
        res.network = _network(d["network"], f"{path}.network")
    if d.get("rdma") is not None:
        res.rdma = _rdma(d["rdma"], f"{path}.rdma")
    if d.get("unified") is not None:
        res.unified = _unified(d["unified"], f"{path}.unified")
    return res


# ---------------------------------------------------------------------------------------
# Update


def _overlay(base: _R | None, update: _R | None) -> _R | None:
    """Field-wise: what ``update`` sets wins; lists are replaced, not appended."""
    if update is None:
        return base
    if base is None:
        return update
    merged = type(base)()
    for attr, _key in base._fields:
        new = getattr(update, attr)
        setattr(merged, attr, getattr(base, attr) if new is None else new)
    return merged


def merge_update(base: Resources, update: Resources) -> Resources:
    """The resources a container has after ``pallet-runtime update`` applies ``update``.

    Hugepage limits merge by page size and rdma/unified by key, so an update that names
    one page size or one file leaves the others as they were.
    """
    out = Resources(
        devices=base.devices if update.devices is None else update.devices,
        memory=_overlay(base.memory, update.memory),
        cpu=_overlay(base.cpu, update.cpu),
        pids=_overlay(base.pids, update.pids),
        block_io=_overlay(base.block_io, update.block_io),
        network=_overlay(base.network, update.network),
    )
    if update.hugepage_limits is None:
        out.hugepage_limits = base.hugepage_limits
    else:
        by_size = {h.page_size: h for h in base.hugepage_limits or []}
        by_size.update((h.page_size, h) for h in update.hugepage_limits)
        out.hugepage_limits = list(by_size.values())
    for attr in ("rdma", "unified"):
        b, u = getattr(base, attr), getattr(update, attr)
        setattr(out, attr, b if u is None else {**(b or {}), **u})
    return out
