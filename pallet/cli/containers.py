"""pallet run, create, start, stop, restart, kill, rm, ps, logs, exec, wait, inspect, ...

The same API calls the docker CLI makes, in the same order (run: create, attach, wait,
start), with docker's flags, output and exit codes.
"""

from __future__ import annotations

import posix  # not os: see client.transport.getenv
import sys
import time

from pallet.cli import netflags
from pallet.cli.flags import INT, LIST, STR, Flag, UsageError, parse
from pallet.client.transport import APIError, Transport, getenv
from pallet.errors import start_exit_code
from pallet.oci import jsonfast as json

_FORMAT = Flag("-f,--format", STR)

CREATE_FLAGS = [
    Flag("-d,--detach"), Flag("-i,--interactive"), Flag("-t,--tty"), Flag("--rm"),
    Flag("--name", STR), Flag("-e,--env", LIST), Flag("--env-file", LIST),
    Flag("-w,--workdir", STR), Flag("-u,--user", STR), Flag("--entrypoint", STR),
    Flag("-l,--label", LIST), Flag("--label-file", LIST), Flag("-h,--hostname", STR),
    Flag("--domainname", STR), Flag("--init"), Flag("--restart", STR),
    Flag("--stop-signal", STR), Flag("--stop-timeout", INT), Flag("--read-only"),
    Flag("--tmpfs", LIST), Flag("--privileged"), Flag("--cap-add", LIST),
    Flag("--cap-drop", LIST), Flag("--security-opt", LIST), Flag("--device", LIST),
    Flag("--device-cgroup-rule", LIST), Flag("--ulimit", LIST), Flag("--sysctl", LIST),
    Flag("--shm-size", STR), Flag("--ipc", STR), Flag("--pid", STR), Flag("--uts", STR),
    Flag("--cgroupns", STR), Flag("--userns", STR), Flag("--group-add", LIST),
    Flag("--oom-kill-disable"), Flag("--oom-score-adj", INT), Flag("-m,--memory", STR),
    Flag("--memory-reservation", STR), Flag("--memory-swap", STR),
    Flag("--memory-swappiness", INT), Flag("--cpus", STR), Flag("-c,--cpu-shares", INT),
    Flag("--cpu-period", INT), Flag("--cpu-quota", INT), Flag("--cpuset-cpus", STR),
    Flag("--cpuset-mems", STR), Flag("--pids-limit", INT), Flag("--blkio-weight", INT),
    Flag("--blkio-weight-device", LIST), Flag("--device-read-bps", LIST),
    Flag("--device-write-bps", LIST), Flag("--device-read-iops", LIST),
    Flag("--device-write-iops", LIST), Flag("--log-driver", STR), Flag("--log-opt", LIST),
    Flag("--health-cmd", STR), Flag("--health-interval", STR), Flag("--health-timeout", STR),
    Flag("--health-retries", INT), Flag("--health-start-period", STR),
    Flag("--health-start-interval", STR), Flag("--health-on-failure", STR),
    Flag("--no-healthcheck"), Flag("--platform", STR),
    Flag("--pull", STR), Flag("-v,--volume", LIST), Flag("--network,--net", STR),
    Flag("-p,--publish", LIST), Flag("--expose", LIST), Flag("--dns", LIST),
    Flag("--dns-search", LIST), Flag("--dns-option", LIST), Flag("--add-host", LIST),
    Flag("--detach-keys", STR), Flag("--sig-proxy", default=True), Flag("-a,--attach", LIST),
    Flag("--cgroup-parent", STR), Flag("-q,--quiet"), Flag("--cidfile", STR),
    Flag("--mount", LIST), Flag("--volumes-from", LIST), Flag("--volume-driver", STR),
]
CREATE_FLAGS += netflags.FLAGS


def _out(text: str) -> None:
    sys.stdout.write(text)


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


# --- values --------------------------------------------------------------------------------

