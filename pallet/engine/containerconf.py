"""What a container is made of, before it runs: the config merged over the image's, the
host config checked, its user, devices and block devices resolved in its image and on
the host, and its /etc/hosts and resolv.conf text (pure, or reading only the files
they name)."""

from __future__ import annotations

import os
from typing import Any

from pallet.engine import ocispec
from pallet.errors import InvalidArgument


def merge_config(body: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's fields over the image's, as dockerd merges."""
    cfg = {k: body.get(k) for k in (
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
        "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
        "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
        "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")}
    for key in ("Hostname", "Domainname", "User", "WorkingDir"):
        cfg[key] = cfg[key] or ""
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce"):
        cfg[key] = bool(cfg[key])
    env = list(image.get("Env") or [])
    for e in cfg["Env"] or []:
        key = e.partition("=")[0]
        env = [x for x in env if x.partition("=")[0] != key]
        env.append(e)
    cfg["Env"] = env
    if isinstance(cfg["Cmd"], str):
        cfg["Cmd"] = [cfg["Cmd"]]
    if isinstance(cfg["Entrypoint"], str):
        cfg["Entrypoint"] = [cfg["Entrypoint"]]
    if cfg["Entrypoint"] is None or cfg["Entrypoint"] == []:
        explicit_empty = body.get("Entrypoint") == [] or body.get("Entrypoint") == ""
        cfg["Entrypoint"] = None if explicit_empty else image.get("Entrypoint")
        if not cfg["Cmd"]:
            cfg["Cmd"] = image.get("Cmd")
    if not cfg["WorkingDir"]:
        cfg["WorkingDir"] = image.get("WorkingDir") or ""
    if not cfg["User"]:
        cfg["User"] = image.get("User") or ""
    labels = dict(image.get("Labels") or {})
    labels.update(cfg["Labels"] or {})
    cfg["Labels"] = labels
    ports = dict(image.get("ExposedPorts") or {})
    ports.update(cfg["ExposedPorts"] or {})
    cfg["ExposedPorts"] = ports or None
    if not cfg["StopSignal"] and image.get("StopSignal"):
        cfg["StopSignal"] = image["StopSignal"]
    if not cfg["Healthcheck"] and image.get("Healthcheck"):
        cfg["Healthcheck"] = image["Healthcheck"]
    if not cfg["Volumes"] and image.get("Volumes"):
        cfg["Volumes"] = image["Volumes"]
    if not cfg["OnBuild"] and image.get("OnBuild"):
        cfg["OnBuild"] = image["OnBuild"]
    return {k: v for k, v in cfg.items()
            if v is not None or k in ("Cmd", "Entrypoint", "Volumes", "OnBuild", "Image")}


def check_host_config(hc: dict[str, Any]) -> None:
    for key in ("Memory", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
                "CpuQuota", "ShmSize", "BlkioWeight"):
        value = hc.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"invalid {key}: {value!r}")
    mem = int(hc.get("Memory") or 0)
    if mem and mem < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = int(hc.get("MemorySwap") or 0)
    if mem and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    if swap and not mem and swap != -1:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    if hc.get("NanoCpus") and (hc.get("CpuPeriod") or hc.get("CpuQuota")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be "
                              "set")
    if hc.get("NanoCpus") and int(hc["NanoCpus"]) > (os.cpu_count() or 1) * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {os.cpu_count()}.00, as there "
                              f"are only {os.cpu_count()} CPUs available")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= int(swappiness) <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range "
                              "is 0-100")
    oom = int(hc.get("OomScoreAdj") or 0)
    if not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is "
                              "[-1000, 1000]")
    policy = (hc.get("RestartPolicy") or {}).get("Name") or "no"
    if policy not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{policy}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")
    if (hc.get("HealthOnFailure") or "none") not in ("none", "kill", "restart", "stop"):
        raise InvalidArgument(f"invalid health-on-failure action: {hc['HealthOnFailure']!r}; "
                              "use one of 'none', 'kill', 'restart', 'stop'")
    if hc.get("AutoRemove") and policy != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    for server in hc.get("Dns") or []:
        if not plain_ip(str(server)):
            raise InvalidArgument(f"{server} is not an ip address")
    for key in ("NetworkIngressRate", "NetworkEgressRate"):
        value = hc.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"invalid {key}: {value!r}")


def resolve_user(rootfs: str, user: str, group_add: list[str]) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary gids of ``user`` (name or number, [:group]) in the image."""
    name, _, group = user.partition(":")
    passwd = _table(os.path.join(rootfs, "etc/passwd"))
    groups = _table(os.path.join(rootfs, "etc/group"))
    uid, gid = 0, 0
    home_name = "root"
    if name:
        if name.isdigit():
            uid = int(name)
            entry = next((e for e in passwd if e[2] == name), None)
            gid = int(entry[3]) if entry else 0
            home_name = entry[0] if entry else ""
        else:
            entry = next((e for e in passwd if e[0] == name), None)
            if entry is None:
                raise InvalidArgument(f"unable to find user {name}: no matching entries in "
                                      "passwd file")
            uid, gid, home_name = int(entry[2]), int(entry[3]), name
    else:
        entry = next((e for e in passwd if e[2] == "0"), None)
        gid = int(entry[3]) if entry else 0
    if group:
        gid = _group_id(groups, group)
    extra = [int(g[2]) for g in groups
             if home_name and home_name in g[3].split(",") and g[2].isdigit()] if name else []
    extra += [_group_id(groups, g) for g in group_add]
    return uid, gid, extra


def _group_id(groups: list[list[str]], group: str) -> int:
    if group.isdigit():
        return int(group)
    entry = next((g for g in groups if g[0] == group), None)
    if entry is None:
        raise InvalidArgument(f"unable to find group {group}: no matching entries in group "
                              "file")
    return int(entry[2])


def _table(path: str) -> list[list[str]]:
    try:
        with open(path, errors="replace") as f:
            return [[*line.rstrip("\n").split(":"), "", "", ""] for line in f
                    if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def host_device(d: dict[str, Any]) -> ocispec.Device:
    """--device /dev/x[:/dev/y[:rwm]] -> the node's numbers (InvalidArgument if none)."""
    import stat

    src = str(d.get("PathOnHost") or "")
    dest = str(d.get("PathInContainer") or src)
    perms = str(d.get("CgroupPermissions") or "rwm")
    try:
        st = os.stat(src)
    except OSError:
        raise InvalidArgument(f"error gathering device information while adding custom "
                              f"device \"{src}\": no such file or directory") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"error gathering device information while adding custom "
                              f"device \"{src}\": not a device node")
    return ocispec.Device(dest, kind, os.major(st.st_rdev), os.minor(st.st_rdev), perms,
                          st.st_mode & 0o777, st.st_uid, st.st_gid)


def host_devices() -> list[ocispec.Device]:
    """Every device node under /dev (for --privileged), as dockerd gives them."""
    out = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in (
            "/dev/pts", "/dev/mqueue", "/dev/shm", "/dev/.lxc", "/dev/.udev")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in ("/dev/console", "/dev/ptmx") or os.path.islink(path):
                continue
            try:
                out.append(host_device({"PathOnHost": path}))
            except InvalidArgument:
                continue
    return out


def block_devices(hc: dict[str, Any]) -> dict[str, tuple[int, int]]:
    import stat

    out = {}
    for key in ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
                "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps"):
        for d in hc.get(key) or []:
            path = str(d.get("Path", ""))
            try:
                st = os.stat(path)
            except OSError:
                raise InvalidArgument(f"{path}: no such file or directory") from None
            if not stat.S_ISBLK(st.st_mode):
                raise InvalidArgument(f"{path} is not a block device")
            out[path] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return out


