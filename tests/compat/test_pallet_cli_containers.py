"""The pallet CLI's container verbs: docker's flags, output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.compat.test_docker_cli_containers import read_pty
from tests.conftest import REPO
from tests.support.palletd import Palletd, palletd_with_image

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:cli"


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-cli-", IMAGE, 'CMD ["sh"]') as d:
        yield d


def pallet(d: Palletd, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                          env={**os.environ, "DOCKER_HOST": d.host}, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def test_run_streams_and_exit_codes(pd: Palletd) -> None:
    out = pallet(pd, "run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (out.returncode, out.stdout, out.stderr) == (5, "out\n", "err\n")
    out = pallet(pd, "run", "--rm", "-i", IMAGE, "tr", "a-z", "A-Z", stdin="shout\n")
    assert out.stdout == "SHOUT\n"
    out = pallet(pd, "run", "--rm", IMAGE, "no-such-command")
    assert out.returncode == 127 and "executable file not found" in out.stderr
    out = pallet(pd, "run", "--rm", "--memory", "12zb", IMAGE, "true")
    assert out.returncode == 125 and "invalid size: '12zb'" in out.stderr
    out = pallet(pd, "run", "--rm", "-p", "80:80:80", IMAGE, "true")
    assert out.returncode == 125 and "invalid IP address: 80" in out.stderr
    assert pallet(pd, "ps", "-aq").stdout == ""


def test_flags_reach_the_container(pd: Palletd) -> None:
    env_file = os.path.join(os.path.dirname(pd.socket), "env")
    with open(env_file, "w") as f:
        f.write("# a comment\nFROM_FILE=1\n")
    out = pallet(pd, "run", "--rm", "-e", "A=b", "--env-file", env_file, "-w", "/etc",
                 "-u", "100:101", "--hostname", "h1", "--read-only", "--tmpfs", "/scratch",
                 "--cap-drop", "ALL", "--ulimit", "nofile=50:60", IMAGE, "sh", "-c",
                 "echo $A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname); "
                 "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs; "
                 "ulimit -n; grep CapEff /proc/self/status")
    lines = out.stdout.splitlines()
    assert lines[0] == "b 1 /etc 100:101 h1"
    assert lines[1:4] == ["ro", "tmpfs", "50"]
    assert lines[4].split() == ["CapEff:", "0000000000000000"]


def test_detached_lifecycle(pd: Palletd) -> None:
    cid = pallet(pd, "run", "-d", "--name", "pc-life", "-l", "k=v", IMAGE, "sh", "-c",
                 'trap "exit 3" TERM; echo started; while :; do sleep 0.1; done').stdout.strip()
    try:
        assert len(cid) == 64
        time.sleep(0.3)
        ps = pallet(pd, "ps").stdout.splitlines()
        assert ps[0].split()[:2] == ["CONTAINER", "ID"] and "pc-life" in ps[1]
        assert pallet(pd, "ps", "-q", "--filter", "label=k=v").stdout.strip() == cid[:12]
        assert pallet(pd, "logs", "pc-life").stdout == "started\n"
        out = pallet(pd, "exec", "pc-life", "sh", "-c", "echo in; exit 4")
        assert (out.returncode, out.stdout) == (4, "in\n")
        assert pallet(pd, "pause", "pc-life").stdout == "pc-life\n"
        assert pallet(pd, "inspect", "-f", "{{.State.Status}}", "pc-life").stdout == "paused\n"
        pallet(pd, "unpause", "pc-life")
        assert pallet(pd, "stop", "pc-life").stdout == "pc-life\n"
        assert pallet(pd, "wait", "pc-life").stdout == "3\n"
        info = json.loads(pallet(pd, "inspect", "pc-life").stdout)[0]
        assert info["Id"] == cid and info["State"]["ExitCode"] == 3
        assert pallet(pd, "start", "pc-life").returncode == 0
        pallet(pd, "rename", "pc-life", "pc-life2")
        out = pallet(pd, "rm", "pc-life2")
        assert out.returncode == 1 and "You cannot remove a running container" in out.stderr
        assert pallet(pd, "rm", "-f", "pc-life2").stdout == "pc-life2\n"
    finally:
        pallet(pd, "rm", "-f", "pc-life", "pc-life2")
    out = pallet(pd, "logs", "pc-life")
    assert out.returncode == 1 and "No such container: pc-life" in out.stderr


def test_run_it_on_a_terminal(pd: Palletd) -> None:
    env = {**os.environ, "DOCKER_HOST": pd.host, "PYTHONPATH": REPO}
    text, code = read_pty([sys.executable, "-m", "pallet.cli.main", "run", "-it", "--rm",
                           IMAGE, "sh", "-c", "tty; stty size; exit 2"], env, 24, 80)
    assert code == 2 and "/dev/pts/0\n" in text and "24 80\n" in text


def test_sig_proxy_and_logs_in_system_df(pd: Palletd) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pallet.cli.main", "run", "--name", "pc-sig", IMAGE, "sh", "-c",
         'trap "echo got TERM; exit 3" TERM; i=0; while [ $i -lt 500 ]; do '
         'echo padding-line-$i; i=$((i+1)); done; while :; do sleep 0.1; done'],
        cwd=REPO, env={**os.environ, "DOCKER_HOST": pd.host}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        while "padding-line-499" not in proc.stdout.readline():
            pass
        proc.send_signal(15)  # to the CLI: it passes it on to the container
        out, _ = proc.communicate(timeout=20)
        assert "got TERM" in out and proc.returncode == 3
        df = json.loads(pd.request("GET", "/v1.44/system/df")[2])
        mine = [c for c in df["Containers"] if c["Names"] == ["/pc-sig"]]
        assert len(mine) == 1 and mine[0]["SizeRw"] >= 500 * 40  # its log is counted
    finally:
        pallet(pd, "rm", "-f", "pc-sig")
