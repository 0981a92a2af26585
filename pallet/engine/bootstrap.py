"""Offline base images: busybox from Debian's busybox-static, Debian from debootstrap.

Nothing here needs a registry on the internet: the quick start and the tests make
their base images from what the Debian mirror already gives the machine.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile

from pallet.errors import InvalidArgument, NotFound, NotSupported, SystemFailure
from pallet.storage.diff import tar_directory

BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = ("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n"
SUPPORTED = ("busybox", "debian")


def is_static(path: str) -> bool:
    """True if the ELF file has no program interpreter (PT_INTERP): it runs anywhere."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            raise NotSupported(f"{path} is not a 64-bit ELF executable")
        endian = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack_from(endian + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_rootfs(dest: str, busybox: str = BUSYBOX) -> None:
    """A 2 MB root: the static busybox, its applet links, /etc/passwd and group, /tmp."""
    if not os.path.exists(busybox):
        raise NotFound(f"{busybox} not found: apt-get install busybox-static")
    if not is_static(busybox):
        raise NotSupported(f"{busybox} is dynamically linked: apt-get install busybox-static")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev",
              "var", "home"):
        os.makedirs(os.path.join(dest, d), 0o755, exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    os.chmod(os.path.join(dest, "root"), 0o700)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = os.path.join(dest, applet)
        if not os.path.lexists(link):
            os.symlink("/bin/busybox", link)
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        with open(os.path.join(dest, "etc", name), "w") as f:
            f.write(text)


def apt_mirror() -> str:
    """The Debian mirror apt already uses (the only one this machine may reach)."""
    sources = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        sources += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    for path in sources:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if parts[:1] == ["deb"]:
                url = next((p for p in parts[1:] if p.startswith(("http://", "https://"))), "")
                if url and "security" not in url:
                    return url
            if parts[:1] == ["URIs:"] and len(parts) > 1 and "security" not in parts[1]:
                return parts[1]
    raise NotFound("no Debian mirror in /etc/apt/sources.list*")


def debian_rootfs(dest: str, suite: str) -> None:
    if not shutil.which("debootstrap"):
        raise NotFound("debootstrap is not installed: apt-get install debootstrap")
    proc = subprocess.run(["debootstrap", "--variant=minbase", suite, dest, apt_mirror()],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-5:] + proc.stderr.splitlines()[-5:])
        raise SystemFailure(f"debootstrap {suite} failed:\n{tail}")
    # apt's caches and logs are not part of an image
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
        path = os.path.join(dest, junk)
        for name in os.listdir(path) if os.path.isdir(path) else []:
            full = os.path.join(path, name)
            if os.path.isfile(full) or os.path.islink(full):
                os.unlink(full)


def build(name: str, tag: str, tmp: str) -> tuple[tempfile.TemporaryDirectory[str], list[str]]:
    """Make the rootfs for ``name:tag`` in a temp dir; returns it and the --changes."""
    if name not in SUPPORTED:
        raise InvalidArgument(f"no built-in bootstrap for {name!r}: choose one of "
                              + ", ".join(SUPPORTED))
    work = tempfile.TemporaryDirectory(dir=tmp, prefix="bootstrap-")
    root = os.path.join(work.name, "rootfs")
    os.mkdir(root, 0o755)
    try:
        if name == "busybox":
            busybox_rootfs(root)
            changes = ['CMD ["sh"]', f"ENV {PATH_ENV}"]
        else:
            debian_rootfs(root, "bookworm" if tag in ("latest", "") else tag)
            changes = ['CMD ["bash"]', f"ENV {PATH_ENV}"]
    except BaseException:
        work.cleanup()
        raise
    return work, changes


__all__ = ["build", "busybox_rootfs", "debian_rootfs", "is_static", "tar_directory"]
