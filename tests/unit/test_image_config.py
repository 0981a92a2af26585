"""pallet.image.config: image configs parsed without losing a byte, written as moby writes
them, and the ids derived from them (image id, chain ids)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from pallet.errors import InvalidArgument
from pallet.image.config import (
    ContainerConfig,
    Healthcheck,
    History,
    ImageConfig,
    RootFS,
    chain_ids,
    config_to_json,
    image_id,
    parse_config,
)
from pallet.image.digest import Digest

# The config blob of the busybox image a real dockerd 20.10 imported
# (shared/reference/dockerd-20.10/image-inspect.json): its sha256 is that image's Id, so
# these are Docker's exact bytes.
BUSYBOX = (
    b'{"architecture":"amd64","comment":"Imported from -","config":{"Hostname":"","Domainname":"'
    b'","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"Ope'
    b'nStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr'
    b'/bin:/sbin:/bin"],"Cmd":["sh"],"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null'
    b',"OnBuild":null,"Labels":null},"container_config":{"Hostname":"","Domainname":"","User":""'
    b',"AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":fal'
    b'se,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entr'
    b'ypoint":null,"OnBuild":null,"Labels":null},"created":"2026-11-27T23:19:39.228875671Z","doc'
    b'ker_version":"20.10.24+dfsg1","history":[{"created":"2026-11-27T23:19:39.228875671Z","comm'
    b'ent":"Imported from -"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:366dcb'
    b'96b7a6cf29e7c752b2a0b0ff2ceab5941faa6b93c1835381879f6dcdf1"]}}'
)
BUSYBOX_ID = "sha256:a4b92a69ad2c5f1a875840a518a96deb44ac215f9edcade746247732a4c0a8a9"
BUSYBOX_DIFF = "sha256:366dcb96b7a6cf29e7c752b2a0b0ff2ceab5941faa6b93c1835381879f6dcdf1"


def dg(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


# A BuildKit-style OCI config, pretty-printed, keys unsorted, with fields pallet does not
# model, a bare-string Cmd (Docker's strslice), HTML characters and non-ASCII text.
ODD: dict[str, Any] = {
    "created": "2024-05-01T10:00:00.123456789Z",
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "os.version": "",
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "GREETING=héllo & <bye>"],
        "Cmd": "sh",
        "WorkingDir": "/srv",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Labels": None,
        "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                        "Interval": 30_000_000_000, "Retries": 0},
        "ArgsEscaped": True,
        "OnBuild": None,
        "StopSignal": "SIGQUIT",
        "Shell": ["/bin/bash", "-c"],
        "X-Unknown": {"kept": [1, 2.5, None]},
    },
    "rootfs": {"type": "layers", "diff_ids": [dg("a"), dg("b")]},
    "history": [
        {"created": "2024-05-01T09:00:00Z", "created_by": "ADD rootfs.tar.xz / # buildkit",
         "comment": "buildkit.dockerfile.v0"},
        {"created": "2024-05-01T10:00:00Z", "created_by": "RUN apt-get update && apt-get -y x",
         "comment": "buildkit.dockerfile.v0", "x-extra": True},
        {"created": "2024-05-01T10:00:00Z", "created_by": 'CMD ["sh"]', "empty_layer": True},
    ],
    "moby.buildkit.buildinfo.v1": "eyJmcm9udGVuZCI6ImRvY2tlcmZpbGUudjAifQ==",
}


def odd_bytes(indent: int | None = 2) -> bytes:
    return json.dumps(ODD, indent=indent, ensure_ascii=True).encode()


# --- ids --------------------------------------------------------------------------------

def test_image_id_is_the_config_digest() -> None:
    assert str(image_id(BUSYBOX)) == BUSYBOX_ID
    assert image_id(b"{}") == Digest("sha256", hashlib.sha256(b"{}").hexdigest())


def test_chain_ids_follow_the_oci_formula() -> None:
    diffs = [Digest.parse(dg(x)) for x in ("l0", "l1", "l2")]
    # Computed here independently: ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
    c0 = dg("l0")
    c1 = "sha256:" + hashlib.sha256(f"{c0} {dg('l1')}".encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256(f"{c1} {dg('l2')}".encode()).hexdigest()
    assert [str(c) for c in chain_ids(diffs)] == [c0, c1, c2]


def test_chain_ids_of_known_layers() -> None:
    # Two well-known diff ids: the empty tar layer (1024 zero bytes) and busybox's.
    empty_tar = Digest.of_bytes(b"\0" * 1024)
    assert str(empty_tar) == (
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")
    ids = chain_ids([Digest.parse(BUSYBOX_DIFF), empty_tar])
    expected = hashlib.sha256(f"{BUSYBOX_DIFF} {empty_tar}".encode()).hexdigest()
    assert ids[0] == Digest.parse(BUSYBOX_DIFF)
    assert ids[1].hex == expected


def test_chain_ids_edge_cases() -> None:
    assert chain_ids([]) == []
    one = Digest.parse(dg("x"))
    assert chain_ids([one]) == [one]
    # Order matters: the same layers stacked differently are a different chain.
    a, b = Digest.parse(dg("a")), Digest.parse(dg("b"))
    assert chain_ids([a, b])[-1] != chain_ids([b, a])[-1]


# --- parsing ----------------------------------------------------------------------------

def test_docker_config_fields() -> None:
    cfg = parse_config(BUSYBOX)
    assert (cfg.architecture, cfg.os, cfg.variant) == ("amd64", "linux", "")
    assert cfg.created == "2026-11-27T23:19:39.228875671Z"
    assert cfg.config.cmd == ["sh"] and cfg.config.entrypoint is None
    assert cfg.config.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert cfg.config.labels == {} and cfg.config.volumes == {}
    assert cfg.rootfs == RootFS("layers", [Digest.parse(BUSYBOX_DIFF)])
    assert [(h.created, h.comment, h.empty_layer) for h in cfg.history] == [
        ("2026-11-27T23:19:39.228875671Z", "Imported from -", False)]
    assert cfg.raw["docker_version"] == "20.10.24+dfsg1"


def test_oci_config_fields() -> None:
    cfg = parse_config(odd_bytes())
    c = cfg.config
    assert (cfg.architecture, cfg.variant) == ("arm64", "v8")
    assert c.cmd == ["sh"]  # a bare string means a one-element list
    assert c.exposed_ports == {"80/tcp": {}, "53/udp": {}}
    assert c.args_escaped and c.stop_signal == "SIGQUIT" and c.shell == ["/bin/bash", "-c"]
    assert c.healthcheck == Healthcheck(
        test=["CMD-SHELL", "curl -f http://localhost/ || exit 1"], interval=30_000_000_000,
        raw=ODD["config"]["Healthcheck"])
    assert [h.empty_layer for h in cfg.history] == [False, False, True]
    assert len(cfg.rootfs.diff_ids) == 2


def test_a_config_without_layers_is_fine() -> None:
    cfg = parse_config(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}')
    assert cfg.rootfs.diff_ids == [] and cfg.history == []
    assert cfg.config == ContainerConfig()


def refused(doc: Any) -> str:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidArgument) as info:
        parse_config(raw)
    return str(info.value)


def changed(path: list[Any], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(odd_bytes())
    target: Any = doc
    for p in path[:-1]:
        target = target[p]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize("path,value,needle", [
    (["rootfs"], ..., "invalid image JSON, no RootFS key"),
    (["rootfs", "type"], "layers+zip", "rootfs.type"),
    (["rootfs"], [], "rootfs"),
    (["rootfs", "diff_ids"], "sha256:x", "rootfs.diff_ids"),
    (["rootfs", "diff_ids", 1], "sha256:abc", "rootfs.diff_ids[1]: invalid checksum digest"),
    (["rootfs", "diff_ids", 0], 7, "rootfs.diff_ids[0]"),
    (["architecture"], 64, "architecture"),
    (["config"], [], "config"),
    (["config", "Env"], [1], "config.Env"),
    (["config", "Entrypoint"], {"a": 1}, "config.Entrypoint"),
    (["config", "Labels"], {"a": 1}, "config.Labels"),
    (["config", "ExposedPorts"], ["80/tcp"], "config.ExposedPorts"),
    (["config", "ArgsEscaped"], "yes", "config.ArgsEscaped"),
    (["config", "Healthcheck", "Interval"], "30s", "config.Healthcheck.Interval"),
    (["history"], {}, "history"),
    (["history", 1], "RUN x", "history[1]"),
    (["history", 2, "empty_layer"], "true", "history[2].empty_layer"),
    (["history", 0, "created_by"], ["ADD"], "history[0].created_by"),
])
def test_bad_configs_name_the_field(path: list[Any], value: Any, needle: str) -> None:
    assert needle in refused(changed(path, value))


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff"])
def test_not_a_config(raw: bytes) -> None:
    assert refused(raw).startswith("invalid image config")


# --- writing: the digest must not move ------------------------------------------------------

@pytest.mark.parametrize("raw", [BUSYBOX, odd_bytes(), odd_bytes(None), odd_bytes(4) + b"\n"],
                         ids=["docker", "oci-pretty", "oci-compact", "trailing-newline"])
def test_unchanged_config_keeps_its_bytes(raw: bytes) -> None:
    out = config_to_json(parse_config(raw))
    assert out == raw
    assert image_id(out) == image_id(raw)


@pytest.mark.parametrize("raw", [BUSYBOX, odd_bytes()], ids=["docker", "oci"])
def test_rewriting_an_unchanged_config_loses_nothing(raw: bytes) -> None:
    # Without the original bytes, the document (unknown fields, nulls, the bare-string Cmd,
    # a zero Retries) still comes back the same.
    cfg = dataclasses.replace(parse_config(raw), source=None)
    assert json.loads(config_to_json(cfg)) == json.loads(raw)


def test_docker_config_written_again_is_dockers_bytes() -> None:
    cfg = parse_config(BUSYBOX)
    cfg.config.cmd = ["echo", "hi"]
    changed_bytes = config_to_json(cfg)
    assert changed_bytes != BUSYBOX
    doc = json.loads(changed_bytes)
    assert doc["config"]["Cmd"] == ["echo", "hi"]
    assert list(doc["config"]) == list(json.loads(BUSYBOX)["config"])
    # Back to the original values from the new bytes: moby's writer gives moby's bytes.
    again = parse_config(changed_bytes)
    again.config.cmd = ["sh"]
    assert config_to_json(again) == BUSYBOX
    assert str(image_id(config_to_json(again))) == BUSYBOX_ID


def test_changes_touch_only_the_changed_fields() -> None:
    cfg = parse_config(odd_bytes())
    cfg.config.labels = {"org.opencontainers.image.title": "a&b"}
    cfg.config.env = [*(cfg.config.env or []), "NEW=1"]
    cfg.rootfs.diff_ids.append(Digest.parse(dg("c")))
    cfg.history.append(History(created="2024-05-02T00:00:00Z", created_by="COPY x /x"))
    out = config_to_json(cfg)
    text = out.decode()
    assert "\n" not in text and ": " not in text.replace("|| exit", "")  # compact
    assert r'"a\u0026b"' in text  # Go's escaping
    doc = json.loads(out)
    assert list(doc) == sorted(doc)  # moby sorts the top level
    assert doc["config"]["Labels"] == {"org.opencontainers.image.title": "a&b"}
    assert doc["config"]["Env"][-1] == "NEW=1"
    assert doc["config"]["Cmd"] == "sh"  # untouched: still the bare string
    assert doc["config"]["X-Unknown"] == {"kept": [1, 2.5, None]}
    assert doc["config"]["Healthcheck"]["Retries"] == 0
    assert doc["moby.buildkit.buildinfo.v1"] == ODD["moby.buildkit.buildinfo.v1"]
    assert doc["os.version"] == ""
    assert doc["history"][1]["x-extra"] is True
    assert doc["history"][3] == {"created": "2024-05-02T00:00:00Z", "created_by": "COPY x /x"}
    assert doc["rootfs"]["diff_ids"] == [dg("a"), dg("b"), dg("c")]
    reparsed = parse_config(out)
    assert reparsed.config.labels == cfg.config.labels
    assert reparsed.rootfs == cfg.rootfs


def test_clearing_a_field_writes_it_empty() -> None:
    cfg = parse_config(odd_bytes())
    cfg.config.healthcheck = None
    cfg.config.shell = None
    cfg.config.exposed_ports = {}
    doc = json.loads(config_to_json(cfg))
    assert doc["config"]["Healthcheck"] is None
    assert doc["config"]["Shell"] is None
    assert doc["config"]["ExposedPorts"] == {}


def test_a_new_config_is_written_in_mobys_form() -> None:
    cfg = ImageConfig(
        architecture="amd64", os="linux", created="2024-05-01T00:00:00Z",
        config=ContainerConfig(
            env=["PATH=/bin"], cmd=["sh"], working_dir="/", labels={"k": "v"},
            exposed_ports={"8080/tcp": {}},
            healthcheck=Healthcheck(test=["CMD", "true"], interval=5_000_000_000)),
        rootfs=RootFS(diff_ids=[Digest.parse(BUSYBOX_DIFF)]),
        history=[History(created="2024-05-01T00:00:00Z", created_by="ADD busybox /"),
                 History(created_by='CMD ["sh"]', empty_layer=True)],
    )
    expected = (
        '{"architecture":"amd64",'
        '"config":{"ExposedPorts":{"8080/tcp":{}},"Env":["PATH=/bin"],"Cmd":["sh"],'
        '"Healthcheck":{"Test":["CMD","true"],"Interval":5000000000},'
        '"WorkingDir":"/","Labels":{"k":"v"}},'
        '"created":"2024-05-01T00:00:00Z",'
        '"history":[{"created":"2024-05-01T00:00:00Z","created_by":"ADD busybox /"},'
        '{"created_by":"CMD [\\"sh\\"]","empty_layer":true}],'
        '"os":"linux",'
        f'"rootfs":{{"type":"layers","diff_ids":["{BUSYBOX_DIFF}"]}}}}'
    )
    out = config_to_json(cfg)
    assert out.decode() == expected
    back = parse_config(out)
    assert (back.config.healthcheck is not None and cfg.config.healthcheck is not None
            and back.config.healthcheck.test == cfg.config.healthcheck.test)
    assert back.config.labels == {"k": "v"} and back.config.cmd == ["sh"]
    assert [h.created_by for h in back.history] == ["ADD busybox /", 'CMD ["sh"]']
    assert back.rootfs == cfg.rootfs
    assert config_to_json(back) == out
