"""The embedded DNS end to end: a container on a user-defined network asks 127.0.0.11,
palletd answers container names itself and forwards the rest to its upstream — here a
fake DNS server on 127.0.0.1 given with palletd --dns (never a real resolver)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.support.palletd import Palletd, palletd_with_image
from tests.unit.test_network_dns import FakeUpstream

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:dns"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    loop = asyncio.new_event_loop()
    up = FakeUpstream()
    loop.run_until_complete(up.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        loop.call_soon_threadsafe(up.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture(scope="module")
def pd(upstream: FakeUpstream) -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-dns-", IMAGE, 'CMD ["sh"]',
                            args=("--dns", upstream.address)) as d:
        yield d


def run(pd: Palletd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=pd.env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_names_answered_and_the_rest_forwarded(pd: Palletd, upstream: FakeUpstream) -> None:
    pd.docker("network", "create", "pt-dns")
    pd.docker("network", "create", "--internal", "pt-dns-in")
    try:
        pd.docker("run", "-d", "--name", "named1", "--network", "pt-dns", IMAGE, "sleep", "300")
        ip = pd.docker("inspect", "-f", "{{.NetworkSettings.Networks.pt-dns.IPAddress}}",
                       "named1", check=False).stdout.strip()
        out = run(pd, "run", "--rm", "--network", "pt-dns", IMAGE, "nslookup", "named1")
        assert "Address: " + ip in out.stdout or ip in out.stdout, out.stdout
        out = run(pd, "run", "--rm", "--network", "pt-dns", IMAGE, "nslookup",
                  "example.test")
        assert "192.0.2.10" in out.stdout, out.stdout + out.stderr
        assert ("udp", "example.test.") in upstream.seen
        asked = len(upstream.seen)
        # a container's own names never leave palletd; internal networks ask nobody
        out = run(pd, "run", "--rm", "--network", "pt-dns-in", IMAGE, "nslookup",
                  "example.test")
        assert "192.0.2.10" not in out.stdout
        assert len(upstream.seen) == asked
        # the default bridge: the --dns server would be in resolv.conf, but ip:port is
        # something only the embedded DNS can use, so the host's servers stay
        out = run(pd, "run", "--rm", IMAGE, "cat", "/etc/resolv.conf")
        assert upstream.address not in out.stdout
    finally:
        pd.docker("rm", "-f", "named1", check=False)
        pd.docker("network", "rm", "pt-dns", "pt-dns-in", check=False)
