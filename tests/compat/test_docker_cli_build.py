"""Image builds through the real docker CLI (classic builder, DOCKER_BUILDKIT=0) and
docker-py, against a private palletd with a busybox image.

What a user sees is asserted: the step lines, "Using cache", the errors and exit codes,
what is (not) tagged, the image's config and the files inside a container run from it.
Docker's own output (dockerd 20.10's classic builder) is the reference; wording is
matched only where it carries meaning (the step, the code, the file, the line).

``PALLET_TEST_BUILD_ENGINE=dockerd`` runs the same tests against a private dockerd
instead (tests/support/dockerd.py): the proof that they hold for Docker. The heredoc
tests follow BuildKit's definition, which dockerd 20.10's classic builder lacks; they
are skipped there.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import os
import random
import re
import socket
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.dockerd import private_dockerd
from tests.support.palletd import palletd_with_image
from tests.support.registry import Registry, registry
from tests.support.runtime import busybox_template

__all__ = ["registry"]  # the fixture, used by name

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:build"
REFERENCE = "PALLET_TEST_BUILD_ENGINE"
STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
BUILT = re.compile(r"^Successfully built ([0-9a-f]{12})$", re.M)
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self._path)
        self.sock = s


@dataclass
class Engine:
    """palletd, or the reference dockerd: its socket and how the clients reach it."""

    kind: str  # "pallet" or "dockerd"
    sock: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, input: str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=self.env, input=input, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def ok(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        out = self.docker(*args, input=input)
        assert out.returncode == 0, f"docker {' '.join(args)}: {out.stdout}\n{out.stderr}"
        return out

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{self.sock}")

    def request(self, method: str, path: str, body: bytes,
                headers: dict[str, str]) -> tuple[int, bytes]:
        conn = _Unix(self.sock)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref).returncode == 0

    def config(self, ref: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.ok("image", "inspect", ref).stdout)[0]
        return info

    def containers(self) -> set[str]:
        return set(self.ok("ps", "-aq", "--no-trunc").stdout.split())


def _import_busybox(env: dict[str, str]) -> None:
    tar = subprocess.run(["tar", "-C", busybox_template(), "-c", "."], capture_output=True,
                         check=True).stdout
    subprocess.run(["docker", "import", "-m", "busybox rootfs", "-c", 'CMD ["sh"]', "-", IMAGE],
                   input=tar, env=env, capture_output=True, check=True, timeout=60)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    if os.environ.get(REFERENCE) == "dockerd":
        with private_dockerd() as d:
            _import_busybox(d.env)
            yield Engine("dockerd", d.sock)
    else:
        with palletd_with_image("pallet-test-build-", IMAGE, 'CMD ["sh"]') as p:
            yield Engine("pallet", p.socket)


@dataclass
class Made:
    """Images a test tags or builds; removed with every container at the test's end."""

    images: list[str] = field(default_factory=list)

    def tag(self, name: str) -> str:
        self.images.append(name)
        return name


@pytest.fixture
def made(engine: Engine) -> Iterator[Made]:
    m = Made()
    yield m
    left = engine.docker("ps", "-aq").stdout.split()
    if left:  # a failed RUN's container stays on Docker (--force-rm is off)
        engine.docker("rm", "-f", *left)
    for ref in reversed(m.images):
        engine.docker("rmi", "-f", ref)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def steps(out: str) -> list[tuple[str, list[str]]]:
    """The build's steps: (instruction as printed, the lines printed under it)."""
    found: list[tuple[str, list[str]]] = []
    for line in out.splitlines():
        m = STEP.match(line)
        if m:
            found.append((m.group(3), []))
        elif found:
            found[-1][1].append(line)
    return found


def cached(body: list[str]) -> bool:
    return any(line.strip() == "---> Using cache" for line in body)


