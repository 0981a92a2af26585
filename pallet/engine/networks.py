"""Networks: their records, and the create/list/inspect/remove/prune of the API.

A network is a JSON record in <data_root>/networks/<id>.json in the shape GET
/networks/{id} answers (fields starting with "_" are pallet's own and never shown).
Create writes the record first (the commit point), then makes the bridge; remove takes
the bridge down first, then the record: palletd's start makes every recorded bridge
exist again, so a crash between the two steps leaves nothing that no record names.

What a container does on a network (addresses, veths, ports, DNS) is in sandbox.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pallet.engine.config import DaemonConfig
from pallet.engine.events import EventBus, make_event
from pallet.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
)
from pallet.monitor import logfile
from pallet.network import ipam

BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MASQ_OPT = "com.docker.network.bridge.enable_ip_masquerade"
ICC_OPT = "com.docker.network.bridge.enable_icc"
MTU_OPT = "com.docker.network.driver.mtu"
PREDEFINED = ("bridge", "host", "none")
DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")

Docs = Callable[[], Iterable[dict[str, Any]]]


def _now() -> str:
    return logfile.rfc3339_nano(time.time_ns())


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class NetworkService:
    def __init__(self, cfg: DaemonConfig, events: EventBus) -> None:
        self.cfg = cfg
        self.events = events
        self.dir = cfg.path("networks")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        self.nets: dict[str, dict[str, Any]] = {}
        for entry in os.listdir(self.dir):
            if entry.endswith(".json"):
                with open(os.path.join(self.dir, entry), "rb") as f:
                    doc = json.loads(f.read())
                self.nets[doc["Id"]] = doc
            elif entry.endswith(".tmp"):
                os.unlink(os.path.join(self.dir, entry))
        # container docs, to tell which addresses are taken and who is attached
        self.container_docs: Docs = lambda: ()

    # --- records ---------------------------------------------------------------------------

    def _write(self, doc: dict[str, Any]) -> None:
        path = os.path.join(self.dir, f"{doc['Id']}.json")
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _drop(self, nid: str) -> None:
        try:
            os.unlink(os.path.join(self.dir, f"{nid}.json"))
        except FileNotFoundError:
            pass

    def get(self, ref: str) -> dict[str, Any]:
        """By full id, then name, then unique id prefix (dockerd's order)."""
        with self.lock:
            if ref in self.nets:
                return self.nets[ref]
            for doc in self.nets.values():
                if doc["Name"] == ref:
                    return doc
            hits = [d for i, d in self.nets.items() if ref and i.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise NotFound(f"network {ref} is ambiguous ({len(hits)} matches found "
                               "based on ID prefix)")
        raise NotFound(f"network {ref} not found", obj=ref)

    def find(self, ref: str) -> dict[str, Any] | None:
        try:
            return self.get(ref)
        except NotFound:
            return None

    def bridges(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d for d in self.nets.values() if d["Driver"] == "bridge"]

    def event(self, doc: dict[str, Any], action: str, **extra: str) -> None:
        self.events.publish(make_event("network", action, doc["Id"],
                                       {"name": doc["Name"], "type": doc["Driver"], **extra}))

    # --- predefined ---------------------------------------------------------------------------

    def ensure_predefined(self, host_routes: list[ipaddress.IPv4Network |
                                                 ipaddress.IPv6Network]) -> None:
        """bridge, host and none exist once per daemon, as dockerd's."""
        with self.lock:
            have = {d["Name"] for d in self.nets.values()}
            if "bridge" not in have:
                bridge = self.cfg.bridge
                if self.cfg.bip:
                    gw = ipaddress.ip_interface(self.cfg.bip)
                    subnet: Any = gw.network
                    gateway = str(gw.ip)
                else:
                    own = {ipaddress.ip_network(c["Subnet"]) for d in self.nets.values()
                           for c in d["IPAM"]["Config"] or []}
                    routes = [r for r in host_routes if r not in own]  # own bridges' routes
                    subnet = ipam.choose_subnet(own, routes)
                    gateway = str(ipam.check_pool(subnet, None, None)[0])
                self._add(_new_doc("bridge", "bridge", [{"Subnet": str(subnet),
                                                         "Gateway": gateway}],
                                   options={
                                       "com.docker.network.bridge.default_bridge": "true",
                                       ICC_OPT: "true", MASQ_OPT: "true",
                                       "com.docker.network.bridge.host_binding_ipv4":
                                           "0.0.0.0",
                                       BRIDGE_NAME_OPT: bridge, MTU_OPT: "1500"},
                                   bridge=bridge))
            for name in ("host", "none"):
                if name not in have:
                    self._add(_new_doc(name, DRIVERS[name], [], options={}, bridge=""))

    def _add(self, doc: dict[str, Any]) -> None:
        self._write(doc)
        self.nets[doc["Id"]] = doc

    # --- create / remove --------------------------------------------------------------------

    def create(self, body: dict[str, Any],
               host_routes: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
               ) -> dict[str, Any]:
        """Validate and record a user-defined network; the caller makes its bridge."""
        if not isinstance(body, dict):
            raise InvalidArgument("network create: the body must be a JSON object")
        name = str(body.get("Name") or "")
        if not name:
            raise InvalidArgument("network name must be specified")  # dockerd's words
        if not NAME_RE.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        driver = str(body.get("Driver") or "bridge")
        if driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("Ingress") or body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get(
                "Network"):
            raise NotSupported("ingress and config-only networks (swarm) are not supported")
        ipam_body = body.get("IPAM") or {}
        if (ipam_body.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam_body["Driver"]}" not found')
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
        nid = secrets.token_hex(32)
        bridge = options.get(BRIDGE_NAME_OPT) or f"pbr-{nid[:11]}"
        if not IFNAME_RE.match(bridge):
            raise InvalidArgument(f"invalid bridge name {bridge!r}: at most 15 of "
                                  "[a-zA-Z0-9_.-]")
        if options.get(MTU_OPT):
            try:
                if not 68 <= int(options[MTU_OPT]) <= 65535:
                    raise ValueError
            except ValueError:
                raise InvalidArgument(f"invalid MTU {options[MTU_OPT]!r}") from None
        ipv6 = bool(body.get("EnableIPv6"))
        with self.lock:
            if any(d["Name"] == name for d in self.nets.values()):
                raise Conflict(f"network with name {name} already exists")
            if any(d.get("_bridge") == bridge for d in self.nets.values()):
                raise Conflict(f"bridge name {bridge} is used by another network")
            own = [ipaddress.ip_network(c["Subnet"]) for d in self.nets.values()
                   for c in d["IPAM"]["Config"] or []]
            configs: list[dict[str, Any]] = []
            for c in ipam_body.get("Config") or []:
                subnet = ipam.parse_subnet(str(c.get("Subnet") or ""))
                gateway, _ = ipam.check_pool(subnet, c.get("Gateway") or None,
                                             c.get("IPRange") or None)
                clash = ipam.overlapping(subnet, own)
                if clash is not None:
                    raise Forbidden("invalid pool request: Pool overlaps with other one on "
                                    "this address space")
                own.append(subnet)
                if subnet.version == 6 and not ipv6:
                    raise InvalidArgument("an IPv6 subnet needs --ipv6 (EnableIPv6)")
                entry: dict[str, Any] = {"Subnet": str(subnet), "Gateway": str(gateway)}
                if c.get("IPRange"):
                    entry["IPRange"] = str(ipam.parse_subnet(str(c["IPRange"])))
                configs.append(entry)
            if not any(ipaddress.ip_network(c["Subnet"]).version == 4 for c in configs):
                routes = [r for r in host_routes if r not in own]  # own bridges' routes
                subnet = ipam.choose_subnet(own, routes)
                configs.insert(0, {"Subnet": str(subnet),
                                   "Gateway": str(ipam.check_pool(subnet, None, None)[0])})
            if ipv6 and not any(ipaddress.ip_network(c["Subnet"]).version == 6
                                for c in configs):
                raise InvalidArgument("--ipv6 needs an IPv6 --subnet (no default IPv6 pool "
                                      "is configured)")
            doc = _new_doc(name, "bridge", configs, options=options, bridge=bridge,
                           nid=nid, labels=labels, ipv6=ipv6,
                           internal=bool(body.get("Internal")),
                           attachable=bool(body.get("Attachable")))
            self._add(doc)
        self.event(doc, "create")
        return doc

    def forget(self, doc: dict[str, Any]) -> None:
        """Drop the record (after its bridge is gone)."""
        with self.lock:
            self._drop(doc["Id"])
            self.nets.pop(doc["Id"], None)
        self.event(doc, "destroy")

    def check_removable(self, doc: dict[str, Any]) -> None:
        if doc["Name"] in PREDEFINED and doc["Id"] in self.nets:
            raise Forbidden(f"{doc['Name']} is a pre-defined network and cannot be removed")
        users = self.attached(doc)
        if users:
            raise Forbidden(f"error while removing network: network {doc['Name']} id "
                            f"{doc['Id']} has active endpoints")

    # --- who is on it -----------------------------------------------------------------------

    def attached(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """Running containers with an endpoint on this network."""
        out = []
        for c in self.container_docs():
            ep = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get(doc["Name"])
            if ep is not None and c["State"]["Running"] and ep.get("EndpointID"):
                out.append(c)
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        doc = self.get(ref)
        out = public(doc)
        out["Containers"] = {}
        for c in self.attached(doc):
            ep = c["NetworkSettings"]["Networks"][doc["Name"]]
            out["Containers"][c["Id"]] = {
                "Name": c["Name"].lstrip("/"), "EndpointID": ep.get("EndpointID", ""),
                "MacAddress": ep.get("MacAddress", ""),
                "IPv4Address": (f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
                                if ep.get("IPAddress") else ""),
                "IPv6Address": (f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                                if ep.get("GlobalIPv6Address") else "")}
        return out

    def listing(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        known = ("driver", "id", "label", "name", "scope", "type", "dangling")
        for key in filters:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
        with self.lock:
            docs = list(self.nets.values())
        out = []
        for doc in docs:
            if self._matches(doc, filters):
                entry = public(doc)
                entry["Containers"] = {}
                out.append(entry)
        return sorted(out, key=lambda d: (d["Created"], d["Name"]))

    def _matches(self, doc: dict[str, Any], f: dict[str, list[str]]) -> bool:
        if f.get("driver") and doc["Driver"] not in f["driver"]:
            return False
        if f.get("id") and not any(doc["Id"].startswith(i) for i in f["id"]):
            return False
        if f.get("name") and not any(n in doc["Name"] for n in f["name"]):
            return False
        if f.get("scope") and "local" not in f["scope"]:
            return False
        if f.get("type"):
            kind = "builtin" if doc["Name"] in PREDEFINED else "custom"
            if kind not in f["type"]:
                return False
        for spec in f.get("label") or []:
            k, eq, v = spec.partition("=")
            labels = doc.get("Labels") or {}
            if k not in labels or (eq and labels[k] != v):
                return False
        if f.get("dangling"):
            want = f["dangling"][-1] in ("1", "true")
            dangling = doc["Name"] not in PREDEFINED and not self.referenced(doc)
            if dangling != want:
                return False
        return True

    def referenced(self, doc: dict[str, Any]) -> bool:
        """Any container (running or not) names this network."""
        for c in self.container_docs():
            if doc["Name"] in ((c.get("NetworkSettings") or {}).get("Networks") or {}):
                return True
        return False

    def prunable(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        out = []
        with self.lock:
            docs = list(self.nets.values())
        for doc in docs:
            if doc["Name"] in PREDEFINED or self.attached(doc):
                continue
            labels = doc.get("Labels") or {}
            if any(not _label_ok(labels, s) for s in filters.get("label") or []):
                continue
            if any(_label_ok(labels, s) for s in filters.get("label!") or []):
                continue
            until = (filters.get("until") or [""])[-1]
            if until and logfile.parse_time(doc["Created"]) > _until(until):
                continue
            out.append(doc)
        return out


def _label_ok(labels: dict[str, str], spec: str) -> bool:
    k, eq, v = spec.partition("=")
    return k in labels and (not eq or labels[k] == v)


def _until(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return logfile.parse_time(text)
    except (ValueError, PalletError):
        raise InvalidArgument(f"invalid until filter: {text}") from None


def _new_doc(name: str, driver: str, configs: list[dict[str, Any]], *,
             options: dict[str, str], bridge: str, nid: str = "",
             labels: dict[str, str] | None = None, ipv6: bool = False,
             internal: bool = False, attachable: bool = False) -> dict[str, Any]:
    return {
        "Name": name, "Id": nid or secrets.token_hex(32), "Created": _now(),
        "Scope": "local", "Driver": driver, "EnableIPv6": ipv6,
        "IPAM": {"Driver": "default", "Options": None, "Config": configs},
        "Internal": internal, "Attachable": attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
        "Options": options, "Labels": labels or {}, "_bridge": bridge,
    }
