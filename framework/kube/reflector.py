"""List, then watch from the list's resourceVersion, into a :class:`Store` (as client-go does).

410 Gone (the resourceVersion is too old) → a fresh list. Any other failure → retry forever with
exponential backoff and jitter. Bookmarks keep the resourceVersion fresh on quiet resources.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Optional

from framework.kube.client import ApiError, KubeClient
from framework.kube.frozen import freeze
from framework.kube.store import Store, key_of
from framework.metrics import Metrics
from framework.types import Watch

log = logging.getLogger(__name__)


class Expired(Exception):
    """The watch's resourceVersion is gone from the API server's window."""


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
        self._transform: Callable[[dict], dict] = watch.transform or (lambda obj: obj)
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
                kept = self._apply_transform(transform, obj)
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

    def _apply_transform(self, transform, obj: dict) -> Optional[dict]:
        try:
            # Frozen at once: the object as it came is freed before the next one is decoded.
            return freeze(transform(obj))
        except Exception:
            log.exception("watch %s: transform failed on %s; object not cached", self.watch.name, key_of(obj))
            return None

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
            kept = self._apply_transform(self._transform, obj)
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
