"""Bad input: exit 1, one clear ``level=error`` line naming the problem, nothing left.

Nothing left means: no state directory under the private root, no cgroup directory
named after the id in any hierarchy, no mount mentioning the bundle in our mountinfo,
and no process whose cwd or root is inside the bundle.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.leftovers import cgroup_dirs, leftovers, mounts, processes_in, state_dirs
from tests.support.runtime import Bundle, Runtime

pytestmark = pytest.mark.root


def refused(proc: subprocess.CompletedProcess[str], needle: str) -> str:
    """The one error line, which must mention ``needle``."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "level=error" in lines[0] and lines[0].startswith("time=")
    assert needle in lines[0], lines[0]
    return lines[0]


def assert_nothing_left(rt: Runtime, cid: str, bundle: Bundle) -> None:
    assert leftovers(rt.root, cid, bundle.path) == {}
    assert rt("list", "-q").stdout == ""


def invalid_json(b: Bundle) -> None:
    with open(os.path.join(b.path, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.2.0", "process": {')


def no_config(b: Bundle) -> None:
    os.unlink(os.path.join(b.path, "config.json"))


def set_in(path: list[str], value: object) -> Callable[[Bundle], None]:
    def change(b: Bundle) -> None:
        obj = b.config
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
        b.write()
    return change


def append_to(path: list[str], value: object) -> Callable[[Bundle], None]:
    def change(b: Bundle) -> None:
        obj: Any = b.config
        for key in path:
            obj = obj[key]
        obj.append(value)
        b.write()
    return change


CASES: list[tuple[str, Callable[[Bundle], None], str]] = [
    ("invalid json", invalid_json, "config.json: invalid JSON"),
    ("no config.json", no_config, "config.json not found"),
    ("unknown namespace", append_to(["linux", "namespaces"], {"type": "bogus"}),
     "unknown namespace 'bogus'"),
    ("duplicate namespace", append_to(["linux", "namespaces"], {"type": "pid"}),
     "duplicate namespace 'pid'"),
    ("unknown capability",
     append_to(["process", "capabilities", "bounding"], "CAP_BOGUS"),
     "unknown capability 'CAP_BOGUS'"),
    ("missing rootfs", set_in(["root", "path"], "no-such-rootfs"),
     "no-such-rootfs does not exist or is not a directory"),
    ("rootfs is a file", set_in(["root", "path"], "config.json"),
     "config.json does not exist or is not a directory"),
    ("empty args", set_in(["process", "args"], []), "process.args: must not be empty"),
    ("no process", set_in(["process"], None), "process: missing"),
    ("relative cwd", set_in(["process", "cwd"], "tmp"), "process.cwd"),
    ("unknown rlimit",
     set_in(["process", "rlimits"], [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "unknown rlimit 'RLIMIT_BOGUS'"),
    ("mount escaping the rootfs",
     append_to(["mounts"], {"destination": "../../etc", "type": "bind", "source": "/etc",
                            "options": ["rbind"]}),
     "escapes the container's root"),
    ("bind source missing",
     append_to(["mounts"], {"destination": "/data", "type": "bind",
                            "source": "/nonexistent/pallet-test-src", "options": ["rbind"]}),
     "/nonexistent/pallet-test-src"),
    ("bad tmpfs option",
     append_to(["mounts"], {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=banana"]}),
     "mounts[7] (/scratch): mount: Invalid argument"),
    ("unknown mount type",
     append_to(["mounts"], {"destination": "/x", "type": "nosuchfs", "source": "none"}),
     "mounts[7] (/x): mount: No such device"),
    ("executable not found", set_in(["process", "args"], ["no-such-binary"]),
     'no-such-binary\\": executable file not found in $PATH'),
    ("executable path missing", set_in(["process", "args"], ["/bin/no-such"]),
     "stat /bin/no-such: no such file or directory"),
    ("namespace path missing",
     set_in(["linux", "namespaces"], [{"type": "network", "path": "/proc/0/ns/net"},
                                      {"type": "mount"}, {"type": "uts"}, {"type": "pid"}]),
     "/proc/0/ns/net"),
    ("unknown sysctl", set_in(["linux", "sysctl"], {"kernel.no_such_knob": "1"}),
     "/proc/sys/kernel/no_such_knob"),
    ("bad seccomp action",
     set_in(["linux", "seccomp"], {"defaultAction": "SCMP_ACT_SOMETIMES"}),
     "SCMP_ACT_SOMETIMES"),
    ("bad memory limit", set_in(["linux", "resources", "memory"], {"limit": "lots"}),
     "linux.resources.memory.limit"),
    ("hostname without uts",
     set_in(["linux", "namespaces"], [{"type": "pid"}, {"type": "mount"}]),
     "hostname: setting it needs a new uts namespace"),
    ("unsupported ociVersion", set_in(["ociVersion"], "2.0.0"),
     "ociVersion: unsupported version"),
]


@pytest.mark.parametrize("change, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("verb", ["create", "run"])
def test_refused_with_one_line_and_nothing_left(rt: Runtime, bundle: Bundle, verb: str,
                                                change: Callable[[Bundle], None],
                                                needle: str) -> None:
    change(bundle)
    cid = rt.new_id()
    refused(rt(verb, "--bundle", bundle.path, cid, check=False), needle)
    assert_nothing_left(rt, cid, bundle)


def test_duplicate_id(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sleep", "100"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    before = rt.state(cid)
    refused(rt("create", "--bundle", bundle.path, cid, check=False),
            f"container with id exists: {cid}")
    refused(rt("run", "--bundle", bundle.path, cid, check=False),
            f"container with id exists: {cid}")
    assert rt.state(cid) == before  # the first one is untouched
    rt("delete", "--force", cid)
    assert_nothing_left(rt, cid, bundle)


def test_kill_of_a_stopped_container(rt: Runtime, bundle: Bundle) -> None:
    cid = rt.new_id()
    bundle.process["args"] = ["true"]
    bundle.write()
    rt("run", "--keep", "--bundle", bundle.path, cid)
    assert rt.state(cid)["status"] == "stopped"
    refused(rt("kill", cid, "KILL", check=False), "not running")
    rt("delete", cid)
    assert_nothing_left(rt, cid, bundle)


@pytest.mark.parametrize("cid", ["../x", "a/b", "..", "-rf", "with space"])
def test_invalid_id(rt: Runtime, bundle: Bundle, tmp_path: str, cid: str) -> None:
    for verb in (["create", "--bundle", bundle.path], ["run", "--bundle", bundle.path],
                 ["state"], ["kill"], ["delete"], ["start"]):
        proc = rt(*verb, "--", cid, check=False)
        refused(proc, "invalid container id format")
    assert not os.path.exists(os.path.join(str(tmp_path), "x"))
    assert state_dirs(rt.root) == []
    names = {cid, *cid.split("/")} - {"", ".", ".."}
    assert [d for d in cgroup_dirs("") if os.path.basename(d) in names] == []
    assert mounts(bundle.path) == [] and processes_in(bundle.path) == []


@pytest.mark.parametrize("argv, needle", [
    (["state", "nosuch"], "container does not exist: nosuch"),
    (["kill", "nosuch"], "container does not exist: nosuch"),
    (["start", "nosuch"], "container does not exist: nosuch"),
    (["delete", "nosuch"], "container does not exist: nosuch"),
    (["pause", "nosuch"], "container does not exist: nosuch"),
    (["nosuchverb"], "nosuchverb"),
    (["create"], "create"),
    (["create", "--bogus-flag", "x"], "--bogus-flag"),
    (["list", "--format", "yaml"], "yaml"),
])
def test_bad_command_lines(rt: Runtime, argv: list[str], needle: str) -> None:
    refused(rt(*argv, check=False), needle)


def test_wrong_state_for_the_verb(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sleep", "100"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    refused(rt("pause", cid, check=False), "created")
    refused(rt("resume", cid, check=False), "created")
    refused(rt("delete", cid, check=False), "not stopped")
    rt("start", cid)
    refused(rt("start", cid, check=False), cid)
    refused(rt("resume", cid, check=False), "running")
    rt("delete", "--force", cid)
    assert_nothing_left(rt, cid, bundle)
