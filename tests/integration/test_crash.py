"""A runtime killed in the middle of create leaves nothing `delete --force` cannot remove."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.support.leftovers import leftovers
from tests.support.runtime import Bundle, Runtime, runtime_command

pytestmark = pytest.mark.root


def test_sigkill_during_create_then_delete_force(rt: Runtime, bundle: Bundle,
                                                  tmp_path: str) -> None:
    started = os.path.join(str(tmp_path), "hook-started")
    hook = os.path.join(str(tmp_path), "slow-hook")
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\ntouch {started}\nexec sleep 30\n")
    os.chmod(hook, 0o755)
    bundle.config["hooks"] = {"createRuntime": [{"path": hook}]}
    bundle.write()
    cid = rt.new_id()
    proc = subprocess.Popen([*runtime_command(), "--root", rt.root, "create", "--bundle",
                             bundle.path, cid], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(started), "create never reached its createRuntime hook"
    # The cgroup exists and init is waiting: kill the runtime (and its hook) outright.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert rt.state(cid)["status"] == "stopped"  # init died with its parent
    rt("delete", "--force", cid)
    assert leftovers(rt.root, cid, bundle.path) == {}
