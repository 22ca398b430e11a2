"""The falcon application factory."""

from __future__ import annotations

import dataclasses

import falcon

from framework.config import DEFAULT_MAX_BODY
from framework.web import resources


@dataclasses.dataclass
class ServingState:
    """Shared with the server: set ``draining`` on shutdown so /readyz turns 503 first."""

    draining: bool = False


def create_app(host, *, max_body_bytes: int = DEFAULT_MAX_BODY, state: ServingState | None = None) -> falcon.App:
    """The app; the caller keeps ``state`` (falcon's App has ``__slots__``, so it cannot carry it)."""
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    state = state or ServingState()
    app.add_route("/mutate", resources.Mutate(host, max_body_bytes))
    app.add_route("/healthz", resources.Healthz())
    app.add_route("/readyz", resources.Readyz(host, state))
    app.add_route("/metrics", resources.Metrics(host.metrics))
    app.add_route("/plugins", resources.Plugins(host))
    return app
