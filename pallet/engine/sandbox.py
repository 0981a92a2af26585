"""A container on its networks: netns, veths, addresses, published ports, DNS.

At start a container on bridge networks, or on none, gets a network namespace of its own,
bind-mounted under <exec_root>/netns (made ahead: netnspool.py; the OCI config joins it
by path) with its loopback up; on bridge networks one veth per network with an
address from the network's pool, its published ports in the firewall table and, on
user-defined networks, a resolver at 127.0.0.11. At exit all of it goes again. The
addresses, veth names and ports are kept in the container's record
(NetworkSettings.Networks; fields starting with "_" are pallet's own), so a palletd that
was killed finds, after its restart, what to serve and what to take down.

    start:  pool.take -> links.attach (per network) -> firewall -> DNS listeners
    exit:   DNS off -> links.detach -> netns.remove -> firewall

The resolver at 127.0.0.11 is Sandboxes' part in sandboxdns.py.

Lock order: the container service's lock, then NetworkService.lock.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pallet.engine.config import DaemonConfig
from pallet.engine.netnspool import NetnsPool
from pallet.engine.networks import ICC_OPT, MASQ_OPT, MTU_OPT, PREDEFINED, NetworkService
from pallet.engine.sandboxdns import SandboxDns
from pallet.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    PalletError,
)
from pallet.network import ports as portmap

if TYPE_CHECKING:
    from pallet.network.dns import DnsServer

log = logging.getLogger("palletd")



def mode_of(hc: dict[str, Any]) -> str:
    """NetworkMode as a network name: "default" is the bridge network."""
    mode = str(hc.get("NetworkMode") or "default")
    return "bridge" if mode == "default" else mode


def empty_endpoint(cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = cfg or {}
    return {"IPAMConfig": cfg.get("IPAMConfig") or None, "Links": cfg.get("Links") or None,
            "Aliases": cfg.get("Aliases") or None, "MacAddress": "", "DriverOpts":
            cfg.get("DriverOpts") or None, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
            "_mac": str(cfg.get("MacAddress") or "")}


def public_endpoint(ep: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ep.items() if not k.startswith("_")}


class Sandboxes(SandboxDns):
    def __init__(self, cfg: DaemonConfig, nets: NetworkService) -> None:
        self.cfg = cfg
        self.nets = nets
        self.netns_dir = os.path.join(cfg.exec_root, "netns")
        self.pool = NetnsPool(self.netns_dir)
        self._fw: str | None = None  # the ruleset last applied
        self._dns: DnsServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- create -----------------------------------------------------------------------------

    def settings_at_create(self, cfg: dict[str, Any], hc: dict[str, Any],
                           networking: dict[str, Any] | None) -> dict[str, Any]:
        """NetworkSettings of a new container: the networks it will join, nothing yet
        allocated. Unknown networks are reported at start, as dockerd does."""
        mode = mode_of(hc)
        eps = {("bridge" if k == "default" else k): v
               for k, v in ((networking or {}).get("EndpointsConfig") or {}).items()}
        networks: dict[str, Any] = {}
        if not mode.startswith("container:"):
            if mode in ("host", "none") and any(k != mode for k in eps):
                raise InvalidArgument(f"container cannot be connected to other networks "
                                      f"with network mode {mode}")
            first = eps.pop(mode, None)
            net = self.nets.find(mode)
            key = net["Name"] if net is not None else mode
            networks[key] = empty_endpoint(first)
            for name, ep in eps.items():
                other = self.nets.find(name)
                networks[other["Name"] if other is not None else name] = empty_endpoint(ep)
        if hc.get("Links") and mode not in ("bridge", "host", "none") and mode in networks:
            networks[mode]["Links"] = list(hc["Links"])
        if cfg.get("MacAddress") and networks:
            next(iter(networks.values()))["_mac"] = str(cfg["MacAddress"])
        for ep in networks.values():
            if ep["_mac"]:
                from pallet.network import ipam

                ep["_mac"] = ipam.parse_mac(ep["_mac"])
            for addr in ("IPv4Address", "IPv6Address"):
                want = (ep["IPAMConfig"] or {}).get(addr)
                if want:
                    try:
                        ipaddress.ip_address(want)
                    except ValueError:
                        raise InvalidArgument(f"invalid IP address: {want}") from None
        portmap.wanted(hc.get("PortBindings"), (cfg.get("ExposedPorts") or {}).keys(),
                       bool(hc.get("PublishAllPorts")))  # validates
        return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
                "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                "Networks": networks}

    # --- start / exit -----------------------------------------------------------------------

    def up(self, doc: dict[str, Any]) -> str | None:
        """Make the container's sandbox; the netns path for its OCI config, or None when
        the runtime makes (none) or joins (host, container:) the namespace."""
        ns = doc.setdefault("NetworkSettings", {"Networks": {}})
        hc = doc["HostConfig"]
        mode = mode_of(hc)
        if mode.startswith("container:") or mode == "host":
            if mode == "host":
                self._fill_builtin(doc, "host")
            return None
        net = self.nets.get(mode)  # NotFound at start, as dockerd
        if net["Driver"] == "host":
            raise InvalidArgument("host network: use --network host")
        path = self.pool.take()  # with its loopback up, as dockerd's "none" has it too
        ns.update(SandboxKey=path, SandboxID=secrets.token_hex(32))
        if net["Driver"] == "null":
            self._fill_builtin(doc, net["Name"])
            return path
        try:
            default_set = False
            for i, name in enumerate(list(ns["Networks"])):
                other = self.nets.get(name)
                if other["Driver"] != "bridge":
                    raise Forbidden(f"container cannot be connected to network {name} "
                                    f"(driver {other['Driver']}) and {mode} at once")
                route = not default_set and not other["Internal"]
                self._attach(doc, other, ns["Networks"][name], f"eth{i}", path, route)
                default_set = default_set or route
            self._publish(doc)
            self._firewall()
            if self.wants_dns(doc):
                self._dns_on(doc, path)
        except BaseException:
            self.down(doc)
            raise
        return path

    def _fill_builtin(self, doc: dict[str, Any], name: str) -> None:
        net = self.nets.get(name)
        ep = doc["NetworkSettings"]["Networks"].setdefault(name, empty_endpoint())
        ep.update(NetworkID=net["Id"], EndpointID=secrets.token_hex(32))
        self.nets.event(net, "connect", container=doc["Id"])

    def down(self, doc: dict[str, Any]) -> None:
        """Take the sandbox down; never raises (it runs on every exit path)."""
        ns = doc.get("NetworkSettings") or {}
        had_ports = bool(ns.get("_published"))
        self._dns_off(doc["Id"])
        # With the netns going too, the kernel deletes its veths (see links.release).
        gone = _links().release if ns.get("SandboxKey") else _links().detach
        for name, ep in (ns.get("Networks") or {}).items():
            if ep.get("_if"):
                self._quietly(gone, ep["_if"])
            net = self.nets.find(name)
            if ep.get("EndpointID") and net is not None:
                self.nets.event(net, "disconnect", container=doc["Id"])
            _clear(ep)
        if ns.get("SandboxKey"):
            from pallet.linux import netns

            self._quietly(netns.remove, ns["SandboxKey"])
        ns.update(SandboxKey="", SandboxID="", Ports={}, _published=[])
        if had_ports:
            self._quietly(self._firewall)

    def _quietly(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except (OSError, PalletError) as exc:
            log.warning("network teardown: %s: %s", getattr(fn, "__name__", fn), exc)

    def _attach(self, doc: dict[str, Any], net: dict[str, Any], ep: dict[str, Any],
                dev: str, path: str, route: bool) -> None:
        from pallet.network import ipam

        want = ep.get("IPAMConfig") or {}
        addrs: list[str] = []
        gateways: list[str] = []
        with self.nets.lock:
            ep.update(NetworkID=net["Id"], EndpointID=secrets.token_hex(32))
            for c in net["IPAM"]["Config"] or []:
                subnet = ipaddress.ip_network(c["Subnet"])
                key = "IPv4Address" if subnet.version == 4 else "IPv6Address"
                used = self._used(net["Name"], subnet.version)
                prefer = ipaddress.ip_address(want[key]) if want.get(key) else None
                rng = ipaddress.ip_network(c["IPRange"]) if c.get("IPRange") else None
                gw = ipaddress.ip_address(c["Gateway"])
                ip = ipam.allocate(subnet, rng, gw, used, prefer)
                addrs.append(f"{ip}/{subnet.prefixlen}")
                if subnet.version == 4 and not ep["IPAddress"]:
                    ep.update(IPAddress=str(ip), IPPrefixLen=subnet.prefixlen,
                              Gateway=str(gw))
                    if route:
                        gateways.append(str(gw))
                elif subnet.version == 6 and not ep["GlobalIPv6Address"]:
                    ep.update(GlobalIPv6Address=str(ip), GlobalIPv6PrefixLen=subnet.prefixlen,
                              IPv6Gateway=str(gw))
                    if route:
                        gateways.append(str(gw))
            v4 = ipaddress.ip_address(ep["IPAddress"]) if ep["IPAddress"] else None
            mac = ep.get("_mac") or (ipam.mac_for(v4) if isinstance(v4, ipaddress.IPv4Address)
                                     else _random_mac())
            ep["MacAddress"] = mac
            host_if = f"pveth{secrets.token_hex(4)}"
            ep.update(_if=host_if, _dev=dev)
        hc = doc["HostConfig"]
        mtu = int((net.get("Options") or {}).get(MTU_OPT) or 0) or None
        try:
            _links().attach(path, net["_bridge"], host_if, dev, addrs, gateways, mac=mac,
                            mtu=mtu)
            if hc.get("NetworkIngressRate") or hc.get("NetworkEgressRate"):
                # HostConfig keeps bytes per second, as docker's device rates; tc bits
                _links().set_rates(host_if, 8 * int(hc.get("NetworkIngressRate") or 0) or None,
                                   8 * int(hc.get("NetworkEgressRate") or 0) or None)
        except BaseException:
            self._quietly(_links().detach, host_if)
            ep.pop("_if", None)
            _clear(ep)
            raise
        names = [doc["Name"].lstrip("/"), doc["Id"][:12], *(ep.get("Aliases") or [])]
        ep["DNSNames"] = names if net["Name"] not in PREDEFINED else None
        self.nets.event(net, "connect", container=doc["Id"])

    def _used(self, network: str, version: int) -> set[Any]:
        out: set[Any] = set()
        for c in self.nets.container_docs():
            ep = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get(network)
            if ep is None or not ep.get("EndpointID"):
                continue
            key = "IPAddress" if version == 4 else "GlobalIPv6Address"
            if ep.get(key):
                out.add(ipaddress.ip_address(ep[key]))
        return out

    # --- published ports --------------------------------------------------------------------

    def _publish(self, doc: dict[str, Any]) -> None:
        cfg, hc, ns = doc["Config"], doc["HostConfig"], doc["NetworkSettings"]
        exposed = list((cfg.get("ExposedPorts") or {}).keys())
        want = portmap.wanted(hc.get("PortBindings"), exposed, bool(hc.get("PublishAllPorts")))
        exposed += [f"{w.container_port}/{w.proto}" for w in want]
        if not want:
            ns["Ports"] = portmap.settings([], exposed)
            ns["_published"] = []
            return
        with self.nets.lock:
            taken = [portmap.Published(**p) for c in self.nets.container_docs()
                     if c["Id"] != doc["Id"]
                     for p in (c.get("NetworkSettings") or {}).get("_published") or []]
            try:
                chosen = portmap.choose(want, taken, _host_port_free)
            except Conflict as exc:
                first: dict[str, Any] = next(iter(ns["Networks"].values()), {})
                ep_id = first.get("EndpointID", "")
                raise Conflict(f"driver failed programming external connectivity on "
                               f"endpoint {doc['Name'].lstrip('/')} ({ep_id}): {exc}") from None
            ns["_published"] = [p.__dict__ for p in chosen]
            ns["Ports"] = portmap.settings(chosen, exposed)

    # --- firewall ---------------------------------------------------------------------------

    def _firewall(self, force: bool = False) -> None:
        from pallet.network import firewall, nft

        bridges = []
        for net in self.nets.bridges():
            opts = net.get("Options") or {}
            bridges.append(firewall.Bridge(
                name=net["_bridge"], subnets=tuple(c["Subnet"] for c in net["IPAM"]["Config"]),
                internal=bool(net["Internal"]), masquerade=opts.get(MASQ_OPT, "true") != "false",
                icc=opts.get(ICC_OPT, "true") != "false"))
        mapped = []
        for c in self.nets.container_docs():
            ns = c.get("NetworkSettings") or {}
            if not ns.get("_published"):
                continue
            target = _port_endpoint(ns)
            if target is None:
                continue
            found = self.nets.find(target[0])
            if found is None:
                continue
            for p in ns["_published"]:
                mapped.append(firewall.Port(
                    proto=p["proto"], host_ip=p["host_ip"], host_port=p["host_port"],
                    container_ip=target[1], container_port=p["container_port"],
                    bridge=found["_bridge"]))
        script = firewall.ruleset(self.cfg.firewall_table, bridges, mapped)
        with self.nets.lock:
            if script == self._fw and not force:
                return
            nft.apply(script)
            self._fw = script

    # --- connect / disconnect ---------------------------------------------------------------

    def connect(self, doc: dict[str, Any], net: dict[str, Any],
                endpoint: dict[str, Any] | None) -> None:
        ns = doc.setdefault("NetworkSettings", {"Networks": {}})
        mode = mode_of(doc["HostConfig"])
        if mode == "host" or mode.startswith("container:") or net["Driver"] != "bridge":
            raise Forbidden("container sharing network namespace with another container "
                            "or host cannot be connected to any other network"
                            if net["Driver"] == "bridge" else
                            f"container cannot be disconnected from host network or connected "
                            f"to {net['Name']} network")
        if mode == "none":
            raise Forbidden("container cannot be connected to multiple networks with one of "
                            "the networks in private (none) mode")
        if net["Name"] in ns["Networks"]:
            raise Forbidden(f"endpoint with name {doc['Name'].lstrip('/')} already exists in "
                            f"network {net['Name']}")
        ep = empty_endpoint(endpoint)
        if ep["_mac"]:
            from pallet.network import ipam

            ep["_mac"] = ipam.parse_mac(ep["_mac"])
        ns["Networks"][net["Name"]] = ep
        if not doc["State"]["Running"]:
            return
        devs = {e.get("_dev") for e in ns["Networks"].values()}
        dev = next(f"eth{i}" for i in range(len(devs) + 1) if f"eth{i}" not in devs)
        try:
            # the default route stays where it is, as dockerd's connect leaves it
            self._attach(doc, net, ep, dev, ns["SandboxKey"], False)
            if self.wants_dns(doc) and (self._dns is None or
                                         doc["Id"] not in set(self._dns.keys())):
                self._dns_on(doc, ns["SandboxKey"])
        except BaseException:
            if ep.get("_if"):
                self._quietly(_links().detach, ep["_if"])
            ns["Networks"].pop(net["Name"], None)
            raise

    def disconnect(self, doc: dict[str, Any], net: dict[str, Any]) -> None:
        ns = doc.get("NetworkSettings") or {}
        ep = (ns.get("Networks") or {}).get(net["Name"])
        if ep is None:
            raise Forbidden(f"container {doc['Id']} is not connected to network {net['Name']}")
        if net["Driver"] in ("host", "null") and doc["State"]["Running"]:
            raise Forbidden(f"container cannot be disconnected from {net['Name']} network")
        if ep.get("_if"):
            _links().detach(ep["_if"])
        del ns["Networks"][net["Name"]]
        if ns.get("_published") and _port_endpoint(ns) is None:
            ns["_published"] = []
            ns["Ports"] = {}
            self._firewall()

    # --- palletd start ----------------------------------------------------------------------

    def restore(self) -> None:
        """Make every recorded bridge exist and the firewall match the records (a host
        reboot or a killed palletd leaves either out of date)."""
        from pallet.network import routes

        try:
            mount_net_cls()
        except OSError as exc:
            log.warning("net_cls: %s (--net-cls-classid will not work)", exc)
        self.nets.ensure_predefined(routes.host_routes())
        for net in self.nets.bridges():
            addrs = [f"{c['Gateway']}/{ipaddress.ip_network(c['Subnet']).prefixlen}"
                     for c in net["IPAM"]["Config"]]
            mtu = int((net.get("Options") or {}).get(MTU_OPT) or 0) or None
            _links().ensure_bridge(net["_bridge"], addrs, mtu)
        self._firewall(force=True)

    def resume(self, docs: list[dict[str, Any]]) -> None:
        """After the containers are reconciled: DNS for the running ones again, and the
        netns of any container that is no longer running removed."""
        from pallet.linux import netns

        running = {d["Id"] for d in docs if d["State"]["Running"]}
        held = self.pool.spares() | {(d.get("NetworkSettings") or {}).get("SandboxKey")
                                     for d in docs if d["Id"] in running}
        for d in docs:
            ns = d.get("NetworkSettings") or {}
            if d["Id"] in running and ns.get("SandboxKey") and self.wants_dns(d):
                try:
                    self._dns_on(d, ns["SandboxKey"])
                except (OSError, PalletError) as exc:
                    log.warning("DNS for %s: %s", d["Id"][:12], exc)
        try:
            entries = os.listdir(self.netns_dir)
        except FileNotFoundError:
            entries = []
        for name in entries:
            if os.path.join(self.netns_dir, name) not in held:
                self._quietly(netns.remove, os.path.join(self.netns_dir, name))

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        from pallet.network import routes

        doc = self.nets.create(body, routes.host_routes())
        addrs = [f"{c['Gateway']}/{ipaddress.ip_network(c['Subnet']).prefixlen}"
                 for c in doc["IPAM"]["Config"]]
        mtu = int((doc.get("Options") or {}).get(MTU_OPT) or 0) or None
        try:
            _links().ensure_bridge(doc["_bridge"], addrs, mtu)
            self._firewall()
        except BaseException:
            self._quietly(_links().remove_bridge, doc["_bridge"])
            self.nets.forget(doc)
            raise
        return doc

    def remove_network(self, ref: str) -> None:
        doc = self.nets.get(ref)
        self.nets.check_removable(doc)
        if doc["Driver"] == "bridge":
            _links().remove_bridge(doc["_bridge"])
        self.nets.forget(doc)
        if doc["Driver"] == "bridge":
            self._quietly(self._firewall)

    def teardown_all(self) -> None:
        """Everything of this daemon's networking (tests and `palletd-service stop --all`)."""
        from pallet.linux import netns
        from pallet.network import firewall, nft

        for name in os.listdir(self.netns_dir) if os.path.isdir(self.netns_dir) else ():
            self._quietly(netns.remove, os.path.join(self.netns_dir, name))
        for net in self.nets.bridges():
            self._quietly(_links().remove_bridge, net["_bridge"])
        self._quietly(nft.apply, firewall.teardown(self.cfg.firewall_table))
        self._fw = None

    async def close(self) -> None:
        await asyncio.to_thread(self.pool.close)
        if self._dns is not None:
            await self._dns.close()


