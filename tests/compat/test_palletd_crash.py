"""palletd killed with SIGKILL in the middle of a pull, then restarted: nothing half-made
is visible, and the next pull resumes from the bytes the first one kept."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.compat.test_pull_push import Clients, manifest
from tests.support.palletd import start_palletd, stop_palletd
from tests.support.proxy import ThreadedProxy
from tests.support.registry import Registry, registry  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


@dataclass
class StallingProxy(ThreadedProxy):
    """Forwards to a registry, but the first GET of ``blob`` sends half and then hangs."""

    upstream: str
    blob: str
    ranges: list[str | None] = field(default_factory=list)
    sent: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        first = False
        if request.path.endswith(f"/blobs/{self.blob}"):
            first = not self.ranges
            self.ranges.append(request.headers.get("Range"))
        status, body, keep = await self.fetch(self.upstream, request)
        if not first:
            return web.Response(status=status, body=body, headers=keep)
        resp = web.StreamResponse(status=status, headers=keep)
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        self.sent = len(body) // 2
        await asyncio.sleep(60)  # hang: palletd is killed meanwhile
        return resp


def test_sigkill_mid_pull_then_resume(registry: Registry) -> None:  # noqa: F811
    base = tempfile.mkdtemp(prefix="pallet-test-crash-")
    cfg = tempfile.mkdtemp(prefix="pallet-test-dockercfg-")
    d = start_palletd(base)
    proxy: StallingProxy | None = None
    try:
        c = Clients(d, cfg)
        repo = "pallet/crash"
        image_id = c.make_image(f"{registry.host}/{repo}:1")
        c.docker("push", f"{registry.host}/{repo}:1")
        _, doc = manifest(registry, repo, "1")
        layer = doc["layers"][0]["digest"]  # type: ignore[index]
        c.docker("rmi", f"{registry.host}/{repo}:1")
        proxy = StallingProxy(registry.url, layer)
        proxy.start()
        name = f"127.0.0.1:{proxy.port}/{repo}:1"
        puller = subprocess.Popen(["docker", "pull", name], env=c.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while proxy.sent == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.sent > 0
        partial = os.path.join(d.data_root, "ingest", layer.split(":")[1])
        while (not os.path.exists(partial) or os.path.getsize(partial) < proxy.sent) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(d.proc.pid, signal.SIGKILL)  # mid-pull, no chance to clean up
        d.proc.wait()
        puller.wait(timeout=30)

        d = start_palletd(base)  # the same data root
        c = Clients(d, cfg)
        assert image_id not in c.image_ids()  # nothing half-made is visible
        assert not os.path.exists(os.path.join(d.data_root, "blobs", "sha256",
                                               layer.split(":")[1]))
        assert [n for n in os.listdir(os.path.join(d.data_root, "layers"))
                if n.startswith("tmp-")] == []
        held = os.path.getsize(partial)
        assert held >= proxy.sent
        out = c.docker("pull", name).stdout
        assert "Pull complete" in out
        assert proxy.ranges[-1] == f"bytes={held}-"  # resumed, not started over
        assert c.inspect(name)["Id"] == image_id
        c.docker("rmi", "-f", image_id)
    finally:
        if proxy is not None:
            proxy.stop()
        stop_palletd(d)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(cfg, ignore_errors=True)


def test_sigkill_mid_build_leaves_nothing_half_made(tmp_path: str) -> None:
    """Killed during a RUN step: after the restart no image or tag of the build shows,
    its unpacked context and step snapshots are gone (with a COPY --from source still
    mounted, as a kill during that step leaves it), and the same build then succeeds."""
    from pallet.linux.mount import MS_BIND, mount
    from tests.compat.test_docker_cli_images import import_busybox

    base = tempfile.mkdtemp(prefix="pallet-test-crashbuild-")
    d = start_palletd(base)
    try:
        image = "pallet-test/busybox:crashbuild"
        import_busybox(d, image, 'CMD ["sh"]')
        ctx = os.path.join(str(tmp_path), "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM {image}\nCOPY Dockerfile /df\nRUN sleep 30\n")
        env = {**d.env, "DOCKER_BUILDKIT": "0"}
        builder = subprocess.Popen(["docker", "build", "-t", "pallet-test/crash:1", ctx],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert builder.stdout is not None
        for line in builder.stdout:  # until the RUN step's container runs
            if b"Running in" in line:
                break
        tmp = os.path.join(d.data_root, "tmp")
        assert any(n.startswith("build-") for n in os.listdir(tmp))
        # what a kill during a COPY --from step leaves besides: a step snapshot and the
        # source image mounted under the build's directory
        snaps = os.path.join(d.data_root, "snapshots")
        os.makedirs(os.path.join(snaps, "build-" + "0" * 32, "upper"))
        build_dir = next(os.path.join(tmp, n) for n in os.listdir(tmp)
                         if n.startswith("build-"))
        src = os.path.join(build_dir, "step-x", "from")
        os.makedirs(src)
        mount(ctx, src, None, MS_BIND)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait()
        builder.wait(timeout=30)
        assert builder.returncode != 0

        d = start_palletd(base)  # the same data root
        assert [n for n in os.listdir(tmp) if n.startswith(("build-", "context-"))] == []
        assert [n for n in os.listdir(snaps) if n.startswith("build-")] == []
        with open("/proc/self/mountinfo") as f:
            assert tmp not in f.read()
        assert d.docker("image", "inspect", "pallet-test/crash:1", check=False).returncode
        # the RUN step's container outlived palletd, as any container does; it goes
        left = d.docker("ps", "-aq").stdout.split()
        assert len(left) == 1
        d.docker("rm", "-f", *left)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM {image}\nCOPY Dockerfile /df\nRUN echo done > /done\n")
        d.docker("build", "-t", "pallet-test/crash:1", ctx)
        assert d.docker("run", "--rm", "pallet-test/crash:1", "cat",
                        "/done").stdout == "done\n"
    finally:
        d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)
        stop_palletd(d)
        shutil.rmtree(base, ignore_errors=True)
