"""--log-format json: one JSON object per line, exceptions included, nothing else on the line."""

import io
import json
import logging

from framework import logs


def test_json_lines(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
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