def built_id(out: str) -> str:
    m = BUILT.search(out)
    assert m, f"no 'Successfully built <id>' in:\n{out}"
    return m.group(1)


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def multistage_context(root: Path) -> Path:
    return write(root, {
        "Dockerfile": (
            f"ARG BASE={IMAGE}\n"
            "FROM $BASE AS builder\n"
            "ARG GREETING=hello\n"
            'RUN mkdir -p /out && echo "$GREETING" > /out/greeting\n'
            "COPY . /ctx/\n"
            "FROM ${BASE}\n"
            "ARG VERSION=1.0\n"
            "ENV APP_VERSION=$VERSION APP_HOME=/app\n"
            'LABEL org.example.version=$VERSION maintainer="pallet team"\n'
            "WORKDIR /app\n"
            "COPY --from=builder /out/greeting ./greeting\n"
            "COPY --from=builder /ctx/ /app/ctx/\n"
            'RUN echo "appuser:x:1234:1234::/app:/bin/sh" >> /etc/passwd'
            " && chown -R appuser /app\n"
            "USER appuser\n"
            "EXPOSE 8080 9090/udp\n"
            'ENTRYPOINT ["/bin/sh", "-c"]\n'
            'CMD ["cat /app/greeting"]\n'),
        ".dockerignore": "secret.txt\nlogs/*.log\n!logs/important.log\n",
        "keep.txt": "keep\n",
        "secret.txt": "secret\n",
        "logs/a.log": "a\n",
        "logs/important.log": "important\n",
    })


INSIDE = "id; pwd; echo $APP_VERSION $APP_HOME; find /app | sort"
FILES = ["/app", "/app/ctx", "/app/ctx/.dockerignore", "/app/ctx/Dockerfile",
         "/app/ctx/keep.txt", "/app/ctx/logs", "/app/ctx/logs/important.log", "/app/greeting"]


def check_multistage_config(cfg: dict[str, Any], version: str) -> None:
    assert cfg["User"] == "appuser"
    assert cfg["WorkingDir"] == "/app"
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /app/greeting"]
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "9090/udp"}
    assert cfg["Labels"] == {"maintainer": "pallet team", "org.example.version": version}
    env = cfg["Env"]
    assert f"APP_VERSION={version}" in env and "APP_HOME=/app" in env
    assert any(e.startswith("PATH=") for e in env)  # the builder's default PATH
    assert not any(e.startswith(("GREETING=", "VERSION=", "BASE=")) for e in env)  # ARGs