def _clear(ep: dict[str, Any]) -> None:
    for key in ("_if", "_dev"):
        ep.pop(key, None)
    ep.update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0, IPv6Gateway="",
              GlobalIPv6Address="", GlobalIPv6PrefixLen=0, MacAddress="", DNSNames=None)


def _port_endpoint(ns: dict[str, Any]) -> tuple[str, str] | None:
    """(network, address) published ports forward to: the first network with an IPv4
    address."""
    for name, ep in (ns.get("Networks") or {}).items():
        if ep.get("IPAddress"):
            return name, str(ep["IPAddress"])
    return None


def _host_port_free(proto: str, ip: str, port: int) -> bool:
    """Nothing on the host listens there (a DNAT rule would hide it)."""
    if proto == "sctp":
        return True
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError:
            return False
    return True


def _random_mac() -> str:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def _links() -> Any:
    from pallet.network import links

    return links



def mount_net_cls(root: str = "/sys/fs/cgroup") -> None:
    """Mount the v1 net_cls,net_prio hierarchy where the kernel has the controllers and
    nothing mounted them (as systemd does on v1 and hybrid hosts), so that
    --net-cls-classid can tag containers' packets for the host's traffic control. Before
    the monitor starts: it reads the cgroup layout once."""
    from pallet.linux import mount as mnt
    from pallet.runtime.cgroups import parse_mountinfo

    with open("/proc/self/mountinfo") as f:
        layout = parse_mountinfo(f.read(), root)
    if layout.mode == "v2" or "net_cls" in layout.v1_controllers():
        return
    with open("/proc/cgroups") as f:
        have = {ln.split()[0] for ln in f if not ln.startswith("#") and ln.split()[3:4] == ["1"]}
    wanted = [c for c in ("net_cls", "net_prio") if c in have
              and c not in layout.v1_controllers()]
    if "net_cls" not in wanted:
        return
    target = os.path.join(root, ",".join(wanted))
    os.makedirs(target, exist_ok=True)
    mnt.mount("cgroup", target, "cgroup", mnt.MS_NOSUID | mnt.MS_NODEV | mnt.MS_NOEXEC,
              ",".join(wanted))
    for c in wanted:
        link = os.path.join(root, c)
        if len(wanted) > 1 and not os.path.lexists(link):
            os.symlink(",".join(wanted), link)
