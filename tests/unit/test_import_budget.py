"""The runtime's import path stays lean: it is paid on every container start.

Reads ``python -X importtime`` for the modules `pallet-runtime run` loads and fails on
any module from the banned list (each costs milliseconds of a ~20 ms budget, or drags
in a framework the runtime has no use for).
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

BANNED = {
    "asyncio", "logging", "pydantic", "aiohttp", "rich", "click", "argparse", "typing",
    "dataclasses", "enum", "re", "json", "subprocess", "socket", "signal", "pathlib",
    "inspect", "shutil", "importlib.metadata", "tempfile", "threading",
}

HOT_MODULES = (
    "pallet.runtime.cli", "pallet.runtime.verbs", "pallet.runtime.container",
    "pallet.runtime.init", "pallet.runtime.rootfs", "pallet.runtime.process",
    "pallet.runtime.state", "pallet.runtime.cgroups.cgroup", "pallet.runtime.hooks",
    "pallet.runtime.lifecycle", "pallet.runtime.paths", "pallet.runtime.mountopts",
    "pallet.runtime.sync", "pallet.runtime.seccomp", "pallet.oci.spec",
    "pallet.oci.resources", "pallet.linux.proc", "pallet.linux.pidfd", "pallet.linux.signals",
)


def imported_modules(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-IS", "-X", "importtime", "-c",
         f"import sys; sys.path.insert(0, {REPO!r}); {code}"],
        capture_output=True, text=True, check=True,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def test_the_run_path_imports_no_banned_module() -> None:
    loaded = imported_modules("; ".join(f"import {m}" for m in HOT_MODULES))
    assert "pallet.runtime.container" in loaded  # the probe saw the imports at all
    assert sorted(loaded & BANNED) == []


def test_delete_loads_only_the_cgroup_tree() -> None:
    """`delete` removes directories: the rest of the cgroups package (layout, v1, the
    Cgroup class) stays unloaded, and the package loads its names only when asked."""
    loaded = imported_modules("from pallet.runtime import lifecycle; "
                              "from pallet.runtime.cgroups import tree")
    assert "pallet.runtime.cgroups.tree" in loaded
    assert sorted(loaded & {"pallet.runtime.cgroups.cgroup", "pallet.runtime.cgroups.v1",
                            "pallet.runtime.cgroups.layout"}) == []
    assert "pallet.runtime.cgroups.cgroup" in imported_modules(
        "from pallet.runtime.cgroups import Cgroup")


def test_the_probe_catches_a_banned_module() -> None:
    assert "enum" in imported_modules("import signal")


def test_the_cli_client_path_imports_no_heavy_module() -> None:
    """`pallet` and its client: each command is a process start (DESIGN.md §4)."""
    loaded = imported_modules("import pallet.cli.main, pallet.cli.flags, "
                              "pallet.client.transport")
    assert "pallet.client.transport" in loaded
    heavy = {"asyncio", "aiohttp", "pydantic", "rich", "click", "argparse", "typing",
             "dataclasses", "re", "http.client", "urllib.parse", "logging", "subprocess"}
    assert sorted(loaded & heavy) == []


def test_the_container_verbs_do_not_import_os() -> None:
    """run, start, exec, ps, logs...: os costs ~2.5 ms of a start here (its
    _collections_abc); the client reads its environment through posix."""
    loaded = imported_modules("import pallet.cli.main, pallet.cli.containers")
    assert "pallet.cli.containers" in loaded
    assert sorted(loaded & {"os", "_collections_abc", "posixpath"}) == []


def test_the_monitor_imports_no_framework() -> None:
    """pallet-monitor forks every container: no asyncio, aiohttp or engine code in it."""
    loaded = imported_modules("import pallet.monitor.server, pallet.monitor.logfile")
    assert "pallet.monitor.server" in loaded
    assert sorted(loaded & {"asyncio", "aiohttp", "pydantic", "rich", "logging", "sqlite3",
                            "pallet.engine", "pallet.api"}) == []
