"""Host facts for /version and /info, read from the kernel as Docker reports them."""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass

import pallet

from .config import DaemonConfig

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


@dataclass(frozen=True)
class HostFacts:
    kernel_version: str
    operating_system: str
    os_version: str
    architecture: str  # uname's machine, as Docker's Info.Architecture
    go_arch: str  # Docker's arch name (amd64), as in Version.Arch
    ncpu: int
    mem_total: int
    hostname: str
    cgroup_version: str
    cgroup_driver: str


def _os_release() -> tuple[str, str]:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return "Linux", ""
    name = fields.get("PRETTY_NAME", "Linux").strip('"')
    return name, fields.get("VERSION_ID", "").strip('"')


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _cgroup_version() -> str:
    # cgroup2 mounted at /sys/fs/cgroup itself means v2; a hybrid host reports v1.
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def host_facts() -> HostFacts:
    uname = os.uname()
    name, version = _os_release()
    return HostFacts(
        kernel_version=uname.release,
        operating_system=name,
        os_version=version,
        architecture=uname.machine,
        go_arch=_ARCH.get(uname.machine, uname.machine),
        ncpu=os.cpu_count() or 1,
        mem_total=mem_total(),
        hostname=socket.gethostname(),
        cgroup_version=_cgroup_version(),
        cgroup_driver="cgroupfs",
    )


def version_body(api_version: str, min_api_version: str) -> dict[str, object]:
    facts = host_facts()
    details = {
        "ApiVersion": api_version,
        "Arch": facts.go_arch,
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": facts.kernel_version,
        "MinAPIVersion": min_api_version,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": "pallet"},
        "Components": [
            {"Name": "Engine", "Version": pallet.__version__, "Details": details},
            {"Name": "pallet-runtime", "Version": pallet.__version__,
             "Details": {"GitCommit": ""}},
        ],
        "Version": pallet.__version__,
        "ApiVersion": api_version,
        "MinAPIVersion": min_api_version,
        "GitCommit": "",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": facts.go_arch,
        "KernelVersion": facts.kernel_version,
        "BuildTime": "",
    }


def info_body(cfg: DaemonConfig, images: int, containers: dict[str, int],
              daemon_id: str) -> dict[str, object]:
    facts = host_facts()
    return {
        "ID": daemon_id,
        "Containers": sum(containers.values()),
        "ContainersRunning": containers.get("running", 0),
        "ContainersPaused": containers.get("paused", 0),
        "ContainersStopped": containers.get("stopped", 0),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"],
                    "Authorization": None, "Log": ["json-file", "local", "none"]},
        "MemoryLimit": True,
        "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "KernelMemory": False,
        "KernelMemoryTCP": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": _read_flag("/proc/sys/net/ipv4/ip_forward"),
        "BridgeNfIptables": _read_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "BridgeNfIp6tables": _read_flag("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
        "Debug": cfg.debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": True,
        "NGoroutines": 1,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": facts.cgroup_driver,
        "CgroupVersion": facts.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": facts.kernel_version,
        "OperatingSystem": facts.operating_system,
        "OSVersion": facts.os_version,
        "OSType": "linux",
        "Architecture": facts.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": list(
                cfg.registry_mirrors), "Secure": True, "Official": True}},
            "Mirrors": list(cfg.registry_mirrors),
        },
        "NCPU": facts.ncpu,
        "MemTotal": facts.mem_total,
        "GenericResources": None,
        "DockerRootDir": cfg.data_root,
        "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": facts.hostname,
        "Labels": list(cfg.labels),
        "ExperimentalBuild": False,
        "ServerVersion": pallet.__version__,
        "Runtimes": {"pallet": {"path": "pallet-runtime"}},
        "DefaultRuntime": "pallet",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default"],
        "Warnings": None,
    }


def _read_flag(path: str) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False
