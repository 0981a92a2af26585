"""The aiohttp application: every route under /vX.Y and unversioned, Docker's headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

import pallet
from pallet.api import build, containers, distribution, execs, images, system, transfer
from pallet.api import networks as network_routes
from pallet.api import volumes as volume_routes
from pallet.api.errors import errors_middleware
from pallet.api.versions import API_VERSION, version_middleware
from pallet.engine.daemon import Engine

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _docker_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = f"pallet/{pallet.__version__} (linux)"


def make_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, version_middleware],
                          client_max_size=0)
    app["engine"] = engine

    def add(method: str, path: str, handler: Handler) -> None:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{version:[0-9]+\.[0-9]+}" + path, handler)

    system.add_routes(add)
    containers.add_routes(add)
    execs.add_routes(add)
    images.add_routes(add)
    transfer.add_routes(add)
    network_routes.add_routes(add)
    volume_routes.add_routes(add)
    distribution.add_routes(add)
    build.add_routes(add)
    app.on_response_prepare.append(_docker_headers)
    return app
