"""IP address management for bridge networks (pure: stdlib ``ipaddress`` only).

Subnets are chosen from Docker's default pools, skipping those that overlap a network
pallet already has or a route of the host; container addresses are handed out first
free from a network's range, as libnetwork's default IPAM does. Error messages keep
dockerd's wording so clients that match on them behave the same.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from pallet.errors import Conflict, InvalidArgument

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address


def split_pool(base: str, size: int) -> tuple[IPv4Network, ...]:
    """``base`` cut into subnets of prefix length ``size``, in address order (dockerd's
    ``default-address-pools`` entries: ``{"base": "10.10.0.0/16", "size": 24}``)."""
    net = ipaddress.ip_network(base)
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"invalid address pool {base}: only IPv4 pools are supported")
    if not net.prefixlen <= size <= 30:
        raise InvalidArgument(f"invalid address pool {base}: size {size} must be between "
                              f"{net.prefixlen} and 30")
    return tuple(net.subnets(new_prefix=size))


# dockerd's built-in pools (libnetwork ipamutils): 172.17-31 as /16s, then 192.168/16 as /20s.
DEFAULT_POOLS: tuple[IPv4Network, ...] = (
    *(IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)),
    *split_pool("192.168.0.0/16", 20),
)

_PREFIX_RE = re.compile(r"^[0-9]{1,3}$")
_MAC_RES = (
    re.compile(r"^([0-9a-fA-F]{2})[:]([0-9a-fA-F]{2})[:]([0-9a-fA-F]{2})[:]"
               r"([0-9a-fA-F]{2})[:]([0-9a-fA-F]{2})[:]([0-9a-fA-F]{2})$"),
    re.compile(r"^([0-9a-fA-F]{2})[-]([0-9a-fA-F]{2})[-]([0-9a-fA-F]{2})[-]"
               r"([0-9a-fA-F]{2})[-]([0-9a-fA-F]{2})[-]([0-9a-fA-F]{2})$"),
    re.compile(r"^([0-9a-fA-F]{2})([0-9a-fA-F]{2})[.]([0-9a-fA-F]{2})([0-9a-fA-F]{2})[.]"
               r"([0-9a-fA-F]{2})([0-9a-fA-F]{2})$"),
)


def _cidr(text: str) -> IPNetwork | None:
    """``text`` as a CIDR block with possibly host bits set (masked), or None when it is
    not in ``address/prefix`` form at all."""
    addr, slash, prefix = text.partition("/")
    if not slash or not _PREFIX_RE.match(prefix) or "%" in addr:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def parse_subnet(s: str) -> IPNetwork:
    """A network's ``--subnet`` (or ``--ip-range``): CIDR notation with no host bits."""
    text = str(s).strip()
    net = _cidr(text)
    if net is None:
        raise InvalidArgument(f"invalid subnet {text}: invalid CIDR block notation")
    if ipaddress.ip_interface(text).ip != net.network_address:
        raise InvalidArgument(f"invalid subnet {text}: it should be {net}")
    return net


def _as_net(subnet: IPNetwork | str) -> IPNetwork:
    return subnet if isinstance(subnet, IPv4Network | IPv6Network) else parse_subnet(subnet)


def _family(net: IPNetwork) -> str:
    return f"IPv{net.version}"


def _too_small(net: IPNetwork) -> bool:
    # a bridge needs a gateway and at least one container address besides the subnet's
    # network (and, for IPv4, broadcast) address
    return net.num_addresses < (4 if net.version == 4 else 3)


def _is_reserved(net: IPNetwork, addr: IPAddress) -> bool:
    """The subnet's network address, and for IPv4 its broadcast address: never handed out."""
    if addr == net.network_address:
        return True
    return net.version == 4 and addr == net.broadcast_address


