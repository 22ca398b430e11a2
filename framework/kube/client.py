"""A small raw-dict client: in-cluster credentials read directly, kubeconfig files through the
kubernetes package's loading (contexts, exec plugins, auth providers). Requests go straight
through urllib3 and come back as dicts parsed by orjson, so no generated model objects are built
(they cost memory and time on large lists and watches).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Iterator, Optional, Tuple
from urllib.parse import quote, urlencode

import orjson
import urllib3

from framework.event_loop import leave_event_loop

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# A LIST of only each object's metadata (PartialObjectMetadata), the JSON of a whole list if the
# server cannot: a pod's spec and status are most of its bytes.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


class ApiError(Exception):
    """A non-2xx answer (``status``) or a transport failure (``status`` 0)."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.body = body

    @property
    def reason(self) -> str:
        return (self.body or {}).get("reason", "") if isinstance(self.body, dict) else ""


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class CredentialsError(Exception):
    """No way to reach the API server: no in-cluster environment, no usable kubeconfig."""


class InClusterConfiguration:
    """The pod's own credentials, as client-go's InClusterConfig finds them: the API server from
    ``KUBERNETES_SERVICE_HOST``/``_PORT``, the ServiceAccount's token and CA from their files. The
    token is read again when its file changes (the kubelet rotates bound tokens).

    Read here rather than through the kubernetes package, whose import costs 18 MB in every
    process; kubeconfig files (with their exec plugins and auth providers) still go through it.
    """

    verify_ssl = True
    cert_file = key_file = tls_server_name = None
    username = password = None
    RECHECK = 10.0  # seconds between looks at the token file

    def __init__(self, directory: str = SERVICE_ACCOUNT_DIR, environ=None):
        environ = os.environ if environ is None else environ
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise CredentialsError("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset")
        self.host = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.token_file = os.path.join(directory, "token")
        self.ssl_ca_cert = os.path.join(directory, "ca.crt")
        for path in (self.token_file, self.ssl_ca_cert):
            if not os.path.isfile(path):
                raise CredentialsError(f"not in a cluster: {path} is missing")
        self._token, self._mtime, self._checked = "", None, 0.0
        self.token()

    def token(self) -> str:
        now = time.monotonic()
        if now - self._checked >= self.RECHECK or not self._token:
            self._checked = now
            try:
                mtime = os.stat(self.token_file).st_mtime_ns
                if mtime != self._mtime:
                    with open(self.token_file, encoding="ascii") as f:
                        self._token, self._mtime = f.read().strip(), mtime
            except OSError as exc:  # keep the token we have; the API server will say if it is stale
                log.warning("cannot read the ServiceAccount token %s: %s", self.token_file, exc)
        return self._token

    def auth_settings(self) -> dict:
        return {"BearerToken": {"in": "header", "key": "Authorization", "value": f"Bearer {self.token()}"}}


