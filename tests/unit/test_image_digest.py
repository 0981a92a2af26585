"""pallet.image.digest: go-digest's validation and messages, hashing in one go or streamed."""

from __future__ import annotations

import hashlib

import pytest

from pallet.errors import InvalidArgument
from pallet.image.digest import Digest, Hasher, digest_error

# The busybox layer of shared/reference/registry-2.8-responses.txt.
LAYER = "sha256:a5ae4502066877fe36ceecb69118413a2a98c88bac7210af6359c059a62f3850"


def test_parse_sha256_and_str_round_trip() -> None:
    d = Digest.parse(LAYER)
    assert d.algorithm == "sha256"
    assert d.hex == LAYER.removeprefix("sha256:")
    assert str(d) == LAYER
    assert d.short() == "a5ae45020668"


@pytest.mark.parametrize("algorithm,length", [("sha512", 128), ("sha384", 96)])
def test_parse_other_registered_algorithms(algorithm: str, length: int) -> None:
    s = f"{algorithm}:" + "f" * length
    assert str(Digest.parse(s)) == s


@pytest.mark.parametrize(
    "s,message",
    [
        ("", "invalid checksum digest format"),
        ("sha256", "invalid checksum digest format"),
        ("sha256:", "invalid checksum digest format"),
        (":" + "a" * 64, "invalid checksum digest format"),
        ("sha256:" + "a" * 63, "invalid checksum digest length"),
        ("sha256:" + "a" * 65, "invalid checksum digest length"),
        ("sha512:" + "a" * 64, "invalid checksum digest length"),
        ("sha256:" + "A" * 64, "invalid checksum digest format"),
        ("sha256:" + "g" * 64, "invalid checksum digest format"),
        ("md5:" + "a" * 32, "unsupported digest algorithm"),
        ("invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
        ("SHA256:" + "a" * 64, "invalid checksum digest format"),
    ],
)
def test_invalid_digests_get_go_digest_messages(s: str, message: str) -> None:
    assert digest_error(s) == message
    with pytest.raises(InvalidArgument) as info:
        Digest.parse(s)
    assert str(info.value).startswith(message)
    assert info.value.obj == s


def test_valid_digest_has_no_error() -> None:
    assert digest_error(LAYER) == ""


def test_digest_is_a_hashable_value() -> None:
    a, b = Digest.parse(LAYER), Digest.parse(LAYER)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.hex = "0" * 64  # type: ignore[misc]


def test_of_bytes_matches_hashlib() -> None:
    data = b"hello, layers\n"
    assert Digest.of_bytes(data) == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert Digest.of_bytes(data, "sha512").hex == hashlib.sha512(data).hexdigest()
    assert str(Digest.of_bytes(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_hasher_streams_chunks_and_counts_bytes() -> None:
    data = bytes(range(256)) * 1000
    h = Hasher()
    for i in range(0, len(data), 4093):
        chunk = data[i:i + 4093]
        # Callers copy with whatever buffer type they hold.
        h.update(memoryview(chunk) if i % 2 else bytearray(chunk))
    assert h.size == len(data)
    assert h.digest() == Digest.of_bytes(data)


def test_hasher_counts_memoryview_bytes_not_items() -> None:
    h = Hasher()
    h.update(memoryview(b"\0" * 16).cast("I"))
    assert h.size == 16


def test_hasher_can_report_midway_and_continue() -> None:
    h = Hasher()
    h.update(b"abc")
    assert h.digest() == Digest.of_bytes(b"abc")
    h.update(b"def")
    assert h.digest() == Digest.of_bytes(b"abcdef")


def test_hasher_refuses_unknown_algorithm() -> None:
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        Hasher("md5")
