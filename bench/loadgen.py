"""A keep-alive HTTPS load generator for ``/mutate`` (asyncio, one process).

Open loop (``--rate R``): request *i* is due at ``start + i/R`` whatever happened before; its
latency is measured from that due time, not from when a connection became free, so a stalled
server shows up in the percentiles instead of silently slowing the client down (no coordinated
omission). Closed loop (``--rate 0``): every connection sends its next request as soon as the last
answer is in (saturation; only the throughput is meaningful).

Prints one JSON object: requests, errors, seconds, rate, latency percentiles in ms, the largest
lag of the sender behind its schedule (ms; if it is large the client, not the server, was the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from typing import List, Optional
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

    async def call(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status


async def connect(host: str, port: int, ctx: Optional[ssl.SSLContext]) -> Connection:
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22)
    return Connection(reader, writer)


async def run(url: str, body: bytes, ca: Optional[str], rate: float, duration: float, connections: int) -> dict:
    parts = urlsplit(url)
    ctx = None
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
    request = (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (parts.path.encode(), parts.netloc.encode(), len(body), body))
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await connect(parts.hostname, parts.port, ctx))
    latencies: List[float] = []
    errors = 0
    lag = 0.0
    loop = asyncio.get_running_loop()
    clock = loop.time

    async def one(due: float):
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.call(request)
            if status != 200:
                errors += 1
            else:
                latencies.append(clock() - due)
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
            "max_send_lag_ms": round(lag * 1000, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--body", required=True, help="file with the request body")
    parser.add_argument("--ca", help="CA bundle to verify the server")
    parser.add_argument("--rate", type=float, default=0, help="requests/s (0: closed loop, as fast as possible)")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    with open(args.body, "rb") as f:
        body = f.read()
    result = asyncio.run(run(args.url, body, args.ca, args.rate, args.duration, args.connections))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
