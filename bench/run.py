"""The benchmark suite: ``python -m bench`` (see bench/README.md).

    python -m bench                          # everything, ~7 minutes on 2 cores
    python -m bench --quick                  # shorter phases, ~2 minutes
    python -m bench --only headline          # or small, scaling, micro (comma-separated)
    python -m bench --pin                    # servers on CPU 0, load generators on CPU 1

**headline**: ECI-Profile served over HTTPS (``bench/serve_variant.py --plugin eci``: the real
``Host`` + ``Server``, caches filled offline with 1,000 Selectors, 10,000 namespaces, 5,000 nodes
and 20,000 pending pods), side by side with the same server answering a constant AdmissionReview
(the ceiling), and the ECI server again at log level WARNING. The load is the mix of
``bench/world.py`` (pod CREATE matching / not matching a Selector, pods/binding to virtual / normal
nodes). Saturation: ``wrk`` (C, keep-alive, Lua script), in rounds alternating the servers. Fixed
rates 200 and 500 req/s: ``bench/loadgen.py`` (asyncio, open loop: latency counted from each
request's scheduled time, so the percentiles are free of coordinated omission). Server CPU from
/proc/PID/stat, RSS from /proc/PID/status.

**small**: the same comparison, shorter (fewer rounds, 500 req/s only), in a world of 10 Selectors
(``--small-selectors``), everything else as the headline's: the targets hold in both worlds.

**scaling**: saturation throughput, CPU per request and RSS as Selectors (10 .. 10,000),
namespaces (100 .. 10,000) and pod size (2 .. 50 KB; pod CREATE only, each size with its own
ceiling) grow, everything else at the headline's values; printed and plotted to
``bench/out/scaling.png``.

**micro**: ``python -m pytest bench/micro --benchmark-only``: the pipeline's stages in-process.

**targets**: what the admission work may add to the ceiling, in each world: at most
``TARGETS["cpu_over_ceiling_us"]`` of server CPU per admission at saturation, and a p99 at 500
req/s at most ``TARGETS["p99_over_ceiling_ms"]`` above the ceiling's (exit code 1 if one is missed).

Results: printed, and saved to ``bench/out/results.json`` (and ``report.md``, the tables).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import orjson

from bench import world
from bench.certs import write_certificates
from bench.server import OUT, REPO, TICK, WRK_MIX_SCRIPT, Variant, phase, run_loadgen, run_wrk

PARTS = ("headline", "small", "scaling", "micro")
CLASSES_PATCHED = {"create-match": True, "create-nomatch": False, "bind-virtual": True, "bind-normal": False}

# Relative to the ceiling (the same server answering a constant review, in the same run): what the
# admission work adds is what the host controls; the HTTP stack's own cost moves with the machine.
TARGETS = {
    "cpu_over_ceiling_us": 100.0,  # server CPU per admission at saturation, over the ceiling's
    "p99_over_ceiling_ms": 1.0,    # p99 at 500 req/s, over the ceiling's
    "selector_scaling": 0.9,       # throughput at 10,000 Selectors / at 10
    "rss_mb": 100.0,               # 10,000 namespaces, 5,000 nodes, 20,000 pending pods
}
TARGET_RATE = 500.0


class Report:
    """Prints, and keeps the lines for bench/out/report.md."""

    def __init__(self):
        self.lines: List[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="admission-host-bench-"))
        self.certs = write_certificates(self.work)
        self.use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk") is not None)
        if args.loadgen == "wrk" and not self.use_wrk:
            raise SystemExit("wrk is not installed (apt-get install wrk), or use --loadgen python")
        self.server_cpu, self.client_cpu = (0, 1) if args.pin else (None, None)
        self.results: Dict = {"machine": machine(), "args": vars(args)}
        self.say = Report()

    # -- plumbing ----------------------------------------------------------------------------------
    def write_mix(self, name: str, requests: Sequence[Tuple[str, bytes]]) -> Tuple[Path, Path]:
        """The mix file (class<TAB>body lines) and the wrk script that sends it."""
        path = self.work / f"mix-{name}.txt"
        path.write_bytes(b"".join(cls.encode() + b"\t" + body + b"\n" for cls, body in requests))
        script = self.work / f"mix-{name}.lua"
        script.write_text(WRK_MIX_SCRIPT % {"mix": path})
        return path, script

    def start(self, name: str, params: world.Params, variant: str = "real", log_level: Optional[str] = None,
              constant_body: Optional[bytes] = None) -> Variant:
        extra = ["--plugin", "eci", "--workers", str(self.args.workers), *params.args()]
        if constant_body is not None:
            path = self.work / f"constant-{name}.json"
            path.write_bytes(constant_body)
            extra += ["--constant-body", str(path)]
        return Variant(name, self.certs, self.args.threads, params.pod_size, self.server_cpu,
                       log_level or self.args.log_level, variant=variant, extra=extra)

    def ready(self, servers: Sequence[Variant]) -> None:
        for s in servers:
            s.wait_ready(timeout=180)

    def check(self, server: Variant, requests: Sequence[Tuple[str, bytes]]) -> None:
        """The first request of every class gets the answer its class expects (patch or not)."""
        seen = set()
        for cls, body in requests:
            if cls in seen:
                continue
            seen.add(cls)
            answer = orjson.loads(server.check(body))["response"]
            if ("patch" in answer) != CLASSES_PATCHED[cls]:
                raise SystemExit(f"{server.name}: a {cls} request was answered {answer}")

    def saturate(self, server: Variant, mix_path: Path, script: Path, duration: float) -> dict:
        if self.use_wrk:
            return phase(server, lambda: run_wrk(server, script, duration, self.args.connections, 2,
                                                 self.client_cpu))
        return phase(server, lambda: run_loadgen(server, mix_path, self.certs[0], 0, duration,
                                                 self.args.connections, self.client_cpu, mix=True))

    def fixed_rate(self, server: Variant, mix_path: Path, rate: float, duration: float) -> dict:
        return phase(server, lambda: run_loadgen(server, mix_path, self.certs[0], rate, duration,
                                                 self.args.rate_connections, self.client_cpu, mix=True))

    def warm(self, servers: Sequence[Variant], mix_path: Path, seconds: float) -> None:
        for s in servers:
            run_loadgen(s, mix_path, self.certs[0], 0, seconds, self.args.connections, self.client_cpu, mix=True)

    def rounds(self, servers: Sequence[Variant], mixes: Dict[str, Tuple[Path, Path]], rounds: int,
               duration: float, label: str = "") -> Dict[str, List[dict]]:
        """Saturation rounds; the order of the servers rotates from round to round."""
        out: Dict[str, List[dict]] = {s.name: [] for s in servers}
        for r in range(rounds):
            shift = r % len(servers)
            order = list(servers[shift:]) + list(servers[:shift])
            if r % 2:
                order.reverse()
            for s in order:
                res = self.saturate(s, *mixes[s.name], duration)
                out[s.name].append(res)
                print(f"  {label}round {r + 1} {s.name:>22}: {res['rate']:>7,.0f} req/s, "
                      f"{res['cpu_us_per_request']:>5.0f} µs CPU/request, {res['server_cores']:.2f} cores, "
                      f"errors {res['errors']}", flush=True)
        return out

    def make_world(self, name: str, selectors: int) -> tuple:
        """The generated cluster with ``selectors`` Selectors (all else the run's), its request mix,
        the mix written for the load generators, and the body the ceiling answers."""
        a = self.args
        params = world.Params(selectors=selectors, namespaces=a.namespaces, nodes=a.nodes,
                              pending_pods=a.pending_pods, pod_size=a.pod_size)
        requests = world.mix(params, weights=a.mix)
        return (params, requests, self.write_mix(name, requests),
                next(body for cls, body in requests if cls == "create-match"))

    # -- headline ------------------------------------------------------------------------------------
    def headline(self) -> None:
        a = self.args
        params, requests, mix, constant_body = self.make_world("headline", a.selectors)
        say = self.say
        say(f"## Headline: {params.describe()}")
        say()
        counts = {cls: sum(1 for c, _ in requests if c == cls) for cls in world.CLASSES}
        say(f"mix: {len(requests)} distinct requests sent in turn: "
            + ", ".join(f"{cls} {n}" for cls, n in counts.items())
            + f"; CREATE bodies {len(constant_body):,} bytes, bindings "
              f"{len(next(b for c, b in requests if c.startswith('bind'))):,} bytes")
        say(f"saturation: {'wrk -t2 -c%d (keep-alive, Lua)' % a.connections if self.use_wrk else 'bench/loadgen.py closed loop'}, "
            f"{a.rounds} x {a.duration:g} s per server; fixed rates {', '.join(f'{r:g}' for r in a.rates)} req/s: "
            f"bench/loadgen.py open loop, {a.rate_connections} connections, "
            f"{', '.join(f'{d:g}' for d in a.rate_durations)} s per server")
        names = {"ceiling": "ceiling (constant)", "ours": f"ECI-Profile ({a.log_level})",
                 "ours-warning": "ECI-Profile (WARNING)"}
        servers = {"ceiling": self.start("ceiling", params, "constant", constant_body=constant_body),
                   "ours": self.start("ours", params)}
        if a.log_level.upper() != "WARNING" and not a.no_warning:
            servers["ours-warning"] = self.start("ours-warning", params, log_level="WARNING")
        started = time.monotonic()
        try:
            self.ready(list(servers.values()))
            print(f"  servers ready in {time.monotonic() - started:.1f} s", flush=True)
            for key in ("ours", "ours-warning"):
                if key in servers:
                    self.check(servers[key], requests)
            self.warm(list(servers.values()), mix[0], a.warmup)
            before = {k: s.admissions() for k, s in servers.items() if k != "ceiling"}
            sat = self.rounds(list(servers.values()), {s.name: mix for s in servers.values()}, a.rounds, a.duration)
            rate_results: Dict[str, Dict[str, dict]] = {k: {} for k in servers}
            for rate, seconds in zip(a.rates, a.rate_durations):
                for key in ("ceiling", "ours"):
                    res = self.fixed_rate(servers[key], mix[0], rate, seconds)
                    rate_results[key][str(rate)] = res
                    lat = res["latency_ms"]
                    print(f"  {rate:g} req/s {servers[key].name:>9}: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
                          f"p99.9 {lat['p99.9']:.2f} ms, max {lat['max']:.1f} ms, "
                          f"{res['cpu_us_per_request']:.0f} µs CPU/request, errors {res['errors']}, "
                          f"sender lag ≤ {res['max_send_lag_ms']:.1f} ms", flush=True)
            after = {k: s.admissions() for k, s in servers.items() if k != "ceiling"}
        finally:
            for s in servers.values():
                s.stop()

        def rate_of(key):
            rs = sat[servers[key].name]
            return sum(r["requests"] for r in rs) / sum(r["seconds"] for r in rs)

        def cpu_of(results):
            return sum(r["cpu_us_per_request"] * r["requests"] for r in results) / max(1, sum(r["requests"] for r in results))

        say()
        head = "| server | saturation req/s | CPU s / 1,000 (sat.) |"
        sep = "|---|---:|---:|"
        for rate in a.rates:
            head += f" p50 / p99 / p99.9 ms at {rate:g}/s | CPU s / 1,000 at {rate:g}/s |"
            sep += "---:|---:|"
        head += " RSS MB | peak RSS MB | errors |"
        sep += "---:|---:|---:|"
        say(head)
        say(sep)
        summary = {}
        for key, s in servers.items():
            sat_rs = sat[s.name]
            row = f"| {names[key]} | {rate_of(key):,.0f} | {cpu_of(sat_rs) / 1000:.3f} |"
            entry = {"saturation_rps": rate_of(key), "cpu_us_per_request_saturation": cpu_of(sat_rs),
                     "rounds": sat_rs, "rates": rate_results.get(key, {})}
            for rate in a.rates:
                res = rate_results.get(key, {}).get(str(rate))
                if res:
                    lat = res["latency_ms"]
                    row += f" {lat['p50']:.2f} / {lat['p99']:.2f} / {lat['p99.9']:.2f} | {res['cpu_us_per_request'] / 1000:.3f} |"
                else:
                    row += " - | - |"
            last = (list(rate_results.get(key, {}).values()) or sat_rs)[-1]
            errors = sum(r["errors"] for r in sat_rs) + sum(r["errors"] for r in rate_results.get(key, {}).values())
            row += f" {last['VmRSS'] / 1024:.1f} | {last['VmHWM'] / 1024:.1f} | {errors} |"
            entry.update(rss_mb=last["VmRSS"] / 1024, peak_rss_mb=last["VmHWM"] / 1024, errors=errors)
            summary[key] = entry
            say(row)
        say()
        ratio = rate_of("ours") / rate_of("ceiling")
        summary["ratio"] = ratio
        # Each round's ratio: the servers of one round ran back to back, so drift hits them alike.
        summary["ratio_rounds"] = [o["requests"] / o["seconds"] / (c["requests"] / c["seconds"])
                                   for o, c in zip(sat[servers["ours"].name], sat[servers["ceiling"].name])]
        say(f"ours / ceiling at saturation: **{ratio:.2f}** at log level {a.log_level}"
            + (" (one INFO line per changed admission)" if a.log_level.upper() == "INFO" else "")
            + f"; round by round: {', '.join(f'{r:.2f}' for r in summary['ratio_rounds'])}")
        if "ours-warning" in servers:
            summary["ratio_warning"] = rate_of("ours-warning") / rate_of("ceiling")
            say(f"ours / ceiling at saturation: **{summary['ratio_warning']:.2f}** at log level WARNING")
        ours_cpu, ceiling_cpu = cpu_of(sat[servers["ours"].name]), cpu_of(sat[servers["ceiling"].name])
        say(f"server CPU per admission at saturation: ceiling {ceiling_cpu:.0f} µs, ECI-Profile {ours_cpu:.0f} µs "
            f"(the pipeline seen from outside: {ours_cpu - ceiling_cpu:.0f} µs)"
            + (f"; at WARNING {cpu_of(sat[servers['ours-warning'].name]):.0f} µs" if "ours-warning" in servers else ""))
        # What the mix did: the load generator's count of answers per class, and the server's own.
        say()
        say("answers, as the load generator counted them (all fixed-rate phases of ECI-Profile) and as the server "
            "counted them (/metrics, whole run):")
        say()
        say("| class | patched | unchanged |")
        say("|---|---:|---:|")
        answers: Dict[str, Dict[str, int]] = {}
        for res in rate_results["ours"].values():
            for cls, c in res.get("answers", {}).items():
                slot = answers.setdefault(cls, {"patched": 0, "unchanged": 0})
                slot["patched"] += c["patched"]
                slot["unchanged"] += c["unchanged"]
        for cls in world.CLASSES:
            if cls in answers:
                say(f"| {cls} | {answers[cls]['patched']:,} | {answers[cls]['unchanged']:,} |")
        if self.use_wrk:
            wrk_counts = [r.get("answers", {}).get("all") for r in sat[servers["ours"].name]]
            if all(wrk_counts):
                say(f"| (wrk, saturation) | {sum(c['patched'] for c in wrk_counts):,} | "
                    f"{sum(c['unchanged'] for c in wrk_counts):,} |")
        server_counts = {k: after["ours"].get(k, 0) - before["ours"].get(k, 0) for k in after["ours"]}
        for k, v in sorted(server_counts.items()):
            if v:
                say(f"| server: {k} | {int(v):,} | |" if k.endswith("patched") else f"| server: {k} | | {int(v):,} |")
        summary["answers"] = answers
        summary["server_answers"] = server_counts
        self.results["headline"] = summary
        self.results["headline_params"] = dataclass_dict(params)

    # -- small world ---------------------------------------------------------------------------------------
    def small(self) -> None:
        """The ceiling and ECI-Profile (at the run's log level) in a world of few Selectors, all
        else as the headline's: saturation in fewer rounds, then 500 req/s."""
        a = self.args
        params, requests, mix, constant_body = self.make_world("small", a.small_selectors)
        rounds, seconds = max(1, a.rounds - 1), a.small_rate_duration
        say = self.say
        say(f"## Small world: {params.describe()}")
        say()
        say(f"the headline's mix and servers; saturation {rounds} x {a.duration:g} s per server; "
            f"{TARGET_RATE:g} req/s for {seconds:g} s per server")
        servers = {"ceiling": self.start("small-ceiling", params, "constant", constant_body=constant_body),
                   "ours": self.start("small-ours", params)}
        try:
            self.ready(list(servers.values()))
            self.check(servers["ours"], requests)
            self.warm(list(servers.values()), mix[0], a.warmup)
            sat = self.rounds(list(servers.values()), {s.name: mix for s in servers.values()}, rounds, a.duration,
                              label="small: ")
            rates: Dict[str, dict] = {}
            for key in ("ceiling", "ours"):
                res = rates[key] = self.fixed_rate(servers[key], mix[0], TARGET_RATE, seconds)
                lat = res["latency_ms"]
                print(f"  small: {TARGET_RATE:g} req/s {servers[key].name:>13}: p50 {lat['p50']:.2f} ms, "
                      f"p99 {lat['p99']:.2f} ms, p99.9 {lat['p99.9']:.2f} ms, {res['cpu_us_per_request']:.0f} µs "
                      f"CPU/request, errors {res['errors']}", flush=True)
        finally:
            for s in servers.values():
                s.stop()
        names = {"ceiling": "ceiling (constant)", "ours": f"ECI-Profile ({a.log_level})"}
        say()
        say(f"| server | saturation req/s | CPU µs / admission (sat.) | p50 / p99 / p99.9 ms at {TARGET_RATE:g}/s "
            f"| CPU µs / admission at {TARGET_RATE:g}/s | RSS MB | errors |")
        say("|---|---:|---:|---:|---:|---:|---:|")
        summary = {}
        for key, server in servers.items():
            rs, res = sat[server.name], rates[key]
            n = sum(r["requests"] for r in rs)
            cpu = sum(r["cpu_us_per_request"] * r["requests"] for r in rs) / max(1, n)
            rps = n / sum(r["seconds"] for r in rs)
            lat = res["latency_ms"]
            errors = sum(r["errors"] for r in rs) + res["errors"]
            say(f"| {names[key]} | {rps:,.0f} | {cpu:.0f} | {lat['p50']:.2f} / {lat['p99']:.2f} / {lat['p99.9']:.2f} | "
                f"{res['cpu_us_per_request']:.0f} | {res['VmRSS'] / 1024:.1f} | {errors} |")
            summary[key] = {"saturation_rps": rps, "cpu_us_per_request_saturation": cpu, "rounds": rs,
                            "rates": {str(TARGET_RATE): res}, "rss_mb": res["VmRSS"] / 1024, "errors": errors}
        self.results["small"] = summary
        self.results["small_params"] = dataclass_dict(params)

    # -- scaling ------------------------------------------------------------------------------------------
    def curve(self, title: str, points: List[Tuple[str, world.Params]], classes=world.CLASSES,
              weights=None, ceiling: bool = False, rounds: Optional[int] = None) -> List[dict]:
        a = self.args
        rounds = rounds or a.scaling_rounds
        weights = weights or a.mix
        servers: List[Variant] = []
        mixes: Dict[str, Tuple[Path, Path]] = {}
        requests_of = {}
        for label, params in points:
            requests = world.mix(params, weights=weights, classes=classes)
            requests_of[label] = requests
            mix = self.write_mix(label, requests)
            servers.append(self.start(label, params))
            mixes[label] = mix
            if ceiling:
                body = next(b for c, b in requests if c == "create-match")
                servers.append(self.start(f"{label}-ceiling", params, "constant", constant_body=body))
                mixes[f"{label}-ceiling"] = mix
        print(f"  {title}: {len(servers)} servers", flush=True)
        try:
            self.ready(servers)
            for s in servers:
                if not s.name.endswith("-ceiling"):
                    self.check(s, requests_of[s.name])
            for s in servers:
                run_loadgen(s, mixes[s.name][0], self.certs[0], 0, a.scaling_warmup, a.connections, self.client_cpu,
                            mix=True)
            sat = self.rounds(servers, mixes, rounds, a.scaling_duration, label=f"{title}: ")
        finally:
            for s in servers:
                s.stop()
        out = []
        for label, params in points:
            row = {"label": label, "params": dataclass_dict(params)}
            for key, name in (("ours", label), ("ceiling", f"{label}-ceiling")):
                rs = sat.get(name)
                if not rs:
                    continue
                n = sum(r["requests"] for r in rs)
                row[key] = {"rps": n / sum(r["seconds"] for r in rs),
                            "cpu_us_per_request": sum(r["cpu_us_per_request"] * r["requests"] for r in rs) / max(1, n),
                            "rss_mb": rs[-1]["VmRSS"] / 1024, "peak_rss_mb": rs[-1]["VmHWM"] / 1024,
                            "rounds": [r["rate"] for r in rs], "errors": sum(r["errors"] for r in rs)}
            out.append(row)
        return out

    def scaling(self) -> None:
        a = self.args
        base = world.Params(selectors=a.selectors, namespaces=a.namespaces, nodes=a.nodes,
                            pending_pods=a.pending_pods, pod_size=a.pod_size)
        say = self.say
        say(f"## Scaling (saturation, {'wrk' if self.use_wrk else 'bench/loadgen.py'}, {a.scaling_rounds} x "
            f"{a.scaling_duration:g} s per point ({max(1, a.scaling_rounds - 1)} x for pod sizes), rounds rotating over "
            f"the points; all else as the headline)")
        curves = {}
        if "selectors" in a.curves:
            sel = [("selectors-%d" % n, _replace(base, selectors=n)) for n in a.selector_points]
            curves["selectors"] = self.curve("Selectors", sel)
        if "namespaces" in a.curves:
            ns = [("namespaces-%d" % n, _replace(base, namespaces=n)) for n in a.namespace_points]
            curves["namespaces"] = self.curve("namespaces", ns)
        if "pod_size" in a.curves:
            sizes = [("podsize-%d" % n, _replace(base, pod_size=n)) for n in a.size_points]
            # Twice the servers (each size has its ceiling): one round fewer.
            curves["pod_size"] = self.curve("pod size", sizes, classes=("create-match", "create-nomatch"),
                                            weights=(50, 50), ceiling=True, rounds=max(1, a.scaling_rounds - 1))
        for key, title, col in (("selectors", "Selectors", "selectors"), ("namespaces", "namespaces", "namespaces"),
                                ("pod_size", "pod bytes (CREATE only, half matching)", "pod_size")):
            if key not in curves:
                continue
            say()
            has_ceiling = any("ceiling" in row for row in curves[key])
            say(f"| {title} | req/s | vs first | CPU µs/request | RSS MB |" + (" ceiling req/s | ours / ceiling |" if has_ceiling else ""))
            say("|---:|---:|---:|---:|---:|" + ("---:|---:|" if has_ceiling else ""))
            first = curves[key][0]["ours"]["rps"]
            for row in curves[key]:
                o = row["ours"]
                line = (f"| {row['params'][col]:,} | {o['rps']:,.0f} | {o['rps'] / first:.2f} | "
                        f"{o['cpu_us_per_request']:.0f} | {o['rss_mb']:.1f} |")
                if has_ceiling:
                    c = row["ceiling"]
                    line += f" {c['rps']:,.0f} | {o['rps'] / c['rps']:.2f} |"
                say(line)
        self.results["scaling"] = curves
        png = plot(curves, OUT / "scaling.png")
        say()
        say(f"plot: {png}" if png else "plot: matplotlib is not installed (pip install -e '.[bench]'); no PNG")

    # -- micro ------------------------------------------------------------------------------------------
    def micro(self) -> None:
        say = self.say
        out_json = OUT / "micro.json"
        cmd = [sys.executable, "-m", "pytest", "bench/micro", "--benchmark-only", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={out_json}", "--benchmark-disable-gc", "--benchmark-warmup=on",
               f"--benchmark-max-time={self.args.micro_max_time}", "--benchmark-columns=median,iqr,ops,rounds"]
        print("  " + " ".join(cmd[2:]), flush=True)
        done = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-4000:], done.stderr[-2000:])
            raise SystemExit("micro-benchmarks failed")
        data = orjson.loads(out_json.read_bytes())
        say("## Micro-benchmarks (in-process, pytest-benchmark; µs)")
        say()
        say("| benchmark | median | p25 .. p75 | rounds |")
        say("|---|---:|---:|---:|")
        rows = []
        for b in data["benchmarks"]:
            st = b["stats"]
            rows.append({"name": b["name"], "group": b.get("group"), "median_us": st["median"] * 1e6,
                         "q1_us": st["q1"] * 1e6, "q3_us": st["q3"] * 1e6, "rounds": st["rounds"]})
            say(f"| {b['name']} | {st['median'] * 1e6:.1f} | {st['q1'] * 1e6:.1f} .. {st['q3'] * 1e6:.1f} | {st['rounds']:,} |")
        self.results["micro"] = rows

    # -- targets --------------------------------------------------------------------------------------------
    def targets(self) -> bool:
        """The targets, each beside the ceiling's own figure; True when all are met."""
        say = self.say
        rows = []  # (target, world, wanted, ceiling, ECI-Profile, over the ceiling, met)
        cpu_max, p99_max = TARGETS["cpu_over_ceiling_us"], TARGETS["p99_over_ceiling_ms"]
        worlds = [(self.results.get(k), self.results.get(f"{k}_params")) for k in ("small", "headline")]
        for h, p in worlds:
            if not h:
                continue
            world_ = f"{p['selectors']:,} Selectors"
            ours, ceiling = h["ours"], h["ceiling"]
            mine, theirs = ours["cpu_us_per_request_saturation"], ceiling["cpu_us_per_request_saturation"]
            rows.append((f"server CPU per admission at saturation ({self.args.log_level})", world_,
                         f"≤ ceiling + {cpu_max:g} µs", f"{theirs:.0f} µs", f"{mine:.0f} µs",
                         f"{mine - theirs:+.0f} µs", mine - theirs <= cpu_max))
            at_ours, at_ceiling = ours["rates"].get(str(TARGET_RATE)), ceiling["rates"].get(str(TARGET_RATE))
            if at_ours and at_ceiling:
                mine, theirs = at_ours["latency_ms"]["p99"], at_ceiling["latency_ms"]["p99"]
                rows.append((f"p99 at {TARGET_RATE:g} req/s", world_, f"≤ ceiling + {p99_max:g} ms",
                             f"{theirs:.2f} ms", f"{mine:.2f} ms", f"{mine - theirs:+.2f} ms", mine - theirs <= p99_max))
        h, p = self.results.get("headline"), self.results.get("headline_params")
        if h:
            rows.append(("RSS", f"{p['namespaces']:,} namespaces, {p['nodes']:,} nodes, {p['pending_pods']:,} pending pods",
                         f"≤ {TARGETS['rss_mb']:g} MB", "-", f"{h['ours']['rss_mb']:.0f} MB (peak {h['ours']['peak_rss_mb']:.0f})",
                         "-", h["ours"]["peak_rss_mb"] <= TARGETS["rss_mb"]))
        s = self.results.get("scaling")
        if s and len(s.get("selectors") or ()) > 1:
            first, last = s["selectors"][0], s["selectors"][-1]
            r = last["ours"]["rps"] / first["ours"]["rps"]
            rows.append(("req/s at saturation, ratio", f"{last['params']['selectors']:,} / {first['params']['selectors']:,} Selectors",
                         f"≥ {TARGETS['selector_scaling']:g}", "-", f"{r:.3f}", "-", r >= TARGETS["selector_scaling"]))
        if not rows:
            return True
        say("## Targets")
        say()
        say("The ceiling: the same server answering a constant review (the HTTP stack alone), in the same run; "
            "the admission work may add at most what the target says to it.")
        say()
        say("| target | world | wanted | ceiling | ECI-Profile | over the ceiling | |")
        say("|---|---|---:|---:|---:|---:|---|")
        for name, where, want, ceiling, got, over, ok in rows:
            say(f"| {name} | {where} | {want} | {ceiling} | {got} | {over} | {'met' if ok else 'missed'} |")
        self.results["targets"] = [{"target": n, "world": w, "wanted": want, "ceiling": c, "measured": g,
                                    "over_ceiling": o, "met": ok} for n, w, want, c, g, o, ok in rows]
        return all(row[-1] for row in rows)