def ram_in_bytes(text: str) -> int:
    """docker's RAMInBytes: 32m, 1g, 512k, 100 (binary units, an optional trailing b)."""
    raw = text.strip().lower()
    num = raw.rstrip("bkmgtp")
    suffix = raw[len(num):].removesuffix("b") if raw[len(num):] != "b" else ""
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"invalid size: '{text}'") from None
    if suffix not in ("", "k", "m", "g", "t", "p") or value < 0:
        raise UsageError(f"invalid size: '{text}'")
    return int(value * 1024 ** ("kmgtp".index(suffix) + 1 if suffix else 0))


def _duration_ns(text: str) -> int:
    """A Go duration (30s, 1m30s, 500ms) in nanoseconds."""
    from pallet.oci.duration import parse_go_duration

    try:
        return parse_go_duration(text)
    except ValueError as exc:
        if "missing unit" in str(exc):
            raise UsageError(str(exc)) from None
        raise UsageError(f'invalid duration "{text}"') from None


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _env_files(paths: list[str]) -> list[str]:
    env = []
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    if "=" not in line:
                        line = f"{line}={getenv(line) or ''}"
                    env.append(line)
        except OSError as exc:
            raise UsageError(f"open {path}: {exc.strerror}") from None
    return env


def _env(items: list[str]) -> list[str]:
    """-e A=1 keeps its value; -e A takes it from our environment (or drops it)."""
    out = []
    for item in items:
        if "=" in item:
            out.append(item)
        elif (value := getenv(item)) is not None:
            out.append(f"{item}={value}")
    return out


