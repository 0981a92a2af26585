"""pallet version, info, system df, events — as the docker CLI prints them."""

from __future__ import annotations

import json
import sys

from pallet.cli.flags import LIST, STR, Flag, parse
from pallet.client.transport import CLIENT_API_VERSION, Transport
from pallet.oci.units import human_size

_FORMAT = Flag("-f,--format", STR)


def _out(text: str) -> None:
    sys.stdout.write(text)


def version(host: str | None, argv: list[str]) -> int:
    import platform

    import pallet

    a = parse(argv, [_FORMAT])
    t = Transport(host)
    client = {"Platform": {"Name": ""}, "Version": pallet.__version__,
              "ApiVersion": CLIENT_API_VERSION, "DefaultAPIVersion": CLIENT_API_VERSION,
              "GoVersion": f"python{platform.python_version()}", "Os": "linux",
              "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                   platform.machine()),
              "Context": "default"}
    server = t.get_json("/version")
    client["ApiVersion"] = t.version or CLIENT_API_VERSION
    if isinstance(a.format, str):
        from pallet.cli import template

        _out(template.render(a.format, {"Client": client, "Server": server}) + "\n")
        return 0
    assert isinstance(server, dict)
    lines = ["Client:", f" Version:           {client['Version']}",
             f" API version:       {client['ApiVersion']}",
             f" Go version:        {client['GoVersion']}",
             f" OS/Arch:           linux/{client['Arch']}", " Context:           default", "",
             f"Server: {server.get('Platform', {}).get('Name', '')}"]
    for comp in server.get("Components", []):
        lines.append(f" {comp['Name']}:")
        lines.append(f"  Version:          {comp['Version']}")
        details = comp.get("Details", {})
        if comp["Name"] == "Engine":
            lines += [f"  API version:      {details.get('ApiVersion')} (minimum version "
                      f"{details.get('MinAPIVersion')})",
                      f"  Go version:       {details.get('GoVersion')}",
                      f"  OS/Arch:          {details.get('Os')}/{details.get('Arch')}",
                      f"  Experimental:     {details.get('Experimental')}"]
    _out("\n".join(lines) + "\n")
    return 0


def info(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT])
    body = Transport(host).get_json("/info")
    assert isinstance(body, dict)
    if isinstance(a.format, str):
        from pallet.cli import template

        _out(template.render(a.format, body) + "\n")
        return 0
    rows = [
        ("Containers", body.get("Containers")), (" Running", body.get("ContainersRunning")),
        (" Paused", body.get("ContainersPaused")), (" Stopped", body.get("ContainersStopped")),
        ("Images", body.get("Images")), ("Server Version", body.get("ServerVersion")),
        ("Storage Driver", body.get("Driver")), ("Logging Driver", body.get("LoggingDriver")),
        ("Cgroup Driver", body.get("CgroupDriver")), ("Cgroup Version", body.get("CgroupVersion")),
        ("Default Runtime", body.get("DefaultRuntime")),
        ("Kernel Version", body.get("KernelVersion")),
        ("Operating System", body.get("OperatingSystem")), ("OSType", body.get("OSType")),
        ("Architecture", body.get("Architecture")), ("CPUs", body.get("NCPU")),
        ("Total Memory", human_size(int(body.get("MemTotal") or 0), binary=True)),
        ("Name", body.get("Name")), ("ID", body.get("ID")),
        ("Docker Root Dir", body.get("DockerRootDir")), ("Debug Mode", body.get("Debug")),
    ]
    _out("Server:\n" + "".join(f" {k}: {_go(v)}\n" for k, v in rows))
    return 0


def df(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-v,--verbose")])
    body = Transport(host).get_json("/system/df")
    assert isinstance(body, dict)
    images = body.get("Images") or []
    containers = body.get("Containers") or []
    volumes = body.get("Volumes") or []
    cache = body.get("BuildCache") or []
    rows = [
        {"Type": "Images", "TotalCount": len(images),
         "Active": sum(1 for i in images if i.get("Containers", 0) > 0),
         "Size": human_size(int(body.get("LayersSize") or 0), digits=3), "Reclaimable": "0B"},
        {"Type": "Containers", "TotalCount": len(containers),
         "Active": sum(1 for c in containers if c.get("State") == "running"),
         "Size": human_size(sum(int(c.get("SizeRw") or 0) for c in containers), digits=3),
         "Reclaimable": "0B"},
        {"Type": "Local Volumes", "TotalCount": len(volumes), "Active": 0,
         "Size": human_size(sum(int((v.get("UsageData") or {}).get("Size") or 0)
                                for v in volumes), digits=3),
         "Reclaimable": "0B"},
        {"Type": "Build Cache", "TotalCount": len(cache), "Active": 0, "Size": "0B",
         "Reclaimable": "0B"},
    ]
    from pallet.cli import template

    _out(template.show(a.format, "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}"
                       "\t{{.Reclaimable}}", rows, {"TotalCount": "TOTAL", "Type": "TYPE"}))
    return 0


def events(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("--since", STR), Flag("--until", STR),
                     Flag("-f,--filter", LIST)])
    filters: dict[str, list[str]] = {}
    for f in a.filter if isinstance(a.filter, list) else []:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    resp = Transport(host).request("GET", "/events", {
        "since": a.since, "until": a.until, "filters": filters or None})
    try:
        for line in resp.lines():
            ev = json.loads(line)
            if isinstance(a.format, str):
                from pallet.cli import template

                _out(template.render(a.format, ev) + "\n")
            else:
                attrs = ev.get("Actor", {}).get("Attributes", {})
                kv = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
                _out(f"{_time(ev.get('timeNano', 0))} {ev.get('Type')} {ev.get('Action')} "
                     f"{ev.get('Actor', {}).get('ID', '')}" + (f" ({kv})" if kv else "") + "\n")
            sys.stdout.flush()
    finally:
        resp.close()
    return 0


def _time(nanos: int) -> str:
    import time

    secs, frac = divmod(int(nanos), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(secs)) + f".{frac:09d}" + \
        time.strftime("%z", time.localtime(secs))


def _go(v: object) -> str:
    return "true" if v is True else "false" if v is False else str(v)