def machine_cpu() -> Tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / TICK, total / TICK


def own_cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (servers, wrk, loadgen)."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def busy_before(seconds: float = 1.0) -> float:
    """Share of the machine's CPU in use before the benchmark starts."""
    b0, t0 = machine_cpu()
    time.sleep(seconds)
    b1, t1 = machine_cpu()
    return (b1 - b0) / max(1e-9, t1 - t0)


def _replace(params: world.Params, **kw) -> world.Params:
    import dataclasses

    return dataclasses.replace(params, **kw)


def dataclass_dict(obj) -> dict:
    import dataclasses

    return dataclasses.asdict(obj)


def machine() -> dict:
    import platform

    import falcon
    import waitress

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "waitress": waitress.__version__ if hasattr(waitress, "__version__") else _version("waitress"),
            "falcon": falcon.__version__, "orjson": orjson.__version__, "openssl": _openssl()}


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


def _openssl() -> str:
    import ssl

    return ssl.OPENSSL_VERSION


def plot(curves: dict, path: Path) -> Optional[Path]:
    """Throughput (top) and RSS (bottom) for each curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex="col")
    for col, (key, label, field) in enumerate((("selectors", "Selectors", "selectors"),
                                               ("namespaces", "namespaces", "namespaces"),
                                               ("pod_size", "pod size (bytes), CREATE only", "pod_size"))):
        rows = curves.get(key) or []
        if not rows:
            continue
        xs = [row["params"][field] for row in rows]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(xs, [row["ours"]["rps"] for row in rows], "o-", label="ECI-Profile")
        if all("ceiling" in row for row in rows):
            top.plot(xs, [row["ceiling"]["rps"] for row in rows], "s--", label="ceiling (constant answer)")
        top.set_ylabel("req/s at saturation")
        top.set_ylim(0, max(max(row["ours"]["rps"], row.get("ceiling", {}).get("rps", 0)) for row in rows) * 1.15)
        top.grid(True, alpha=0.3)
        top.legend(loc="lower left")
        top.set_title(f"throughput vs {label}")
        bottom.plot(xs, [row["ours"]["rss_mb"] for row in rows], "o-", color="tab:red", label="RSS")
        bottom.set_ylabel("RSS (MB)")
        bottom.grid(True, alpha=0.3)
        cpu = bottom.twinx()
        cpu_values = [row["ours"]["cpu_us_per_request"] for row in rows]
        cpu.plot(xs, cpu_values, "^:", color="tab:green", label="CPU µs/request")
        if all("ceiling" in row for row in rows):
            ceiling_cpu = [row["ceiling"]["cpu_us_per_request"] for row in rows]
            cpu.plot(xs, ceiling_cpu, "v:", color="tab:olive", label="CPU µs/request, ceiling")
            cpu_values += ceiling_cpu
        cpu.set_ylabel("server CPU µs per request")
        cpu.set_ylim(0, max(cpu_values) * 1.25)
        bottom.set_ylim(0, max(row["ours"]["rss_mb"] for row in rows) * 1.25)
        bottom.set_xscale("log")
        bottom.set_xticks(xs)
        bottom.set_xticklabels([f"{x:,}" for x in xs])
        bottom.xaxis.set_minor_locator(ticker.NullLocator())
        bottom.set_xlabel(label)
        lines = bottom.get_legend_handles_labels()[0] + cpu.get_legend_handles_labels()[0]
        bottom.legend(lines, [ln.get_label() for ln in lines], loc="lower left")
    fig.suptitle("admission-host + ECI-Profile over HTTPS: scaling (bench/run.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ints(text: str) -> List[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated parts: headline, small, scaling, micro")
    parser.add_argument("--quick", action="store_true", help="shorter phases (~2 minutes in all)")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, load generators on CPU 1")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="saturation client: wrk if installed (auto), or bench/loadgen.py in closed loop")
    parser.add_argument("--log-level", default="INFO", help="the servers' log level (INFO, as deployed)")
    parser.add_argument("--no-warning", action="store_true", help="headline: skip the server at WARNING")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads (8, as serve)")
    parser.add_argument("--workers", type=int, default=1, help="serving processes per server (1, as serve)")
    parser.add_argument("--connections", type=int, default=16, help="connections at saturation (16)")
    parser.add_argument("--rate-connections", type=int, default=16, help="connections at the fixed rates (16)")
    d = world.Params()
    parser.add_argument("--selectors", type=int, default=d.selectors)
    parser.add_argument("--namespaces", type=int, default=d.namespaces)
    parser.add_argument("--nodes", type=int, default=d.nodes)
    parser.add_argument("--pending-pods", type=int, default=d.pending_pods)
    parser.add_argument("--pod-size", type=int, default=d.pod_size)
    parser.add_argument("--mix", type=_ints, default=list(world.DEFAULT_MIX),
                        help="percent of create-match,create-nomatch,bind-virtual,bind-normal (25,25,25,25)")
    parser.add_argument("--rates", default="200,500", help="headline: fixed rates, req/s (200,500)")
    parser.add_argument("--small-selectors", type=int, default=10, help="Selectors of the small world (10)")
    parser.add_argument("--small-rate-duration", type=float, default=None,
                        help="small world: seconds at 500 req/s per server (10)")
    parser.add_argument("--duration", type=int, default=None, help="headline saturation seconds per server per round (5)")
    parser.add_argument("--rounds", type=int, default=None, help="headline saturation rounds (3)")
    parser.add_argument("--rate-duration", default=None,
                        help="seconds per fixed rate per server, one per rate or one for all (10, 15 at 500 req/s)")
    parser.add_argument("--selector-points", type=_ints, default=[10, 100, 1_000, 10_000])
    parser.add_argument("--namespace-points", type=_ints, default=[100, 1_000, 10_000])
    parser.add_argument("--size-points", type=_ints, default=[2_000, 6_500, 20_000, 50_000])
    parser.add_argument("--curves", default="selectors,namespaces,pod_size",
                        help="scaling curves to run (selectors,namespaces,pod_size)")
    parser.add_argument("--scaling-duration", type=int, default=None, help="seconds per point per round (2)")
    parser.add_argument("--scaling-rounds", type=int, default=None, help="rounds per curve (4)")
    parser.add_argument("--json", action="store_true", help="also print all results as JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (4 if quick else 5)
    args.rounds = args.rounds or (1 if quick else 3)
    args.scaling_duration = args.scaling_duration or 2
    args.scaling_rounds = args.scaling_rounds or (1 if quick else 4)
    args.curves = [c.strip() for c in args.curves.split(",") if c.strip()]
    if set(args.curves) - {"selectors", "namespaces", "pod_size"}:
        parser.error("--curves takes selectors, namespaces, pod_size")
    args.warmup = 1.0 if quick else 1.5
    args.scaling_warmup = 0.5 if quick else 1.0
    args.micro_max_time = 0.1 if quick else 0.2
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.small_rate_duration = args.small_rate_duration or (6.0 if quick else 10.0)
    if args.rate_duration:
        durations = [float(d) for d in args.rate_duration.split(",") if d]
    else:  # 500 req/s longest: its p99.9 is a target
        durations = [6.0 if quick else 15.0 if rate == 500 else 10.0 for rate in args.rates]
    if len(durations) == 1:
        durations = durations * len(args.rates)
    if len(durations) != len(args.rates):
        parser.error("--rate-duration takes one duration, or one per rate")
    args.rate_durations = durations
    if len(args.mix) != 4:
        parser.error("--mix takes four percentages")
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")

    OUT.mkdir(exist_ok=True)
    bench = Bench(args)
    m = bench.results["machine"]
    bench.say(f"# admission-host benchmark: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, "
              f"waitress {m['waitress']}, falcon {m['falcon']}, orjson {m['orjson']}, {m['openssl']}"
              f"{'; pinned: servers CPU 0, load CPU 1' if args.pin else '; unpinned (servers and load share the CPUs)'}")
    busy = busy_before()
    if busy > 0.10:
        bench.say(f"WARNING: {busy:.0%} of the machine's CPU was in use before the start: other processes "
                  f"skew every figure (ratios least)")
    bench.say()
    started = time.monotonic()
    machine0, own0 = machine_cpu()[0], own_cpu()
    try:
        for part in PARTS:
            if part in parts:
                getattr(bench, part)()
                bench.say()
        ok = bench.targets()
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    elapsed = time.monotonic() - started
    others = max(0.0, (machine_cpu()[0] - machine0 - (own_cpu() - own0)) / (elapsed * (os.cpu_count() or 1)))
    bench.results["other_cpu_share"] = others
    bench.say()
    bench.say(f"CPU used by other processes during the run: {others:.0%} of the machine"
              + (" (more than 5%: rerun on a quiet machine for figures to compare)" if others > 0.05 else ""))
    bench.say(f"({elapsed:.0f} s; results in {OUT / 'results.json'}, tables in {OUT / 'report.md'}, "
              f"server logs in {OUT})")
    (OUT / "results.json").write_bytes(orjson.dumps(bench.results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    (OUT / "report.md").write_text("\n".join(bench.say.lines) + "\n")
    if args.json:
        print(orjson.dumps(bench.results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
