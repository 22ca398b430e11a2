"""List, then watch from the list's resourceVersion, into a :class:`Store` (as client-go does).

410 Gone (the resourceVersion is too old) → a fresh list. Any other failure → retry forever with
exponential backoff and jitter. Bookmarks keep the resourceVersion fresh on quiet resources.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Optional, Set

from framework.kube.client import ApiError, KubeClient
from framework.kube.frozen import freeze
from framework.kube.store import Store, key_of
from framework.metrics import Metrics
from framework.types import Watch

log = logging.getLogger(__name__)


class Expired(Exception):
    """The watch's resourceVersion is gone from the API server's window."""


class Transform:
    """A watch's ``transform`` as the caches apply it (the reflector, and ``Host.load_objects``
    offline): called with an object as it came, it returns the object to cache, frozen, or None.

    What cannot be cached is refused rather than stored wrong: a transform that raises, a result
    that is not a dict, and a result that lost the object's key, ``metadata.name`` (and
    ``metadata.namespace`` when the object has one). The store files objects under that key, so
    results without it would replace each other under one key (``''``) and a later DELETED event,
    which names the object as it came, would never find them. A refused object is not cached,
    counted in ``admission_host_watch_refused_objects_total{watch, plugin, reason}`` and logged as
    an error naming the watch and its plugin: the first time for each reason, then at debug level
    (a transform that drops the name does so for every object of a list).
    """

    def __init__(self, watch: Watch, metrics: Metrics, keyed: bool = True):
        """``keyed``: the results go to a :class:`Store`, keyed by their metadata (a store of a
        plugin's own, like drain-back's, keys them its way: then only the first two checks apply)."""
        self.watch = watch
        self.metrics = metrics
        self.keyed = keyed
        self._reported: Set[str] = set()
        plugin = f" (plugin {watch.plugin!r})" if watch.plugin else ""
        self._who = f"watch {watch.name!r}{plugin}"

    def __call__(self, obj: dict) -> Optional[dict]:
        transform = self.watch.transform
        try:
            kept: Any = transform(obj) if transform is not None else obj
        except Exception as exc:
            return self._refuse("raised", f"its transform failed on {key_of(obj)}: {exc!r}", exc)
        if kept is None:
            return None
        if not isinstance(kept, dict):
            return self._refuse("not_an_object", f"its transform returned a {type(kept).__name__} for "
                                f"{key_of(obj)}; it must return the object to cache (a dict) or None")
        if not self.keyed:
            return freeze(kept)
        meta, was = kept.get("metadata"), obj.get("metadata") or {}
        name, namespace = (meta.get("name"), meta.get("namespace")) if isinstance(meta, dict) else (None, None)
        if not name or name != was.get("name") or (namespace or "") != (was.get("namespace") or ""):
            return self._refuse("key", self._lost_key(obj, name, namespace))
        # Frozen at once: the object as it came is freed before the next one is decoded.
        return freeze(kept)

    def _lost_key(self, obj: dict, name, namespace) -> str:
        was = obj.get("metadata") or {}
        if not was.get("name"):
            return f"a {obj.get('kind') or 'object'} with no metadata.name cannot be cached"
        if not name:
            result = "has no metadata.name"
        elif was.get("namespace") and not namespace:
            result = "has no metadata.namespace"
        else:
            result = f"is keyed {key_of({'metadata': {'name': name, 'namespace': namespace}})!r}"
        return (f"its transform's result for {key_of(obj)} {result}: a transform must keep metadata.name, and "
                f"metadata.namespace for namespaced objects, as they came (the cache is keyed by them)")

    def _refuse(self, reason: str, problem: str, exc: Optional[BaseException] = None) -> None:
        self.metrics.watch_refused_objects.labels(self.watch.name, self.watch.plugin, reason).inc()
        first = reason not in self._reported
        self._reported.add(reason)
        log.log(logging.ERROR if first else logging.DEBUG, "%s: %s; object not cached%s", self._who, problem,
                " (further ones are counted in admission_host_watch_refused_objects_total and logged at debug "
                "level)" if first else "", exc_info=exc)
        return None


class Reflector:
    def __init__(self, client: KubeClient, watch: Watch, store: Store, *, metrics: Optional[Metrics] = None,
                 page_size: int = 500, watch_timeout: int = 300, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0):
        self.client = client
        self.watch = watch
        self.store = store
        self.metrics = metrics or Metrics()
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stop_event = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.resource_version = ""
        self._transform = Transform(watch, self.metrics, keyed=isinstance(store, Store))
        # Set as the cache changes (not computed when scraped): with several workers the value
        # has to be written where the others' /metrics reads it.
        gauge = self.metrics.cache_objects.labels(watch.name)
        self._count = lambda: gauge.set(len(store))

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"watch-{self.watch.name}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        failures = 0
        need_list = True
        while not self.stop_event.is_set():
            try:
                if need_list:
                    self.list()
                    need_list = False
                    failures = 0
                started = time.monotonic()
                self.watch_once()
                # The server ended the watch normally (timeoutSeconds): watch again. A watch that
                # keeps ending at once (a proxy closing it) must not become a busy loop.
                if time.monotonic() - started < 1.0:
                    failures += 1
                    self.stop_event.wait(min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 10)))
                else:
                    failures = 0
            except Expired:
                log.info("watch %s: resourceVersion %s expired; listing again", self.watch.name,
                         self.resource_version)
                self.metrics.watch_restarts.labels(self.watch.name, "expired").inc()
                need_list = True
            except Exception as exc:
                failures += 1
                delay = min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 10))
                delay *= random.uniform(0.5, 1.0)
                level = logging.WARNING if failures <= 3 or failures % 20 == 0 else logging.DEBUG
                log.log(level, "watch %s failed (%s); retrying in %.1fs", self.watch.name, exc, delay)
                self.metrics.watch_restarts.labels(self.watch.name, "error").inc()
                if isinstance(exc, ApiError) and exc.status in (401, 403, 404):
                    need_list = True  # permissions or the CRD may have changed: start over
                self.stop_event.wait(delay)

    def _selectors(self) -> dict:
        return {"labelSelector": self.watch.label_selector, "fieldSelector": self.watch.field_selector}

    def list(self) -> None:
        items, cont = [], None
        path = self.watch.path()
        while True:
            try:
                page = self.client.get(path, limit=self.page_size, **{"continue": cont}, **self._selectors())
            except ApiError as exc:
                if exc.status == 410 and cont:  # the continue token expired: start the list over
                    items, cont = [], None
                    continue
                raise
            transform = self._transform
            for obj in page.get("items") or ():
                kept = transform(obj)
                if kept is not None:
                    items.append(kept)
            meta = page.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                self.resource_version = meta.get("resourceVersion", "")
                break
        self.store.replace(items, self.resource_version)
        self._count()
        self.metrics.watch_last_sync.labels(self.watch.name).set(time.time())
        log.debug("watch %s: listed %d objects at resourceVersion %s", self.watch.name, len(items),
                  self.resource_version)

    def watch_once(self) -> None:
        query = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": self.resource_version,
                 "timeoutSeconds": self.watch_timeout, **self._selectors()}
        try:
            events = self.client.stream(self.watch.path(), query, timeout=self.watch_timeout + 30)
            for event in events:
                if self.stop_event.is_set():
                    return
                self.handle_event(event)
        except ApiError as exc:
            if exc.status == 410:
                raise Expired() from exc
            raise

    def handle_event(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise ApiError(obj.get("code") or 0, f"watch error: {obj.get('message')}", obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            kept = self._transform(obj)
            if kept is not None:
                self.store.upsert(kept)
            else:
                self.store.delete(key_of(obj))
        elif kind == "DELETED":
            self.store.delete(key_of(obj))
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._count()
        if rv:
            self.resource_version = rv
