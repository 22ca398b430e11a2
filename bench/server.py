"""The whole server over HTTPS: the real host against the same server answering a constant review.

    python -m bench.server                       # ~1.5 minutes: saturation, then 500 req/s
    python -m bench.server --duration 5 --rate-duration 5 --rounds 1
    python -m bench.server --pin                 # server on CPU 0, load generator on CPU 1
    python -m bench.server --loadgen python      # the Python client at saturation too (no wrk)

Two servers run side by side (``bench/serve_variant.py``: the same ``Host`` + ``Server`` code,
HTTPS inside waitress), one with the real pipeline and the benchmark plugin (two annotations and a
toleration on a 6.5 KB pod), one whose pipeline returns that same answer precomputed. Each is driven
in turn, in rounds that alternate between them so that drift on the machine hits both alike:

- saturation: ``wrk`` (16 connections, keep-alive, a Lua script POSTing the review) if it is on
  PATH, else the Python client in closed loop; the figure is requests/s (wrk's own latencies at
  saturation suffer from coordinated omission and are not reported);
- fixed rate: the Python asyncio client (``bench/loadgen.py``) at 500 req/s, latency measured from
  each request's scheduled send time, so p50/p99/p99.9 are honest (wrk2 would do the same; it is
  not packaged in Debian).

For each: server CPU µs per request (utime+stime from /proc/PID/stat over the phase, divided by the
requests answered) and RSS (VmRSS, VmHWM) at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import orjson

from bench.certs import write_certificates
from bench.pods import DEFAULT_SIZE, make_pod, review

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
TICK = os.sysconf("SC_CLK_TCK")
VARIANTS = ("constant", "real")
RATIO_TARGET = 0.75  # real / constant at saturation

WRK_SCRIPT = """
local f = assert(io.open("%(body)s", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  io.write(string.format("WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"connect\\": %%d, \\"read\\": %%d, "
    .. "\\"write\\": %%d, \\"timeout\\": %%d, \\"status\\": %%d}\\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status))
end
"""


# A mix: one request a line (class<TAB>body); each wrk thread sends them in turn, from its own
# starting point, and counts the answers that carry a patch.
WRK_MIX_SCRIPT = """
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  local f = assert(io.open("%(mix)s", "rb"))
  for line in f:lines() do
    local tab = line:find("\\t", 1, true)
    table.insert(requests, wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line:sub(tab + 1)))
  end
  f:close()
  n = #requests
  i = (id * 97) %% n
  patched = 0
  unchanged = 0
end

function request()
  i = i %% n + 1
  return requests[i]
end

function response(status, headers, body)
  if status == 200 then
    if body:find('"patch"', 1, true) then patched = patched + 1 else unchanged = unchanged + 1 end
  end
end

function done(summary, latency, requests)
  local p, u = 0, 0
  for _, t in ipairs(threads) do
    p = p + t:get("patched")
    u = u + t:get("unchanged")
  end
  io.write(string.format("WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"connect\\": %%d, \\"read\\": %%d, "
    .. "\\"write\\": %%d, \\"timeout\\": %%d, \\"status\\": %%d, \\"patched\\": %%d, \\"unchanged\\": %%d}\\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status, p, u))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def processes(pid: int) -> List[int]:
    """``pid`` and its children (the workers of ``--workers N``)."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live children."""
    total = 0
    for p in processes(pid):
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def memory_kb(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM of the serving process: with workers, of the largest worker."""
    out: Dict[str, int] = {}
    procs = processes(pid)
    for p in procs[1:] or procs:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":")
                    out[name] = max(out.get(name, 0), int(value.split()[0]))
    return out


class Variant:
    """One ``bench.serve_variant`` process. ``variant`` is real or constant (default: ``name``);
    ``extra`` are more arguments of ``bench.serve_variant`` (``--plugin eci`` and the cluster's size)."""

    def __init__(self, name: str, certs: tuple, threads: int, size: int, pin: Optional[int], log_level: str,
                 variant: Optional[str] = None, extra: Sequence[str] = ()):
        self.name = name
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/mutate"
        self.log_path = OUT / f"server-{name}.log"
        self.log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "bench.serve_variant", "--variant", variant or name, "--port", str(self.port),
               "--tls-cert-file", str(certs[1]), "--tls-private-key-file", str(certs[2]),
               "--threads", str(threads), "--size", str(size), "--log-level", log_level, *extra]
        preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec)
        self.ctx = ssl.create_default_context(cafile=str(certs[0]))

    def wait_ready(self, timeout: float = 30) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} server exited: see {self.log_path}")
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} server not ready: see {self.log_path}")

    def check(self, body: bytes) -> bytes:
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        assert resp.status == 200, (self.name, resp.status, data[:200])
        return data

    def admissions(self) -> Dict[str, float]:
        """The server's own count of answers: ``{"pods CREATE patched": n, ...}`` from /metrics."""
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        out = {}
        for line in text.splitlines():
            if line.startswith("admission_host_admissions_total{"):
                labels, value = line[len("admission_host_admissions_total{"):].rsplit("} ", 1)
                fields = dict(item.split("=", 1) for item in labels.split(","))
                key = " ".join(fields[k].strip('"') for k in ("resource", "operation", "outcome"))
                out[key] = float(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def run_loadgen(variant: Variant, body_path: Path, ca: Path, rate: float, duration: float, connections: int,
                pin: Optional[int], mix: bool = False) -> dict:
    """``bench.loadgen`` as a process; ``mix``: ``body_path`` is a file of ``class<TAB>body`` lines."""
    cmd = [sys.executable, "-m", "bench.loadgen", variant.url, "--mix" if mix else "--body", str(body_path),
           "--ca", str(ca), "--rate", str(rate), "--duration", str(duration), "--connections", str(connections)]
    preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
    done = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True, timeout=duration + 60,
                          preexec_fn=preexec)
    if done.returncode != 0:
        raise SystemExit(f"load generator failed:\n{done.stderr}")
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def run_wrk(variant: Variant, script: Path, duration: float, connections: int, threads: int,
            pin: Optional[int]) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script),
           variant.url]
    if pin is not None:
        cmd = ["taskset", "-c", str(pin)] + cmd
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed:\n{done.stdout}\n{done.stderr}")
    data = orjson.loads(line[len("WRKJSON "):])
    seconds = data["duration_us"] / 1e6
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"] + data["status"]
    out = {"requests": data["requests"] - data["status"], "errors": errors, "seconds": seconds,
           "rate": round((data["requests"] - data["status"]) / seconds, 1)}
    if "patched" in data:
        out["answers"] = {"all": {"patched": data["patched"], "unchanged": data["unchanged"]}}
    return out


def phase(variant: Variant, fn) -> dict:
    before = cpu_seconds(variant.proc.pid)
    result = fn()
    cpu = cpu_seconds(variant.proc.pid) - before
    result["cpu_us_per_request"] = round(cpu / max(1, result["requests"]) * 1e6, 1)
    result["server_cores"] = round(cpu / result["seconds"], 2)
    result.update(memory_kb(variant.proc.pid))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8, help="seconds of saturation per server per round (8)")
    parser.add_argument("--rounds", type=int, default=2, help="saturation rounds, alternating the servers (2)")
    parser.add_argument("--rate", type=float, default=500, help="fixed rate, requests/s (500)")
    parser.add_argument("--rate-duration", type=float, default=15, help="seconds at the fixed rate per server (15)")
    parser.add_argument("--connections", type=int, default=16, help="connections at saturation (16)")
    parser.add_argument("--rate-connections", type=int, default=16, help="connections at the fixed rate (16)")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads (8, the default of serve)")
    parser.add_argument("--workers", type=int, default=1, help="serving processes per server (1, as serve)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="pod size in bytes (6500)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="saturation client: wrk if installed (auto), or the Python one")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, load generator on CPU 1")
    parser.add_argument("--log-level", default="INFO", help="servers' log level (INFO, as deployed)")
    parser.add_argument("--json", action="store_true", help="also print all results as JSON")
    args = parser.parse_args(argv)

    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), use --loadgen python")
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="admission-host-bench-"))
    certs = write_certificates(work)
    pod = make_pod(args.size)
    body = orjson.dumps(review(pod, uid="bench"))
    body_path = work / "review.json"
    body_path.write_bytes(body)
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT % {"body": body_path})
    server_cpu, client_cpu = (0, 1) if args.pin else (None, None)

    print(f"pod {len(orjson.dumps(pod))} bytes, AdmissionReview {len(body)} bytes; "
          f"{os.cpu_count()} CPUs; saturation by {'wrk' if use_wrk else 'the Python client'} "
          f"({args.connections} connections, {args.rounds} x {args.duration:g} s per server); "
          f"fixed rate {args.rate:g} req/s for {args.rate_duration:g} s per server"
          f"{'; pinned: servers CPU 0, load CPU 1' if args.pin else ''}", flush=True)
    variants = {name: Variant(name, certs, args.threads, args.size, server_cpu, args.log_level,
                              extra=["--workers", str(args.workers)]) for name in VARIANTS}
    results: Dict[str, Dict[str, List[dict]]] = {name: {"saturation": [], "rate": []} for name in VARIANTS}
    try:
        for v in variants.values():
            v.wait_ready()
        answers = {name: v.check(body) for name, v in variants.items()}
        real = orjson.loads(answers["real"])["response"]
        const = orjson.loads(answers["constant"])["response"]
        assert real["patch"] == const["patch"] and len(answers["real"]) == len(answers["constant"]), \
            "the two servers must give the same answer"
        # Warm up both (imports, caches, TLS session setup paths).
        for v in variants.values():
            run_loadgen(v, body_path, certs[0], 0, 1.5, args.connections, client_cpu)

        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for name in order:
                v = variants[name]
                if use_wrk:
                    res = phase(v, lambda: run_wrk(v, script, args.duration, args.connections, 2, client_cpu))
                else:
                    res = phase(v, lambda: run_loadgen(v, body_path, certs[0], 0, args.duration,
                                                       args.connections, client_cpu))
                results[name]["saturation"].append(res)
                print(f"  saturation round {r + 1} {name:>8}: {res['rate']:>8,.0f} req/s, "
                      f"{res['cpu_us_per_request']:>6.0f} µs CPU/request, {res['server_cores']:.2f} cores, "
                      f"errors {res['errors']}", flush=True)
        for name in VARIANTS:
            v = variants[name]
            res = phase(v, lambda: run_loadgen(v, body_path, certs[0], args.rate, args.rate_duration,
                                               args.rate_connections, client_cpu))
            results[name]["rate"].append(res)
            lat = res["latency_ms"]
            print(f"  {args.rate:g} req/s {name:>8}: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
                  f"p99.9 {lat['p99.9']:.2f} ms, max {lat['max']:.1f} ms, "
                  f"{res['cpu_us_per_request']:.0f} µs CPU/request, errors {res['errors']}, "
                  f"sender lag ≤ {res['max_send_lag_ms']:.1f} ms", flush=True)
    finally:
        for v in variants.values():
            v.stop()

    def total_rate(name):
        rs = results[name]["saturation"]
        return sum(r["requests"] for r in rs) / sum(r["seconds"] for r in rs)

    def cpu_per_request(name, kind):
        rs = results[name][kind]
        return sum(r["cpu_us_per_request"] * r["requests"] for r in rs) / sum(r["requests"] for r in rs)

    ratio = total_rate("real") / total_rate("constant")
    print()
    print("| server | saturation req/s | CPU µs/req (sat.) | p50 ms | p99 ms | p99.9 ms | CPU µs/req (rate) "
          "| RSS MB | peak RSS MB | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in VARIANTS:
        rate = results[name]["rate"][-1]
        lat = rate["latency_ms"]
        errors = sum(r["errors"] for k in ("saturation", "rate") for r in results[name][k])
        print(f"| {name} | {total_rate(name):,.0f} | {cpu_per_request(name, 'saturation'):.0f} | {lat['p50']:.2f} | "
              f"{lat['p99']:.2f} | {lat['p99.9']:.2f} | {cpu_per_request(name, 'rate'):.0f} | "
              f"{rate['VmRSS'] / 1024:.1f} | {rate['VmHWM'] / 1024:.1f} | {errors} |")
    print(f"\nratio real/constant at saturation: {ratio:.2f} "
          f"(target ≥ {RATIO_TARGET:.2f}: {'met' if ratio >= RATIO_TARGET else 'NOT met'})")
    print(f"pipeline cost seen from outside: {cpu_per_request('real', 'saturation') - cpu_per_request('constant', 'saturation'):.0f} "
          f"µs CPU/request; server logs in {OUT}")
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ratio >= RATIO_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
