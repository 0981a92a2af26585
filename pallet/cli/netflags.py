"""run/create's network flags: -p/-P, --network-alias, --ip, --link, rates, net_cls.

-p follows docker's grammar (go-connections nat.ParsePortSpecs):
``[ip:][hostPort[-end]:]containerPort[-end][/proto]``, an IPv6 ip in brackets.
"""

from __future__ import annotations

from pallet.cli.flags import LIST, STR, Flag, UsageError

FLAGS = [
    Flag("-P,--publish-all"), Flag("--network-alias,--net-alias", LIST), Flag("--ip", STR),
    Flag("--ip6", STR), Flag("--mac-address", STR), Flag("--link", LIST),
    Flag("--network-ingress-rate", STR), Flag("--network-egress-rate", STR),
    Flag("--net-cls-classid", STR),
]

RATE_UNITS = {"bit": 1 / 8, "kbit": 1000 / 8, "mbit": 1000**2 / 8, "gbit": 1000**3 / 8,
              "bps": 1, "kbps": 1000, "mbps": 1000**2, "gbps": 1000**3}


def _range(text: str, spec: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if dash else a
    except ValueError:
        raise UsageError(f"invalid containerPort: {text}" if spec == "c"
                         else f"invalid hostPort: {text}") from None
    if not (0 < a <= b < 65536):
        raise UsageError(f"invalid port range: {text}")
    return a, b


def parse_publish(spec: str) -> list[tuple[str, str, str, str]]:
    """(container port, proto, host ip, host port) for each port ``spec`` names."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid proto: {proto}")
    ip = ""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise UsageError(f"invalid IP address: {rest}")
        ip, rest = rest[1:end], rest[end + 1:].lstrip(":")
    parts = rest.split(":")
    if len(parts) == 3:
        ip, host, cont = parts
    elif len(parts) == 2:
        host, cont = parts
    elif len(parts) == 1:
        host, cont = "", parts[0]
    else:
        raise UsageError(f"invalid port format: {spec}")
    if not cont:
        raise UsageError(f"no port specified: {spec}<empty>")
    c_lo, c_hi = _range(cont, "c")
    if not host:
        return [(str(p), proto, ip, "") for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _range(host, "h")
    if c_lo == c_hi and h_lo != h_hi:
        return [(str(c_lo), proto, ip, f"{h_lo}-{h_hi}")]  # any free one in the range
    if h_hi - h_lo != c_hi - c_lo:
        raise UsageError(f"invalid ranges specified for container and host Ports: "
                         f"{cont} and {host}")
    return [(str(c_lo + i), proto, ip, str(h_lo + i)) for i in range(c_hi - c_lo + 1)]


def parse_rate(text: str, flag: str) -> int:
    """``10mbit``, ``1mbps``, ``500kbit`` (tc's units) -> bytes per second."""
    raw = text.strip().lower()
    num = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(num):] or "bps"
    try:
        value = float(num) * RATE_UNITS[unit]
    except (KeyError, ValueError):
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: use a rate like '
                         "10mbit or 1mbps") from None
    if value < 1:
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: too small')
    return int(value)


def parse_classid(text: str) -> int:
    """``0x100001`` or tc's ``10:1`` (hex major:minor) -> the net_cls class id."""
    try:
        if ":" in text:
            major, _, minor = text.partition(":")
            return (int(major, 16) << 16) | int(minor, 16)
        return int(text, 0)
    except ValueError:
        raise UsageError(f'invalid argument "{text}" for "--net-cls-classid" flag') from None


def apply(g: dict[str, object], body: dict[str, object], hc: dict[str, object]) -> None:
    """Fill the create body from the network flags in ``g``."""
    exposed = dict(body.get("ExposedPorts") or {})  # type: ignore[call-overload]
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in g["publish"] or []:  # type: ignore[attr-defined]
        for cport, proto, ip, hport in parse_publish(str(spec)):
            key = f"{cport}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hport})
    body["ExposedPorts"] = exposed or None
    hc["PortBindings"] = bindings
    hc["PublishAllPorts"] = bool(g["publish_all"])
    hc["Links"] = list(g["link"] or []) or None  # type: ignore[call-overload]
    for flag, key in (("network_ingress_rate", "NetworkIngressRate"),
                      ("network_egress_rate", "NetworkEgressRate")):
        if g[flag]:
            hc[key] = parse_rate(str(g[flag]), "--" + flag.replace("_", "-"))
    if g["net_cls_classid"]:
        hc["NetClsClassid"] = parse_classid(str(g["net_cls_classid"]))
    mode = str(g["network"] or "default")
    endpoint: dict[str, object] = {}
    ipam = {k: str(g[f]) for f, k in (("ip", "IPv4Address"), ("ip6", "IPv6Address"))
            if g[f]}
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if g["network_alias"]:
        endpoint["Aliases"] = list(g["network_alias"])  # type: ignore[call-overload]
    if g["mac_address"]:
        endpoint["MacAddress"] = str(g["mac_address"])
    if endpoint:
        builtin = mode in ("default", "bridge", "host", "none") or mode.startswith("container:")
        if builtin and (ipam or g["network_alias"]):
            raise UsageError("user specified IP address and network-scoped aliases are "
                             "supported only for user-defined networks")
        body["NetworkingConfig"] = {"EndpointsConfig": {
            "bridge" if mode == "default" else mode: endpoint}}


def display_ports(ports: list[dict[str, object]]) -> str:
    """docker ps's PORTS column: ``0.0.0.0:8080->80/tcp, 443/tcp``, runs of consecutive
    ports folded into ranges as docker folds them."""
    groups: dict[tuple[str, str, bool], list[tuple[int, int]]] = {}
    for p in ports:
        public = int(str(p.get("PublicPort") or 0))
        key = (str(p.get("IP") or ""), str(p.get("Type") or "tcp"), bool(public))
        groups.setdefault(key, []).append((int(str(p["PrivatePort"])), public))
    out = []
    for (ip, proto, published), pairs in sorted(groups.items()):
        pairs.sort()
        runs: list[list[tuple[int, int]]] = []
        for pair in pairs:
            last = runs[-1][-1] if runs else None
            if last and pair[0] == last[0] + 1 and (not published or pair[1] == last[1] + 1):
                runs[-1].append(pair)
            else:
                runs.append([pair])
        for run in runs:
            priv = f"{run[0][0]}" if len(run) == 1 else f"{run[0][0]}-{run[-1][0]}"
            if published:
                pub = f"{run[0][1]}" if len(run) == 1 else f"{run[0][1]}-{run[-1][1]}"
                host = f"[{ip}]" if ":" in ip else ip
                out.append(f"{host}:{pub}->{priv}/{proto}")
            else:
                out.append(f"{priv}/{proto}")
    return ", ".join(sorted(out))
