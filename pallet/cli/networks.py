"""pallet network create, ls, inspect, rm, prune, connect, disconnect; pallet port."""

from __future__ import annotations

import sys

from pallet.cli.flags import LIST, STR, Flag, UsageError, parse
from pallet.cli.objects import filters, inspect_each
from pallet.client.transport import APIError, Transport

_FORMAT = Flag("-f,--format", STR)


def _out(text: str) -> None:
    sys.stdout.write(text)


def _kv(values: object) -> dict[str, str]:
    out = {}
    for item in values if isinstance(values, list) else []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def create(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-d,--driver", STR), Flag("--subnet", LIST),
                     Flag("--gateway", LIST), Flag("--ip-range", LIST), Flag("--internal"),
                     Flag("--attachable"), Flag("--ipv6"), Flag("--label", LIST),
                     Flag("-o,--opt", LIST), Flag("--ipam-driver", STR),
                     Flag("--ipam-opt", LIST), Flag("--aux-address", LIST),
                     Flag("--scope", STR), Flag("--ingress"), Flag("--config-only"),
                     Flag("--config-from", STR)])
    if len(a.args) != 1:
        raise UsageError('"pallet network create" requires exactly 1 argument.')
    subnets = list(a.subnet) if isinstance(a.subnet, list) else []
    gateways = list(a.gateway) if isinstance(a.gateway, list) else []
    ranges = list(a.ip_range) if isinstance(a.ip_range, list) else []
    if len(gateways) > len(subnets) or len(ranges) > len(subnets):
        raise UsageError("every ip-range or gateway must have a corresponding subnet")
    config = []
    for i, subnet in enumerate(subnets):
        entry = {"Subnet": subnet}
        if i < len(gateways):
            entry["Gateway"] = gateways[i]
        if i < len(ranges):
            entry["IPRange"] = ranges[i]
        config.append(entry)
    body = {"Name": a.args[0], "Driver": a.driver or "bridge",
            "IPAM": {"Driver": a.ipam_driver or "default", "Config": config,
                     "Options": _kv(a.ipam_opt)},
            "Internal": bool(a.internal), "Attachable": bool(a.attachable),
            "EnableIPv6": bool(a.ipv6), "Options": _kv(a.opt), "Labels": _kv(a.label),
            "Ingress": bool(a.ingress), "ConfigOnly": bool(a.config_only)}
    if a.config_from:
        body["ConfigFrom"] = {"Network": a.config_from}
    reply = Transport(host).post_json("/networks/create", None, body)
    assert isinstance(reply, dict)
    _out(f"{reply['Id']}\n")
    return 0


def ls(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-q,--quiet"), Flag("--no-trunc"),
                     Flag("-f,--filter", LIST)])
    body = Transport(host).get_json("/networks", {"filters": filters(a.filter) or None})
    assert isinstance(body, list)
    rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"],
             "Driver": n["Driver"], "Scope": n["Scope"],
             "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
             "Internal": str(bool(n.get("Internal"))).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items()),
             "CreatedAt": n.get("Created", "")} for n in body]
    rows.sort(key=lambda r: r["Name"])
    if a.quiet:
        _out("".join(f"{r['ID']}\n" for r in rows))
        return 0
    from pallet.cli import template

    _out(template.show(a.format, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
                       {"ID": "NETWORK ID"}))
    return 0


def inspect(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-v,--verbose")])
    if not a.args:
        raise UsageError('"pallet network inspect" requires at least 1 argument.')
    return inspect_each(host, list(a.args), "/networks/{}", a.format)


def rm(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force")])
    if not a.args:
        raise UsageError('"pallet network rm" requires at least 1 argument.')
    t = Transport(host)
    code = 0
    for name in a.args:
        try:
            t.request("DELETE", f"/networks/{name}").close()
            _out(f"{name}\n")
        except APIError as exc:
            if exc.status == 404 and a.force:
                continue
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            code = 1
    return code


def prune(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force"), Flag("--filter", LIST)])
    if not a.force:
        sys.stderr.write("WARNING! This will remove all custom networks not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        if sys.stdin.readline().strip().lower() != "y":
            return 0
    body = Transport(host).post_json("/networks/prune",
                                     {"filters": filters(a.filter) or None})
    assert isinstance(body, dict)
    gone = body.get("NetworksDeleted") or []
    if gone:
        _out("Deleted Networks:\n" + "".join(f"{n}\n" for n in gone))
    return 0


def connect(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("--ip", STR), Flag("--ip6", STR), Flag("--alias", LIST),
                     Flag("--link", LIST), Flag("--driver-opt", LIST)])
    if len(a.args) != 2:
        raise UsageError('"pallet network connect" requires exactly 2 arguments.')
    endpoint: dict[str, object] = {}
    ipam = {k: str(v) for k, v in (("IPv4Address", a.ip), ("IPv6Address", a.ip6)) if v}
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if a.alias:
        endpoint["Aliases"] = a.alias
    if a.link:
        endpoint["Links"] = a.link
    if a.driver_opt:
        endpoint["DriverOpts"] = _kv(a.driver_opt)
    Transport(host).post_json(f"/networks/{a.args[0]}/connect", None,
                              {"Container": a.args[1], "EndpointConfig": endpoint or None})
    return 0


def disconnect(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force")])
    if len(a.args) != 2:
        raise UsageError('"pallet network disconnect" requires exactly 2 arguments.')
    Transport(host).post_json(f"/networks/{a.args[0]}/disconnect", None,
                              {"Container": a.args[1], "Force": bool(a.force)})
    return 0


def port(host: str | None, argv: list[str]) -> int:
    """`pallet port CONTAINER [PRIVATE_PORT[/PROTO]]`: the published ports."""
    a = parse(argv, [])
    if not 1 <= len(a.args) <= 2:
        raise UsageError('"pallet port" requires at least 1 and at most 2 arguments.')
    doc = Transport(host).get_json(f"/containers/{a.args[0]}/json")
    assert isinstance(doc, dict)
    ports = (doc.get("NetworkSettings") or {}).get("Ports") or {}
    if len(a.args) == 2:
        want = a.args[1] if "/" in a.args[1] else f"{a.args[1]}/tcp"
        binds = ports.get(want)
        if not binds:
            sys.stderr.write(f"Error: No public port '{want}' published for {a.args[0]}\n")
            return 1
        _out("".join(f"{b['HostIp']}:{b['HostPort']}\n" for b in binds))
        return 0
    for key in sorted(ports, key=lambda k: (int(k.partition("/")[0]), k)):
        for b in ports[key] or []:
            _out(f"{key} -> {b['HostIp']}:{b['HostPort']}\n")
    return 0
