"""Image references, parsed and normalised as Docker does it.

The grammar is distribution/reference's (regexp.go)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path-component ["/" path-component]*
    domain           := host [":" port]      host := domain-name | "[" IPv6 "]"
    path-component   := [a-z0-9]+ ([._]|__|-+ [a-z0-9]+)*
    tag              := [\\w][\\w.-]{0,127}
    digest           := algorithm ":" hex{32,}   (then validated as go-digest does)

and normalisation is ``ParseNormalizedNamed`` (normalize.go): a first component that has
no ``.`` or ``:``, is not ``localhost`` and is lowercase is a Docker Hub namespace, so
``busybox`` is ``docker.io/library/busybox`` and ``user/img`` is ``docker.io/user/img``;
``index.docker.io`` is the legacy spelling of ``docker.io``. Error messages are Docker's,
so a user who mistypes a name reads what ``docker pull`` would have told them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from pallet.errors import InvalidArgument
from pallet.image.digest import Digest, digest_error

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
# Docker (distribution/reference before v0.6) counts the whole normalised name, domain
# included; so does pallet.
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

# re.ASCII: Go's \w is [0-9A-Za-z_], Python's would take any Unicode letter.
# fullmatch everywhere: Python's $ would also match before a trailing newline.
_REFERENCE_RE = re.compile(
    r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
_ANCHORED_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")")
_TAG_RE = re.compile(_TAG, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

ERR_FORMAT = "invalid reference format"
ERR_UPPERCASE = "repository name must be lowercase"
ERR_EMPTY = "repository name must have at least one component"
ERR_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_TAG_FORMAT = "invalid tag format"


def _invalid(reason: str, s: str) -> InvalidArgument:
    """Docker's message; every one but the 64-hex complaint starts "invalid reference format"."""
    message = reason if reason.startswith(("invalid reference format", "invalid repository")) \
        else f"{ERR_FORMAT}: {reason}"
    return InvalidArgument(message, op="parse reference", obj=s)


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``.

    Build one with ``parse``; the constructor does no validation of its own.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The repository's full name, ``domain/path``."""
        return f"{self.domain}/{self.path}"

    def familiar_name(self) -> str:
        """The name as the docker CLI shows it: Docker Hub's domain and ``library/`` dropped."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        # Only a one-level name under library/ is an official image ("library/a/b" is not).
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        if rest != self.path and "/" not in rest:
            return rest
        return self.path

    def familiar(self) -> str:
        """``FamiliarString``: familiar name plus tag and digest, e.g. ``busybox:latest``."""
        return self.familiar_name() + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag is not None else ""
        return s + (f"@{self.digest}" if self.digest is not None else "")

    def with_tag(self, tag: str) -> Reference:
        """The same repository (and digest, if any) with ``tag``."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(ERR_TAG_FORMAT, op="tag reference", obj=tag)
        return replace(self, tag=tag)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository (and tag, if any) pinned to ``digest``."""
        return replace(self, digest=digest)

    def without_tag_or_digest(self) -> Reference:
        return Reference(self.domain, self.path)

    def tag_or_latest(self) -> str:
        return self.tag if self.tag is not None else DEFAULT_TAG


def _split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go's splitDockerDomain: which first component is a registry, not a user."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost" or ("." in first or ":" in first) or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse_canonical(s: str, given: str) -> Reference:
    """reference.go's Parse, for ``s`` whose domain is explicit; errors name ``given``."""
    if not s:
        raise _invalid(ERR_EMPTY, given)
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        lowered = s.lower()
        if lowered != s and _REFERENCE_RE.fullmatch(lowered):
            raise _invalid(ERR_UPPERCASE, given)
        raise _invalid(ERR_FORMAT, given)
    name, tag, digest_s = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(ERR_TOO_LONG, given)
    digest = None
    if digest_s is not None:
        err = digest_error(digest_s)
        if err:
            raise _invalid(err, given)
        digest = Digest.parse(digest_s)
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    if nm is None or nm.group(1) is None:  # cannot happen: callers put a domain in front
        raise _invalid(ERR_FORMAT, given)
    return Reference(nm.group(1), nm.group(2), tag, digest)


def parse(s: str, default_tag: bool = True) -> Reference:
    """``ParseNormalizedNamed``, then (with ``default_tag``) ``TagNameOnly``.

    ``busybox`` -> ``docker.io/library/busybox:latest``; a reference with a digest and no
    tag gets no tag.
    """
    if _IDENTIFIER_RE.fullmatch(s):
        raise _invalid(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings", s
        )
    domain, remainder = _split_docker_domain(s)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise _invalid(f"{ERR_FORMAT}: repository name ({remote}) must be lowercase", s)
    ref = _parse_canonical(f"{domain}/{remainder}", s)
    if default_tag and ref.tag is None and ref.digest is None:
        ref = replace(ref, tag=DEFAULT_TAG)
    return ref


def parse_repository_and_tag(repo: str, tag: str = "") -> Reference:
    """The ``fromImage``/``tag`` pair of ``POST /images/create`` (and ``repo``/``tag`` of
    ``/images/{name}/tag`` and push), combined as moby's daemon does.

    ``tag`` may be a digest (``fromImage=busybox&tag=sha256:…``), which replaces any tag
    or digest in ``repo``. An empty ``tag`` leaves the reference as written, possibly
    without a tag: for a pull, Docker's API reads that as "all tags", so the caller decides.
    """
    # "pull -a" may send the name with a trailing ":" (moby keeps accepting it).
    repo = repo.removesuffix(":")
    ref = parse(repo, default_tag=False)
    if not tag:
        return ref
    if not digest_error(tag):
        return ref.without_tag_or_digest().with_digest(Digest.parse(tag))
    return ref.with_tag(tag)


def is_localhost(domain: str) -> bool:
    """Whether a registry domain is this host: ``localhost``, 127.0.0.0/8 or ``::1``, with
    or without a port. Only these (and registries the user marks insecure) may be spoken
    to over plain HTTP.
    """
    host = domain
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
