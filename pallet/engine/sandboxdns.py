"""The resolver at 127.0.0.11 of containers on user-defined networks: Sandboxes' part,
kept apart. One DnsServer (network/dns.py) serves every container from palletd's
event loop; each container gets listeners in its own network namespace, and its
queries are answered from the container records: names, aliases, short ids,
``name.network`` and legacy links of the containers on its networks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pallet.engine.networks import PREDEFINED

if TYPE_CHECKING:
    from pallet.engine.config import DaemonConfig
    from pallet.engine.networks import NetworkService
    from pallet.network.dns import DnsServer


class SandboxDns:
    if TYPE_CHECKING:  # what Sandboxes brings
        cfg: DaemonConfig
        nets: NetworkService
        loop: asyncio.AbstractEventLoop | None
        _dns: DnsServer | None

    def wants_dns(self, doc: dict[str, Any]) -> bool:
        return any(name not in PREDEFINED
                   for name in (doc.get("NetworkSettings") or {}).get("Networks") or {})

    def _dns_on(self, doc: dict[str, Any], path: str) -> None:
        loop = self.loop
        if loop is None:
            return
        from pallet.network import dns

        if self._dns is None:
            self._dns = dns.DnsServer(list(self.cfg.dns) or None)
        udp, tcp = dns.open_listeners(path)
        cid = doc["Id"]
        # only internal networks: names outside are not asked for (as dockerd)
        nets = [self.nets.find(n) for n in doc["NetworkSettings"]["Networks"]]
        forward = any(n is not None and not n["Internal"] for n in nets)
        own = [str(d) for d in doc["HostConfig"].get("Dns") or []]  # as dockerd: ExtDNS
        asyncio.run_coroutine_threadsafe(
            self._dns.add(cid, udp, tcp, self._lookup(cid), self._reverse(cid),
                          forward=forward, upstreams=own or None,
                          ndots_set=dns.ndots_set(doc["HostConfig"].get("DnsOptions") or [])),
            loop)

    def _dns_off(self, cid: str) -> None:
        if self._dns is not None and self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._dns.remove(cid), self.loop)

    def _peers(self, cid: str) -> tuple[dict[str, Any] | None,
                                        list[tuple[str, dict[str, Any], dict[str, Any]]]]:
        """The container's own doc, and (network, container doc, its endpoint) for
        everyone on its user-defined networks, itself included: one pass over the
        containers per query."""
        docs = {c["Id"]: c for c in self.nets.container_docs()}
        me = docs.get(cid)
        if me is None:
            return None, []
        mine = [n for n in (me.get("NetworkSettings") or {}).get("Networks") or {}
                if n not in PREDEFINED]
        out = []
        for c in docs.values():
            eps = (c.get("NetworkSettings") or {}).get("Networks") or {}
            for n in mine:
                ep = eps.get(n)
                if ep is not None and ep.get("EndpointID") and c["State"].get("Running", True):
                    out.append((n, c, ep))
        return me, out

    def _lookup(self, cid: str) -> Callable[[str], list[str]]:
        def lookup(name: str) -> list[str]:
            name = name.lower().rstrip(".")
            me, peers = self._peers(cid)
            links: dict[str, str] = {}
            for ep in (((me or {}).get("NetworkSettings") or {}).get("Networks") or {}).values():
                for link in ep.get("Links") or []:
                    target, _, alias = str(link).partition(":")
                    links[(alias or target).lower()] = target.lstrip("/").lower()
            name = links.get(name, name)
            out: list[str] = []
            for net, c, ep in peers:
                names = {c["Name"].lstrip("/").lower(), c["Id"][:12]}
                names.update(a.lower() for a in ep.get("Aliases") or [])
                if name in names or name in {f"{n}.{net.lower()}" for n in names}:
                    for key in ("IPAddress", "GlobalIPv6Address"):
                        if ep.get(key) and ep[key] not in out:
                            out.append(ep[key])
            return out
        return lookup

    def _reverse(self, cid: str) -> Callable[[str], str | None]:
        def reverse(ip: str) -> str | None:
            for net, c, ep in self._peers(cid)[1]:
                if ip in (ep.get("IPAddress"), ep.get("GlobalIPv6Address")):
                    return f"{c['Name'].lstrip('/')}.{net}"
            return None
        return reverse