def _device(spec: str) -> dict[str, str]:
    parts = spec.split(":")
    src = parts[0]
    dst = parts[1] if len(parts) > 1 and parts[1].startswith("/") else src
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    return {"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}


def _throttle(items: list[str], rate_of: object) -> list[dict[str, object]]:
    out = []
    for item in items:
        path, _, rate = item.rpartition(":")
        if not path:
            raise UsageError(f"bad format: {item}")
        out.append({"Path": path, "Rate": rate_of(rate)})  # type: ignore[operator]
    return out


def _restart(text: str) -> dict[str, object]:
    name, _, count = text.partition(":")
    if count and name != "on-failure":
        raise UsageError("maximum retry count cannot be used with restart policy "
                         f"'{name}'")
    try:
        retries = int(count or 0)
    except ValueError:
        raise UsageError(f"invalid restart policy format: {text}") from None
    return {"Name": name or "no", "MaximumRetryCount": retries}


def create_body(a: object) -> tuple[dict[str, object], str]:
    """The POST /containers/create body for the run/create flags ``a``, and the name."""
    g = a.values  # type: ignore[attr-defined]
    if not a.args:  # type: ignore[attr-defined]
        raise UsageError("requires at least 1 argument.")
    image, *cmd = a.args  # type: ignore[attr-defined]
    hc: dict[str, object] = {
        "Binds": g["volume"] or None, "AutoRemove": bool(g["rm"]),
        "Privileged": bool(g["privileged"]), "ReadonlyRootfs": bool(g["read_only"]),
        "CapAdd": g["cap_add"] or None, "CapDrop": g["cap_drop"] or None,
        "SecurityOpt": g["security_opt"] or None, "GroupAdd": g["group_add"] or None,
        "Devices": [_device(d) for d in g["device"]],
        "DeviceCgroupRules": g["device_cgroup_rule"] or None,
        "Ulimits": [], "Sysctls": _kv(g["sysctl"]) or None,
        "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in g["tmpfs"]} or None,
        "IpcMode": g["ipc"] or "", "PidMode": g["pid"] or "", "UTSMode": g["uts"] or "",
        "CgroupnsMode": g["cgroupns"] or "", "UsernsMode": g["userns"] or "",
        "OomKillDisable": bool(g["oom_kill_disable"]), "OomScoreAdj": g["oom_score_adj"] or 0,
        "NetworkMode": g["network"] or "default", "Init": bool(g["init"]) or None,
        "Dns": g["dns"], "DnsSearch": g["dns_search"], "DnsOptions": g["dns_option"],
        "ExtraHosts": g["add_host"] or None, "CgroupParent": g["cgroup_parent"] or "",
        "RestartPolicy": _restart(g["restart"] or "no"),
        "LogConfig": {"Type": g["log_driver"] or "", "Config": _kv(g["log_opt"])},
        "PortBindings": {}, "BlkioWeight": g["blkio_weight"] or 0,
        "CpuShares": g["cpu_shares"] or 0, "CpuPeriod": g["cpu_period"] or 0,
        "CpuQuota": g["cpu_quota"] or 0, "CpusetCpus": g["cpuset_cpus"] or "",
        "CpusetMems": g["cpuset_mems"] or "", "PidsLimit": g["pids_limit"],
        "MemorySwappiness": g["memory_swappiness"],
        "HealthOnFailure": g["health_on_failure"] or None,
    }
    for flag, key in (("memory", "Memory"), ("memory_reservation", "MemoryReservation"),
                      ("shm_size", "ShmSize")):
        if g[flag]:
            hc[key] = ram_in_bytes(g[flag])
    if g["memory_swap"]:
        hc["MemorySwap"] = -1 if g["memory_swap"] == "-1" else ram_in_bytes(g["memory_swap"])
    if g["cpus"]:
        try:
            hc["NanoCpus"] = round(float(g["cpus"]) * 1e9)
        except ValueError:
            raise UsageError(f'invalid argument "{g["cpus"]}" for "--cpus" flag') from None
    ulimits: list[dict[str, object]] = []
    for u in g["ulimit"]:
        name, _, limits = u.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            ulimits.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        except ValueError:
            raise UsageError(f'invalid argument "{u}" for "--ulimit" flag') from None
    hc["Ulimits"] = ulimits
    if g["blkio_weight_device"]:
        hc["BlkioWeightDevice"] = [{"Path": p.rpartition(":")[0],
                                    "Weight": int(p.rpartition(":")[2])}
                                   for p in g["blkio_weight_device"]]
    for flag, key, conv in (("device_read_bps", "BlkioDeviceReadBps", ram_in_bytes),
                            ("device_write_bps", "BlkioDeviceWriteBps", ram_in_bytes),
                            ("device_read_iops", "BlkioDeviceReadIOps", int),
                            ("device_write_iops", "BlkioDeviceWriteIOps", int)):
        if g[flag]:
            hc[key] = _throttle(g[flag], conv)
    if g["tty"] and posix.isatty(1):
        try:
            cols, rows = posix.get_terminal_size(1)
            hc["ConsoleSize"] = [rows, cols]  # the size from the first moment, as docker
        except OSError:
            pass
    labels = _kv(g["label"])
    for path in g["label_file"]:
        labels.update(_kv([ln for ln in _env_files([path])]))
    body: dict[str, object] = {
        "Image": image, "Cmd": cmd or None, "Env": _env_files(g["env_file"]) + _env(g["env"]),
        "WorkingDir": g["workdir"] or "", "User": g["user"] or "",
        "Labels": labels, "Hostname": g["hostname"] or "", "Domainname": g["domainname"] or "",
        "Tty": bool(g["tty"]), "OpenStdin": bool(g["interactive"]),
        "StdinOnce": bool(g["interactive"]) and not g["detach"],
        "AttachStdin": bool(g["interactive"]) and not g["detach"],
        "AttachStdout": not g["detach"], "AttachStderr": not g["detach"],
        "StopSignal": g["stop_signal"] or None, "StopTimeout": g["stop_timeout"],
        "ExposedPorts": {p if "/" in p else f"{p}/tcp": {} for p in g["expose"]} or None,
        "HostConfig": hc,
    }
    netflags.apply(g, body, hc)
    if g["volume"] or g["mount"] or g["volumes_from"] or g["volume_driver"]:
        from pallet.cli import volumes

        hc["Binds"], anonymous = volumes.split_volumes(g["volume"])
        body["Volumes"] = anonymous or None
        hc["Mounts"] = [volumes.mount_flag(m) for m in g["mount"]] or None
        hc["VolumesFrom"] = g["volumes_from"] or None
        hc["VolumeDriver"] = g["volume_driver"] or ""
    if g["entrypoint"] is not None:
        body["Entrypoint"] = [g["entrypoint"]] if g["entrypoint"] else [""]
    health = _healthcheck(g)
    if health is not None:
        body["Healthcheck"] = health
    return body, g["name"] or ""


def _healthcheck(g: dict[str, object]) -> dict[str, object] | None:
    if g["no_healthcheck"]:
        return {"Test": ["NONE"]}
    fields = ("health_cmd", "health_interval", "health_timeout", "health_retries",
              "health_start_period", "health_start_interval")
    if not any(g[f] for f in fields):
        return None
    out: dict[str, object] = {}
    if g["health_cmd"]:
        out["Test"] = ["CMD-SHELL", g["health_cmd"]]
    for flag, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod"),
                      ("health_start_interval", "StartInterval")):
        if g[flag]:
            out[key] = _duration_ns(str(g[flag]))
    if g["health_retries"]:
        out["Retries"] = g["health_retries"]
    return out