def test_multistage_build(engine: Engine, made: Made, tmp_path: Path) -> None:
    ctx = multistage_context(tmp_path)
    before = engine.containers()
    out = engine.docker("build", "-t", made.tag("pallet-test/ms:1"),
                        "-t", made.tag("pallet-test/ms:extra"),
                        "--build-arg", "GREETING=hi", "--build-arg", "VERSION=2.5", str(ctx),
                        timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    found = steps(out.stdout)
    assert [s for s, _ in found][:2] == [f"ARG BASE={IMAGE}", "FROM $BASE AS builder"]
    assert len(found) == 17 and "Step 17/17 : CMD [\"cat /app/greeting\"]" in out.stdout
    assert "FROM ${BASE}" in [s for s, _ in found]
    image = built_id(out.stdout)
    lines = out.stdout.splitlines()
    assert lines[-2:] == ["Successfully tagged pallet-test/ms:1",
                          "Successfully tagged pallet-test/ms:extra"]
    # intermediate containers are removed by default
    assert engine.containers() == before

    info = engine.config("pallet-test/ms:1")
    assert short(info["Id"]) == image
    assert sorted(info["RepoTags"]) == ["pallet-test/ms:1", "pallet-test/ms:extra"]
    check_multistage_config(info["Config"], "2.5")
    fmt = engine.ok("inspect", "-f", "{{.Config.User}} {{.Config.WorkingDir}} "
                    "{{json .Config.Entrypoint}}", "pallet-test/ms:extra").stdout
    assert fmt == 'appuser /app ["/bin/sh","-c"]\n'

    assert engine.ok("run", "--rm", "pallet-test/ms:1").stdout == "hi\n"
    inside = engine.ok("run", "--rm", "pallet-test/ms:1", INSIDE).stdout.splitlines()
    assert inside[0].startswith("uid=1234(appuser) gid=1234")
    assert inside[1:3] == ["/app", "2.5 /app"]
    assert inside[3:] == FILES  # secret.txt and logs/a.log ignored, important.log kept


def test_docker_py_build_with_arg_defaults(engine: Engine, made: Made, tmp_path: Path) -> None:
    ctx = multistage_context(tmp_path)
    client = engine.client()
    try:
        image, logs = client.images.build(path=str(ctx), tag=made.tag("pallet-test/py:1"),
                                          rm=True)
        chunks = list(logs)
        text = "".join(c.get("stream", "") for c in chunks)
        assert "Step 2/17 : FROM $BASE AS builder" in text
        assert f"Successfully built {short(image.id)}" in text
        assert "Successfully tagged pallet-test/py:1" in text
        assert image.tags == ["pallet-test/py:1"]
        check_multistage_config(image.attrs["Config"], "1.0")  # ARG defaults
        assert client.containers.run(image.id, remove=True) == b"hello\n"
        inside = client.containers.run(image.id, [INSIDE], remove=True).decode().splitlines()
        assert inside[1:3] == ["/app", "1.0 /app"] and inside[3:] == FILES

        # the low-level API: a gzipped tar as custom context, args, labels, the aux id
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(str(ctx), arcname=".")
        stream = client.api.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True,
                                  encoding="gzip", tag=made.tag("pallet-test/py:2"), rm=True,
                                  buildargs={"VERSION": "7", "GREETING": "low"},
                                  labels={"built.by": "docker-py"}, decode=True)
        chunks = list(stream)
        assert not [c for c in chunks if "error" in c or "errorDetail" in c], chunks
        text = "".join(c.get("stream", "") for c in chunks)
        # a --label is one more step at the end (Docker: "Step 18/18 : LABEL built.by=...")
        last = [s for s, _ in steps(text)][-2:]
        assert last[0] == 'CMD ["cat /app/greeting"]'
        assert re.fullmatch(r'LABEL "?built\.by"?="?docker-py"?', last[1]), last
        aux = [c["aux"]["ID"] for c in chunks if "aux" in c]
        info = engine.config("pallet-test/py:2")
        assert aux[-1] == info["Id"] and IMAGE_ID.match(info["Id"])  # Docker: one per stage
        assert info["Config"]["Labels"] == {"maintainer": "pallet team",
                                            "org.example.version": "7",
                                            "built.by": "docker-py"}
        assert client.containers.run(info["Id"], remove=True) == b"low\n"
    finally:
        client.close()


