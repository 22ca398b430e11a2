"""A keep-alive HTTPS load generator for ``/mutate`` (asyncio, one process).

Open loop (``--rate R``): request *i* is due at ``start + i/R`` whatever happened before; its
latency is measured from that due time, not from when a connection became free, so a stalled
server shows up in the percentiles instead of silently slowing the client down (no coordinated
omission). Closed loop (``--rate 0``): every connection sends its next request as soon as the last
answer is in (saturation; only the throughput is meaningful).

Bodies: one review (``--body FILE``), or a mix (``--mix FILE``: one request a line, ``class<TAB>body``,
as ``bench/run.py`` writes it); request *i* sends line ``i % lines``. Every answer is checked for a
``patch``: the counts of patched and unchanged answers, per class, come out with the rest.

Prints one JSON object: requests, errors, seconds, rate, latency percentiles in ms (overall and per
class), patched/unchanged counts per class, the largest lag of the sender behind its schedule (ms;
if it is large the client, not the server, was the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import orjson


def percentiles(samples: List[float]) -> dict:
    if not samples:
        return {}
    s = sorted(samples)

    def p(q):
        return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3)

    return {"p50": p(0.50), "p90": p(0.90), "p99": p(0.99), "p99.9": p(0.999), "max": round(s[-1] * 1000, 3)}


class Connection:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def call(self, request: bytes) -> Tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body


async def connect(host: str, port: int, ctx: Optional[ssl.SSLContext]) -> Connection:
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22)
    return Connection(reader, writer)


def read_mix(path: str) -> List[Tuple[str, bytes]]:
    """``class<TAB>body`` lines."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            cls, _, body = line.rstrip(b"\n").partition(b"\t")
            out.append((cls.decode(), body))
    return out


async def run(url: str, bodies, ca: Optional[str], rate: float, duration: float, connections: int) -> dict:
    """``bodies``: one body, or a list of ``(class, body)`` sent in turn."""
    if isinstance(bodies, bytes):
        bodies = [("review", bodies)]
    parts = urlsplit(url)
    ctx = None
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
    requests = [(cls, b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d"
                      b"\r\n\r\n%s" % (parts.path.encode(), parts.netloc.encode(), len(body), body))
                for cls, body in bodies]
    classes = sorted({cls for cls, _ in requests})
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await connect(parts.hostname, parts.port, ctx))
    latencies: List[float] = []
    by_class: Dict[str, List[float]] = {cls: [] for cls in classes}
    answers: Dict[str, Dict[str, int]] = {cls: {"patched": 0, "unchanged": 0} for cls in classes}
    errors = 0
    lag = 0.0
    sent = 0
    loop = asyncio.get_running_loop()
    clock = loop.time

    async def one(due: float):
        nonlocal errors, sent
        cls, request = requests[sent % len(requests)]
        sent += 1
        conn = await pool.get()
        try:
            status, answer = await conn.call(request)
            if status != 200:
                errors += 1
            else:
                latency = clock() - due
                latencies.append(latency)
                by_class[cls].append(latency)
                answers[cls]["patched" if b'"patch"' in answer else "unchanged"] += 1
            pool.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            pool.put_nowait(await connect(parts.hostname, parts.port, ctx))

    start = clock()
    end = start + duration
    if rate > 0:
        tasks = set()
        i = 0
        while True:
            due = start + i / rate
            if due >= end:
                break
            now = clock()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = max(lag, now - due)
            task = asyncio.ensure_future(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    else:
        async def worker():
            while clock() < end:
                await one(clock())

        await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = clock() - start
    while not pool.empty():
        pool.get_nowait().writer.close()
    return {"requests": len(latencies), "errors": errors, "seconds": round(seconds, 3),
            "rate": round(len(latencies) / seconds, 1), "latency_ms": percentiles(latencies),
            "class_latency_ms": {cls: percentiles(v) for cls, v in by_class.items()}, "answers": answers,
            "max_send_lag_ms": round(lag * 1000, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    bodies = parser.add_mutually_exclusive_group(required=True)
    bodies.add_argument("--body", help="file with the request body")
    bodies.add_argument("--mix", help="file of class<TAB>body lines, sent in turn")
    parser.add_argument("--ca", help="CA bundle to verify the server")
    parser.add_argument("--rate", type=float, default=0, help="requests/s (0: closed loop, as fast as possible)")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if args.mix:
        body = read_mix(args.mix)
    else:
        with open(args.body, "rb") as f:
            body = f.read()
    result = asyncio.run(run(args.url, body, args.ca, args.rate, args.duration, args.connections))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