def load_configuration(kubeconfig: Optional[str] = None, context: Optional[str] = None):
    """In-cluster config when running in a pod and no kubeconfig is given, else kubeconfig discovery."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        return InClusterConfiguration()
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except config.ConfigException as exc:
        raise CredentialsError(str(exc)) from exc
    return cfg


class KubeClient:
    metrics = None  # a host's Metrics (set by framework.host.Host): every request is counted there

    def __init__(self, configuration, user_agent: str = "admission-host"):
        self.configuration = configuration
        self.host = configuration.host.rstrip("/")
        self.user_agent = user_agent
        tls = {}
        if self.host.startswith("https"):
            tls = {"cert_reqs": "CERT_REQUIRED" if configuration.verify_ssl else "CERT_NONE",
                   "ca_certs": configuration.ssl_ca_cert, "cert_file": configuration.cert_file,
                   "key_file": configuration.key_file}
            if configuration.tls_server_name:
                tls["server_hostname"] = configuration.tls_server_name
        # Watches hold connections for minutes; give them room beside request traffic.
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=16, retries=False, **tls)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Optional[str] = None, context: Optional[str] = None) -> "KubeClient":
        return cls(load_configuration(kubeconfig, context))

    def _headers(self, content_type: Optional[str]) -> Dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if content_type:
            headers["Content-Type"] = content_type
        for auth in self.configuration.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        if self.configuration.username and self.configuration.password:
            headers["Authorization"] = self.configuration.get_basic_auth_token()
        return headers

    def url(self, path: str, query: Optional[dict] = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self.host + path + ("?" + urlencode(q) if q else "")

    def request(self, method: str, path: str, *, query: Optional[dict] = None, body: Any = None,
                content_type: Optional[str] = None, timeout: float = 30.0, accept: Optional[str] = None) -> Any:
        """Send one request; return the parsed JSON answer or raise :class:`ApiError`. ``accept``
        replaces the Accept header (e.g. :data:`METADATA_ONLY`)."""
        leave_event_loop(f"{method} {path}")  # the answer is waited for: never on the event loop
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            content_type = content_type or "application/json"
        headers = self._headers(content_type)
        if accept:
            headers["Accept"] = accept
        started = time.perf_counter()
        try:
            resp = self.pool.request(method, self.url(path, query), body=data, headers=headers,
                                     timeout=urllib3.Timeout(connect=min(5.0, timeout), read=max(timeout, 0.001)))
        except urllib3.exceptions.HTTPError as exc:
            self._count(method, path, query, "error", started)
            raise ApiError(0, f"{method} {path}: {exc}") from exc
        self._count(method, path, query, resp.status, started)
        return self._decode(method, path, resp.status, resp.data)

    def _count(self, method: str, path: str, query: Optional[dict], code, started: float) -> None:
        if self.metrics is not None:
            verb, resource = request_info(method, path, query)
            self.metrics.api_request(verb, resource, str(code), time.perf_counter() - started)

    @staticmethod
    def _decode(method: str, path: str, status: int, data: bytes) -> Any:
        try:
            parsed = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            parsed = data.decode("utf-8", "replace")
        if 200 <= status < 300:
            return parsed
        message = parsed.get("message", "") if isinstance(parsed, dict) else str(parsed)[:500]
        raise ApiError(status, f"{method} {path}: {message}", parsed)

    # Keyword arguments other than ``timeout`` (seconds) and ``accept`` become query parameters.
    def get(self, path: str, timeout: float = 30.0, accept: Optional[str] = None, **query) -> Any:
        return self.request("GET", path, query=query, timeout=timeout, accept=accept)

    def post(self, path: str, body: Any, timeout: float = 30.0, **query) -> Any:
        return self.request("POST", path, body=body, query=query, timeout=timeout)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH, timeout: float = 30.0, **query) -> Any:
        return self.request("PATCH", path, body=body, content_type=content_type, query=query, timeout=timeout)

    def put(self, path: str, body: Any, timeout: float = 30.0, **query) -> Any:
        return self.request("PUT", path, body=body, query=query, timeout=timeout)

    def delete(self, path: str, timeout: float = 30.0, **query) -> Any:
        return self.request("DELETE", path, query=query, timeout=timeout)

    def stream(self, path: str, query: dict, timeout: float) -> Iterator[dict]:
        """A watch: yield each event as a dict until the server closes the stream.

        ``timeout`` bounds the wait for the next bytes, so a dead connection is noticed.
        """
        started = time.perf_counter()
        try:
            resp = self.pool.request("GET", self.url(path, query), headers=self._headers(None),
                                     preload_content=False,
                                     timeout=urllib3.Timeout(connect=5.0, read=timeout))
        except urllib3.exceptions.HTTPError as exc:
            self._count("GET", path, query, "error", started)
            raise ApiError(0, f"watch {path}: {exc}") from exc
        self._count("GET", path, query, resp.status, started)
        try:
            if resp.status != 200:
                self._decode("GET", path, resp.status, resp.read())
            buffer = b""
            for chunk in resp.stream(65536, decode_content=True):
                buffer += chunk
                while True:
                    line, sep, rest = buffer.partition(b"\n")
                    if not sep:
                        break
                    buffer = rest
                    if line.strip():
                        yield orjson.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"watch {path}: {exc}") from exc
        finally:
            # Close before releasing: a half-read stream must never go back into the pool.
            resp.close()
            resp.release_conn()


# Namespaces' own subresources: /api/v1/namespaces/NAME/status is not a resource "status" in NAME.
_NAMESPACE_SUBRESOURCES = frozenset(("status", "finalize"))


def request_info(method: str, path: str, query: Optional[dict] = None) -> Tuple[str, str]:
    """``(verb, resource)`` of a request as the API server's ``apiserver_request_total`` counts it:
    a GET of a collection is LIST, or WATCH with ``watch=true``; a DELETE of one DELETECOLLECTION;
    the resource carries its subresource (``pods/binding``). A path that names no resource
    (``/version``, discovery) has resource ``""``."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:] if parts[0] == "apis" else []
    watch = bool(query) and str(query.get("watch")).lower() in ("true", "1")
    if rest[:1] == ["watch"]:  # the old /api/v1/watch/... form
        rest, watch = rest[1:], True
    if rest[:1] == ["namespaces"] and len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        rest = rest[2:]
    if not rest or not rest[0]:
        return method, ""
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    if watch and method == "GET":
        return "WATCH", resource
    if len(rest) == 1:
        return {"GET": "LIST", "DELETE": "DELETECOLLECTION"}.get(method, method), resource
    return method, resource


def list_pages(kube, path: str, limit: int = 500, **query) -> Iterator[dict]:
    """The items of a LIST, a page of ``limit`` at a time: a large result is never all in memory."""
    query["limit"] = limit
    while True:
        page = kube.get(path, **query)
        yield from page.get("items") or ()
        query["continue"] = (page.get("metadata") or {}).get("continue")
        if not query["continue"]:
            return


def object_path(api_version: str, plural: str, name: str = "", namespace: str = "", subresource: str = "") -> str:
    """``/api/v1/namespaces/ns/pods/name/status`` and the like."""
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name)}"
    if subresource:
        base += f"/{subresource}"
    return base
