"""docker import's --change instructions, parsed into an image config."""

from __future__ import annotations

import pytest

from pallet.build.changes import parse_changes
from pallet.errors import InvalidArgument


def test_changes() -> None:
    cfg = parse_changes(['CMD ["sh", "-c", "x"]', "ENTRYPOINT /bin/init", "ENV A=b",
                         "ENV C d", "EXPOSE 80 53/udp", "LABEL team=pallet", "USER nobody",
                         "WORKDIR /srv", "STOPSIGNAL SIGINT", "VOLUME /data /logs"])
    assert cfg == {
        "Cmd": ["sh", "-c", "x"], "Entrypoint": ["/bin/sh", "-c", "/bin/init"],
        "Env": ["A=b", "C=d"], "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Labels": {"team": "pallet"}, "User": "nobody", "WorkingDir": "/srv",
        "StopSignal": "SIGINT", "Volumes": {"/data": {}, "/logs": {}},
    }


def test_unknown_change_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        parse_changes(["RUN make"])


def test_collection_waits_for_leases(tmp_path: str) -> None:
    """A pull writes layers before its image names them: collection must not take them."""
    import io
    import tarfile

    from pallet.engine.config import DaemonConfig
    from pallet.engine.events import EventBus
    from pallet.engine.images import ImageService

    svc = ImageService(DaemonConfig(data_root=str(tmp_path), exec_root=str(tmp_path)),
                       EventBus())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    blob = svc.store.write_bytes(buf.getvalue())
    with svc.lease():
        layer = svc.unpack("", blob)  # unpacked, not yet registered by any image
        assert svc.collect() == 0 and svc.layers.exists(layer.chain_id)
    assert svc.collect() == layer.size  # released and still unnamed: collected
    assert not svc.layers.exists(layer.chain_id)
    assert not svc.store.exists(blob)  # and so is the blob nothing references


def test_reference_filter_globs_as_go_path_match() -> None:
    from pallet.engine.imageread import _ref_matches, path_match

    assert path_match("busybox*", "busybox:1") and not path_match("busybox*", "busybox/x:1")
    assert path_match("*/*", "a/b") and not path_match("*", "a/b")
    assert path_match("b?sy", "busy") and path_match("[a-c]at", "bat")
    assert not path_match("[^a-c]at", "bat") and not path_match("[a-", "a")
    assert path_match(r"a\*", "a*") and not path_match(r"a\*", "ab")
    assert _ref_matches("library/busybox:1", ["library/busybox"])  # the name alone
    assert not _ref_matches("127.0.0.1:5000/a/b:1", ["127.0.0.1:5000/*:1"])
