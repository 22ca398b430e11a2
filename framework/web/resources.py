"""The endpoints: /mutate, /healthz, /readyz, /metrics, /plugins."""

from __future__ import annotations

import functools
import re
from typing import Optional

import falcon
import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from framework import plugins
from framework.admission.review import ReviewError
from framework.web.guard import ARRIVED

JSON = "application/json"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=64)  # an API server sends the same few values on every call
def go_duration(text: Optional[str]) -> Optional[float]:
    """Seconds in a Go duration (``5s``, ``1m30s``, ``500ms``): how the API server writes the
    ``timeout`` it sends with each webhook call. None when absent or not a duration."""
    if not text:
        return None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


class Mutate:
    """``POST /mutate``: one path for every plugin; mutators are routed by the request's resource."""

    def __init__(self, host, max_body_bytes: int):
        self.pipeline = host.pipeline
        self.metrics = host.metrics
        self.max_body_bytes = max_body_bytes

    def _reject(self, error: falcon.HTTPError):
        self.metrics.bad_requests.labels(str(error.status_code)).inc()
        raise error

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if content_type != JSON:
            self._reject(falcon.HTTPUnsupportedMediaType(
                description=f"Content-Type must be application/json, got {req.content_type or 'none'!r}"))
        limit = self.max_body_bytes
        if req.content_length is not None and req.content_length > limit:
            self._reject(falcon.HTTPContentTooLarge(description=f"body larger than {limit} bytes"))
        body = req.bounded_stream.read(limit + 1)
        if len(body) > limit:
            self._reject(falcon.HTTPContentTooLarge(description=f"body larger than {limit} bytes"))
        try:
            resp.data = self.pipeline.handle(body, timeout=go_duration(req.get_param("timeout")),
                                             arrived=req.env.get(ARRIVED))
        except ReviewError as exc:
            self._reject(falcon.HTTPBadRequest(title="Invalid AdmissionReview", description=exc.message))
        resp.content_type = JSON


class Healthz:
    """``GET /healthz``: the process serves HTTP (liveness)."""

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "ok"


class Readyz:
    """``GET /readyz``: 200 once every watch has synced and every plugin says it is ready."""

    def __init__(self, host, state):
        self.host = host
        self.state = state

    def on_get(self, req, resp):
        reasons = ["shutting down"] if self.state.draining else self.host.readiness()
        resp.content_type = falcon.MEDIA_TEXT
        if reasons:
            resp.status = falcon.HTTP_503
            resp.text = "not ready:\n" + "\n".join(reasons) + "\n"
        else:
            resp.text = "ok"


class Metrics:
    """``GET /metrics``: Prometheus text format."""

    def __init__(self, metrics):
        self.metrics = metrics

    def on_get(self, req, resp):
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.metrics.exposition()


class Plugins:
    """``GET /plugins``: loaded plugins, their versions and the hooks they implement."""

    def __init__(self, host):
        self.host = host

    def on_get(self, req, resp):
        resp.content_type = JSON
        resp.data = orjson.dumps({
            "plugins": plugins.describe(self.host.pluginmanager),
            "mutators": [{"name": m.name, "plugin": m.plugin, "order": m.order, "group": m.group,
                          "resources": list(m.resources), "operations": list(m.operations),
                          "failurePolicy": m.failure_policy} for m in self.host.pipeline.mutators],
            "watches": [{"name": w.name, "plugin": w.plugin, "apiVersion": w.api_version, "resource": w.resource,
                         "labelSelector": w.label_selector, "fieldSelector": w.field_selector,
                         "objects": len(self.host.stores[w.name])} for w in self.host.watches.values()],
            "controllers": [{"name": c.name, "plugin": c.plugin} for c in self.host.controllers],
        }, option=orjson.OPT_INDENT_2)