def test_failing_run_reports_the_step_and_code(engine: Engine, made: Made,
                                               tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    ctx = write(tmp_path, {"Dockerfile": f"FROM {IMAGE}\nRUN echo before-{nonce}\n"
                                         "RUN exit 3\nRUN echo after > /after\n"})
    out = engine.docker("build", "-t", made.tag("pallet-test/fail:1"), str(ctx))
    # the CLI exits with the code of the errorDetail: the command's
    assert out.returncode == 3, out.stdout + out.stderr
    found = steps(out.stdout)
    assert [s for s, _ in found] == [f"FROM {IMAGE}", f"RUN echo before-{nonce}", "RUN exit 3"]
    assert f"before-{nonce}" in found[1][1]  # the RUN's output is streamed
    assert re.search(r"'/bin/sh -c exit 3' returned a non-zero code: 3", out.stderr), out.stderr
    assert "Successfully" not in out.stdout
    assert not engine.exists("pallet-test/fail:1")

    # RUN false through docker-py: BuildError with the code, nothing tagged
    write(tmp_path, {"Dockerfile": f"FROM {IMAGE}\nRUN false\n"})
    client = engine.client()
    try:
        with pytest.raises(docker.errors.BuildError) as err:
            client.images.build(path=str(ctx), tag=made.tag("pallet-test/fail:2"), rm=True)
        assert re.search(r"/bin/sh -c false'? returned a non-zero code: 1", err.value.msg)
    finally:
        client.close()
    assert not engine.exists("pallet-test/fail:2")


def test_cache_reuses_steps_until_a_copied_file_changes(engine: Engine, made: Made,
                                                       tmp_path: Path) -> None:
    ctx = write(tmp_path, {
        "Dockerfile": (f"FROM {IMAGE}\nENV NONCE={uuid.uuid4().hex}\nRUN echo one > /one\n"
                       "COPY a.txt /a.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /ab\n"
                       'CMD ["cat", "/ab"]\n'),
        "a.txt": "a1\n", "b.txt": "b1\n"})
    tag = made.tag("pallet-test/cache:1")
    first = engine.docker("build", "-t", tag, str(ctx))
    assert first.returncode == 0, first.stdout + first.stderr
    assert [cached(body) for _, body in steps(first.stdout)] == [False] * 7
    again = engine.docker("build", "-t", tag, str(ctx))
    assert again.returncode == 0, again.stdout + again.stderr
    found = steps(again.stdout)
    assert len(found) == 7 and all(cached(body) for _, body in found[1:])
    assert " ---> Running in" not in again.stdout
    assert built_id(again.stdout) == built_id(first.stdout)

    (ctx / "b.txt").write_text("b2\n")
    changed = engine.docker("build", "-t", tag, str(ctx))
    assert changed.returncode == 0, changed.stdout + changed.stderr
    found = steps(changed.stdout)
    assert [s for s, _ in found][4] == "COPY b.txt /b.txt"
    assert [cached(body) for _, body in found[1:]] == [True, True, True, False, False, False]
    assert built_id(changed.stdout) != built_id(first.stdout)
    assert engine.ok("run", "--rm", tag).stdout == "a1\nb2\n"
    # an unchanged step's layer is the same one: /one is shared
    assert engine.ok("run", "--rm", tag, "cat", "/one").stdout == "one\n"


def _bad_build(engine: Engine, made: Made, ctx: Path, dockerfile: str,
               tag: str) -> subprocess.CompletedProcess[str]:
    (ctx / "Dockerfile").write_text(dockerfile)
    out = engine.docker("build", "-t", made.tag(tag), str(ctx))
    assert out.returncode != 0, out.stdout + out.stderr
    assert "Successfully" not in out.stdout
    assert not engine.exists(tag)
    return out


def test_unknown_instruction(engine: Engine, made: Made, tmp_path: Path) -> None:
    out = _bad_build(engine, made, tmp_path, f"FROM {IMAGE}\nRUN echo hi\nFOO bar\n",
                     "pallet-test/bad:unknown")
    assert re.search(r"line 3: unknown instruction: FOO", out.stderr, re.I), out.stderr
    assert "Step " not in out.stdout  # refused before any step ran


def test_unterminated_heredoc(engine: Engine, made: Made, tmp_path: Path) -> None:
    out = _bad_build(engine, made, tmp_path, f"FROM {IMAGE}\nRUN <<EOF\necho hi\n",
                     "pallet-test/bad:heredoc")
    assert re.search(r"\bline \d+\b", out.stderr), out.stderr
    assert "Step " not in out.stdout
    if engine.kind == "pallet":  # dockerd 20.10 knows no heredocs ("unknown instruction")
        assert "heredoc" in out.stderr.lower() and "line 2" in out.stderr, out.stderr


def test_copy_from_outside_the_context(engine: Engine, made: Made, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("outside\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    out = _bad_build(engine, made, ctx, f"FROM {IMAGE}\nCOPY ../x /x\n", "pallet-test/bad:out")
    assert "Step 2/2 : COPY ../x /x" in out.stdout
    assert "../x" in out.stderr and "outside the build context" in out.stderr, out.stderr


def test_missing_base_image(engine: Engine, made: Made, tmp_path: Path,
                            registry: Registry) -> None:
    # a registry that answers (none on the internet is reachable here): "manifest unknown"
    ref = f"{registry.host}/nosuch/image:1"
    out = _bad_build(engine, made, tmp_path, f"FROM {ref}\nRUN true\n", "pallet-test/bad:base")
    assert f"Step 1/2 : FROM {ref}" in out.stdout
    assert "Step 2/2" not in out.stdout
    assert f"{registry.host}/nosuch/image" in out.stderr, out.stderr  # the error names it

    # Docker Hub (unreachable here): Docker says only why the pull failed ("Get
    # https://registry-1.docker.io/v2/: ... no such host"); pallet names the image too
    out = _bad_build(engine, made, tmp_path, "FROM nosuch/image:1\nRUN true\n",
                     "pallet-test/bad:hub")
    assert "Step 1/2 : FROM nosuch/image:1" in out.stdout and "Step 2/2" not in out.stdout
    error = out.stderr.split("environment-variable.", 1)[-1].strip()
    assert error, out.stderr
    if engine.kind == "pallet":
        assert "nosuch/image" in error, error


def _error_of(status: int, body: bytes) -> str:
    """The error of a /build answer: an error status, or an errorDetail in the stream."""
    if status >= 400:
        return str(json.loads(body)["message"])
    assert status == 200, (status, body)
    for line in body.decode().splitlines():
        msg = json.loads(line)
        if "errorDetail" in msg or "error" in msg:
            return str(msg.get("error") or msg["errorDetail"]["message"])
    raise AssertionError(f"no error in {body!r}")


def test_context_that_is_not_a_tar(engine: Engine, made: Made) -> None:
    junk = random.Random(7).randbytes(10240)
    status, body = engine.request("POST", "/v1.41/build?t=" + made.tag("pallet-test/bad:junk"),
                                  junk, {"Content-Type": "application/x-tar"})
    assert "tar" in _error_of(status, body).lower()  # Docker: "archive/tar: invalid tar header"
    assert not engine.exists("pallet-test/bad:junk")

    client = engine.client()
    try:
        try:
            chunks = list(client.api.build(fileobj=io.BytesIO(junk), custom_context=True,
                                           tag=made.tag("pallet-test/bad:junk2"), decode=True))
        except docker.errors.APIError as e:  # Docker: 500 before any stream
            assert "tar" in str(e.explanation).lower()
        else:
            assert any("error" in c for c in chunks), chunks
    finally:
        client.close()
    assert not engine.exists("pallet-test/bad:junk2")


def test_flags_target_tags_file_label_iidfile_quiet(engine: Engine, made: Made,
                                                   tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    dockerfile = (f"FROM {IMAGE} AS first\nRUN echo first-{nonce} > /stage\n"
                  f"FROM {IMAGE} AS second\nRUN echo second-{nonce} > /stage\n"
                  "COPY --from=first /stage /first-stage\n")
    write(tmp_path, {"outside.Dockerfile": dockerfile, "ctx/data.txt": "data\n"})
    iid = tmp_path / "iid"
    out = engine.docker("build", "-q", "-f", str(tmp_path / "outside.Dockerfile"),
                        "--target", "first", "-t", made.tag("pallet-test/flags:first"),
                        "-t", made.tag("pallet-test/flags:also"), "--label", "a.b=c",
                        "--label", "empty=", "--iidfile", str(iid), str(tmp_path / "ctx"))
    assert out.returncode == 0, out.stdout + out.stderr
    image = out.stdout.strip()
    assert IMAGE_ID.match(image) and out.stdout == image + "\n", out.stdout  # -q: only the id
    assert iid.read_text() == out.stdout  # with -q the CLI writes what it printed
    info = engine.config(image)
    assert sorted(info["RepoTags"]) == ["pallet-test/flags:also", "pallet-test/flags:first"]
    assert info["Config"]["Labels"] == {"a.b": "c", "empty": ""}
    assert engine.ok("run", "--rm", image, "cat", "/stage").stdout == f"first-{nonce}\n"

    # -f - : the Dockerfile from stdin, the context a directory; both stages run (the
    # last needs the first)
    out = engine.docker("build", "-f", "-", "-t", made.tag("pallet-test/flags:stdin"),
                        str(tmp_path / "ctx"), input=dockerfile)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s for s, _ in steps(out.stdout)] == dockerfile.splitlines()
    assert cached(steps(out.stdout)[1][1])  # the first stage's RUN, built above
    assert engine.ok("run", "--rm", "pallet-test/flags:stdin", "cat",
                     "/stage").stdout == f"second-{nonce}\n"


def test_no_cache_and_rm(engine: Engine, made: Made, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": f"FROM {IMAGE}\nARG WHO\n"
                                         f"RUN echo $WHO-{uuid.uuid4().hex} > /who\n"})
    tag = made.tag("pallet-test/rm:1")
    before = engine.containers()
    iid = tmp_path / "iid"
    first = engine.docker("build", "--build-arg", "WHO=me", "-t", tag, "--iidfile", str(iid),
                          str(ctx))
    assert first.returncode == 0, first.stdout + first.stderr
    assert IMAGE_ID.match(iid.read_text()) and short(iid.read_text()) == built_id(first.stdout)
    # Docker: "Removing intermediate container <id>" after each RUN
    assert re.search(r"^ *(---> )?Remov\w+ intermediate container [0-9a-f]{12}$", first.stdout,
                     re.M), first.stdout
    assert engine.containers() == before  # --rm is the default
    assert engine.ok("run", "--rm", tag, "cat", "/who").stdout.startswith("me-")

    out = engine.docker("build", "--no-cache", "--rm=false", "--build-arg", "WHO=me", "-t", tag,
                        str(ctx))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Using cache" not in out.stdout
    running = [line.split()[-1] for line in out.stdout.splitlines()
               if line.startswith(" ---> Running in ")]
    assert running and "intermediate container" not in out.stdout
    kept = engine.containers() - before
    assert {c[:12] for c in kept} >= set(running)  # the RUN step's container stays
    status = engine.ok("ps", "-a", "--filter", f"id={running[-1]}", "--format",
                       "{{.Status}}").stdout
    assert status.startswith("Exited (0)")


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_add_extracts_a_local_tar(engine: Engine, made: Made, tmp_path: Path) -> None:
    archive = _tar({"top.txt": b"top\n", "sub/inner.txt": b"inner\n"})
    ctx = write(tmp_path, {
        "Dockerfile": (f"FROM {IMAGE}\nADD files.tar /unpacked/\nADD files.tar.gz /gz/\n"
                       "COPY files.tar /copied/\n"),
        "files.tar": archive, "files.tar.gz": gzip.compress(archive)})
    tag = made.tag("pallet-test/add:1")
    out = engine.docker("build", "-t", tag, str(ctx))
    assert out.returncode == 0, out.stdout + out.stderr
    found = engine.ok("run", "--rm", tag, "sh", "-c",
                      "find /unpacked /gz /copied -type f | sort; cat /gz/sub/inner.txt").stdout
    assert found.splitlines() == ["/copied/files.tar", "/gz/sub/inner.txt", "/gz/top.txt",
                                  "/unpacked/sub/inner.txt", "/unpacked/top.txt", "inner"]


def test_heredocs(engine: Engine, made: Made, tmp_path: Path) -> None:
    if engine.kind == "dockerd":
        pytest.skip("dockerd 20.10's classic builder has no heredocs; BuildKit defines them")
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE}\n"
        "RUN <<EOF\n"
        "x=1\n"
        'echo "first $x" > /from-run\n'
        "echo second >> /from-run\n"
        "EOF\n"
        "COPY <<EOF /etc/from-copy\n"
        "hello\n"
        "  world\n"
        "EOF\n"
        'CMD ["cat", "/from-run", "/etc/from-copy"]\n')})
    tag = made.tag("pallet-test/heredoc:1")
    out = engine.docker("build", "-t", tag, str(ctx))
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(steps(out.stdout)) == 4
    assert engine.ok("run", "--rm", tag).stdout == "first 1\nsecond\nhello\n  world\n"


def test_history_shows_the_steps(engine: Engine, made: Made, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE}\nENV NONCE={uuid.uuid4().hex}\nLABEL kind=history\n"
        "RUN echo some-content > /file\nWORKDIR /tmp\nCMD [\"cat\", \"/file\"]\n")})
    tag = made.tag("pallet-test/history:1")
    out = engine.docker("build", "-t", tag, str(ctx))
    assert out.returncode == 0, out.stdout + out.stderr
    base = len(engine.ok("history", "-q", IMAGE).stdout.split())
    rows = [line.split("|", 1) for line in engine.ok(
        "history", "--no-trunc", "--format", "{{.Size}}|{{.CreatedBy}}", tag).stdout.splitlines()]
    assert len(rows) == base + 5
    mine = rows[:5]  # newest first
    for (size, by), word in zip(mine, ["CMD", "WORKDIR", "echo some-content", "LABEL", "ENV"],
                                strict=True):
        assert word in by, rows
        if word != "echo some-content":
            assert size == "0B", rows
    assert mine[2][0] != "0B"  # the RUN wrote a file
    ids = engine.ok("history", "-q", tag).stdout.split()
    assert ids[0] == short(engine.config(tag)["Id"])
