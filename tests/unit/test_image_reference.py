"""pallet.image.reference against Docker's behaviour.

The cases come from distribution/reference's own tables (normalize_test.go,
reference_test.go) and from what the docker CLI prints; expected strings are written out,
not computed, so a normalisation bug cannot agree with itself.
"""

from __future__ import annotations

import pytest

from pallet.errors import InvalidArgument
from pallet.image.digest import Digest
from pallet.image.reference import (
    Reference,
    is_localhost,
    parse,
    parse_repository_and_tag,
)

H = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
D = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
SHA512 = "sha512:" + "f" * 128

# input, str() of parse(input), familiar(), domain, path
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36",
     "docker.io", "library/busybox"),
    ("busybox:1.36.1-musl", "docker.io/library/busybox:1.36.1-musl", "busybox:1.36.1-musl",
     "docker.io", "library/busybox"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox"),
    ("index.docker.io/library/ubuntu-12.04-base",
     "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest",
     "docker.io", "library/ubuntu-12.04-base"),
    ("index.docker.io/fooo/bar", "docker.io/fooo/bar:latest", "fooo/bar:latest",
     "docker.io", "fooo/bar"),
    ("user/img", "docker.io/user/img:latest", "user/img:latest", "docker.io", "user/img"),
    ("dmcgowan/myapp:v1", "docker.io/dmcgowan/myapp:v1", "dmcgowan/myapp:v1",
     "docker.io", "dmcgowan/myapp"),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest",
     "docker.io", "library/foo/bar"),
    ("store/foo/bar", "docker.io/store/foo/bar:latest", "store/foo/bar:latest",
     "docker.io", "store/foo/bar"),
    ("other/library", "docker.io/other/library:latest", "other/library:latest",
     "docker.io", "other/library"),
    ("test_com/foo", "docker.io/test_com/foo:latest", "test_com/foo:latest",
     "docker.io", "test_com/foo"),
    ("dock__er/docker", "docker.io/dock__er/docker:latest", "dock__er/docker:latest",
     "docker.io", "dock__er/docker"),
    ("docker---rules/docker", "docker.io/docker---rules/docker:latest",
     "docker---rules/docker:latest", "docker.io", "docker---rules/docker"),
    ("d/docker", "docker.io/d/docker:latest", "d/docker:latest", "docker.io", "d/docker"),
    ("jess/t", "docker.io/jess/t:latest", "jess/t:latest", "docker.io", "jess/t"),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
     "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
     "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
     "docker.io", "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"),
    # With a registry in front, 64 hex digits are a name, not an image id.
    (f"docker.io/{HEX64}", f"docker.io/library/{HEX64}:latest", f"{HEX64}:latest",
     "docker.io", f"library/{HEX64}"),
    ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest", "localhost", "foo"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t",
     "localhost:5000", "a/b"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest",
     "127.0.0.1:5000", "x"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase:latest",
     "127.0.0.1:8000/private/moonbase:latest", "127.0.0.1:8000", "private/moonbase"),
    ("192.168.1.1/repo", "192.168.1.1/repo:latest", "192.168.1.1/repo:latest",
     "192.168.1.1", "repo"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest", "[::1]:5000", "x"),
    ("[2001:db8::1]/repo:tag", "[2001:db8::1]/repo:tag", "[2001:db8::1]/repo:tag",
     "[2001:db8::1]", "repo"),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian",
     "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
     "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
     "[fc00:1:2:3:4:5:6:7]:5000", "library/debian"),
    ("example.com/a", "example.com/a:latest", "example.com/a:latest", "example.com", "a"),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase:latest",
     "example.com:8000/private/moonbase:latest", "example.com:8000", "private/moonbase"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag",
     "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
     "sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux"),
    ("b.gcr.io/test.example.com/my-app:test.example.com",
     "b.gcr.io/test.example.com/my-app:test.example.com",
     "b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io",
     "test.example.com/my-app"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com",
     "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage"),
    ("test-com:8080/foo", "test-com:8080/foo:latest", "test-com:8080/foo:latest",
     "test-com:8080", "foo"),
    # An uppercase first component can only be a registry (namespaces are lowercase).
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest", "Foo", "bar"),
    ("FOO/bar:tag", "FOO/bar:tag", "FOO/bar:tag", "FOO", "bar"),
    # Without a "/", a host-looking name is an official image and ":5000" its tag.
    ("192.168.0.1", "docker.io/library/192.168.0.1:latest", "192.168.0.1:latest",
     "docker.io", "library/192.168.0.1"),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80",
     "docker.io", "library/192.168.0.1"),
    ("test.com:5000", "docker.io/library/test.com:5000", "test.com:5000",
     "docker.io", "library/test.com"),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase",
     "docker.io", "library/lowercase"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}",
     "docker.io", "library/busybox"),
    (f"busybox:latest@{D}", f"docker.io/library/busybox:latest@{D}", f"busybox:latest@{D}",
     "docker.io", "library/busybox"),
    (f"test:5000/repo@sha256:{H}", f"test:5000/repo@sha256:{H}", f"test:5000/repo@sha256:{H}",
     "test:5000", "repo"),
    (f"[2001:db8::1]:5000/repo:tag@sha256:{H}", f"[2001:db8::1]:5000/repo:tag@sha256:{H}",
     f"[2001:db8::1]:5000/repo:tag@sha256:{H}", "[2001:db8::1]:5000", "repo"),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}",
     f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", "xn--7o8h.com", "myimage"),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128, "busybox:" + "t" * 128,
     "docker.io", "library/busybox"),
    # docker.io/ (10) + 245 = 255 characters: the longest name allowed.
    ("a/" * 122 + "a", "docker.io/" + "a/" * 122 + "a:latest", "a/" * 122 + "a:latest",
     "docker.io", "a/" * 122 + "a"),
]

