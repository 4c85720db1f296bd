"""The side-by-side benchmark: waypoint vs Envoy 1.40 (vs nginx, vs no proxy) on this machine.

Run through bench/run, which installs the peers and builds the binaries first. Every proxy is
pinned to core 1 with one worker; the load generators and the nginx origin share core 0.
Before a number is reported, the run checks the proxy really served it: the load tool's count
of complete 200s must match the origin's access-log lines for that run.
"""

import argparse
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(BENCH, "envoy"))
sys.path.insert(0, BENCH)
import configs as envoy_configs  # noqa: E402
import mesh  # noqa: E402
import security  # noqa: E402

TOOLS = os.path.join(ROOT, ".tools")
# Logs and generated configs; BENCH_RUN_DIR moves them (.tools may be shared between worktrees).
RUN_DIR = os.environ.get("BENCH_RUN_DIR") or os.path.join(TOOLS, "bench-run")
RESULTS = os.path.join(BENCH, "results")
PROXY_CORE = "1"
LOAD_CORE = "0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = ("0123456789abcdef" * 64)  # the origin's 1 KiB answer
B_BODY = "b" + BODY[1:]  # the second origin of the propagation scenario


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envoy_binary():
    # The pip package's `envoy` is a Python shim that execs this binary; calling it directly
    # keeps Python's start-up out of Envoy's start-up time.
    found = glob.glob(os.path.join(TOOLS, "venv/lib/python*/site-packages/envoy/_bin/envoy"))
    if not found:
        sys.exit("envoy is not installed in .tools/venv: run bench/run")
    return found[0]


class Proc:
    """A started program with its logs in RUN_DIR; `started_at` is when a line containing
    `ready_marker` appeared on stderr (the waypoint's "waypoint started")."""

    def __init__(self, name, cmd, core, env=None, ready_marker=None, stdin=None):
        self.name = name
        self.t0 = time.monotonic()
        self.started_at = None
        self.started_line = ""
        self.stderr_path = os.path.join(RUN_DIR, f"{name}.stderr")
        self._err = open(self.stderr_path, "w")
        self.p = subprocess.Popen(
            ["taskset", "-c", core] + cmd,
            stdout=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE if ready_marker else self._err,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            text=True,
        )
        self.pid = self.p.pid
        if ready_marker:
            threading.Thread(target=self._tee, args=(ready_marker,), daemon=True).start()

    def _tee(self, marker):
        for line in self.p.stderr:
            if self.started_at is None and marker in line:
                self.started_at = time.monotonic()
                self.started_line = line
            self._err.write(line)
            self._err.flush()

    def tree(self):
        """This process and its descendants: nginx does its work in a worker child."""
        pids, i = [self.pid], 0
        while i < len(pids):
            try:
                for task in os.listdir(f"/proc/{pids[i]}/task"):
                    with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                        pids += [int(c) for c in f.read().split()]
            except OSError:
                pass
            i += 1
        return pids

    def cpu_ticks(self):
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    # Fields after the command name (which may hold spaces): utime, stime are 14, 15.
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total

    def rss_mib(self):
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def threads(self):
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._err.close()


def wait_until(what, probe, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}; see {proc.stderr_path}")
        try:
            if probe():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{proc.name}: {what} not reached within {timeout}s; see {proc.stderr_path}")


def http_get(port, path="/", host="127.0.0.1", timeout=2):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tcp_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# --- the origin and nginx as a proxy --------------------------------------------------------

def nginx_conf(path, body):
    user = "user root;\n" if os.geteuid() == 0 else ""
    tmp = os.path.join(RUN_DIR, "nginx-tmp")
    os.makedirs(tmp, exist_ok=True)
    return (
        f"{user}worker_processes 1;\ndaemon off;\npid {path}.pid;\nerror_log {path}.error.log warn;\n"
        "events { worker_connections 20000; }\n"
        "http {\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 300s;\n"
        f"  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;\n"
        f"  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;\n"
        "  default_type text/plain;\n"
        f"{body}}}\n"
    )


