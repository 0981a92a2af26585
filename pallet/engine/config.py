"""Where palletd keeps things, and the settings it runs with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATA_ROOT = "/var/lib/pallet"
DEFAULT_EXEC_ROOT = "/run/pallet"
DEFAULT_SOCKET = "/run/pallet/pallet.sock"


@dataclass(frozen=True)
class DaemonConfig:
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    hosts: tuple[str, ...] = (f"unix://{DEFAULT_SOCKET}",)
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    debug: bool = False
    cgroup_parent: str = "/pallet"  # containers' cgroups go under it (dockerd: /docker)
    init_path: str = "/usr/bin/tini-static"  # --init's pid 1 (Debian's tini, as docker-init)
    labels: tuple[str, ...] = field(default=())
    bridge: str = "pallet0"  # the default network's bridge (dockerd: docker0)
    bip: str = ""  # its gateway address and prefix; "" = a free default pool
    firewall_table: str = "pallet"  # the nft table pallet's rules live in, and only there
    dns: tuple[str, ...] = ()  # containers' DNS servers; () = the host's resolv.conf

    def path(self, *parts: str) -> str:
        return os.path.join(self.data_root, *parts)
