"""--log-format json: one JSON object per line, exceptions included, nothing else on the line."""

import io
import json
import logging

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
