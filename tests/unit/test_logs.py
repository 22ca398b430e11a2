"""--log-format json: one JSON object per line, exceptions included, nothing else on the line."""

import io
import json
import logging
import re

from framework import logs


def test_json_lines(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    for flag in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):  # setup() clears them
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("INFO", "json")
        log = logging.getLogger("admission_host.test")
        log.info("patched %s by %s", "default/web", "eci-profile-pod")
        log.debug("not shown at INFO")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["message"] for entry in lines] == ["patched default/web by eci-profile-pod", "failed"]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "admission_host.test" and lines[0]["time"]
    assert "ValueError: boom" in lines[1]["exception"]


def test_the_time_formatted_once_a_second_is_the_stdlibs():
    ours, stdlib = logs.Formatter("%(asctime)s %(message)s"), logging.Formatter("%(asctime)s %(message)s")
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.25, 1_700_000_000.5, 1_700_003_600.001):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert ours.format(record) == stdlib.format(record)
        assert ours.formatTime(record, "%Y-%m-%dT%H:%M:%S") == stdlib.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        assert ours.formatTime(record) == stdlib.formatTime(record)


def _lines(monkeypatch, fmt, worker, emit):
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    for flag in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("INFO", fmt, worker=worker)
        emit(logging.getLogger("admission_host.admission"))
        root.handlers[0].flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    return stream.getvalue().splitlines()


def test_a_line_written_without_a_record_is_the_line_logging_writes(monkeypatch):
    msg, args = "patched %s %s %s/%s by %s%s: %s", ("CREATE", "pods", "ns-1", "web-", "eci-profile-pod", "",
                                                    "add /spec/tolerations/- add /metadata/labels/a~1b")
    for fmt in ("text", "json"):
        for worker in (None, 3):
            fast = _lines(monkeypatch, fmt, worker, lambda log: logs.write(log, logging.INFO, msg, args))
            slow = _lines(monkeypatch, fmt, worker, lambda log: log.info(msg, *args))
            assert len(fast) == len(slow) == 1
            if fmt == "json":
                fast, slow = json.loads(fast[0]), json.loads(slow[0])
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", fast.pop("time")) and slow.pop("time")
                assert fast == slow
            else:  # the same but for the time
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", fast[0][:23]) and fast[0][23:] == slow[0][23:]
                assert fast[0].endswith(f" INFO{'' if worker is None else ' [worker 3]'} admission_host.admission: "
                                        + msg % args)


def test_a_line_goes_through_logging_when_something_else_would_see_it(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="admission_host.admission"):
        logs.write(logging.getLogger("admission_host.admission"), logging.INFO, "patched %s", ("default/web",))
    assert [r.getMessage() for r in caplog.records] == ["patched default/web"]
