"""Fixtures shared by every test: the repository root and the root-only marker."""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The host's interfaces before any test ran: what a test adds must be gone at the end.
LINKS_AT_START = frozenset(os.listdir("/sys/class/net"))

# Fixtures shared across test packages.
pytest_plugins = ["tests.support.console"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root and a real kernel")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
