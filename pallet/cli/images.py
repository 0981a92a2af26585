"""pallet images, image inspect, history, tag, rmi, image prune, import."""

from __future__ import annotations

import json
import sys
import time

from pallet.cli.flags import LIST, STR, Flag, UsageError, parse
from pallet.client.transport import Transport

_FORMAT = Flag("-f,--format", STR)


def _out(text: str) -> None:
    sys.stdout.write(text)


def _ago(ts: int) -> str:
    d = max(0, time.time() - ts)
    for unit, secs in (("years", 31536000), ("months", 2592000), ("weeks", 604800),
                       ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= 2 * secs:
            return f"{int(d // secs)} {unit} ago"
        if d >= secs:
            return f"About an {unit[:-1]} ago" if unit == "hours" else f"1 {unit[:-1]} ago"
    return "Less than a second ago" if d < 1 else f"{int(d)} seconds ago"


def _size(n: int) -> str:
    from pallet.oci.units import human_size

    return human_size(n, digits=3)


def images(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-q,--quiet"), Flag("-a,--all"), Flag("--no-trunc"),
                     Flag("--digests"), Flag("--filter", LIST)])
    filters: dict[str, list[str]] = {}
    for f in a.filter if isinstance(a.filter, list) else []:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    if a.args:
        filters.setdefault("reference", []).append(a.args[0])
    body = Transport(host).get_json("/images/json", {"filters": filters or None,
                                                     "all": a.all or None})
    assert isinstance(body, list)
    rows = []
    for img in body:
        tags = img.get("RepoTags") or ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            ident = img["Id"] if a.no_trunc else img["Id"][7:19]
            rows.append({"Repository": repo, "Tag": tag, "ID": ident,
                         "CreatedSince": _ago(int(img.get("Created", 0))),
                         "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z",
                                                    time.localtime(img.get("Created", 0))),
                         "Size": _size(int(img.get("Size", 0))),
                         "Digest": (img.get("RepoDigests") or ["<none>"])[0].partition("@")[2]
                         or "<none>"})
    if a.quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        _out("".join(f"{i}\n" for i in seen))
        return 0
    from pallet.cli import template

    _out(template.show(a.format, "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}"
                       "\t{{.Size}}", rows, {"ID": "IMAGE ID", "CreatedSince": "CREATED"}))
    return 0


def inspect(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT])
    if not a.args:
        raise UsageError('"pallet image inspect" requires at least 1 argument.')
    from pallet.cli.objects import inspect_each

    return inspect_each(host, list(a.args), "/images/{}/json", a.format,
                        "Error: No such image: {}")


def history(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-q,--quiet"), Flag("--no-trunc"), Flag("-H,--human")])
    if len(a.args) != 1:
        raise UsageError('"pallet history" requires exactly 1 argument.')
    body = Transport(host).get_json(f"/images/{a.args[0]}/history")
    assert isinstance(body, list)
    rows = [{"ID": h["Id"] if a.no_trunc or h["Id"] == "<missing>" else h["Id"][7:19],
             "CreatedSince": _ago(int(h.get("Created", 0))), "CreatedBy": h.get("CreatedBy", ""),
             "Size": _size(int(h.get("Size", 0))), "Comment": h.get("Comment", "")}
            for h in body]
    if a.quiet:
        _out("".join(f"{r['ID']}\n" for r in rows))
        return 0
    from pallet.cli import template

    _out(template.show(a.format, "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}"
                       "\t{{.Comment}}", rows, {"ID": "IMAGE", "CreatedSince": "CREATED"}))
    return 0


def tag(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    if len(a.args) != 2:
        raise UsageError('"pallet tag" requires exactly 2 arguments.')
    target = a.args[1]
    repo, tag_ = target, ""
    last = target.rpartition("/")[2]
    if ":" in last:
        repo, _, tag_ = target.rpartition(":")
    Transport(host).request("POST", f"/images/{a.args[0]}/tag",
                            {"repo": repo, "tag": tag_ or None}).close()
    return 0


def rmi(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force"), Flag("--no-prune")])
    if not a.args:
        raise UsageError('"pallet rmi" requires at least 1 argument.')
    from pallet.client.transport import APIError

    t, code = Transport(host), 0
    for name in a.args:
        try:
            resp = t.request("DELETE", f"/images/{name}", {"force": a.force or None})
            body = resp.json()
            resp.close()
        except APIError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            code = 1
            continue
        assert isinstance(body, list)
        for item in body:
            for k, v in item.items():
                _out(f"{k}: {v}\n")
    return code


def prune(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-a,--all"), Flag("-f,--force"), Flag("--filter", LIST)])
    filters: dict[str, list[str]] = {"dangling": ["false" if a.all else "true"]}
    resp = Transport(host).request("POST", "/images/prune", {"filters": filters})
    body = resp.json()
    resp.close()
    assert isinstance(body, dict)
    items = body.get("ImagesDeleted") or []
    if items:
        _out("Deleted Images:\n" + "".join(
            f"{k.lower()}: {v}\n" for item in items for k, v in item.items()) + "\n")
    from pallet.oci.units import human_size

    _out(f"Total reclaimed space: {human_size(int(body.get('SpaceReclaimed', 0)), digits=3)}\n")
    return 0


def _strings(v: object) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def import_(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-c,--change", LIST), Flag("-m,--message", STR),
                     Flag("--platform", STR)])
    if not a.args or len(a.args) > 2:
        raise UsageError('"pallet import" requires 1 or 2 arguments: file|- [REPOSITORY[:TAG]]')
    src = a.args[0]
    data = sys.stdin.buffer if src == "-" else open(src, "rb")  # noqa: SIM115 - streamed
    repo, tag_ = (a.args[1] if len(a.args) > 1 else ""), ""
    if repo and ":" in repo.rpartition("/")[2]:
        repo, _, tag_ = repo.rpartition(":")
    query: dict[str, object] = {"fromSrc": "-", "repo": repo or None, "tag": tag_ or None,
                                "message": a.message, "platform": a.platform}
    resp = Transport(host).request("POST", "/images/create", query, body=data,
                                   headers={"Content-Type": "application/x-tar"},
                                   repeated={"changes": _strings(a.change)})
    for line in resp.lines():
        status = json.loads(line).get("status")
        if status:
            _out(f"{status}\n")
    resp.close()
    return 0


def bootstrap(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    if len(a.args) != 1:
        raise UsageError('"pallet image bootstrap" requires exactly 1 argument: '
                         "busybox[:tag] | debian[:suite]")
    name, _, tag = a.args[0].partition(":")
    resp = Transport(host).request("POST", "/images/bootstrap",
                                   {"fromImage": name, "tag": tag or "latest"})
    for line in resp.lines():
        status = json.loads(line).get("status")
        if status:
            _out(f"{status}\n")
    resp.close()
    return 0