# --- create / run -------------------------------------------------------------------------

def _create(t: Transport, body: dict[str, object], name: str, pull: str,
            quiet: bool, platform: str = "") -> str:
    query: dict[str, object] = {"name": name or None, "platform": platform or None}
    image = str(body["Image"])
    if pull == "always":
        _pull(t, image, quiet)
    try:
        reply = t.post_json("/containers/create", query, body)
    except APIError as exc:
        if exc.status != 404 or "No such image" not in exc.message or pull == "never":
            raise
        sys.stderr.write(f"Unable to find image '{image}' locally\n")
        _pull(t, image, quiet)
        reply = t.post_json("/containers/create", query, body)
    assert isinstance(reply, dict)
    for w in reply.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {w}\n")
    return str(reply["Id"])


def _pull(t: Transport, image: str, quiet: bool) -> None:
    from pallet.cli import distribution

    args = ["-q", image] if quiet else [image]
    saved = sys.stdout
    sys.stdout = sys.stderr  # progress goes to stderr, as docker run shows it
    try:
        if distribution.pull(t.host, args) != 0:
            raise SystemExit(125)
    finally:
        sys.stdout = saved


def create(host: str | None, argv: list[str]) -> int:
    a = parse(argv, CREATE_FLAGS, interspersed=False)
    body, name = create_body(a)
    t = Transport(host)
    cid = _create(t, body, name, str(a.pull or "missing"), bool(a.quiet),
                  str(a.platform or ""))
    _cidfile(a.cidfile, cid)
    _out(cid + "\n")
    return 0


def _cidfile(path: object, cid: str) -> None:
    if isinstance(path, str) and path:
        with open(path, "x") as f:
            f.write(cid)


def run(host: str | None, argv: list[str]) -> int:
    a = parse(argv, CREATE_FLAGS, interspersed=False)
    try:
        body, name = create_body(a)
    except UsageError as exc:
        sys.stderr.write(f"pallet: {exc}\nSee 'pallet run --help'.\n")
        return 125
    t = Transport(host)
    try:
        cid = _create(t, body, name, str(a.pull or "missing"), bool(a.quiet),
                      str(a.platform or ""))
    except APIError as exc:
        sys.stderr.write(f"pallet: Error response from daemon: {exc.message}.\n")
        return 125
    _cidfile(a.cidfile, cid)
    if a.detach:
        try:
            t.request("POST", f"/containers/{cid}/start").close()
        except APIError as exc:
            sys.stderr.write(f"pallet: Error response from daemon: {exc.message}.\n")
            return start_exit_code(exc.message, 125)
        _out(cid + "\n")
        return 0
    return _run_attached(t, cid, bool(a.interactive), bool(a.tty), bool(a.rm),
                         str(a.detach_keys or ""), bool(a.sig_proxy))


