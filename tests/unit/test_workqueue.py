"""WorkQueue: keys deduplicated, handled in the controller's thread, failures isolated."""

import threading
import time

from framework import WorkQueue


def test_keys_added_twice_are_handled_once_and_failures_do_not_stop_others():
    queue, seen, errors, stop = WorkQueue("test"), [], [], threading.Event()

    def reconcile(key):
        seen.append(key)
        if key == "bad":
            raise RuntimeError("boom")

    queue.add(["b", "a", "bad", "a"])
    queue.add(["b"])
    thread = threading.Thread(target=queue.run, args=(stop, reconcile, errors.append))
    thread.start()
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.add(["c"])
    while len(seen) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert seen == ["a", "b", "bad", "c"] and errors == ["bad"]
    assert not thread.is_alive()