def cgroupns_default() -> str:
    """Docker's default cgroup namespace mode: private on a pure v2 host, else host."""
    return "private" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "host"


def resolv_conf(hc: dict[str, Any], host_net: bool, embedded: bool = False,
                 daemon_dns: tuple[str, ...] = ()) -> str:
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    servers = [d for d in daemon_dns if plain_ip(d)]
    if servers:  # palletd --dns: the containers' servers instead of the host's
        lines = [ln for ln in lines if not ln.startswith("nameserver")]
        lines += [f"nameserver {d}" for d in servers]
    if embedded:
        # palletd answers at 127.0.0.11 and forwards what is not a container's name
        lines = [ln for ln in lines if ln.startswith(("search", "domain"))]
        lines += ["nameserver 127.0.0.11", "options ndots:0"]
        if hc.get("DnsSearch"):
            lines = [ln for ln in lines if not ln.startswith(("search", "domain"))]
            lines.insert(0, "search " + " ".join(hc["DnsSearch"]))
        if hc.get("DnsOptions"):
            lines.append("options " + " ".join(hc["DnsOptions"]))
        return "\n".join(lines) + "\n"
    if not host_net:
        # A loopback resolver on the host is not reachable from the container's netns.
        lines = [ln for ln in lines
                 if not (ln.startswith("nameserver") and
                         ln.split()[1:2] and ln.split()[1].startswith(("127.", "::1")))]
    if hc.get("Dns"):
        lines = [ln for ln in lines if not ln.startswith("nameserver")]
        lines += [f"nameserver {d}" for d in hc["Dns"]]
    if hc.get("DnsSearch"):
        lines = [ln for ln in lines if not ln.startswith(("search", "domain"))]
        lines.append("search " + " ".join(hc["DnsSearch"]))
    if hc.get("DnsOptions"):
        lines = [ln for ln in lines if not ln.startswith("options")]
        lines.append("options " + " ".join(hc["DnsOptions"]))
    return "\n".join(lines) + "\n"


def plain_ip(text: str) -> bool:
    """An address resolv.conf can name (not ip:port, which only the embedded DNS takes)."""
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""



def link_env(alias: str, parent: str, child: dict[str, Any], ip: str) -> list[str]:
    """The variables docker's legacy --link gives a container about the one it links to:
    ALIAS_NAME, ALIAS_PORT and ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO] for each
    exposed port (the lowest first), ALIAS_ENV_<key> for its environment (without HOME
    and PATH, as dockerd)."""
    prefix = alias.upper().replace("-", "_")
    out = [f"{prefix}_NAME=/{parent}/{alias}"]
    cfg = child.get("Config") or {}
    ports = sorted((int(k.partition("/")[0]), k.partition("/")[2] or "tcp")
                   for k in cfg.get("ExposedPorts") or {})
    for i, (port, proto) in enumerate(ports):
        url = f"{proto}://{ip}:{port}"
        if i == 0:
            out.append(f"{prefix}_PORT={url}")
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{key}={url}", f"{key}_ADDR={ip}", f"{key}_PORT={port}",
                f"{key}_PROTO={proto}"]
    for entry in cfg.get("Env") or []:
        k, sep, v = str(entry).partition("=")
        if sep and k not in ("HOME", "PATH"):
            out.append(f"{prefix}_ENV_{k}={v}")
    return out
