"""Same-machine A/B of two waypoint release binaries, for the cost of a change on the hot path:
S2 (HBONE tunnels, one route) and S3 (20 routes; with --s3-resilience the AFTER binary also gets
S3's retry policy and outlier detector, with --s3-security S3's JWT and 20-rule ALLOW policy
(bench/security.py), the BEFORE one neither), runs interleaved so a shared machine's drift hits
both alike, medians of --runs runs of --seconds each. The same binary as BEFORE and AFTER
measures what a configuration costs:

  bench/run --quick                      # builds target/release/{waypoint,hbone-load}
  python3 bench/compare.py --before OLD/waypoint --after target/release/waypoint --s3-resilience
  python3 bench/compare.py --before target/release/waypoint --after target/release/waypoint \\
      --s3-security --only s3            # the security policies' cost per request
"""

import argparse
import os
import shutil
import subprocess

import bench
import mesh
import security


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the waypoint binary before the change")
    ap.add_argument("--after", default="target/release/waypoint", help="the waypoint binary after it")
    ap.add_argument("--hbone-load", default="target/release/hbone-load")
    ap.add_argument("--s3-resilience", action="store_true",
                    help="give the AFTER waypoint S3's retry policy and outlier detector")
    ap.add_argument("--s3-security", action="store_true",
                    help="give the AFTER waypoint S3's JWT and 20-rule ALLOW policy")
    ap.add_argument("--only", choices=["s2", "s3"], help="run one scenario")
    ap.add_argument("--envoy", action="store_true",
                    help="also A/B Envoy in S3: without, then with the S3 options given (as istiod configures it)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    load = {"hbone-load": args.hbone_load}
    shutil.rmtree(bench.RUN_DIR, ignore_errors=True)
    os.makedirs(bench.RUN_DIR)
    certs = os.path.join(bench.RUN_DIR, "certs")
    subprocess.run([args.hbone_load, "certs", "--out", certs], check=True)
    origin = bench.Origin()
    procs = [origin.proc]
    try:
        scenarios = [(s, r) for s, r in (("S2", 1), ("S3", 20)) if args.only in (None, s.lower())]
        for scenario, routes in scenarios:
            s3 = routes > 1
            # Both carry S3's token, so that the requests are the same bytes with or without
            # the policies that read it.
            headers = [security.header()] if s3 and args.s3_security else []
            proxies = {}
            for name, binary, after in (("before", args.before, False), ("after", args.after, s3)):
                cfg = os.path.join(bench.RUN_DIR, f"cfg-{scenario}-{name}")
                mesh.write_folder(cfg, origin.port, route_count=routes, resilience=after and args.s3_resilience,
                                  secure=after and args.s3_security)
                proxies[name] = bench.Waypoint({"waypoint": binary}, f"wp-{scenario}-{name}", cfg, certs)
            if s3 and args.envoy:
                for name, after in (("envoy-before", False), ("envoy-after", True)):
                    proxies[name] = bench.Envoy(name, bench.envoy_main(
                        routes, origin.port, certs, resilience=after and args.s3_resilience,
                        secure=after and args.s3_security))
            procs += [p.proc for p in proxies.values()]
            ab(proxies, scenario, headers, args, load, certs, origin)
    finally:
        for p in procs:
            p.stop()


def ab(proxies, scenario, headers, args, load, certs, origin):
    """Measures `proxies` (name: Waypoint or Envoy) interleaved and prints their medians."""
    for p in proxies.values():
        bench.hbone_load(load, p.hbone_port, certs, 1, headers=headers)  # warm-up
    report = bench.Report()
    cells = [(name, p.proc, lambda p=p: bench.hbone_load(load, p.hbone_port, certs, args.seconds,
                                                         headers=headers), 0)
             for name, p in proxies.items()]
    bench.measure_interleaved(report, scenario, cells, origin, args.runs)
    for p in proxies.values():
        p.proc.stop()
    for row in report.rows:
        print(f"{row['scenario']} {row['proxy']:>12}: {row['rps'] or 0:>9.0f} req/s  p99 {row['p99_ms'] or 0:.3f} ms"
              f"  CPU {row['cpu_ms_per_1k'] or 0:.1f} ms per 1 000 requests", flush=True)


if __name__ == "__main__":
    main()
