"""COPY and ADD: files from the context (or another stage, or a URL) into a rootfs.

The rootfs is a build step's mounted snapshot; what is written there becomes the step's
layer. Every path in it is resolved as the image sees it (``buildcontext.inside``), so a
symlink the base image planted at the destination points into the image, never at the
host. The rules are Docker's:

- several sources, or a destination ending in ``/``, or one that is a directory
  already: the destination is a directory and each source goes into it by name;
- a directory source copies what it holds, not itself;
- ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into the destination, and
  fetches a URL into it (mode 0600, as Docker);
- what is written belongs to root, or to ``--chown``'s user; ``--chmod`` sets the mode
  of everything written; directories made on the way are 0755 and belong to the same
  owner.
"""

from __future__ import annotations

import os
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from pallet.engine.buildcontext import inside, unpack
from pallet.errors import InvalidArgument, NotFound
from pallet.storage import magic

FETCH_TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    root: str              # the mounted rootfs written into
    dest: str              # absolute path in it, as written (a trailing / kept)
    uid: int = 0
    gid: int = 0
    mode: int | None = None


def copy(sources: list[str], target: Target, extract: bool = False,
         keep: set[str] | frozenset[str] = frozenset()) -> None:
    """Copy host paths ``sources`` (already resolved, existing) to ``target``;
    ``extract``: unpack the archives among them (ADD), but those in ``keep``."""
    dest_rel = target.dest.strip("/")
    as_dir = (target.dest.endswith("/") or len(sources) > 1
              or os.path.isdir(inside(target.root, dest_rel)))
    if len(sources) > 1 and not target.dest.endswith("/"):
        raise InvalidArgument("When using COPY with more than one source file, the "
                              "destination must be a directory and end with a /")
    for src in sources:
        st = os.stat(src)
        if stat.S_ISDIR(st.st_mode):
            dir_rel = _make_dirs(target, dest_rel)
            _copy_tree(src, dir_rel, target)
        elif extract and src not in keep and is_archive(src):
            dir_rel = _make_dirs(target, dest_rel)
            with open(src, "rb") as f:
                unpack(f, inside(target.root, dir_rel), owners=True)
        else:
            if as_dir:
                parent = _make_dirs(target, dest_rel)
                rel = f"{parent}/{os.path.basename(src)}".lstrip("/")
            else:
                parent = _make_dirs(target, os.path.dirname(dest_rel))
                rel = f"{parent}/{os.path.basename(dest_rel)}".lstrip("/")
            _copy_entry(src, rel, target)


def is_archive(path: str) -> bool:
    with open(path, "rb") as f:
        return magic.is_tar(f.read(512))


def fetch(url: str, into: str) -> str:
    """Download ``url`` into directory ``into``; the file's path (named as the URL's
    last path element, mode 0600, mtime from Last-Modified as Docker sets it)."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
    path = os.path.join(into, name)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp, \
                open(path, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
            modified = resp.headers.get("Last-Modified")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidArgument(f"failed to fetch {url}: {reason}") from None
    os.chmod(path, 0o600)
    if modified:
        try:
            when = parsedate_to_datetime(modified).timestamp()
            os.utime(path, (when, when))
        except (TypeError, ValueError):
            pass
    return path


def _make_dirs(target: Target, rel: str) -> str:
    """Make directory ``rel`` (and its parents) in the rootfs; its resolved relative
    path."""
    done = ""
    for part in [p for p in rel.split("/") if p and p != "."]:
        cand = f"{done}/{part}".lstrip("/")
        host = inside(target.root, cand)
        if not os.path.isdir(host):
            if os.path.lexists(host):
                raise InvalidArgument(f"cannot copy to {'/' + cand}: not a directory")
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
            os.lchown(host, target.uid, target.gid)
        done = _rel(host, target.root)
    return done


def _rel(host: str, root: str) -> str:
    rel = os.path.relpath(host, root)
    return "" if rel == "." else rel


def _copy_tree(src: str, dir_rel: str, target: Target) -> None:
    for name in sorted(os.listdir(src)):
        _copy_entry(os.path.join(src, name), f"{dir_rel}/{name}".lstrip("/"), target)


def _copy_entry(src: str, rel: str, target: Target) -> None:
    parent = inside(target.root, os.path.dirname(rel))
    dst = os.path.join(parent, os.path.basename(rel))
    st = os.lstat(src)
    if os.path.lexists(dst) and not (stat.S_ISDIR(st.st_mode) and os.path.isdir(dst)
                                     and not os.path.islink(dst)):
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    mode = target.mode if target.mode is not None else stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        if not os.path.isdir(dst):
            os.mkdir(dst, 0o700)
        _copy_tree(src, _rel(dst, target.root), target)
        os.chmod(dst, mode)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
            os.fchmod(out.fileno(), mode)
    else:
        return  # no devices, fifos or sockets from a context
    os.lchown(dst, target.uid, target.gid)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def resolve_sources(root: str, patterns: list[str], what: str) -> list[str]:
    """Host paths of COPY sources ``patterns`` (globs allowed) in the tree at ``root``;
    ``what`` names the tree in errors ("build context", "stage x")."""
    from pallet.build.patterns import glob_context

    out: list[str] = []
    for pattern in patterns:
        rel = pattern.lstrip("/")
        if not _stays_inside(rel):
            raise InvalidArgument(f"forbidden path outside the build context: {pattern}")
        matches = glob_context(root, rel) if rel and rel != "." else ["."]
        hits = [inside(root, m) for m in matches]
        hits = [h for h in hits if os.path.lexists(h)]
        if not hits and not any(c in rel for c in "*?["):
            # a wildcard that matches nothing adds nothing, as Docker's
            raise NotFound(f"file not found in {what} or excluded by .dockerignore: "
                           f"stat {pattern}: file does not exist")
        out += hits
    if not out:
        raise InvalidArgument("no source files were specified")
    return out


def _stays_inside(rel: str) -> bool:
    depth = 0
    for p in rel.split("/"):
        if p == "..":
            depth -= 1
            if depth < 0:
                return False
        elif p not in ("", "."):
            depth += 1
    return True