LOWER = "invalid reference format: repository name must be lowercase"
FORMAT = "invalid reference format"
TOO_LONG = "invalid reference format: repository name must not be more than 255 characters"

# input, exact message
INVALID = [
    ("", FORMAT),
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("Uppercase:tag",
     "invalid reference format: repository name (library/Uppercase) must be lowercase"),
    ("docker/Docker",
     "invalid reference format: repository name (docker/Docker) must be lowercase"),
    ("docker.io/docker/Docker",
     "invalid reference format: repository name (docker/Docker) must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag",
     "invalid reference format: repository name (Uppercase/lowercase) must be lowercase"),
    ("Foo_Bar/baz", LOWER),
    ("-docker", FORMAT),
    ("-docker/docker", FORMAT),
    ("docker-/docker", FORMAT),
    ("-docker-/docker", FORMAT),
    ("-docker.io/docker/docker", FORMAT),
    ("docker///docker", FORMAT),
    ("docker.io/docker///docker", FORMAT),
    ("docker/", FORMAT),
    ("____/____", FORMAT),
    ("_docker/_docker", FORMAT),
    ("dock..er/docker", FORMAT),
    ("dock_.er/docker", FORMAT),
    ("dock-.er/docker", FORMAT),
    ("https://github.com/docker/docker", FORMAT),
    ("[fc00::1]", FORMAT),
    ("[fc00::1]:5000", FORMAT),
    ("fc00::1:5000/debian", FORMAT),
    ("[fe80::1%eth0]:5000/debian", FORMAT),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", FORMAT),
    ("aa/asdf$$^/aa", FORMAT),
    (":justtag", FORMAT),
    (f"@sha256:{H}", FORMAT),
    ("busybox:", FORMAT),
    ("busybox:-tag", FORMAT),
    ("busybox:" + "t" * 129, FORMAT),
    ("busybox:ta g", FORMAT),
    ("busybox:tag\n", FORMAT),
    ("busybox:täg", FORMAT),
    ("busybox@sha256:abc", FORMAT),
    (HEX64,
     f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
    ("repo@sha256:" + "f" * 34, "invalid reference format: invalid checksum digest length"),
    (f"validname@invaliddigest:{H}", "invalid reference format: unsupported digest algorithm"),
    ("busybox@sha256:" + "F" * 64, "invalid reference format: invalid checksum digest format"),
    ("a/" * 122 + "aa", TOO_LONG),
    ("this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid"
     "_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_"
     "its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater"
     "_than_255/docker", TOO_LONG),
]


def test_the_tables_are_big_enough() -> None:
    assert len(VALID) + len(INVALID) >= 80


@pytest.mark.parametrize("s,full,familiar,domain,path", VALID, ids=[v[0][:60] for v in VALID])
def test_valid_reference(s: str, full: str, familiar: str, domain: str, path: str) -> None:
    ref = parse(s)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert (ref.domain, ref.path) == (domain, path)
    assert ref.name == f"{domain}/{path}"
    # The normalised form and the familiar form both parse back to the same reference.
    assert parse(full) == ref
    assert parse(familiar) == ref


@pytest.mark.parametrize("s,message", INVALID, ids=[v[0][:60] for v in INVALID])
def test_invalid_reference(s: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(s)
    assert str(info.value) == message
    assert info.value.obj == s


def test_familiar_name_drops_only_docker_hub_and_library() -> None:
    assert parse("busybox").familiar_name() == "busybox"
    assert parse("user/img").familiar_name() == "user/img"
    assert parse("localhost:5000/a/b:t").familiar_name() == "localhost:5000/a/b"
    assert parse("docker.io/library/a/b").familiar_name() == "library/a/b"
    assert parse("example.com/library/x").familiar_name() == "example.com/library/x"


def test_default_tag_only_for_a_bare_name() -> None:
    assert parse("busybox", default_tag=False).tag is None
    assert str(parse("busybox", default_tag=False)) == "docker.io/library/busybox"
    ref = parse(f"busybox@{D}")
    assert ref.tag is None and ref.digest == Digest.parse(D)
    assert parse("busybox:1").tag == "1"


def test_tag_and_digest_fields() -> None:
    ref = parse(f"localhost:5000/a/b:t@{D}")
    assert ref == Reference("localhost:5000", "a/b", "t", Digest.parse(D))


def test_with_tag_keeps_digest_and_validates() -> None:
    ref = parse(f"busybox@{D}")
    tagged = ref.with_tag("1.36")
    assert str(tagged) == f"docker.io/library/busybox:1.36@{D}"
    assert ref.tag is None  # references are values
    assert str(parse("busybox").with_tag("musl")) == "docker.io/library/busybox:musl"
    for bad in ("", "-x", "a" * 129, "a b", "a/b"):
        with pytest.raises(InvalidArgument, match="invalid tag format"):
            ref.with_tag(bad)


def test_with_digest_keeps_tag() -> None:
    d = Digest.parse(D)
    assert str(parse("busybox:1").with_digest(d)) == f"docker.io/library/busybox:1@{D}"
    assert parse("busybox:1").with_digest(d).familiar() == f"busybox:1@{D}"


def test_tag_or_latest() -> None:
    assert parse("busybox", default_tag=False).tag_or_latest() == "latest"
    assert parse("busybox:1.36").tag_or_latest() == "1.36"


def test_references_are_hashable_values() -> None:
    assert len({parse("busybox"), parse("docker.io/library/busybox:latest")}) == 1


# repo, tag, expected str()
REPO_AND_TAG = [
    ("busybox", "1.36", "docker.io/library/busybox:1.36"),
    # docker 28's pull (shared/reference/docker-cli-28-request-traces.md)
    ("docker.io/library/busybox", "latest", "docker.io/library/busybox:latest"),
    # docker 20.10's pull (shared/reference/docker-cli-api-calls.log)
    ("127.0.0.1:5000/busybox", "1", "127.0.0.1:5000/busybox:1"),
    ("busybox", "", "docker.io/library/busybox"),
    ("busybox:", "", "docker.io/library/busybox"),
    ("busybox:1.0", "", "docker.io/library/busybox:1.0"),
    ("busybox:1.0", "2.0", "docker.io/library/busybox:2.0"),
    # A digest in the tag parameter pins the reference and drops any tag.
    ("busybox", D, f"docker.io/library/busybox@{D}"),
    ("busybox:1.0", D, f"docker.io/library/busybox@{D}"),
    (f"busybox@{D}", "v1", f"docker.io/library/busybox:v1@{D}"),
]


@pytest.mark.parametrize("repo,tag,expected", REPO_AND_TAG)
def test_parse_repository_and_tag(repo: str, tag: str, expected: str) -> None:
    assert str(parse_repository_and_tag(repo, tag)) == expected


def test_parse_repository_and_tag_errors() -> None:
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        parse_repository_and_tag("busybox", "bad tag")
    with pytest.raises(InvalidArgument, match=r"\(library/Busybox\) must be lowercase"):
        parse_repository_and_tag("Busybox", "1")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        parse_repository_and_tag("", "1")


@pytest.mark.parametrize("domain", [
    "localhost", "localhost:5000", "LOCALHOST:5000", "127.0.0.1", "127.0.0.1:5000",
    "127.1.2.3:443", "[::1]", "[::1]:5000", "::1",
])
def test_is_localhost(domain: str) -> None:
    assert is_localhost(domain)


@pytest.mark.parametrize("domain", [
    "docker.io", "example.com:5000", "10.0.0.1:5000", "128.0.0.1", "localhost.example.com",
    "127.0.0.1.nip.io", "[2001:db8::1]:5000", "[::2]:5000", "0.0.0.0:5000", "",
])
def test_is_not_localhost(domain: str) -> None:
    assert not is_localhost(domain)


def test_parse_is_fast_on_hostile_input() -> None:
    import time

    for s in ("a" * 100_000 + "!", "a-" * 50_000 + "!", "a." * 50_000 + "/!", "[" + ":" * 100_000):
        t = time.monotonic()
        with pytest.raises(InvalidArgument):
            parse(s)
        assert time.monotonic() - t < 2.0
