"""What a container could leave on the host: state dirs, cgroups, mounts, processes.

Shared by the tests that prove a failed or deleted container leaves nothing behind.
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_dirs(needle: str) -> list[str]:
    """Directories under /sys/fs/cgroup (every hierarchy) whose name contains ``needle``."""
    found = []
    for top, dirs, _files in os.walk(CGROUP_ROOT):
        for d in dirs:
            if needle in d:
                found.append(os.path.join(top, d))
    return sorted(found)


def mounts(needle: str) -> list[str]:
    """Lines of our /proc/self/mountinfo that mention ``needle``."""
    with open("/proc/self/mountinfo") as f:
        return [line.rstrip("\n") for line in f if needle in line]


def processes_in(path: str) -> list[tuple[int, str]]:
    """Processes whose cwd or root is ``path`` or below it: (pid, which link)."""
    path = path.rstrip("/")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(f"/proc/{name}/{link}")
            except OSError:
                continue  # gone, or a kernel thread
            if target == path or target.startswith(path + "/"):
                found.append((int(name), f"{link} -> {target}"))
    return found


def state_dirs(root: str, prefix: str = "") -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def leftovers(root: str, cid: str, bundle: str) -> dict[str, list[object]]:
    """Everything container ``cid`` (bundle ``bundle``, state under ``root``) left behind."""
    out: dict[str, list[object]] = {
        "state dirs": [n for n in state_dirs(root) if cid in n],
        "cgroups": list(cgroup_dirs(cid)),
        "mounts": list(mounts(bundle)),
        "processes": list(processes_in(bundle)),
    }
    return {k: v for k, v in out.items() if v}
