"""Driving the real pallet-runtime command from tests, with fresh bundles.

In the spirit of runc's bats helpers: every test gets its own bundle (a copy of a
busybox rootfs and a config.json it may edit), a unique container id and a private
--root; teardown force-deletes whatever the test made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any

from tests.conftest import REPO

TEMPLATE = "/tmp/pallet-test-busybox-rootfs"


def runtime_command() -> list[str]:
    launcher = os.path.join(REPO, ".venv", "bin", "pallet-runtime")
    if os.path.exists(launcher):
        return [launcher]
    return [sys.executable, "-m", "pallet.runtime.cli"]


def busybox_template() -> str:
    """A busybox rootfs made once per machine and copied for each test."""
    if not os.path.exists(os.path.join(TEMPLATE, "bin", "busybox")):
        tmp = f"{TEMPLATE}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([os.path.join(REPO, "scripts", "busybox-rootfs"), tmp], check=True)
        try:
            os.rename(tmp, TEMPLATE)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another worker won the race
    return TEMPLATE


def default_config(args: list[str]) -> dict[str, Any]:
    from pallet.oci.defaults import default_spec

    spec: dict[str, Any] = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    spec["root"]["readonly"] = False
    return spec


class Runtime:
    """`pallet-runtime --root <private root> ...`, collecting ids for teardown."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.ids: list[str] = []

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True,
                 timeout: float = 30, stdin: Any = None) -> subprocess.CompletedProcess[str]:
        cmd = [*runtime_command(), "--root", self.root, *args]
        # Files, not pipes: a detached container inherits our stdio (as with runc) and
        # would hold a pipe open until it exits.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            done = subprocess.run(cmd, input=input, stdout=out, stderr=err, timeout=timeout,
                                  check=False, stdin=stdin if input is None else None)
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(cmd, done.returncode,
                                               out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                f"stderr: {proc.stderr}"
            )
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self("state", cid).stdout)
        return out

    def new_id(self) -> str:
        cid = f"pallet-test-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid, check=False)


class Bundle:
    def __init__(self, path: str, args: list[str]) -> None:
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.config = default_config(args)

    def write(self) -> str:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=1)
        return self.path

    @property
    def process(self) -> dict[str, Any]:
        proc: dict[str, Any] = self.config["process"]
        return proc

    @property
    def linux(self) -> dict[str, Any]:
        lx: dict[str, Any] = self.config["linux"]
        return lx


def make_bundle(base: str, args: list[str]) -> Bundle:
    path = os.path.join(base, f"bundle-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    shutil.copytree(busybox_template(), os.path.join(path, "rootfs"), symlinks=True)
    b = Bundle(path, args)
    b.write()
    return b


def run_sh(rt: Runtime, bundle: Bundle, script: str) -> subprocess.CompletedProcess[str]:
    """`run` a new container whose process is ``sh -c script``; not checked."""
    bundle.process["args"] = ["sh", "-c", script]
    bundle.write()
    return rt("run", "--bundle", bundle.path, rt.new_id(), check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The output lines of a process that must have succeeded."""
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()
