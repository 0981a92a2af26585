"""How containers are shown: their State, NetworkSettings as dockerd shapes it, ps's
status text, and the list filters (pure)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from pallet.engine.sandbox import empty_endpoint, mode_of, public_endpoint
from pallet.errors import InvalidArgument, NotFound
from pallet.monitor import logfile

if TYPE_CHECKING:
    from pallet.engine.containerparts import ServiceParts


ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float) -> str:
    """A time as the Engine API writes it (nanoseconds); 0 is Go's zero time."""
    if not ts:
        return ZERO_TIME
    return logfile.rfc3339_nano(int(ts * 1_000_000_000))


def state_of(status: str) -> dict[str, Any]:
    """The State fields a change to ``status`` sets (a new container: all of them)."""
    flags: dict[str, Any] = {"Status": status, "Running": status in ("running", "paused"),
                             "Paused": status == "paused", "Restarting": False, "Dead": False,
                             "Pid": 0, "Error": ""}
    if status == "created":
        flags.update(OOMKilled=False, ExitCode=0, StartedAt=ZERO_TIME, FinishedAt=ZERO_TIME)
    return flags


def network_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """NetworkSettings as dockerd shapes it: the top-level address fields are the default
    bridge network's (empty on any other)."""
    ns = doc.get("NetworkSettings") or {}
    networks = {name: public_endpoint(ep) for name, ep in (ns.get("Networks") or {}).items()}
    if not ns:
        mode = mode_of(doc["HostConfig"])
        if not mode.startswith("container:"):
            networks[mode] = public_endpoint(empty_endpoint())
    bridge = networks.get("bridge") or {}
    return {"Bridge": "", "SandboxID": ns.get("SandboxID", ""), "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ns.get("Ports") or {}, "SandboxKey": ns.get("SandboxKey", ""),
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            **{k: bridge.get(k, "" if k not in ("IPPrefixLen", "GlobalIPv6PrefixLen") else 0)
               for k in ("EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
                         "IPAddress", "IPPrefixLen", "IPv6Gateway", "MacAddress")},
            "Networks": networks}


def _ago(seconds: float) -> str:
    """Docker's human durations (go-units HumanDuration)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def status_text(st: dict[str, Any]) -> str:
    now = time.time()
    if st["Status"] == "created":
        return "Created"
    if st["Status"] == "removing":
        return "Removal In Progress"
    if st.get("Restarting"):
        finished = logfile.parse_time(st.get("FinishedAt") or ZERO_TIME)
        return f"Restarting ({st['ExitCode']}) {_ago(now - finished)} ago"
    if st["Running"]:
        text = f"Up {_ago(now - logfile.parse_time(st['StartedAt']))}"
        if st["Paused"]:
            return text + " (Paused)"
        health = (st.get("Health") or {}).get("Status")
        if health == "starting":
            return text + " (health: starting)"
        return text + (f" ({health})" if health else "")
    finished = logfile.parse_time(st.get("FinishedAt") or ZERO_TIME)
    return f"Exited ({st['ExitCode']}) {_ago(now - finished)} ago"


def label_filters(doc: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    labels = doc["Config"].get("Labels") or {}

    def has(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    if any(not has(s) for s in filters.get("label", [])):
        return False
    return not any(has(s) for s in filters.get("label!", []))


def _port_filter(doc: dict[str, Any], key: str, spec: str) -> bool:
    """ps --filter publish=8080[-8090][/tcp] (host ports) or expose= (container ports)."""
    rng, _, proto = spec.partition("/")
    lo, _, hi = rng.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidArgument(f"invalid filter '{key}={spec}'") from None
    ports = (doc.get("NetworkSettings") or {}).get("Ports") or {}
    for k, binds in ports.items():
        num, _, kproto = k.partition("/")
        if proto and kproto != proto:
            continue
        if key == "expose" and first <= int(num) <= last:
            return True
        if key == "publish" and any(first <= int(b["HostPort"]) <= last for b in binds or []):
            return True
    return False


def matches(doc: dict[str, Any], filters: dict[str, list[str]],
             svc: ServiceParts) -> bool:
    st = doc["State"]
    for key, values in filters.items():
        if not values:
            continue
        if key == "id":
            ok = any(doc["Id"].startswith(v) for v in values)
        elif key == "name":
            ok = any(re.search(v, doc["Name"].lstrip("/")) for v in values)
        elif key == "label":
            ok = label_filters(doc, {"label": values})
        elif key == "status":
            for v in values:
                if v not in ("created", "restarting", "running", "removing", "paused",
                             "exited", "dead"):
                    raise InvalidArgument(f"invalid filter 'status={v}'")
            ok = st["Status"] in values
        elif key == "exited":
            ok = not st["Running"] and st["Status"] == "exited" and \
                str(st["ExitCode"]) in values
        elif key == "ancestor":
            ok = False
            for v in values:
                try:
                    ok = ok or svc.images.resolve(v) == doc["Image"]
                except NotFound:
                    pass
                ok = ok or doc.get("ImageName") == v
        elif key in ("before", "since"):
            other = svc.get(values[0])
            ok = doc["Created"] < other["Created"] if key == "before" else \
                doc["Created"] > other["Created"]
        elif key == "network":
            eps = (doc.get("NetworkSettings") or {}).get("Networks") or {}
            ok = any(v in eps or any(ep.get("NetworkID", "").startswith(v) and v
                                     for ep in eps.values()) for v in values)
        elif key in ("publish", "expose"):
            ok = any(_port_filter(doc, key, v) for v in values)
        elif key == "volume":  # a volume's name, or a mount's destination
            points = doc.get("MountPoints") or []
            ok = any(v == p.get("Name") or v == p.get("Destination") for p in points
                     for v in values)
        else:
            ok = True
        if not ok:
            return False
    return True

