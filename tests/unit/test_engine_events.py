"""The event bus: replay since, live events, until, and Docker's filters."""

from __future__ import annotations

import asyncio
import time

import pytest

from pallet.engine import events
from pallet.errors import InvalidArgument


def test_filters_match_as_docker() -> None:
    ev = events.make_event("container", "start", "abc123" * 10, {"name": "web", "a": "1"})
    assert events.matches(ev, {"type": ["container"], "event": ["start"]})
    assert events.matches(ev, {"container": ["web"]})
    assert events.matches(ev, {"container": ["abc123abc123"]})  # an id prefix
    assert events.matches(ev, {"label": ["a=1"]}) and events.matches(ev, {"label": ["a"]})
    assert not events.matches(ev, {"label": ["a=2"]})
    assert not events.matches(ev, {"image": ["web"]})  # a container is not an image
    assert not events.matches(ev, {"type": ["image"]})
    exec_ev = events.make_event("container", "exec_start: sh", "x")
    assert events.matches(exec_ev, {"event": ["exec_start"]})
    assert ev["status"] == "start" and ev["id"] == ev["Actor"]["ID"]  # type: ignore[index]


def test_bad_filters() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'nosuch'"):
        events.check_filters({"nosuch": ["x"]})
    with pytest.raises(InvalidArgument):
        events.check_filters({"type": ["bogus"]})


def test_stream_replays_since_then_follows_until() -> None:
    async def scenario() -> list[str]:
        bus = events.EventBus()
        bus.publish(events.make_event("image", "pull", "old"))
        t0 = time.time()
        got: list[str] = []

        async def listen() -> None:
            async for ev in bus.stream({"type": ["image"]}, since=t0 - 10, until=t0 + 0.5):
                got.append(str(ev["id"]))

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.05)
        bus.publish(events.make_event("container", "start", "skipped"))
        bus.publish(events.make_event("image", "tag", "new"))
        await task
        assert bus.listeners == 0
        return got

    assert asyncio.run(scenario()) == ["old", "new"]
