"""pallet build: a directory (or a tar on stdin) and a Dockerfile, into an image.

As the docker CLI's classic build: the context is sent as a tar with .dockerignore
applied here (the Dockerfile and .dockerignore always go, the daemon drops them if they
are excluded); a Dockerfile from outside the context or from stdin travels inside the
tar under a name of its own. The daemon's messages are shown as they come.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from typing import TYPE_CHECKING

from pallet.cli.flags import INT, LIST, STR, Flag, UsageError, parse
from pallet.client.transport import Transport
from pallet.oci import jsonfast as json
from pallet.storage import magic

if TYPE_CHECKING:  # typing costs ~5 ms to import; the annotations are strings
    from typing import Any, BinaryIO, TextIO

FLAGS = [
    Flag("-t,--tag", LIST), Flag("-f,--file", STR), Flag("--build-arg", LIST),
    Flag("--label", LIST), Flag("--no-cache"), Flag("--pull"), Flag("-q,--quiet"),
    Flag("--rm", default=True), Flag("--force-rm"), Flag("--target", STR),
    Flag("--network", STR), Flag("--iidfile", STR), Flag("--cache-from", LIST),
    Flag("--squash"), Flag("--add-host", LIST), Flag("--platform", STR),
    Flag("-m,--memory", STR), Flag("--memory-swap", STR), Flag("--cpu-shares", INT),
    Flag("--cpuset-cpus", STR), Flag("--cpu-period", INT), Flag("--cpu-quota", INT),
    Flag("--shm-size", STR), Flag("--progress", STR), Flag("--source-date-epoch", INT),
    Flag("--disable-content-trust"),
]
SPOOL = 32 << 20  # contexts up to this size are sent from memory


def build(host: str | None, argv: list[str]) -> int:
    a = parse(argv, FLAGS)
    if len(a.args) != 1:
        raise UsageError('"pallet build" requires exactly 1 argument.')
    path = a.args[0]
    dockerfile = a.file if isinstance(a.file, str) else ""
    query: dict[str, Any] = {
        "q": 1 if a.quiet else None, "nocache": 1 if a.no_cache else None,
        "pull": 1 if a.pull else None, "rm": 1 if a.rm else 0,
        "forcerm": 1 if a.force_rm else None, "target": a.target or None,
        "networkmode": a.network or None, "squash": 1 if a.squash else None,
        "platform": a.platform or None, "cpushares": a.cpu_shares or None,
        "cpusetcpus": a.cpuset_cpus or None, "cpuperiod": a.cpu_period or None,
        "cpuquota": a.cpu_quota or None,
        "sourcedateepoch": a.source_date_epoch if a.source_date_epoch is not None else None,
        "version": "1",
    }
    for flag, key in (("memory", "memory"), ("memory_swap", "memswap"),
                      ("shm_size", "shmsize")):
        value = getattr(a, flag)
        if isinstance(value, str) and value:
            from pallet.cli.containers import ram_in_bytes

            query[key] = ram_in_bytes(value)
    args: dict[str, str | None] = {}
    for item in _strs(a.build_arg):
        k, eq, v = item.partition("=")
        args[k] = v if eq else os.environ.get(k)
    if args:
        query["buildargs"] = json.dumps(args)
    labels = dict(item.partition("=")[::2] for item in _strs(a.label))
    if labels:
        query["labels"] = json.dumps(labels)
    if a.cache_from:
        query["cachefrom"] = json.dumps(_strs(a.cache_from))
    if a.add_host:
        query["extrahosts"] = ",".join(_strs(a.add_host))
    stdin_dockerfile = dockerfile == "-"
    if path == "-" and stdin_dockerfile:
        raise UsageError("invalid argument: can't use stdin for both build context and "
                         "dockerfile")
    body, name, size = _context(path, dockerfile)
    query["dockerfile"] = name
    if not a.quiet:
        from pallet.oci.units import human_size

        sys.stdout.write(f"Sending build context to pallet daemon  "
                         f"{human_size(size)}\n")
        sys.stdout.flush()
    resp = Transport(host).request(
        "POST", "/build", query, body=body,
        headers={"Content-Type": "application/x-tar",
                 "X-Registry-Config": registry_config()},
        repeated={"t": _strs(a.tag)})
    progress = _Build(sys.stdout if not a.quiet else None)
    try:
        for line in resp.lines():
            progress.show(json.loads(line))
    except _Failed as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n")
        return exc.code
    finally:
        resp.close()
        sys.stdout.flush()
    image_id = progress.image
    if a.quiet and image_id:
        sys.stdout.write(image_id + "\n")
    if isinstance(a.iidfile, str) and a.iidfile and image_id:
        with open(a.iidfile, "w") as f:
            f.write(image_id)
    return 0


class _Failed(Exception):
    """The build's stream ended with an error; ``code`` is the CLI's exit status (a
    failed step's own exit code, as the docker CLI exits)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Build:
    """A build's messages: ``stream`` text as it comes, a pull's status one line each
    (builds rarely pull; pull's progress bars are not worth their imports here)."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.image = ""

    def show(self, msg: dict[str, Any]) -> None:
        error = msg.get("errorDetail") or msg.get("error")
        if error:
            text = error.get("message") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            raise _Failed(str(text or msg.get("error") or "unknown error"),
                          code if isinstance(code, int) and code else 1)
        if isinstance(msg.get("aux"), dict) and isinstance(msg["aux"].get("ID"), str):
            self.image = msg["aux"]["ID"]
        text = msg.get("stream")
        if isinstance(text, str):
            if text.startswith("sha256:") and " " not in text.strip():
                self.image = text.strip()  # what -q answers
        elif isinstance(msg.get("status"), str):
            ident = msg.get("id")
            text = f"{ident}: {msg['status']}\n" if ident else f"{msg['status']}\n"
            if msg.get("progressDetail"):
                return  # byte counts: not drawn here
        else:
            return
        if self.out is not None:
            self.out.write(text)
            self.out.flush()


def registry_config() -> str:
    """``X-Registry-Config``: every stored login, for the pulls the build makes (FROM),
    as the docker CLI sends it; ``e30=`` ({}) when there are none."""
    import base64

    # credentials.default_path's rule, without importing that module (~30 ms) when
    # there is no login to send
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"),
                                                                ".docker")
    try:
        with open(os.path.join(directory, "config.json"), "rb") as f:
            auths = json.loads(f.read()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        auths = {}
    doc: dict[str, dict[str, str]] = {}
    if auths:
        from pallet.cli.distribution import auth_doc
        from pallet.image.registry.credentials import CredentialStore

        doc = {key: auth_doc(creds, key) for key, creds in CredentialStore().all().items()}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _context(path: str, dockerfile: str) -> tuple[bytes | BinaryIO, str, int]:
    """The context tar to send, the Dockerfile's name in it, and its size."""
    if path == "-":
        data = sys.stdin.buffer.read()
        if not magic.is_tar(data[:512]):  # a Dockerfile on stdin: an empty context
            return _pack(None, [], ("Dockerfile", data)), "Dockerfile", 0
        return data, dockerfile or "Dockerfile", len(data)
    if not os.path.isdir(path):
        raise UsageError(f'unable to prepare context: path "{path}" not found')
    extra: tuple[str, bytes] | None = None
    name = dockerfile or "Dockerfile"
    if dockerfile == "-":
        extra = (f".dockerfile.{os.urandom(10).hex()}", sys.stdin.buffer.read())
        name = extra[0]
    elif dockerfile:
        full = os.path.abspath(dockerfile)
        inside = os.path.relpath(full, os.path.abspath(path))
        if inside.startswith("..") or os.path.isabs(inside):
            try:
                with open(full, "rb") as f:
                    extra = (f".dockerfile.{os.urandom(10).hex()}", f.read())
            except OSError as exc:
                raise UsageError(f"unable to prepare context: {exc}") from None
            name = extra[0]
        else:
            name = inside
    from pallet.build.patterns import Matcher, read_dockerignore, walk_context

    try:
        with open(os.path.join(path, ".dockerignore"), encoding="utf-8") as f:
            patterns = read_dockerignore(f.read())
    except FileNotFoundError:
        patterns = []
    matcher = Matcher(patterns)
    names = list(walk_context(path, matcher))
    for always in (name, ".dockerignore"):
        if always not in names and os.path.lexists(os.path.join(path, always)):
            names.append(always)
    ignore = None
    if extra is not None:  # the Dockerfile that came along is no part of the context
        names = [n for n in names if n != ".dockerignore"]
        ignore = "\n".join([*patterns, extra[0]]) + "\n"
    spool = _pack(path, names, extra, ignore)
    return spool, name, len(spool) if isinstance(spool, bytes) else os.fstat(
        spool.fileno()).st_size


def _pack(root: str | None, names: list[str], extra: tuple[str, bytes] | None,
          ignore: str | None = None) -> bytes | BinaryIO:
    spool: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 (returned)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in names:
            assert root is not None
            info = tar.gettarinfo(os.path.join(root, rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(os.path.join(root, rel), "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
        more = [extra] if extra is not None else []
        if ignore is not None:
            more.append((".dockerignore", ignore.encode()))
        for arcname, content in more:
            info = tarfile.TarInfo(arcname)
            info.size = len(content)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(content))
    spool.seek(0)
    if not spool._rolled:
        data: bytes = spool.read()
        return data
    out: BinaryIO = spool
    return out
