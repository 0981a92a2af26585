"""Integration fixtures: a private runtime root and fresh bundles, cleaned up after."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.runtime import Bundle, Runtime, make_bundle

pytestmark = pytest.mark.root


@pytest.fixture
def rt(tmp_path: str) -> Iterator[Runtime]:
    root = os.path.join(str(tmp_path), "state")
    runtime = Runtime(root)
    yield runtime
    runtime.cleanup()
    leftovers = os.listdir(root) if os.path.isdir(root) else []
    assert leftovers == [], f"state dirs left behind: {leftovers}"


@pytest.fixture
def bundle(tmp_path: str) -> Bundle:
    return make_bundle(str(tmp_path), ["true"])
