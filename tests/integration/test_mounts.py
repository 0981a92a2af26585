"""mounts[] and the container's /dev, /proc, /sys, seen from inside (and from the host)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.leftovers import mounts
from tests.support.runtime import Bundle, Runtime

pytestmark = pytest.mark.root


def run_sh(rt: Runtime, bundle: Bundle, script: str, *flags: str
           ) -> subprocess.CompletedProcess[str]:
    bundle.process["args"] = ["sh", "-c", script]
    bundle.write()
    return rt("run", *flags, "--bundle", bundle.path, rt.new_id(), check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def add_mount(bundle: Bundle, destination: str, type_: str, source: str,
              options: list[str]) -> None:
    bundle.config["mounts"].append(
        {"destination": destination, "type": type_, "source": source, "options": options})


def mountinfo_line(lines: list[str], mountpoint: str) -> list[str]:
    """The fields of the mountinfo line for ``mountpoint`` (the last one: the top mount)."""
    hits = [line.split() for line in lines if line.split()[4] == mountpoint]
    assert hits, f"{mountpoint} not mounted: {lines}"
    return hits[-1]


@pytest.fixture
def hostdir(tmp_path: Path) -> Path:
    d = tmp_path / "host-data"
    d.mkdir()
    (d / "from-host.txt").write_text("host says hi\n")
    return d


def test_bind_read_only(rt: Runtime, bundle: Bundle, hostdir: Path) -> None:
    add_mount(bundle, "/data", "bind", str(hostdir), ["bind", "ro"])
    proc = run_sh(rt, bundle, "cat /data/from-host.txt; touch /data/new")
    assert proc.returncode == 1
    assert proc.stdout == "host says hi\n"
    assert "Read-only file system" in proc.stderr
    assert not (hostdir / "new").exists()


def test_bind_read_write_reaches_the_host(rt: Runtime, bundle: Bundle, hostdir: Path) -> None:
    add_mount(bundle, "/data", "bind", str(hostdir), ["rbind", "rw"])
    ok(run_sh(rt, bundle, "echo from-container > /data/out.txt"))
    assert (hostdir / "out.txt").read_text() == "from-container\n"


@pytest.fixture
def submounted(hostdir: Path) -> Iterator[Path]:
    """hostdir with a tmpfs mounted on hostdir/sub (on the host), unmounted after."""
    sub = hostdir / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(sub)], check=True)
    try:
        (sub / "in-submount.txt").write_text("deep\n")
        yield hostdir
    finally:
        subprocess.run(["umount", str(sub)], check=True)


def test_rbind_carries_submounts_and_bind_does_not(rt: Runtime, bundle: Bundle,
                                                   submounted: Path) -> None:
    add_mount(bundle, "/r", "bind", str(submounted), ["rbind"])
    add_mount(bundle, "/b", "bind", str(submounted), ["bind"])
    out = ok(run_sh(rt, bundle, "cat /r/sub/in-submount.txt; ls -A /b/sub | wc -l"))
    assert out == ["deep", "0"]


def test_bind_without_type_field(rt: Runtime, bundle: Bundle, hostdir: Path) -> None:
    bundle.config["mounts"].append(
        {"destination": "/data", "source": str(hostdir), "options": ["rbind", "ro"]})
    assert ok(run_sh(rt, bundle, "cat /data/from-host.txt")) == ["host says hi"]


def test_bind_a_file(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    src = tmp_path / "motd"
    src.write_text("a bound file\n")
    add_mount(bundle, "/etc/motd", "bind", str(src), ["bind", "ro"])
    add_mount(bundle, "/new/dir/file.txt", "bind", str(src), ["bind"])
    out = ok(run_sh(rt, bundle, "cat /etc/motd /new/dir/file.txt; test -f /new/dir/file.txt "
                                "&& echo is-a-file"))
    assert out == ["a bound file", "a bound file", "is-a-file"]
    assert not (Path(bundle.rootfs) / "etc" / "motd").read_text()  # the mount point only


def test_tmpfs_size_and_mode(rt: Runtime, bundle: Bundle) -> None:
    add_mount(bundle, "/scratch", "tmpfs", "tmpfs", ["nosuid", "nodev", "size=2m", "mode=1770"])
    out = ok(run_sh(rt, bundle, "stat -c %a /scratch; df -k /scratch | tail -1; "
                                "grep ' /scratch ' /proc/self/mountinfo"))
    assert out[0] == "1770"
    assert out[1].split()[1] == "2048"
    fields = out[2].split()
    assert fields[8] == "tmpfs"
    assert {"nosuid", "nodev"} <= set(fields[5].split(","))
    assert not os.path.exists(os.path.join(bundle.rootfs, "scratch", "x"))


def test_tmpfs_is_size_limited(rt: Runtime, bundle: Bundle) -> None:
    add_mount(bundle, "/scratch", "tmpfs", "tmpfs", ["size=1m"])
    proc = run_sh(rt, bundle, "dd if=/dev/zero of=/scratch/big bs=1M count=2")
    assert proc.returncode == 1 and "No space left on device" in proc.stderr


def test_propagation_options(rt: Runtime, bundle: Bundle, hostdir: Path) -> None:
    add_mount(bundle, "/shared", "tmpfs", "tmpfs", ["shared"])
    add_mount(bundle, "/private", "bind", str(hostdir), ["rbind", "rprivate"])
    add_mount(bundle, "/unbindable", "tmpfs", "tmpfs", ["unbindable"])
    out = ok(run_sh(rt, bundle, "cat /proc/self/mountinfo"))
    assert any(f.startswith("shared:") for f in mountinfo_line(out, "/shared")[6:])
    private = mountinfo_line(out, "/private")
    assert private[6] == "-"  # no optional fields: private
    assert "unbindable" in mountinfo_line(out, "/unbindable")[6:]


@pytest.mark.parametrize("prop", ["rslave", "rprivate", "private"])
def test_rootfs_propagation_accepted(rt: Runtime, bundle: Bundle, prop: str) -> None:
    bundle.linux["rootfsPropagation"] = prop
    assert ok(run_sh(rt, bundle, "echo fine")) == ["fine"]


def test_tmpcopyup_keeps_the_image_files(rt: Runtime, bundle: Bundle) -> None:
    add_mount(bundle, "/etc", "tmpfs", "tmpfs", ["tmpcopyup", "mode=755"])
    out = ok(run_sh(rt, bundle, "grep -c root /etc/passwd; echo changed > /etc/group; "
                                "grep ' /etc ' /proc/self/mountinfo | cut -d' ' -f9"))
    assert out == ["1", "tmpfs"]
    group = (Path(bundle.rootfs) / "etc" / "group").read_text()
    assert group.startswith("root:x:0:")  # the image is untouched
    assert not any(p.endswith(".pallet-copyup") for p in os.listdir(Path(bundle.rootfs)))


def test_symlink_out_of_the_rootfs_stays_inside(rt: Runtime, bundle: Bundle) -> None:
    os.symlink("/", os.path.join(bundle.rootfs, "evil"))
    name = f"pallet-test-{uuid.uuid4().hex[:8]}"
    add_mount(bundle, f"/evil/tmp/{name}", "tmpfs", "tmpfs", ["size=1m"])
    out = ok(run_sh(rt, bundle, f"grep -c ' /tmp/{name} ' /proc/self/mountinfo"))
    assert out == ["1"]  # resolved as the container sees it: /tmp/<name>
    assert not os.path.exists(f"/tmp/{name}"), "a mount point was made on the host"
    assert os.path.isdir(os.path.join(bundle.rootfs, "tmp", name))
    assert mounts(name) == []


def test_relative_symlink_climbing_out_stays_inside(rt: Runtime, bundle: Bundle) -> None:
    os.symlink("../../../../../../../..", os.path.join(bundle.rootfs, "up"))
    name = f"pallet-test-{uuid.uuid4().hex[:8]}"
    add_mount(bundle, f"/up/tmp/{name}", "tmpfs", "tmpfs", ["size=1m"])
    ok(run_sh(rt, bundle, f"test -d /tmp/{name}"))
    assert not os.path.exists(f"/tmp/{name}")


def test_default_devices(rt: Runtime, bundle: Bundle) -> None:
    out = ok(run_sh(rt, bundle,
                    "for d in null zero full random urandom tty; do "
                    "stat -c '%n %F %t:%T %a' /dev/$d; done; "
                    "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; "
                    "ls /dev/fd/ | head -1; test -d /dev/pts && test -d /dev/shm && echo dirs"))
    assert out[:6] == [
        "/dev/null character special file 1:3 666",
        "/dev/zero character special file 1:5 666",
        "/dev/full character special file 1:7 666",
        "/dev/random character special file 1:8 666",
        "/dev/urandom character special file 1:9 666",
        "/dev/tty character special file 5:0 666",
    ]
    assert out[6:11] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                         "/proc/self/fd/2", "pts/ptmx"]
    assert out[11] == "0" and out[12] == "dirs"


def test_default_devices_work(rt: Runtime, bundle: Bundle) -> None:
    proc = run_sh(rt, bundle, "head -c 4 /dev/zero | od -An -tx1; head -c 8 /dev/urandom "
                              "| wc -c; echo gone > /dev/null; echo x > /dev/full")
    assert proc.stdout.split() == ["00", "00", "00", "00", "8"]
    assert "No space left on device" in proc.stderr


def test_linux_devices_entry(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["devices"] = [
        {"path": "/dev/myfull", "type": "c", "major": 1, "minor": 7, "fileMode": 0o640,
         "uid": 0, "gid": 5},
        {"path": "/dev/sub/mynull", "type": "c", "major": 1, "minor": 3},
    ]
    proc = run_sh(rt, bundle, "stat -c '%F %t:%T %a %u:%g' /dev/myfull /dev/sub/mynull; "
                              "echo ok > /dev/sub/mynull && echo null-ok; echo x > /dev/myfull")
    assert proc.stdout.splitlines() == [
        "character special file 1:7 640 0:5",
        "character special file 1:3 666 0:0",
        "null-ok",
    ]
    assert "No space left on device" in proc.stderr  # the cgroup lets it be used


def test_devices_cgroup_denies_other_devices(rt: Runtime, bundle: Bundle) -> None:
    for name in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][name].append("CAP_MKNOD")
    proc = run_sh(rt, bundle, "mknod /tmp/mem c 1 1 && echo made; head -c1 /tmp/mem")
    assert proc.stdout == "made\n"
    assert "Operation not permitted" in proc.stderr


def test_cgroup_mount_shows_the_containers_limits(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"]["memory"] = {"limit": 64 << 20}
    bundle.linux["resources"]["pids"] = {"limit": 42}
    proc = run_sh(rt, bundle, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                              "/sys/fs/cgroup/pids/pids.max; mkdir /sys/fs/cgroup/memory/x")
    assert proc.stdout.splitlines() == [str(64 << 20), "42"]
    assert "Read-only file system" in proc.stderr


def test_proc_and_sys(rt: Runtime, bundle: Bundle) -> None:
    proc = run_sh(rt, bundle, "awk '$5 == \"/proc\" || $5 == \"/sys\" {print $5, $6, $9}' "
                              "/proc/self/mountinfo; touch /sys/kernel/x")
    lines = proc.stdout.splitlines()
    types = {line.split()[0]: line.split()[2] for line in lines}
    assert types == {"/proc": "proc", "/sys": "sysfs"}
    sys_opts = next(line.split()[1] for line in lines if line.startswith("/sys "))
    assert "ro" in sys_opts.split(",")
    assert "Read-only file system" in proc.stderr


def test_no_pivot(rt: Runtime, bundle: Bundle) -> None:
    out = ok(run_sh(rt, bundle, "ls /bin/busybox; test -e /work && echo host-visible; "
                                "echo $$", "--no-pivot"))
    assert out == ["/bin/busybox", "1"]


def test_host_mounts_are_not_visible_and_none_leak(rt: Runtime, bundle: Bundle) -> None:
    before = mounts(bundle.path)
    add_mount(bundle, "/scratch", "tmpfs", "tmpfs", [])
    out = ok(run_sh(rt, bundle, "cut -d' ' -f5 /proc/self/mountinfo"))
    assert "/scratch" in out
    assert not any(line.startswith("/work") or line.startswith("/run/") for line in out)
    assert mounts(bundle.path) == before == []