def _run_attached(t: Transport, cid: str, interactive: bool, tty: bool, rm: bool,
                  detach_keys: str, sig_proxy: bool = True) -> int:
    import _thread  # threading costs ~1.5 ms more to import, for nothing used here

    sock, early = t.hijack(f"/containers/{cid}/attach", {
        "stream": True, "stdin": interactive, "stdout": True, "stderr": True,
        "detachKeys": detach_keys or None})
    result: dict[str, object] = {}
    done = _thread.allocate_lock()
    done.acquire()

    def wait() -> None:
        try:
            resp = t.request("POST", f"/containers/{cid}/wait",
                             {"condition": "removed" if rm else "next-exit"})
            body = resp.json()
            if isinstance(body, dict):
                result.update(body)
            resp.close()
        except Exception as exc:  # the main thread reports it
            result["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(wait, ())
    try:
        t.request("POST", f"/containers/{cid}/start").close()
    except APIError as exc:
        sock.close()
        sys.stderr.write(f"pallet: Error response from daemon: {exc.message}.\n")
        return start_exit_code(exc.message, 125)
    if tty and posix.isatty(1):
        _resize(t, f"/containers/{cid}/resize")
    if sig_proxy and not tty:
        _proxy_signals(t, cid)
    stream(sock, early, interactive, tty)
    done.acquire()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return int(str(result.get("StatusCode", 0)))


def _proxy_signals(t: Transport, cid: str) -> None:
    """--sig-proxy: the signals we get go to the container (as the docker CLI does)."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        try:
            t.request("POST", f"/containers/{cid}/kill", {"signal": str(signum)}).close()
        except (OSError, APIError):
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)


def _resize(t: Transport, path: str) -> None:
    try:
        cols, rows = posix.get_terminal_size(1)
        t.request("POST", path, {"h": rows, "w": cols}).close()
    except (OSError, APIError):
        pass


def stream(sock: object, early: bytes, interactive: bool, tty: bool) -> None:
    """Copy stdin to the hijacked socket and its output to stdout/stderr until it ends."""
    import _socket
    import _thread

    assert isinstance(sock, _socket.socket)
    saved = None
    if tty and interactive and posix.isatty(0):
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(0)
        ttymod.setraw(0)

    def pump_stdin() -> None:
        try:
            while True:
                data = posix.read(0, 65536)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    if interactive:
        _thread.start_new_thread(pump_stdin, ())
    try:
        if tty:
            if early:
                posix.write(1, early)
            while data := sock.recv(65536):
                posix.write(1, data)
        else:
            demux(sock, early)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()


def demux(sock: object, buf: bytes) -> None:
    """Docker's multiplexed frames -> our stdout (1) and stderr (2)."""
    import _socket

    assert isinstance(sock, _socket.socket)
    while True:
        while len(buf) < 8:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
        kind, size = buf[0], int.from_bytes(buf[4:8], "big")
        while len(buf) < 8 + size:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
        posix.write(2 if kind == 2 else 1, buf[8:8 + size])
        buf = buf[8 + size:]


# --- the other verbs -------------------------------------------------------------------------

def _each(host: str | None, ids: list[str], call: object, verb: str) -> int:
    """Apply ``call(transport, id)`` to each id; print the id, or docker's error line."""
    if not ids:
        raise UsageError(f'"pallet {verb}" requires at least 1 argument.')
    t = Transport(host)
    code = 0
    for ident in ids:
        try:
            call(t, ident)  # type: ignore[operator]
            _out(ident + "\n")
        except APIError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            code = 1
    return code


def start(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-a,--attach"), Flag("-i,--interactive"),
                     Flag("--detach-keys", STR)])
    if a.attach and a.args:
        t = Transport(host)
        cid = a.args[0]
        info = t.get_json(f"/containers/{cid}/json")
        assert isinstance(info, dict)
        tty = bool(info["Config"]["Tty"])
        return _run_attached(t, info["Id"], bool(a.interactive), tty,
                             bool(info["HostConfig"].get("AutoRemove")), "")
    return _each(host, a.args, lambda t, i: t.request("POST", f"/containers/{i}/start").close(),
                 "start")


