"""docker import's --change instructions, parsed into an image config."""

from __future__ import annotations

import pytest

from pallet.engine.images import parse_changes
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
