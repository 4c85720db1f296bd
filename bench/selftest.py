"""`bench.py --self-test`: the reporting rules of the benchmark checked on made-up runs, so
they need no proxy, no load tool and nothing but python3 (scripts/test runs it).

The rules: a cell with any failed check reports no median; non-200 answers are counted, shown
and fail the cell; an S4 memory row exists only when every stream opened; and a run with any
failure prints no ratio line and exits non-zero.
"""

import contextlib
import io

import bench

S1, S2 = "S1 http/1.1 keep-alive", "S2 hbone tunnels"


class FakeOrigin:
    """Counts the requests the fake load runs claim reached it."""

    def __init__(self):
        self.count = 0

    def hits(self):
        return self.count


def load(origin, ok, non_200=0, reached=None, p99=1.0):
    """A run_once() that reports `ok` 200s and `non_200` other answers, of which `reached`
    (default: the 200s) reached the origin."""
    def run():
        origin.count += ok if reached is None else reached
        return {"ok": ok, "non_200": non_200, "errors": 0, "rps": ok / 2, "p50_ms": p99 / 2, "p99_ms": p99}
    return run


def measure(report, origin, scenario, cells):
    bench.measure_interleaved(report, scenario, [(name, None, run, 0) for name, run in cells], origin, runs=3)


def clean_run():
    report, origin = bench.Report(), FakeOrigin()
    for scenario in (S1, S2):
        measure(report, origin, scenario, [("waypoint", load(origin, 1000)), ("envoy", load(origin, 900))])
    report.add(scenario="S4 memory idle", proxy="waypoint", rss_mib=10.0)
    report.add(scenario="S4 memory idle", proxy="envoy", rss_mib=20.0)
    bench.record_streams(report, "waypoint", 1000, {"open": 1000, "failed": 0}, 30.0)
    return report


def failing_run():
    report, origin = bench.Report(), FakeOrigin()
    answers = iter([1000, 1000, 400])  # the third run's origin saw fewer than the 200s claimed

    def flaky():
        ok = 1000
        origin.count += next(answers)
        return {"ok": ok, "non_200": 0, "errors": 0, "rps": 500.0, "p50_ms": 0.5, "p99_ms": 1.0}
    measure(report, origin, S1, [("waypoint", flaky), ("envoy", load(origin, 900))])
    # Fast local 503s: fewer 200s, a better p99; they must fail the cell, not flatter it.
    measure(report, origin, S2, [("waypoint", load(origin, 900, non_200=100, p99=0.1)),
                                 ("envoy", load(origin, 900))])
    bench.record_streams(report, "waypoint", 1000, {"open": 990, "failed": 10, "first_error": "refused"}, 30.0)
    return report


def row(report, scenario, proxy):
    return next((r for r in report.rows if r["scenario"] == scenario and r["proxy"] == proxy), None)


def run():
    """Returns 0 when every rule holds, else 1 (printing which did not)."""
    problems = []

    def expect(ok, what):
        if not ok:
            problems.append(what)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        good = clean_run()
        good_status = bench.finish(good)
    expect(good_status == 0 and "waypoint/envoy: rps S1 1.11" in out.getvalue(),
           "a clean run prints the ratio line and exits 0")

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bad = failing_run()
        bad_status = bench.finish(bad)
    text = out.getvalue()
    expect(bad_status != 0, "a run with a failed check exits non-zero")
    expect("waypoint/envoy:" not in text and bench.summary_line(bad) is None,
           "a run with a failed check prints no ratio line")
    s1 = row(bad, S1, "waypoint")
    expect(s1 is not None and s1["failed"] and s1["rps"] is None and s1["p99_ms"] is None,
           "a cell with one failed run of three reports no median")
    s2 = row(bad, S2, "waypoint")
    expect(s2 is not None and s2["failed"] and s2["non_200"] == 300 and s2["p99_ms"] is None,
           "non-200 answers are counted per cell and fail it")
    expect("300 non-200" in text or "non-200 300" in text, "the non-200 count is shown")
    expect(row(bad, S2, "envoy")["rps"] == 450, "a passing cell keeps its median")
    expect(row(bad, "S4 memory 1000 streams", "waypoint") is None,
           "no S4 memory row when some streams were refused")
    expect(row(good, "S4 memory 1000 streams", "waypoint") is not None,
           "an S4 memory row when every stream opened")
    expect(bench.output_name(True) == "quick" and bench.output_name(False) == "latest",
           "--quick writes results/quick.*, a full run results/latest.*")

    for p in problems:
        print(f"self-test FAILED: {p}")
    if not problems:
        print("bench self-test: all reporting rules hold")
    return 1 if problems else 0