def check_pool(subnet: IPNetwork | str, gateway: str | None,
               ip_range: str | None) -> tuple[IPAddress, IPNetwork]:
    """Check a network's ``--gateway`` and ``--ip-range`` against its subnet; returns the
    gateway (default: the subnet's first host address) and the range addresses are
    handed out from (default: the whole subnet)."""
    net = _as_net(subnet)
    if _too_small(net):
        raise InvalidArgument(f"invalid subnet {net}: too small for a gateway and a container")
    rng: IPNetwork = net
    if ip_range:
        text = str(ip_range).strip()
        parsed = _cidr(text)
        if parsed is None:
            raise InvalidArgument(f"invalid ip-range {text}: invalid CIDR block notation")
        if parsed.version != net.version:
            raise InvalidArgument(f"invalid ip-range {text}: parent subnet is an "
                                  f"{_family(net)} block")
        if parsed.prefixlen < net.prefixlen:
            raise InvalidArgument(f"invalid ip-range {text}: CIDR block is bigger than its "
                                  f"parent subnet {net}")
        if ipaddress.ip_interface(text).ip != parsed.network_address:
            raise InvalidArgument(f"invalid ip-range {text}: it should be {parsed}")
        if not parsed.subnet_of(net):  # type: ignore[arg-type]  # same family checked above
            raise InvalidArgument(f"invalid ip-range {text}: parent subnet {net} doesn't "
                                  "contain ip-range")
        rng = parsed
    if gateway:
        text = str(gateway).strip()
        try:
            gw = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidArgument(f"invalid gateway {text}: invalid address") from None
        if gw.version != net.version:
            raise InvalidArgument(f"invalid gateway {text}: parent subnet is an "
                                  f"{_family(net)} block")
        if gw not in net:
            raise InvalidArgument(f"invalid gateway {text}: parent subnet {net} doesn't "
                                  "contain this address")
        if _is_reserved(net, gw):
            raise InvalidArgument(f"invalid gateway {text}: it is the network or broadcast "
                                  f"address of {net}")
    else:
        gw = net.network_address + 1
    return gw, rng


def overlapping(subnet: IPNetwork | str, others: Iterable[IPNetwork]) -> IPNetwork | None:
    """The first of ``others`` (same IP family) that shares an address with ``subnet``."""
    net = _as_net(subnet)
    for other in others:
        if other.version == net.version and net.overlaps(other):
            return other
    return None


def choose_subnet(taken: Iterable[IPNetwork], host_routes: Iterable[IPNetwork],
                  pools: Iterable[IPv4Network] = DEFAULT_POOLS) -> IPv4Network:
    """The first pool subnet that overlaps neither a network pallet has nor a route of
    the host (default routes never count: they overlap everything)."""
    busy = [n for n in (*taken, *host_routes) if n.version == 4 and n.prefixlen > 0]
    for candidate in pools:
        if overlapping(candidate, busy) is None:
            return candidate
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among "
                   "the defaults to assign to the network")


def allocate(subnet: IPNetwork | str, ip_range: IPNetwork | str | None,
             gateway: IPAddress | str | None, used: Iterable[IPAddress],
             prefer: IPAddress | str | None = None, *, network: str = "") -> IPAddress:
    """A container's address on a network. ``prefer`` (``--ip``) must lie in the subnet
    (libnetwork checks the subnet, not the ip-range) and be free; otherwise the first
    free address of the range, skipping the subnet's network and broadcast addresses,
    the gateway and every address in ``used``. ``network`` names the network in the
    message given when it is full."""
    net = _as_net(subnet)
    rng = net if ip_range is None else _as_net(ip_range)
    if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
        raise InvalidArgument(f"invalid ip-range {rng}: parent subnet {net} doesn't "
                              "contain ip-range")
    gw = None if gateway is None else ipaddress.ip_address(str(gateway))
    taken = {ipaddress.ip_address(str(a)) for a in used}
    if gw is not None:
        taken.add(gw)
    if prefer is not None and str(prefer) != "":
        try:
            want = ipaddress.ip_address(str(prefer).strip())
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {prefer}") from None
        if want.version != net.version or want not in net:
            raise InvalidArgument(f"requested address is out of range: {want} is not in "
                                  f"{net}")
        if _is_reserved(net, want):
            raise InvalidArgument(f"requested address {want} is the network or broadcast "
                                  f"address of {net}")
        if want in taken:
            raise Conflict("Address already in use")
        return want
    # Walk from the range's start: at most len(taken) + 2 steps find a free address, so
    # even an IPv6 /64 range costs nothing until it is actually full.
    for offset in range(rng.num_addresses):
        addr = rng.network_address + offset
        if addr not in taken and not _is_reserved(net, addr):
            return addr
    where = f": {network}" if network else ""
    raise Conflict(f"no available {_family(net)} addresses on this network's address "
                   f"pools{where}")


def mac_for(ip: IPv4Address) -> str:
    """dockerd's (20.10) MAC address for a container's IPv4 address: 02:42 then its bytes."""
    if not isinstance(ip, IPv4Address):
        raise InvalidArgument(f"a MAC address is derived from an IPv4 address, not {ip}")
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def parse_mac(s: str) -> str:
    """A ``--mac-address``: six bytes written ``aa:bb:..``, ``aa-bb-..`` or ``aabb.ccdd.eeff``;
    returned lower-case with colons."""
    text = str(s).strip()
    for pattern in _MAC_RES:
        m = pattern.match(text)
        if m:
            return ":".join(m.groups()).lower()
    raise InvalidArgument(f"{text} is not a valid mac address")
