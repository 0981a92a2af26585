"""The event bus behind GET /events: publish, replay since, stream until, filter.

Events are the Engine API's shape (Type, Action, Actor{ID, Attributes}, scope, time,
timeNano, plus the legacy status/id/from fields for containers and images).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pallet.errors import InvalidArgument

# Filters GET /events accepts, and which event field each one reads.
FILTER_KEYS = ("config", "container", "daemon", "event", "image", "label", "network",
               "node", "plugin", "scope", "secret", "service", "type", "volume")
TYPES = ("builder", "config", "container", "daemon", "image", "network", "node", "plugin",
         "secret", "service", "volume")


def make_event(kind: str, action: str, actor_id: str,
               attributes: dict[str, str] | None = None) -> dict[str, object]:
    now = time.time_ns()
    ev: dict[str, object] = {
        "Type": kind, "Action": action,
        "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
        "scope": "local", "time": now // 1_000_000_000, "timeNano": now,
    }
    if kind in ("container", "image"):
        ev["status"] = action
        ev["id"] = actor_id
        if kind == "container" and attributes and "image" in attributes:
            ev["from"] = attributes["image"]
    return ev


def check_filters(filters: dict[str, list[str]]) -> None:
    for key, values in filters.items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type":
            for v in values:
                if v not in TYPES:
                    raise InvalidArgument(f"invalid filter 'type={v}'")


def matches(ev: dict[str, object], filters: dict[str, list[str]]) -> bool:
    actor = ev.get("Actor")
    attrs: dict[str, str] = actor.get("Attributes", {}) if isinstance(actor, dict) else {}
    actor_id = str(actor.get("ID", "")) if isinstance(actor, dict) else ""
    kind = str(ev.get("Type", ""))
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = kind in values
        elif key == "event":
            action = str(ev.get("Action", ""))
            ok = action in values or action.split(":", 1)[0] in values
        elif key == "label":
            ok = any(_label_matches(attrs, v) for v in values)
        elif key == "scope":
            ok = str(ev.get("scope", "local")) in values
        else:  # container, image, network, volume, ...: id or name, only for that type
            ok = kind == key and (actor_id in values or attrs.get("name", "") in values
                                  or any(actor_id.startswith(v) for v in values if len(v) >= 12))
        if not ok:
            return False
    return True


def _label_matches(attrs: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return key in attrs and (not eq or attrs[key] == value)


@dataclass
class EventBus:
    """Keeps the last ``keep`` events for `since`, and fans new ones out to listeners."""

    keep: int = 1000
    _log: deque[dict[str, object]] = field(default_factory=deque)
    _listeners: set[asyncio.Queue[dict[str, object]]] = field(default_factory=set)

    def publish(self, ev: dict[str, object]) -> None:
        self._log.append(ev)
        while len(self._log) > self.keep:
            self._log.popleft()
        for q in list(self._listeners):
            q.put_nowait(ev)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def stream(self, filters: dict[str, list[str]], since: float | None,
                     until: float | None) -> AsyncIterator[dict[str, object]]:
        """Past events from ``since`` (seconds), then live ones until ``until``."""
        q: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self._listeners.add(q)
        try:
            if since is not None:
                for ev in list(self._log):
                    t = int(ev["timeNano"]) / 1e9  # type: ignore[call-overload]
                    if t >= since and (until is None or t <= until) and matches(ev, filters):
                        yield ev
            while True:
                timeout = None if until is None else until - time.time()
                if timeout is not None and timeout <= 0:
                    return
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if matches(ev, filters):
                    yield ev
        finally:
            self._listeners.discard(q)