def stop(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-t,--time,--timeout", INT), Flag("-s,--signal", STR)])
    q = {"t": a.timeout, "signal": a.signal}
    return _each(host, a.args,
                 lambda t, i: t.request("POST", f"/containers/{i}/stop", q).close(), "stop")


def restart(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-t,--time,--timeout", INT), Flag("-s,--signal", STR)])
    q = {"t": a.timeout, "signal": a.signal}
    return _each(host, a.args,
                 lambda t, i: t.request("POST", f"/containers/{i}/restart", q).close(),
                 "restart")


def kill(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-s,--signal", STR)])
    q = {"signal": a.signal}
    return _each(host, a.args,
                 lambda t, i: t.request("POST", f"/containers/{i}/kill", q).close(), "kill")


def pause(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    return _each(host, a.args,
                 lambda t, i: t.request("POST", f"/containers/{i}/pause").close(), "pause")


def unpause(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    return _each(host, a.args,
                 lambda t, i: t.request("POST", f"/containers/{i}/unpause").close(), "unpause")


def rm(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force"), Flag("-v,--volumes"), Flag("-l,--link")])
    q = {"force": a.force or None, "v": a.volumes or None}
    return _each(host, a.args,
                 lambda t, i: t.request("DELETE", f"/containers/{i}", q).close(), "rm")


def rename(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    if len(a.args) != 2:
        raise UsageError('"pallet rename" requires exactly 2 arguments.')
    Transport(host).request("POST", f"/containers/{a.args[0]}/rename",
                            {"name": a.args[1]}).close()
    return 0


def wait(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    if not a.args:
        raise UsageError('"pallet wait" requires at least 1 argument.')
    t = Transport(host)
    code = 0
    for ident in a.args:
        try:
            resp = t.request("POST", f"/containers/{ident}/wait")
            body = resp.json()
            resp.close()
            assert isinstance(body, dict)
            _out(f"{body['StatusCode']}\n")
        except APIError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            code = 1
    return code


def inspect(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-s,--size"), Flag("--type", STR)])
    if not a.args:
        raise UsageError('"pallet inspect" requires at least 1 argument.')
    t = Transport(host)
    found, code = [], 0
    for ident in a.args:
        try:
            if a.type != "image":
                found.append(t.get_json(f"/containers/{ident}/json", {"size": a.size or None}))
                continue
        except APIError as exc:
            if exc.status != 404:
                raise
        try:
            found.append(t.get_json(f"/images/{ident}/json"))
        except APIError:
            sys.stderr.write(f"Error: No such object: {ident}\n")
            code = 1
    if isinstance(a.format, str):
        from pallet.cli import template

        for obj in found:
            _out(template.render(a.format, obj) + "\n")
    else:
        import json as stdjson

        _out(stdjson.dumps(found, indent=4) + "\n")
    return code


def logs(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--follow"), Flag("--since", STR), Flag("--until", STR),
                     Flag("-t,--timestamps"), Flag("-n,--tail", STR), Flag("--details")])
    if len(a.args) != 1:
        raise UsageError('"pallet logs" requires exactly 1 argument.')
    t = Transport(host)
    info = t.get_json(f"/containers/{a.args[0]}/json")
    assert isinstance(info, dict)
    resp = t.request("GET", f"/containers/{a.args[0]}/logs", {
        "stdout": True, "stderr": True, "follow": a.follow or None,
        "since": a.since, "until": a.until, "timestamps": a.timestamps or None,
        "tail": a.tail or "all", "details": a.details or None})
    if info["Config"].get("Tty"):
        for chunk in resp.chunks():
            posix.write(1, chunk)
    else:
        buf = b""
        for chunk in resp.chunks():
            buf += chunk
            while len(buf) >= 8 and len(buf) >= 8 + int.from_bytes(buf[4:8], "big"):
                size = int.from_bytes(buf[4:8], "big")
                posix.write(2 if buf[0] == 2 else 1, buf[8:8 + size])
                buf = buf[8 + size:]
    resp.close()
    return 0


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    m = s // 60
    if m < 60:
        return "About a minute" if m == 1 else f"{m} minutes"
    h = round(s / 3600)
    if h < 48:
        return "About an hour" if h == 1 else f"{h} hours"
    return f"{h // 24} days"


def ps(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-a,--all"), Flag("-q,--quiet"), Flag("-s,--size"),
                     Flag("--filter", LIST), Flag("-n,--last", INT), Flag("-l,--latest"),
                     Flag("--no-trunc")])
    filters: dict[str, list[str]] = {}
    for f in a.filter if isinstance(a.filter, list) else []:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    limit = 1 if a.latest else (a.last if isinstance(a.last, int) else None)
    body = Transport(host).get_json("/containers/json", {
        "all": a.all or None, "size": a.size or None, "limit": limit,
        "filters": filters or None})
    assert isinstance(body, list)
    if a.quiet:
        _out("".join((c["Id"] if a.no_trunc else c["Id"][:12]) + "\n" for c in body))
        return 0
    now = time.time()
    rows = []
    for c in body:
        cmd = c["Command"]
        if not a.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        size = ""
        if a.size:
            from pallet.oci.units import human_size

            size = f"{human_size(int(c.get('SizeRw', 0)), digits=3)} (virtual " \
                   f"{human_size(int(c.get('SizeRootFs', 0)), digits=3)})"
        image = c["Image"]
        if not a.no_trunc and image.startswith("sha256:") and len(image) == 71:
            image = image[7:19]  # made from an image id (a build step): shown short
        rows.append({"ID": c["Id"] if a.no_trunc else c["Id"][:12], "Image": image,
                     "Command": f'"{cmd}"', "RunningFor": _ago(now - c["Created"]) + " ago",
                     "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z",
                                                time.localtime(c["Created"])),
                     "Status": c["Status"], "State": c["State"],
                     "Ports": netflags.display_ports(c.get("Ports") or []),
                     "Names": ",".join(n.lstrip("/") for n in c["Names"]), "Size": size,
                     "Labels": ",".join(f"{k}={v}" for k, v in (c["Labels"] or {}).items())})
    from pallet.cli import template

    default = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}"
               "\t{{.Ports}}\t{{.Names}}" + ("\t{{.Size}}" if a.size else ""))
    _out(template.show(a.format, default, rows, {
        "ID": "CONTAINER ID", "RunningFor": "CREATED"}))
    return 0


def prune(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force"), Flag("--filter", LIST)])
    if not a.force:
        sys.stderr.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        if sys.stdin.readline().strip().lower() != "y":
            return 0
    filters: dict[str, list[str]] = {}
    for f in a.filter if isinstance(a.filter, list) else []:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    body = Transport(host).post_json("/containers/prune", {"filters": filters or None})
    assert isinstance(body, dict)
    deleted = body.get("ContainersDeleted") or []
    if deleted:
        _out("Deleted Containers:\n" + "".join(f"{d}\n" for d in deleted) + "\n")
    from pallet.oci.units import human_size

    _out(f"Total reclaimed space: {human_size(int(body.get('SpaceReclaimed', 0)), digits=3)}\n")
    return 0


def exec_(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-d,--detach"), Flag("-i,--interactive"), Flag("-t,--tty"),
                     Flag("-u,--user", STR), Flag("-w,--workdir", STR), Flag("-e,--env", LIST),
                     Flag("--env-file", LIST), Flag("--privileged"),
                     Flag("--detach-keys", STR)], interspersed=False)
    if len(a.args) < 2:
        raise UsageError('"pallet exec" requires at least 2 arguments.')
    cid, *cmd = a.args
    t = Transport(host)
    body: dict[str, object] = {"AttachStdin": bool(a.interactive) and not a.detach,
            "AttachStdout": not a.detach, "AttachStderr": not a.detach,
            "Tty": bool(a.tty), "Cmd": cmd, "User": a.user or "",
            "WorkingDir": a.workdir or "", "Privileged": bool(a.privileged),
            "Env": _env_files(_strs(a.env_file)) + _env(_strs(a.env)),
            "DetachKeys": a.detach_keys or ""}
    if a.tty and posix.isatty(1):
        try:
            cols, rows = posix.get_terminal_size(1)
            body["ConsoleSize"] = [rows, cols]
        except OSError:
            pass
    reply = t.post_json(f"/containers/{cid}/exec", None, body)
    assert isinstance(reply, dict)
    eid = reply["Id"]
    if a.detach:
        t.request("POST", f"/exec/{eid}/start", None,
                  json.dumps({"Detach": True, "Tty": bool(a.tty)}).encode()).close()
        return 0
    sock, early = t.hijack(f"/exec/{eid}/start", None,
                           json.dumps({"Detach": False, "Tty": bool(a.tty)}).encode())
    if a.tty and posix.isatty(1):
        _resize(t, f"/exec/{eid}/resize")
    stream(sock, early, bool(a.interactive), bool(a.tty))
    info = t.get_json(f"/exec/{eid}/json")
    assert isinstance(info, dict)
    return int(info.get("ExitCode") or 0)
