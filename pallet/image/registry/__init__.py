"""Registry transport: an OCI distribution client, its auth, and docker-style credentials.

Public names are re-exported here; the modules behind them are ``client`` (the
distribution API: manifests, blobs, tags), ``transport`` (sending, retrying, mirrors, error
translation), ``auth`` (challenges, tokens), ``endpoints`` (hosts, schemes, backoff) and
``credentials`` (``config.json``).

The re-exports are lazy (PEP 562): ``credentials`` is stdlib-only so that the CLI's
``login``/``logout`` can import it without pulling in aiohttp, and importing it imports
this package first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pallet.image.registry.auth import Unauthorized
    from pallet.image.registry.client import (
        MANIFEST_ACCEPT,
        MEDIA_DOCKER_LIST,
        MEDIA_DOCKER_MANIFEST,
        MEDIA_OCI_INDEX,
        MEDIA_OCI_MANIFEST,
        BlobPush,
        ManifestHead,
        RegistryClient,
    )
    from pallet.image.registry.credentials import Credentials, CredentialSource, CredentialStore
    from pallet.image.registry.endpoints import RetryPolicy

_WHERE = {
    "Unauthorized": "auth",
    "MANIFEST_ACCEPT": "client",
    "MEDIA_DOCKER_LIST": "client",
    "MEDIA_DOCKER_MANIFEST": "client",
    "MEDIA_OCI_INDEX": "client",
    "MEDIA_OCI_MANIFEST": "client",
    "BlobPush": "client",
    "ManifestHead": "client",
    "RegistryClient": "client",
    "CredentialSource": "credentials",
    "CredentialStore": "credentials",
    "Credentials": "credentials",
    "RetryPolicy": "endpoints",
}

__all__ = [
    "MANIFEST_ACCEPT",
    "MEDIA_DOCKER_LIST",
    "MEDIA_DOCKER_MANIFEST",
    "MEDIA_OCI_INDEX",
    "MEDIA_OCI_MANIFEST",
    "BlobPush",
    "CredentialSource",
    "CredentialStore",
    "Credentials",
    "ManifestHead",
    "RegistryClient",
    "RetryPolicy",
    "Unauthorized",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
