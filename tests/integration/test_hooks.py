"""OCI hooks: when each kind fires, what it reads on stdin, failures and timeouts.

The hooks are shell scripts on the host that append ``<kind> <stdin>`` to a log inside
the rootfs. startContainer runs in the container, after pivot_root, so the script and
the log are reached there by their in-container paths (the same files).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.support.leftovers import leftovers
from tests.support.runtime import Bundle, Runtime

pytestmark = pytest.mark.root

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop"]

LOGGER = """#!/bin/sh
# usage: hook KIND LOG [EXIT]: append "KIND <the state on stdin>" to LOG
printf '%s %s\\n' "$1" "$(cat)" >> "$2"
printf '%s env=%s\\n' "$1" "$HOOK_VAR" >> "$2.env"
exit "${3:-0}"
"""


class Hooks:
    """Writes the logger script into the bundle and the rootfs; reads what it logged."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.host_script = os.path.join(bundle.path, "hook.sh")
        self.log = os.path.join(bundle.rootfs, "hooks.log")
        for path in (self.host_script, os.path.join(bundle.rootfs, "hook.sh")):
            with open(path, "w") as f:
                f.write(LOGGER)
            os.chmod(path, 0o755)

    def hook(self, kind: str, exit_code: int = 0, **extra: Any) -> dict[str, Any]:
        inside = kind == "startContainer"
        script = "/hook.sh" if inside else self.host_script
        log = "/hooks.log" if inside else self.log
        return {"path": script, "args": ["hook.sh", kind, log, str(exit_code)],
                "env": ["HOOK_VAR=set-for-" + kind], **extra}

    def add(self, kind: str, exit_code: int = 0, **extra: Any) -> None:
        hooks = self.bundle.config.setdefault("hooks", {})
        hooks.setdefault(kind, []).append(self.hook(kind, exit_code, **extra))

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        if not os.path.exists(self.log):
            return []
        out = []
        with open(self.log) as f:
            for line in f:
                kind, _, state = line.rstrip("\n").partition(" ")
                out.append((kind, json.loads(state)))
        return out

    def kinds(self) -> list[str]:
        return [k for k, _ in self.entries()]


@pytest.fixture
def hooks(bundle: Bundle) -> Hooks:
    return Hooks(bundle)


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if "level=error" in line]
    assert len(errors) == 1, stderr
    return errors[0]


def test_every_kind_fires_in_order_with_the_state(rt: Runtime, bundle: Bundle,
                                                  hooks: Hooks) -> None:
    for kind in KINDS:
        hooks.add(kind)
    bundle.process["args"] = ["sh", "-c", "echo user-process >> /hooks.order"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "--bundle", bundle.path, cid)
    entries = hooks.entries()
    assert [k for k, _ in entries] == KINDS
    pid = 0
    for kind, st in entries:
        assert st["id"] == cid and st["bundle"] == bundle.path, kind
        assert st["ociVersion"].startswith("1."), kind
        if kind != "poststop":
            assert st["pid"] > 0, kind
            pid = pid or st["pid"]
            assert st["pid"] == pid, kind
    assert dict(entries)["poststart"]["status"] == "running"
    assert dict(entries)["poststop"]["status"] == "stopped"
    with open(hooks.log + ".env") as f:
        assert f.read().splitlines() == [f"{k} env=set-for-{k}" for k in KINDS]


def test_hooks_around_create_start_delete(rt: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    for kind in KINDS:
        hooks.add(kind)
    bundle.process["args"] = ["sleep", "100"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    assert hooks.kinds() == ["prestart", "createRuntime", "createContainer"]
    rt("start", cid)
    assert hooks.kinds()[3:] == ["startContainer", "poststart"]
    rt("kill", cid, "KILL")
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert hooks.kinds()[-1] == "poststart"  # poststop waits for delete
    rt("delete", cid)
    assert hooks.kinds() == KINDS


def test_poststop_runs_at_delete_of_a_never_started_container(rt: Runtime, bundle: Bundle,
                                                              hooks: Hooks) -> None:
    hooks.add("poststart")
    hooks.add("poststop")
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    rt("delete", "--force", cid)
    assert hooks.kinds() == ["poststop"]


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(rt: Runtime, bundle: Bundle,
                                                             hooks: Hooks, kind: str) -> None:
    hooks.add(kind, exit_code=3)
    hooks.add("poststop")
    bundle.write()
    cid = rt.new_id()
    proc = rt("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert f"{kind}[0]" in line and "exit status 3" in line, line
    assert hooks.kinds()[-1] == kind
    assert leftovers(rt.root, cid, bundle.path) == {}
    assert rt("state", cid, check=False).returncode == 1


def test_failing_start_container_hook_fails_start(rt: Runtime, bundle: Bundle,
                                                  hooks: Hooks) -> None:
    hooks.add("startContainer", exit_code=4)
    bundle.process["args"] = ["touch", "/ran"]
    bundle.write()
    cid = rt.new_id()
    proc = rt("run", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert "startContainer[0] /hook.sh: exit status 4" in line, line
    assert hooks.kinds() == ["startContainer"]
    assert not os.path.exists(os.path.join(bundle.rootfs, "ran"))
    assert leftovers(rt.root, cid, bundle.path) == {}


def test_failing_poststart_and_poststop_only_warn(rt: Runtime, bundle: Bundle,
                                                  hooks: Hooks) -> None:
    hooks.add("poststart", exit_code=1)
    hooks.add("poststop", exit_code=1)
    bundle.process["args"] = ["true"]
    bundle.write()
    cid = rt.new_id()
    proc = rt("run", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "level=error" not in proc.stderr
    assert hooks.kinds() == ["poststart", "poststop"]
    assert leftovers(rt.root, cid, bundle.path) == {}


def test_hook_timeout_is_enforced(rt: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    pidfile = os.path.join(bundle.path, "sleeper.pid")
    sleeper = os.path.join(bundle.path, "sleeper.sh")
    with open(sleeper, "w") as f:
        f.write(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
    os.chmod(sleeper, 0o755)
    bundle.config["hooks"] = {"prestart": [{"path": sleeper, "timeout": 1}]}
    bundle.write()
    cid = rt.new_id()
    t0 = time.monotonic()
    proc = rt("create", "--bundle", bundle.path, cid, check=False)
    took = time.monotonic() - t0
    assert proc.returncode == 1
    assert "timed out" in one_error_line(proc.stderr)
    assert 1 <= took < 5
    with open(pidfile) as f:
        hook_pid = int(f.read())
    assert not os.path.exists(f"/proc/{hook_pid}"), "the timed-out hook is still running"
    assert leftovers(rt.root, cid, bundle.path) == {}


def test_missing_hook_binary(rt: Runtime, bundle: Bundle) -> None:
    bundle.config["hooks"] = {"prestart": [{"path": "/nonexistent/hook"}]}
    bundle.write()
    cid = rt.new_id()
    proc = rt("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 1
    assert "/nonexistent/hook" in one_error_line(proc.stderr)
    assert leftovers(rt.root, cid, bundle.path) == {}