class Origin:
    """nginx answering 200 with 1 KiB on port A (and a different 1 KiB on port B), logging every
    request, one line each, so the benchmark can count what reached it."""

    def __init__(self):
        self.port = free_port()
        self.b_port = free_port()
        self.log_path = os.path.join(RUN_DIR, "origin.access.log")
        conf = os.path.join(RUN_DIR, "origin.conf")
        servers = ""
        for port, body in ((self.port, BODY), (self.b_port, B_BODY)):
            servers += (
                f"  server {{\n    listen 127.0.0.1:{port} reuseport backlog=4096;\n"
                f"    access_log {self.log_path} combined buffer=256k flush=100ms;\n"
                f"    location / {{ return 200 \"{body}\"; }}\n  }}\n"
            )
        with open(conf, "w") as f:
            f.write(nginx_conf(conf, servers))
        self.proc = Proc("origin", ["nginx", "-c", conf], LOAD_CORE)
        wait_until("origin listening", lambda: tcp_open(self.port), self.proc)

    def hits(self):
        # Buffered log lines are flushed every 100 ms.
        time.sleep(0.25)
        try:
            with open(self.log_path, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0


def start_nginx_proxy(origin):
    port = free_port()
    conf = os.path.join(RUN_DIR, "nginx-proxy.conf")
    body = (
        f"  upstream origin {{ server 127.0.0.1:{origin.port}; keepalive 128; keepalive_requests 1000000; }}\n"
        f"  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n"
        "    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }\n  }\n"
    )
    with open(conf, "w") as f:
        f.write(nginx_conf(conf, body))
    proc = Proc("nginx-proxy", ["nginx", "-c", conf], PROXY_CORE)
    wait_until("nginx listening", lambda: tcp_open(port), proc)
    return proc, port


# --- the proxies under test -----------------------------------------------------------------

class Waypoint:
    def __init__(self, bins, name, config_dir, certs):
        self.http_port = free_port()
        self.hbone_port = free_port()
        self.ready_port = free_port()
        self.config_dir = config_dir
        cmd = [
            bins["waypoint"], "run", "--config", config_dir,
            "--http-listen", f"127.0.0.1:{self.http_port}",
            "--hbone-listen", f"127.0.0.1:{self.hbone_port}",
            "--admin-listen", f"127.0.0.1:{free_port()}",
            "--ready-listen", f"127.0.0.1:{self.ready_port}",
            "--cert-dir", os.path.join(certs, "waypoint"),
        ]
        self.proc = Proc(name, cmd, PROXY_CORE, env={"RUST_LOG": "info"}, ready_marker="waypoint started")
        wait_until("ready", lambda: http_get(self.ready_port, "/healthz/ready")[0] == 200, self.proc, timeout=120)
        wait_until("HBONE listening", lambda: tcp_open(self.hbone_port), self.proc)
        wait_until("started log line", lambda: self.proc.started_at is not None, self.proc)
        self.start_seconds = self.proc.started_at - self.proc.t0
        # The started line says how long reading+parsing the folder and building the snapshot
        # (validation, attachment, compiled route tables) took: `config_build_ms=123`.
        fields = dict(kv.split("=", 1) for kv in self.proc.started_line.split() if "=" in kv)
        self.load_ms = float(fields.get("config_load_ms", "nan"))
        self.build_ms = float(fields.get("config_build_ms", "nan"))


class Envoy:
    _base_id = 0

    def __init__(self, name, build_config):
        """`build_config(listen_port, admin_port)` returns the config dict."""
        Envoy._base_id += 1
        self.http_port = free_port()
        self.hbone_port = free_port()
        self.admin_port = free_port()
        cfg = build_config(self)
        path = os.path.join(RUN_DIR, f"{name}.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        cmd = [envoy_binary(), "-c", path, "--concurrency", "1", "--disable-hot-restart",
               "--base-id", str(os.getpid() % 1000 * 10 + Envoy._base_id), "-l", "warning"]
        self.proc = Proc(name, cmd, PROXY_CORE)
        ready = wait_until("LIVE", self._live, self.proc, timeout=180)
        self.start_seconds = ready - self.proc.t0

    def _live(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
            return r.read().strip() == b"LIVE"


def envoy_main(route_count, backend_port, certs, scale_services=0, routes_per_service=10, resilience=False,
               secure=False):
    """Envoy with both the plain HTTP listener (scenario 1) and Istio's HBONE waypoint layout;
    `resilience` is S3's retry policy and outlier detector, `secure` its JWT and ALLOW policy."""
    def build(e):
        services = [(mesh.VIP, 80, envoy_configs.routes(route_count, resilience))]
        for i in range(scale_services):
            services.append((mesh.scale_vip(i), 80, envoy_configs.routes(routes_per_service)))
        cfg = envoy_configs.hbone_waypoint(e.hbone_port, e.admin_port, backend_port,
                                           os.path.join(certs, "waypoint"), services, resilience, secure)
        plain = envoy_configs.plain_http(e.http_port, e.admin_port, backend_port, route_count)
        cfg["static_resources"]["listeners"] += plain["static_resources"]["listeners"]
        return cfg
    return build


# --- load tools -----------------------------------------------------------------------------

def parse_wrk_latency(text):
    value = float(text[:-2] if text.endswith(("us", "ms")) else text[:-1])
    unit = text[-2:] if text.endswith(("us", "ms")) else text[-1:]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, seconds, connections=64, host=mesh.HOST):
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", f"Host: {host}", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout
    res = {"errors": 0, "non_200": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "50.000%"):
            res["p50_ms"] = parse_wrk_latency(parts[1])
        elif len(parts) == 2 and parts[0] in ("99%", "99.000%"):
            res["p99_ms"] = parse_wrk_latency(parts[1])
        elif "requests in" in line:
            res["total"] = int(parts[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            res["non_200"] = int(parts[-1])
        elif line.strip().startswith("Socket errors:"):
            res["errors"] = sum(int(x.strip(",")) for x in parts if x.strip(",").isdigit())
    res["ok"] = res.get("total", 0) - res["non_200"]
    res["rps"] = res["ok"] / seconds
    res["raw"] = out
    return res


def hbone_load(bins, port, certs, seconds, mode="tunnel", connections=4, streams=8, warmup=0.0,
               authority=f"{mesh.VIP}:80", headers=()):
    """`headers`: extra `Name: value` lines of every request (S3's JWT)."""
    extra = [arg for h in headers for arg in ("--header", h)]
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, bins["hbone-load"], "load", "--target", f"127.0.0.1:{port}",
         "--authority", authority, "--certs", os.path.join(certs, "client"),
         "--connections", str(connections), "--streams", str(streams), "--mode", mode,
         "--duration", str(seconds), "--warmup", str(warmup)] + extra,
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- measuring ------------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.rows = []  # dicts: scenario, proxy, rps, p50_ms, p99_ms, cpu_ms_per_1k, rss_mib, note
        self.checks = []
        self.failed = False
        self.extra = {}

    def check(self, label, ok, hits, in_flight, non_200=0):
        # wrk stops with up to `in_flight` requests sent but unanswered; those reach the origin
        # uncounted. Any other difference means the proxy answered without the origin. Any
        # non-200 answer fails too: a proxy answering fast local errors must not be credited
        # with the latency of those answers.
        good = ok > 0 and non_200 == 0 and abs(hits - ok) <= max(in_flight + 2, ok // 1000)
        line = (f"check {label}: {ok} complete 200s from the load tool, {non_200} non-200 answers, "
                f"{hits} hits at the origin: {'ok' if good else 'FAILED'}")
        log("  " + line)
        self.checks.append(line)
        if not good:
            self.failed = True
        return good

    def add(self, **row):
        self.rows.append(row)
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        log(f"  {row['scenario']:<28} {row['proxy']:<9} rps {fmt(row.get('rps'), '9.0f')}  "
            f"p50 {fmt(row.get('p50_ms'), '7.3f')} ms  p99 {fmt(row.get('p99_ms'), '7.3f')} ms  "
            f"cpu/1k {fmt(row.get('cpu_ms_per_1k'), '6.1f')} ms  rss {fmt(row.get('rss_mib'), '6.1f')} MiB  "
            f"non-200 {row.get('non_200', '-')}{'  FAILED: no median reported' if row.get('failed') else ''}")

    def get(self, scenario, proxy, key):
        for r in self.rows:
            if r["scenario"] == scenario and r["proxy"] == proxy:
                return r.get(key)
        return None


def median_runs(runs, keys):
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    return out


def measure(report, scenario, proxy_name, proc, origin, run_once, runs, in_flight):
    """Runs `run_once()` `runs` times, checking each against the origin, and records medians."""
    measure_interleaved(report, scenario, [(proxy_name, proc, run_once, in_flight)], origin, runs)


def measure_interleaved(report, scenario, cells, origin, runs):
    """Like `measure` for several (proxy_name, proc, run_once, in_flight) cells of one scenario, taking
    their runs in turn (A B C, A B C, ...): a shared VM's speed drifts by tens of percent over minutes,
    and alternating makes the drift hit every proxy alike instead of whichever ran during a slow spell."""
    results = {name: [] for name, _, _, _ in cells}
    failed = set()
    non_200 = {name: 0 for name, _, _, _ in cells}
    errors = {name: 0 for name, _, _, _ in cells}
    for i in range(runs):
        for name, proc, run_once, in_flight in cells:
            hits0 = origin.hits()
            cpu0 = proc.cpu_ticks() if proc else None
            r = run_once()
            cpu1 = proc.cpu_ticks() if proc else None
            hits = origin.hits() - hits0
            non_200[name] += r.get("non_200", 0)
            errors[name] += r.get("errors", 0)
            if not report.check(f"{scenario} / {name} run {i + 1}", r["ok"], hits, in_flight,
                                r.get("non_200", 0)):
                log(f"    load tool said: {json.dumps({k: v for k, v in r.items() if k != 'raw'})}")
                failed.add(name)
                continue
            if proc and r["ok"]:
                r["cpu_ms_per_1k"] = (cpu1 - cpu0) * 1000 / CLK_TCK / (r["ok"] / 1000)
            results[name].append(r)
    for name, proc, _, _ in cells:
        # A median over the runs that happened to pass would hide the failed ones: a cell with
        # any failed check reports no numbers at all.
        keys = ["rps", "p50_ms", "p99_ms", "cpu_ms_per_1k"]
        row = {k: None for k in keys} if name in failed else median_runs(results[name], keys)
        report.add(scenario=scenario, proxy=name, rss_mib=None if name in failed or not proc else proc.rss_mib(),
                   non_200=non_200[name], errors=errors[name], failed=name in failed, **row)


def hold_streams(bins, port, certs, count):
    """Opens `count` CONNECT streams and returns (the hold process, its JSON report)."""
    p = subprocess.Popen(
        ["taskset", "-c", LOAD_CORE, bins["hbone-load"], "hold", "--target", f"127.0.0.1:{port}",
         "--authority", f"{mesh.VIP}:80", "--certs", os.path.join(certs, "client"),
         "--streams", str(count), "--per-connection", "100"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = p.stdout.readline()
    if not line:
        p.wait()
        raise RuntimeError(f"hbone-load hold exited with {p.returncode}")
    return p, json.loads(line)


def release(p):
    p.stdin.close()
    p.wait(timeout=30)


def record_streams(report, name, n, info, rss):
    """S4's row for `n` held streams, only when every one of them opened: the memory of fewer
    streams than the row names would flatter the proxy that refused some."""
    ok = info["open"] == n
    line = f"check S4 / {name}: {info['open']} of {n} streams open ({info['failed']} refused)"
    log("  " + line + (": ok" if ok else f": FAILED {info.get('first_error')}"))
    report.checks.append(line)
    report.failed |= not ok
    if ok:
        report.add(scenario=f"S4 memory {n} streams", proxy=name, rss_mib=rss)


# --- scenarios ------------------------------------------------------------------------------

def scenarios(args, bins, report):
    quick = args.quick
    runs = 1 if quick else 3
    secs = 2 if quick else 10
    certs = os.path.join(RUN_DIR, "certs")
    subprocess.run([bins["hbone-load"], "certs", "--out", certs], check=True)
    origin = Origin()
    procs = []
    try:
        # S1 + S2 share a process per proxy; its idle RSS is read before any traffic.
        log("\n== S1 HTTP/1.1 keep-alive, 64 connections, 1 KiB responses")
        cfg1 = os.path.join(RUN_DIR, "config-1route")
        mesh.write_folder(cfg1, origin.port, route_count=1)
        wp = Waypoint(bins, "waypoint-main", cfg1, certs)
        ev = Envoy("envoy-main", envoy_main(1, origin.port, certs))
        ng, ng_port = start_nginx_proxy(origin)
        procs += [wp.proc, ev.proc, ng]
        time.sleep(0.5)
        report.extra["threads"] = {"waypoint": wp.proc.threads(), "envoy": ev.proc.threads()}
        s1_targets = [("direct", None, origin.port), ("waypoint", wp.proc, wp.http_port),
                      ("envoy", ev.proc, ev.http_port), ("nginx", ng, ng_port)]
        for name, proc, port in s1_targets:
            wrk(port, 1)  # warm-up: connections, pools, caches
        measure_interleaved(report, "S1 http/1.1 keep-alive",
                            [(name, proc, lambda port=port: wrk(port, secs), 64) for name, proc, port in s1_targets],
                            origin, runs)
        ng.stop()

        log("\n== S2 HBONE, long-lived tunnels (4 connections x 8 streams)")
        proxies = (("waypoint", wp), ("envoy", ev))
        for name, p in proxies:
            hbone_load(bins, p.hbone_port, certs, 1)
        measure_interleaved(report, "S2 hbone tunnels",
                            [("direct", None, lambda: wrk(origin.port, secs, connections=32), 32)] +
                            [(name, p.proc, lambda p=p: hbone_load(bins, p.hbone_port, certs, secs), 0)
                             for name, p in proxies], origin, runs)
        log("\n== S2b HBONE, a new CONNECT per request (4 connections x 8 workers)")
        measure_interleaved(report, "S2b hbone connect/request",
                            [(name, p.proc, lambda p=p: hbone_load(bins, p.hbone_port, certs, secs,
                                                                   mode="connect-per-request"), 0)
                             for name, p in proxies], origin, runs)
        for p in (wp, ev):
            p.proc.stop()

        log("\n== S3 HBONE tunnels, 20 HTTPRoutes on the service (the match last), retry + outlier detection,"
            " JWT + a 20-rule ALLOW policy (the match last)")
        cfg20 = os.path.join(RUN_DIR, "config-20routes")
        mesh.write_folder(cfg20, origin.port, route_count=20, resilience=True, secure=True)
        wp = Waypoint(bins, "waypoint-20", cfg20, certs)
        ev = Envoy("envoy-20", envoy_main(20, origin.port, certs, resilience=True, secure=True))
        procs += [wp.proc, ev.proc]
        report.extra["start_20"] = {"waypoint": wp.start_seconds, "envoy": ev.start_seconds}
        proxies = (("waypoint", wp), ("envoy", ev))
        jwt = [security.header()]
        for name, p in proxies:
            hbone_load(bins, p.hbone_port, certs, 1, headers=jwt)
        measure_interleaved(report, "S3 hbone 20 routes",
                            [(name, p.proc, lambda p=p: hbone_load(bins, p.hbone_port, certs, secs, headers=jwt), 0)
                             for name, p in proxies], origin, runs)
        for p in (wp, ev):
            p.proc.stop()

        log("\n== S4 memory: RSS idle and with open HBONE streams")
        counts = [1000] if quick else [1000, 10000]
        for name, start in (("waypoint", lambda: Waypoint(bins, "waypoint-mem", cfg1, certs)),
                            ("envoy", lambda: Envoy("envoy-mem", envoy_main(1, origin.port, certs)))):
            p = start()
            procs.append(p.proc)
            time.sleep(1.0)
            report.add(scenario="S4 memory idle", proxy=name, rss_mib=p.proc.rss_mib())
            for n in counts:
                holder, info = hold_streams(bins, p.hbone_port, certs, n)
                time.sleep(0.5)
                rss = p.proc.rss_mib()
                release(holder)
                record_streams(report, name, n, info, rss)
            p.proc.stop()

        log("\n== S5 route scale: 10 000 HTTPRoutes across 1 000 services")
        cfg_scale = os.path.join(RUN_DIR, "config-scale")
        # 999 services x 10 routes + `web`'s 20 = 10 010 routes on 1 000 services.
        mesh.write_folder(cfg_scale, origin.port, route_count=20, scale_services=999)
        t = time.monotonic()
        chk = subprocess.run(["taskset", "-c", PROXY_CORE, bins["waypoint"], "check", cfg_scale],
                             capture_output=True, text=True)
        report.extra["check_10k_seconds"] = time.monotonic() - t
        if chk.returncode != 0:
            log(chk.stdout[-2000:])
            raise RuntimeError("waypoint check rejected the route-scale folder")
        wp = Waypoint(bins, "waypoint-scale", cfg_scale, certs)
        procs.append(wp.proc)
        report.extra["start_10k"] = {"waypoint": wp.start_seconds}
        report.extra["build_10k_ms"] = {"waypoint": wp.build_ms, "load": wp.load_ms}
        rss_idle = wp.proc.rss_mib()
        hbone_load(bins, wp.hbone_port, certs, 1)
        measure(report, "S5 hbone 10k routes", "waypoint", wp.proc, origin,
                lambda: hbone_load(bins, wp.hbone_port, certs, secs), runs, in_flight=0)
        report.extra["rss_10k_idle"] = {"waypoint": rss_idle}
        wp.proc.stop()
        ev = Envoy("envoy-scale", envoy_main(20, origin.port, certs, scale_services=999))
        procs.append(ev.proc)
        report.extra["start_10k"]["envoy"] = ev.start_seconds
        report.extra["rss_10k_idle"]["envoy"] = ev.proc.rss_mib()
        hbone_load(bins, ev.hbone_port, certs, 1)
        measure(report, "S5 hbone 10k routes", "envoy", ev.proc, origin,
                lambda: hbone_load(bins, ev.hbone_port, certs, secs), runs, in_flight=0)
        ev.proc.stop()

        log("\n== S6 propagation: route file write -> first request served by the new rule")
        cfg_prop = os.path.join(RUN_DIR, "config-propagation")
        mesh.write_folder(cfg_prop, origin.port, route_count=1, b_port=origin.b_port)
        wp = Waypoint(bins, "waypoint-prop", cfg_prop, certs)
        procs.append(wp.proc)
        trials = []
        targets = ["web-b", "web-backend"] * (1 if quick else 3)
        for backend in targets:
            trials.append(propagation(wp, backend))
            time.sleep(0.3)
        log("  propagation trials (ms): " + ", ".join(f"{t:.1f}" for t in trials))
        report.extra["propagation_ms"] = {"waypoint": statistics.median(trials), "trials": trials}
        wp.proc.stop()
    finally:
        for p in procs:
            p.stop()
        origin.proc.stop()


def propagation(wp, backend):
    """Rewrites routes.yaml to send `web` to `backend` and polls every 1 ms (one keep-alive
    connection) until a response comes from that backend; returns milliseconds."""
    want = B_BODY[:1].encode() if backend == "web-b" else BODY[:1].encode()
    conn = http.client.HTTPConnection("127.0.0.1", wp.http_port, timeout=2)
    path = os.path.join(wp.config_dir, "routes.yaml")
    t0 = time.monotonic()
    with open(path, "w") as f:
        f.write(mesh.route_file_for(backend))
    while time.monotonic() - t0 < 10:
        conn.request("GET", "/", headers={"Host": mesh.HOST})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status == 200 and body[:1] == want:
            conn.close()
            return (time.monotonic() - t0) * 1000
        time.sleep(0.001)
    conn.close()
    raise RuntimeError(f"the new route to {backend} was not served within 10 s")


# --- output ---------------------------------------------------------------------------------

def ratio(a, b):
    return None if not a or not b else a / b


def output_name(quick):
    """`latest` for a full run; `quick` for --quick, which must never overwrite the committed
    full-run numbers with one short run's."""
    return "quick" if quick else "latest"


def write_outputs(args, report):
    os.makedirs(RESULTS, exist_ok=True)
    name = output_name(args.quick)
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    x = report.extra
    lines = [
        "# Benchmark results", "",
        f"`bench/run{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{os.cpu_count()} cores ({platform_cpu()}). Each proxy pinned to core {PROXY_CORE} with one "
        f"worker; load generator and nginx origin on core {LOAD_CORE}. "
        f"{'Quick run: 1 run of 2 s per cell' if args.quick else 'Median of 3 runs of 10 s per cell'}. "
        "See `bench/README.md` for what each scenario does.", "",
        "A cell whose checks failed shows no numbers (FAILED); non-200 answers fail a cell.", "",
        "| scenario | proxy | req/s | p50 ms | p99 ms | CPU ms / 1k req | RSS MiB | non-200 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        lines.append(f"| {r['scenario']} | {r['proxy']} | {'FAILED' if r.get('failed') else fmt(r.get('rps'), '.0f')} "
                     f"| {fmt(r.get('p50_ms'), '.3f')} "
                     f"| {fmt(r.get('p99_ms'), '.3f')} | {fmt(r.get('cpu_ms_per_1k'), '.1f')} | {fmt(r.get('rss_mib'), '.1f')} "
                     f"| {r.get('non_200', '–')} |")
    lines += ["", "## Route scale and start-up", "",
              "| | waypoint | envoy |", "|---|---:|---:|"]
    s20, s10k, rss10k = x.get("start_20", {}), x.get("start_10k", {}), x.get("rss_10k_idle", {})
    lines.append(f"| start to ready, 20 routes (s) | {fmt(s20.get('waypoint'), '.3f')} | {fmt(s20.get('envoy'), '.3f')} |")
    lines.append(f"| start to ready, 10 010 routes on 1 000 services (s) | {fmt(s10k.get('waypoint'), '.3f')} | {fmt(s10k.get('envoy'), '.3f')} |")
    b10k = x.get("build_10k_ms", {})
    lines.append(f"| of which: read and parse the YAML folder (ms) | {fmt(b10k.get('load'), '.0f')} | – |")
    lines.append(f"| of which: build the snapshot: validate, attach, compile 10 010 routes (ms) | "
                 f"{fmt(b10k.get('waypoint'), '.0f')} | – |")
    lines.append(f"| `waypoint check` of the 10 010-route folder (s) | {fmt(x.get('check_10k_seconds'), '.3f')} | – |")
    lines.append(f"| RSS after start, 10 010 routes (MiB) | {fmt(rss10k.get('waypoint'), '.1f')} | {fmt(rss10k.get('envoy'), '.1f')} |")
    prop = x.get("propagation_ms", {})
    lines += ["", "## Propagation", "",
              f"Route file write → first request served by the new rule (waypoint, median of "
              f"{len(prop.get('trials', []))}): **{fmt(prop.get('waypoint'), '.1f')} ms** "
              f"(trials: {', '.join(format(t, '.1f') for t in prop.get('trials', []))}). Envoy is not "
              "measured: Istio feeds it over xDS from istiod, so a file write has no Envoy equivalent.",
              "", "## Checks (each proxy served the requests it was credited with)", ""]
    lines += [f"- {c}" for c in report.checks]
    th = x.get("threads", {})
    lines += ["", f"Threads: waypoint {th.get('waypoint')}, envoy {th.get('envoy')} "
              "(given one core by taskset, the waypoint runs tokio's current-thread runtime).", "",
              f"![requests/s and p99]({name}.png)", "",
              "Summary: " + (summary_line(report) or "no ratios: some checks failed"), ""]
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump({"rows": report.rows, "extra": report.extra, "checks": report.checks}, f, indent=1)
    chart(report, name)


def platform_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def chart(report, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in report.rows if r.get("rps")]
    scen = list(dict.fromkeys(r["scenario"] for r in rows))
    proxies = ["direct", "waypoint", "envoy", "nginx"]
    colors = {"direct": "#999999", "waypoint": "#1f77b4", "envoy": "#d62728", "nginx": "#2ca02c"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.2
    for ax, key, title in ((axes[0], "rps", "requests/s (higher is better)"),
                           (axes[1], "p99_ms", "p99 latency, ms (lower is better)")):
        for j, proxy in enumerate(proxies):
            xs, ys = [], []
            for i, s in enumerate(scen):
                for r in rows:
                    if r["scenario"] == s and r["proxy"] == proxy and r.get(key) is not None:
                        xs.append(i + (j - 1.5) * width)
                        ys.append(r[key])
            if xs:
                ax.bar(xs, ys, width, label=proxy, color=colors[proxy])
        ax.set_xticks(range(len(scen)))
        ax.set_xticklabels([s.replace(" ", "\n", 1) for s in scen], fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"{name}.png"), dpi=110)


def summary_line(report):
    """The ratio line, or None when any check failed: a ratio over numbers that were not
    all verified would read as a result."""
    if report.failed:
        return None

    def f(v):
        return "n/a" if v is None else f"{v:.2f}"
    g = report.get
    return ("waypoint/envoy: "
            f"rps S1 {f(ratio(g('S1 http/1.1 keep-alive', 'waypoint', 'rps'), g('S1 http/1.1 keep-alive', 'envoy', 'rps')))}, "
            f"rps S2 {f(ratio(g('S2 hbone tunnels', 'waypoint', 'rps'), g('S2 hbone tunnels', 'envoy', 'rps')))}, "
            f"p99 S2 {f(ratio(g('S2 hbone tunnels', 'waypoint', 'p99_ms'), g('S2 hbone tunnels', 'envoy', 'p99_ms')))}, "
            f"rss idle {f(ratio(g('S4 memory idle', 'waypoint', 'rss_mib'), g('S4 memory idle', 'envoy', 'rss_mib')))}")


def profile(args, bins):
    """perf on the waypoint while S3's tunnel load (20 routes) or S1's plain HTTP/1.1 load runs: writes the
    flat (self) and inclusive (children) reports to results/profile-perf[-s1].txt for results/profile.md to
    digest."""
    certs = os.path.join(RUN_DIR, "certs")
    subprocess.run([bins["hbone-load"], "certs", "--out", certs], check=True)
    origin = Origin()
    s1 = args.profile_scenario == "s1"
    cfg = os.path.join(RUN_DIR, "config-profile")
    mesh.write_folder(cfg, origin.port, route_count=1 if s1 else 20)
    wp = Waypoint(bins, "waypoint-profile", cfg, certs)
    data = os.path.join(RUN_DIR, "perf.data")

    def load(seconds):
        if s1:
            return wrk(wp.http_port, max(1, int(seconds)))
        return hbone_load(bins, wp.hbone_port, certs, seconds)
    try:
        load(1)
        perf = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", data,
                                 "-p", str(wp.proc.pid)], stderr=subprocess.DEVNULL)
        r = load(args.profile)
        perf.send_signal(signal.SIGINT)
        perf.wait()
        log(f"  profiled {r['ok']} requests ({r['rps']:.0f}/s)")
    finally:
        wp.proc.stop()
        origin.proc.stop()
    out = os.path.join(RESULTS, "profile-perf-s1.txt" if s1 else "profile-perf.txt")

    def report(sort, children, limit):
        text = subprocess.run(
            ["perf", "report", "-i", data, "--stdio", "--sort", sort, "-g", "none", "--percent-limit", limit,
             "--children" if children else "--no-children"], capture_output=True, text=True).stdout
        # perf pads every line to the widest symbol; async Rust names run to kilobytes.
        lines = [line.rstrip().removesuffix("-      -").rstrip()[:200] for line in text.splitlines()]
        return "\n".join(line for line in lines if line and not line.startswith("#"))

    with open(out, "w") as f:
        what = "S1's HTTP/1.1 keep-alive" if s1 else "S3's HBONE"
        f.write(f"# perf record -F 999 --call-graph dwarf on the waypoint (core {PROXY_CORE}) under {what} "
                f"load, {args.profile:g} s, {r['ok']} requests\n\n")
        f.write("## by binary (self)\n" + report("dso", False, "0") + "\n\n")
        f.write("## by symbol (self, >= 0.3 %)\n" + report("symbol", False, "0.3") + "\n\n")
        f.write("## inclusive (children, >= 1 %, names cut at 200 chars)\n" + report("symbol", True, "1") + "\n")
    log(f"wrote {os.path.relpath(out, ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", type=float, metavar="SECONDS",
                    help="instead of the benchmark, perf-profile the waypoint under a scenario's load")
    ap.add_argument("--profile-scenario", choices=["s1", "s3"], default="s3",
                    help="the load --profile runs: S1 (plain HTTP/1.1) or S3 (HBONE, 20 routes)")
    ap.add_argument("--quick", action="store_true", help="one short run per cell (< 60 s)")
    ap.add_argument("--waypoint", help="the release waypoint binary")
    ap.add_argument("--hbone-load", help="the hbone-load binary")
    ap.add_argument("--self-test", action="store_true",
                    help="check the reporting rules on made-up runs (no proxies, only python3)")
    args = ap.parse_args()
    if args.self_test:
        import selftest
        sys.exit(selftest.run())
    if not args.waypoint or not args.hbone_load:
        ap.error("--waypoint and --hbone-load are required")
    bins = {"waypoint": args.waypoint, "hbone-load": args.hbone_load}
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    os.makedirs(RUN_DIR)
    if args.profile:
        os.makedirs(RESULTS, exist_ok=True)
        profile(args, bins)
        return
    report = Report()
    started = time.monotonic()
    scenarios(args, bins, report)
    write_outputs(args, report)
    name = output_name(args.quick)
    log(f"\nwrote {os.path.relpath(RESULTS, ROOT)}/{name}.md and {name}.png in {time.monotonic() - started:.0f} s; "
        f"logs in {os.path.relpath(RUN_DIR, ROOT)}/")
    sys.exit(finish(report))


def finish(report):
    """Prints the verdict, and the ratio line only for a run whose every check passed;
    returns the exit status."""
    if report.failed:
        log("SOME CHECKS FAILED: those cells report no numbers, and there is no ratio line")
        return 1
    log(summary_line(report))
    return 0


if __name__ == "__main__":
    main()
