"""`pallet build` with docker's flags against a private palletd; and what only pallet does:
reproducible builds (SOURCE_DATE_EPOCH) and independent stages built at the same time.

Docker's classic builder is the reference for the output (see test_docker_cli_build.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.test_docker_cli_build import cached, steps, write
from tests.conftest import REPO
from tests.support.palletd import Palletd, palletd_with_image

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:clibuild"
BUILT = re.compile(r"^Successfully built ([0-9a-f]{12})$", re.M)
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-clibuild-", IMAGE, 'CMD ["sh"]') as d:
        yield d


@pytest.fixture
def made(pd: Palletd) -> Iterator[list[str]]:
    """Images a test names; removed, with every container left, at its end."""
    images: list[str] = []
    yield images
    left = pd.docker("ps", "-aq", check=False).stdout.split()
    if left:
        pd.docker("rm", "-f", *left, check=False)
    for ref in reversed(images):
        pd.docker("rmi", "-f", ref, check=False)


def pallet(d: Palletd, *args: str, stdin: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                          env={**os.environ, "DOCKER_HOST": d.host}, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(d: Palletd, *args: str, stdin: str | None = None) -> str:
    out = pallet(d, *args, stdin=stdin)
    assert out.returncode == 0, f"pallet {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def test_build_with_docker_flags(pd: Palletd, made: list[str], tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    write(tmp_path, {
        "app.Dockerfile": (
            f"ARG BASE={IMAGE}\n"
            "FROM $BASE AS builder\n"
            "ARG GREETING=hello\n"
            f'RUN mkdir /out && echo "$GREETING {nonce}" > /out/greeting\n'
            "FROM $BASE\n"
            "ARG VERSION=1.0\n"
            "ENV APP_VERSION=$VERSION\n"
            "WORKDIR /app\n"
            "COPY --from=builder /out/greeting ./greeting\n"
            "COPY . ./ctx/\n"
            'RUN echo "appuser:x:1234:1234::/app:/bin/sh" >> /etc/passwd\n'
            "USER appuser\n"
            "EXPOSE 8080\n"
            'CMD ["cat", "/app/greeting"]\n'),
        "ctx/.dockerignore": "*.secret\n!keep.secret\n",
        "ctx/one.txt": "one\n", "ctx/drop.secret": "no\n", "ctx/keep.secret": "yes\n"})
    out = pallet(pd, "build", "-f", str(tmp_path / "app.Dockerfile"),
                 "-t", "pallet-test/cli-build:1", "-t", "pallet-test/cli-build:2",
                 "--build-arg", "GREETING=hi", "--build-arg", "VERSION=3",
                 "--label", "team=pallet", str(tmp_path / "ctx"))
    made += ["pallet-test/cli-build:1", "pallet-test/cli-build:2"]
    assert out.returncode == 0, out.stdout + out.stderr
    found = [s for s, _ in steps(out.stdout)]
    assert found[:2] == [f"ARG BASE={IMAGE}", "FROM $BASE AS builder"]
    # a --label is the last step, as on Docker ("LABEL team=pallet")
    assert re.fullmatch(r'LABEL "?team"?="?pallet"?', found[-1]), found
    image = BUILT.search(out.stdout)
    assert image, out.stdout
    assert out.stdout.splitlines()[-2:] == ["Successfully tagged pallet-test/cli-build:1",
                                            "Successfully tagged pallet-test/cli-build:2"]
    assert pd.docker("ps", "-aq").stdout == ""  # intermediate containers are gone

    fmt = ("{{.Id}} {{.Config.User}} {{.Config.WorkingDir}} {{json .Config.Cmd}} "
           "{{json .Config.ExposedPorts}} {{json .Config.Labels}} {{json .RepoTags}}")
    info = ok(pd, "image", "inspect", "-f", fmt, "pallet-test/cli-build:2").split()
    assert info[0][7:19] == image.group(1)
    assert info[1:] == ["appuser", "/app", '["cat","/app/greeting"]', '{"8080/tcp":{}}',
                        '{"team":"pallet"}',
                        '["pallet-test/cli-build:1","pallet-test/cli-build:2"]']
    env = ok(pd, "image", "inspect", "-f", "{{json .Config.Env}}", "pallet-test/cli-build:1")
    assert '"APP_VERSION=3"' in env and "GREETING" not in env

    assert ok(pd, "run", "--rm", "pallet-test/cli-build:1") == f"hi {nonce}\n"
    inside = ok(pd, "run", "--rm", "pallet-test/cli-build:1", "sh", "-c",
                "id -un; pwd; echo $APP_VERSION; ls -A ctx")
    assert inside.split() == ["appuser", "/app", "3", ".dockerignore", "keep.secret", "one.txt"]


def test_quiet_iidfile_target_and_stdin(pd: Palletd, made: list[str], tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    dockerfile = (f"FROM {IMAGE} AS first\nRUN echo first-{nonce} > /stage\n"
                  f"FROM {IMAGE} AS second\nRUN echo second-{nonce} > /stage\n")
    ctx = write(tmp_path, {"Dockerfile": dockerfile})
    iid = tmp_path / "iid"
    out = pallet(pd, "build", "-q", "--target", "first", "--iidfile", str(iid),
                 "-t", "pallet-test/cli-q:1", str(ctx))
    made.append("pallet-test/cli-q:1")
    assert out.returncode == 0, out.stdout + out.stderr
    image = out.stdout.strip()
    assert IMAGE_ID.match(image) and out.stdout == image + "\n", out.stdout  # only the id
    assert iid.read_text().strip() == image
    assert ok(pd, "run", "--rm", "pallet-test/cli-q:1", "cat", "/stage") == f"first-{nonce}\n"

    out = pallet(pd, "build", "-f", "-", "-t", "pallet-test/cli-q:2", str(tmp_path),
                 stdin=dockerfile)
    made.append("pallet-test/cli-q:2")
    assert out.returncode == 0, out.stdout + out.stderr
    found = steps(out.stdout)
    # the classic builder also runs the unused first stage (cached here), BuildKit skips it
    assert [s for s, _ in found][-2:] == dockerfile.splitlines()[2:]
    assert not cached(found[-1][1])
    assert ok(pd, "run", "--rm", "pallet-test/cli-q:2", "cat", "/stage") == f"second-{nonce}\n"


def test_failing_run_and_bad_dockerfile(pd: Palletd, made: list[str], tmp_path: Path) -> None:
    made += ["pallet-test/cli-fail:1", "pallet-test/cli-fail:2"]
    ctx = write(tmp_path, {"Dockerfile": f"FROM {IMAGE}\nRUN echo before\nRUN exit 3\n"
                                         "RUN echo after\n"})
    out = pallet(pd, "build", "-t", "pallet-test/cli-fail:1", str(ctx))
    assert out.returncode == 3, out.stdout + out.stderr  # the command's code, as docker
    assert "Step 3/4 : RUN exit 3" in out.stdout and "Step 4/4" not in out.stdout
    assert re.search(r"'/bin/sh -c exit 3' returned a non-zero code: 3", out.stderr), out.stderr
    assert pallet(pd, "image", "inspect", "pallet-test/cli-fail:1").returncode == 1

    write(tmp_path, {"Dockerfile": f"FROM {IMAGE}\n\nRUN echo hi\nFOO bar\n"})
    out = pallet(pd, "build", "-t", "pallet-test/cli-fail:2", str(ctx))
    assert out.returncode != 0 and "Step " not in out.stdout, out.stdout
    assert re.search(r"line 4: unknown instruction: FOO", out.stderr, re.I), out.stderr
    assert pallet(pd, "image", "inspect", "pallet-test/cli-fail:2").returncode == 1


def test_cache_and_no_cache(pd: Palletd, made: list[str], tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (f"FROM {IMAGE}\nENV NONCE={uuid.uuid4().hex}\n"
                                          "COPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n"),
                           "a.txt": "a\n"})
    made.append("pallet-test/cli-cache:1")
    first = ok(pd, "build", "-t", "pallet-test/cli-cache:1", str(ctx))
    again = ok(pd, "build", "-t", "pallet-test/cli-cache:1", str(ctx))
    assert [cached(b) for _, b in steps(first)] == [False] * 4
    assert [cached(b) for _, b in steps(again)] == [False, True, True, True]
    assert BUILT.findall(first) == BUILT.findall(again)
    fresh = ok(pd, "build", "--no-cache", "-t", "pallet-test/cli-cache:1", str(ctx))
    assert "Using cache" not in fresh and " ---> Running in " in fresh


def _reproducible_id(pd: Palletd, ctx: Path, *flags: str) -> str:
    out = ok(pd, "build", "-q", "--no-cache", *flags, str(ctx))
    assert IMAGE_ID.match(out.strip()), out
    return out.strip()


@pytest.mark.parametrize("flags", [("--source-date-epoch", "0"),
                                   ("--build-arg", "SOURCE_DATE_EPOCH=0")])
def test_source_date_epoch_gives_the_same_image(pd: Palletd, made: list[str], tmp_path: Path,
                                                flags: tuple[str, str]) -> None:
    ctx = write(tmp_path, {
        "Dockerfile": (f"FROM {IMAGE} AS build\nRUN mkdir /out && echo built > /out/file "
                       "&& touch /out/now\n"
                       f"FROM {IMAGE}\nCOPY data.txt /data.txt\n"
                       "COPY --from=build /out /out\nENV MODE=repro\nWORKDIR /out\n"
                       'CMD ["cat", "file"]\n'),
        "data.txt": "data\n"})
    first = _reproducible_id(pd, ctx, *flags)
    made.append(first)
    time.sleep(1.1)  # a clock that shows would show now
    second = _reproducible_id(pd, ctx, *flags)
    made.append(second)
    assert second == first
    created = ok(pd, "image", "inspect", "-f", "{{.Created}}", first).strip()
    assert created.startswith("1970-01-01T00:00:00"), created
    assert ok(pd, "run", "--rm", first) == "built\n"


STAMP = ("RUN s=$(cut -d' ' -f1 /proc/uptime); sleep 2; e=$(cut -d' ' -f1 /proc/uptime); "
         'echo "$s $e {nonce}" > /stamp')


def test_independent_stages_build_concurrently(pd: Palletd, made: list[str],
                                               tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE} AS left\n{STAMP.format(nonce=nonce)}\n"
        f"FROM {IMAGE} AS right\n{STAMP.format(nonce=nonce)} && echo right >> /stamp\n"
        f"FROM {IMAGE}\nCOPY --from=left /stamp /stamps/left\n"
        "COPY --from=right /stamp /stamps/right\n")})
    made.append("pallet-test/cli-parallel:1")
    ok(pd, "build", "--no-cache", "-t", "pallet-test/cli-parallel:1", str(ctx))
    text = ok(pd, "run", "--rm", "pallet-test/cli-parallel:1", "cat", "/stamps/left",
              "/stamps/right").split("\n")
    (ls, le), (rs, re_) = ([float(x) for x in line.split()[:2]] for line in (text[0], text[1]))
    assert le - ls >= 2 and re_ - rs >= 2  # each really slept
    assert text[2] == "right"
    # the two stages' RUNs were running at the same time (on one clock: the host's uptime)
    assert ls < re_ and rs < le, (ls, le, rs, re_)


def test_only_the_stages_the_target_needs_are_built(pd: Palletd, made: list[str],
                                                   tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE} AS unused\nRUN exit 9\n"
        f"FROM {IMAGE} AS used\nRUN echo used > /u\n"
        f"FROM {IMAGE}\nCOPY --from=used /u /u\n")})
    made.append("pallet-test/cli-stages:1")
    out = ok(pd, "build", "-t", "pallet-test/cli-stages:1", str(ctx))
    assert "RUN exit 9" not in out  # never reached: nothing needs it
    assert next(s for s, _ in steps(out)) == f"FROM {IMAGE} AS used"
    assert ok(pd, "run", "--rm", "pallet-test/cli-stages:1", "cat", "/u") == "used\n"
    failed = pallet(pd, "build", "--target", "unused", str(ctx))
    assert failed.returncode == 9, failed.stdout + failed.stderr  # the step's own code


def test_squash_makes_one_layer_on_the_base(pd: Palletd, made: list[str],
                                            tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE}\nRUN echo a > /a && mkdir /d && echo x > /d/x\n"
        "RUN echo b > /b && rm /a /d/x\nENV SQUASHED=yes\n")})
    made.append("pallet-test/cli-squash:1")
    base_layers = len(pd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                IMAGE).stdout.split(","))
    ok(pd, "build", "--squash", "-t", "pallet-test/cli-squash:1", str(ctx))
    info = pd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                     "pallet-test/cli-squash:1").stdout
    assert len(info.split(",")) == base_layers + 1, info
    assert ok(pd, "run", "--rm", "pallet-test/cli-squash:1", "sh", "-c",
              "cat /b; ls /a /d/x 2>&1 | wc -l; ls -d /d; echo $SQUASHED") == \
        "b\n2\n/d\nyes\n"
    history = ok(pd, "history", "--no-trunc", "--format", "{{.Comment}}",
                 "pallet-test/cli-squash:1")
    assert history.startswith("merge sha256:"), history


def test_cache_from_an_image_built_elsewhere(pd: Palletd, made: list[str],
                                             tmp_path: Path) -> None:
    """An image that came by `load` (no build steps of its own here) serves as the cache:
    every step is taken from it and the result is that very image."""
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        f"FROM {IMAGE}\nENV NONCE={uuid.uuid4().hex}\nRUN echo one > /one\n"
        "COPY f.txt /f.txt\nCMD [\"cat\", \"/one\"]\n"), "f.txt": "f\n"})
    ref = "pallet-test/cli-cachefrom:1"
    made.append(ref)
    image = ok(pd, "build", "-q", "-t", ref, str(ctx)).strip()
    archive = tmp_path / "img.tar"
    ok(pd, "save", "-o", str(archive), ref)
    ok(pd, "rmi", ref)  # the image and its build steps go
    ok(pd, "load", "-i", str(archive))
    plain = ok(pd, "build", "--cache-from", "nosuch/image:1", str(ctx))
    assert "Using cache" not in plain  # what was loaded is no build cache by itself
    ok(pd, "image", "prune", "-f")
    out = ok(pd, "build", "--cache-from", ref, str(ctx))
    assert [cached(b) for _, b in steps(out)] == [False, True, True, True, True], out
    assert BUILT.findall(out) == [image[7:19]]


def test_onbuild_and_the_metadata_instructions(pd: Palletd, made: list[str],
                                               tmp_path: Path) -> None:
    base, child = "pallet-test/cli-onbuild-base:1", "pallet-test/cli-onbuild-child:1"
    made += [child, base]
    ok(pd, "build", "-t", base, str(write(tmp_path / "base", {"Dockerfile": (
        f"FROM {IMAGE}\nONBUILD RUN echo triggered > /triggered\n"
        'SHELL ["/bin/sh", "-ec"]\nSTOPSIGNAL SIGUSR1\nVOLUME /data\n'
        "HEALTHCHECK --interval=5s --retries=2 CMD true\nMAINTAINER someone\n"
        "ENTRYPOINT echo entry\n")})))
    cfg = pd.docker("image", "inspect", "-f", "{{json .Config}}", base).stdout
    assert '"OnBuild":["RUN echo triggered \\u003e /triggered"]' in cfg or \
        '"OnBuild":["RUN echo triggered > /triggered"]' in cfg, cfg
    assert '"StopSignal":"SIGUSR1"' in cfg and '"/data":{}' in cfg, cfg
    assert '"Entrypoint":["/bin/sh","-ec","echo entry"]' in cfg, cfg  # SHELL applies
    assert '"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}' \
        in cfg, cfg
    assert pd.docker("image", "inspect", "-f", "{{.Author}}", base).stdout == "someone\n"
    out = ok(pd, "build", "-t", child, str(write(tmp_path / "child", {
        "Dockerfile": f"FROM {base}\nCMD [\"x\"]\n"})))
    assert "# Executing 1 build trigger" in out, out
    assert ok(pd, "run", "--rm", "--entrypoint", "cat", child, "/triggered") == "triggered\n"
    assert pd.docker("image", "inspect", "-f", "{{json .Config.OnBuild}}",
                     child).stdout.strip() in ("null", "[]")  # triggers fire once


def test_run_steps_use_the_network_asked_for(pd: Palletd, made: list[str],
                                             tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": f"FROM {IMAGE}\nRUN ls /sys/class/net > /nets\n"})
    made.append("pallet-test/cli-net:1")
    ok(pd, "build", "--network", "none", "-t", "pallet-test/cli-net:1", str(ctx))
    assert ok(pd, "run", "--rm", "pallet-test/cli-net:1", "cat", "/nets") == "lo\n"


def test_add_fetches_urls_and_says_when_it_cannot(pd: Palletd, made: list[str],
                                                  tmp_path: Path) -> None:
    import http.server
    import socket
    import threading

    served = write(tmp_path / "www", {"page.txt": "from the web\n"})

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(served), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        ref = "pallet-test/cli-addurl:1"
        made.append(ref)
        ok(pd, "build", "-t", ref, str(write(tmp_path / "ctx", {"Dockerfile": (
            f"FROM {IMAGE}\nADD http://127.0.0.1:{port}/page.txt /web/\n")})))
        assert ok(pd, "run", "--rm", ref, "sh", "-c",
                  "cat /web/page.txt; stat -c %a /web/page.txt") == "from the web\n600\n"
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    bad = pallet(pd, "build", "-t", "pallet-test/cli-addurl:2", str(write(
        tmp_path / "bad", {"Dockerfile": f"FROM {IMAGE}\nADD http://127.0.0.1:{closed}/x /x\n"})))
    assert bad.returncode != 0
    assert f"http://127.0.0.1:{closed}/x" in bad.stderr and "line 2" in bad.stderr, bad.stderr
    assert pd.docker("image", "inspect", "pallet-test/cli-addurl:2", check=False).returncode


def test_proxy_args_reach_run_but_not_the_history(pd: Palletd, made: list[str],
                                                  tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (f"FROM {IMAGE}\nARG MINE=m\n"
                                          'RUN echo "$HTTP_PROXY $MINE" > /p\n')})
    ref = "pallet-test/cli-proxy:1"
    made.append(ref)
    out = ok(pd, "build", "--build-arg", "HTTP_PROXY=http://user:secret@127.0.0.1:9/",
             "-t", ref, str(ctx))
    assert "were not consumed" not in out
    assert ok(pd, "run", "--rm", ref, "cat", "/p") == "http://user:secret@127.0.0.1:9/ m\n"
    history = ok(pd, "history", "--no-trunc", "--format", "{{.CreatedBy}}", ref)
    assert "|1 MINE=m /bin/sh -c" in history and "secret" not in history, history
    unused = ok(pd, "build", "--build-arg", "NOBODY=x", "-t", ref, str(ctx))
    assert "[Warning] One or more build-args [NOBODY] were not consumed" in unused, unused


def test_chown_chmod_and_force_rm(pd: Palletd, made: list[str], tmp_path: Path) -> None:
    ref = "pallet-test/cli-chown:1"
    made.append(ref)
    ctx = write(tmp_path, {"f.txt": "f\n", "d/g.txt": "g\n", "Dockerfile": (
        f"FROM {IMAGE}\nRUN echo 'app:x:1234:2345::/:/bin/sh' >> /etc/passwd && "
        "echo 'grp:x:3456:' >> /etc/group\n"
        "COPY --chown=app --chmod=640 f.txt /by-name\n"
        "COPY --chown=7 d /numeric/\n"
        "COPY --chown=app:grp f.txt /both\n")})
    ok(pd, "build", "-t", ref, str(ctx))
    assert ok(pd, "run", "--rm", ref, "stat", "-c", "%u:%g %a %n", "/by-name", "/numeric",
              "/numeric/g.txt", "/both") == (
        "1234:2345 640 /by-name\n"    # a name: its uid and primary group, the mode asked
        "7:7 755 /numeric\n"          # a number alone: the same number as group (Docker)
        "7:7 644 /numeric/g.txt\n"
        "1234:3456 644 /both\n")
    failed = pallet(pd, "build", "--force-rm", str(write(tmp_path / "bad", {
        "Dockerfile": f"FROM {IMAGE}\nRUN exit 4\n"})))
    assert failed.returncode == 4
    assert pd.docker("ps", "-aq").stdout == ""  # --force-rm: even the failed step's goes
    missing = pallet(pd, "build", "--pull", str(write(tmp_path / "pull", {
        "Dockerfile": f"FROM {IMAGE}\n"})))
    assert missing.returncode != 0  # --pull pulls; a local-only base is no fallback
    assert "failed to get base image" in missing.stderr, missing.stderr


def test_build_cache_in_system_df_and_its_prune(pd: Palletd, made: list[str],
                                                tmp_path: Path) -> None:
    """The classic builder's cache is its step images: `system df` counts them, `builder
    prune` takes the ones nothing needs (a stage no image was made from), `-a` stops
    the rest being a cache, and `system prune` (which asks for it) goes through."""
    ref = "pallet-test/cli-cache-prune:1"
    made.append(ref)
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE} AS side\nRUN echo side > /s\n"
        f"FROM {IMAGE}\nENV NONCE={uuid.uuid4().hex}\nRUN echo main > /m\n")})
    ok(pd, "build", "-t", ref, str(ctx))
    ok(pd, "build", "--target", "side", str(ctx))  # leaves a dangling step
    df = pd.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}").stdout
    assert "Build Cache 3 2" in df, df  # ENV and RUN of the main stage (needed), side RUN
    out = pd.docker("builder", "prune", "-f").stdout
    assert "Deleted build cache objects" in out and "Total reclaimed space" in out, out
    after = pd.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout
    assert "Build Cache 2" in after, after  # the main stage's steps: the image needs them
    again = ok(pd, "build", "-t", ref, str(ctx))
    assert "Using cache" in again
    pd.docker("builder", "prune", "-a", "-f")
    assert "Using cache" not in ok(pd, "build", "-t", ref, str(ctx))
    assert pd.docker("system", "prune", "-f").returncode == 0


def test_a_failed_stage_stops_the_others_and_leaves_only_its_container(
        pd: Palletd, made: list[str], tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": (
        f"FROM {IMAGE} AS slow\nRUN sleep 30\n"
        f"FROM {IMAGE} AS broken\nRUN sleep 1; exit 5\n"
        f"FROM {IMAGE}\nCOPY --from=slow /etc/hostname /a\nCOPY --from=broken /etc/hostname /b\n")})
    started = time.monotonic()
    out = pallet(pd, "build", str(ctx))
    assert out.returncode == 5, out.stdout + out.stderr
    assert time.monotonic() - started < 20  # not waiting for the slow stage's 30 s
    left = pd.docker("ps", "-a", "--format", "{{.Status}}").stdout.splitlines()
    assert len(left) == 1 and left[0].startswith("Exited (5)"), left  # the failed step's
