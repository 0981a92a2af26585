"""Engine API versions: the /vX.Y prefix of every path, negotiated as Docker does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from pallet.api.errors import error_response

MIN_API_VERSION = "1.24"
API_VERSION = "1.44"


def parse(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def version_middleware(request: web.Request,
                             handler: Handler) -> web.StreamResponse:
    """Strip and check /vX.Y; handlers see the version as request["api_version"]."""
    path = request.match_info.get("version")
    version = path if path else API_VERSION
    try:
        wanted = parse(version)
    except ValueError:
        return error_response(400, f"invalid API version: {version}")
    if wanted > parse(API_VERSION):
        return error_response(
            400, f"client version {version} is too new. Maximum supported API version is "
                 f"{API_VERSION}")
    if wanted < parse(MIN_API_VERSION):
        return error_response(
            400, f"client version {version} is too old. Minimum supported API version is "
                 f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    request["api_version"] = version
    return await handler(request)
