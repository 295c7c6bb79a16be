"""The benchmark's own parts: the hostile shadows' answers as a real HTTP parser reads them, the server process that
sends them, the /metrics reader against prometheus_client's own output, and the scenario selection."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h11
import pytest
from mitmproxy.net import encoding
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from support import ROOT, read_log_until, started

sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import answers, metrics, replaycase  # noqa: E402
from benchkit.scenarios import SCENARIOS, mapping_set, select_scenarios  # noqa: E402


def events(data: bytes, method: bytes = b"GET") -> list[object]:
    """What h11, as a client that sent one `method` request, makes of `data` (bounded)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    out: list[object] = []
    for _ in range(100_000):
        ev = conn.next_event()
        if ev in (h11.NEED_DATA, h11.PAUSED):
            break
        out.append(ev)
    return out


def test_flood_is_nothing_but_100_continue() -> None:
    e = answers.flood()
    evs = events(e.head + e.block)
    assert len(evs) > 1000
    assert all(isinstance(ev, h11.InformationalResponse) and ev.status_code == 100 for ev in evs)


def test_hints_are_103_with_2000_headers_each_under_64_kib() -> None:
    e = answers.hints()
    assert len(e.block) < 64 * 1024
    evs = events(e.block * 3)
    assert len(evs) == 3
    for ev in evs:
        assert isinstance(ev, h11.InformationalResponse) and ev.status_code == 103
        assert len(ev.headers) == answers.HINT_HEADERS


@pytest.mark.parametrize("make, version", [(answers.stream, b"1.1"), (answers.stream10, b"1.0")])
def test_streams_are_a_200_whose_body_never_ends(make: Callable[[], answers.Endless], version: bytes) -> None:
    e = make()
    evs = events(e.head + e.block * 4)
    head, *rest = evs
    assert isinstance(head, h11.Response) and head.status_code == 200 and head.http_version == version
    assert rest and all(isinstance(ev, h11.Data) for ev in rest)  # no EndOfMessage: the body goes on
    assert sum(len(ev.data) for ev in rest if isinstance(ev, h11.Data)) >= 3 * answers.BLOCK


@pytest.mark.parametrize("make, name", [(answers.bomb_br, "br"), (answers.bomb_gzip, "gzip")])
def test_bombs_are_small_answers_that_inflate_to_their_size(make: Callable[[int], bytes], name: str) -> None:
    raw = make(16)
    head, body = events(raw)[:2]
    assert isinstance(head, h11.Response) and head.status_code == 200
    assert dict(head.headers)[b"content-encoding"] == name.encode()
    assert isinstance(body, h11.Data) and len(body.data) < 64 * 1024
    assert len(encoding.decode(body.data, name)) == 16 << 20


def test_metrics_are_read_from_what_prometheus_client_writes() -> None:
    reg = CollectorRegistry()
    drops = Counter("shadow_dropped_total", "", ["mapping", "reason"], registry=reg)
    drops.labels("a", "timeout").inc(3)
    drops.labels("b", "timeout").inc(2)
    drops.labels("a", "overload").inc(1)
    codes = Counter("shadow_upstream_requests_total", "", ["role", "code"], registry=reg)
    codes.labels("shadow", "200").inc(7)
    codes.labels("production", "200").inc(9)
    Gauge("shadow_inflight", "", ["service"], registry=reg).labels("s").set(4)
    m = metrics.parse(generate_latest(reg).decode())
    assert m.ok and m.drops == {"timeout": 5, "overload": 1} and m.shadow_codes == {"200": 7} and m.inflight == 4
    later = metrics.parse(generate_latest(reg).decode().replace(" 3.0", " 13.0"))
    assert later.since(m).drops == {"timeout": 10}


def test_selecting_scenarios_adds_the_references_their_ratios_need() -> None:
    assert select_scenarios("bomb") == (["plain", "compare", "bomb"], ["plain", "compare"])
    assert select_scenarios("flood,stream")[0] == ["plain", "healthy", "flood", "stream"]
    assert select_scenarios(None)[0] == list(SCENARIOS)
    with pytest.raises(ValueError, match="nosuch"):
        select_scenarios("nosuch")


def test_the_scale_sets_route_the_benchmark_request_to_the_catch_all_after_every_other_mapping(tmp_path) -> None:
    from shadow_addon import mappings, routing
    from shadow_addon.routing import RequestView

    assert select_scenarios("map10k")[0] == ["plain", "map10", "map10k"]
    for name, n, regex in (("prefix10k", 10_000, False), ("regex200", 200, True), ("prefix10", 10, False)):
        for rel, text in mapping_set(name).items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
        loaded = mappings.load_path(str(tmp_path / name))
        assert not loaded.errors and len(loaded.mappings) == n + 2
        assert sum(m.prefix_regex for m in loaded.mappings) == (n if regex else 0)
        table = routing.build_table(loaded.mappings)
        scan = routing.Table(table.groups, table.addresses)  # no index: every group tried in order
        route = routing.resolve(scan, RequestView("GET", "/bench", "x", {}), 0.0, 0.0)  # type: ignore[arg-type]
        assert route is not None and route.mapping is not None and route.mapping.name == "app"
        assert route.group is table.groups[-1]  # the last group: the scan tried every other one first


def test_the_replay_captures_are_read_alike_by_mitmproxy_and_the_addon(tmp_path) -> None:
    from mitmproxy import io

    from shadow_addon import capture

    har, flows = tmp_path / "c.har", tmp_path / "c.mitm"
    replaycase.write_har(har, 50)
    replaycase.write_flows(flows, 50)
    with open(har, "rb") as a, open(flows, "rb") as b:
        ours, theirs = list(capture.read_flows(a)), list(io.FlowReader(b).stream())
    assert len(ours) == len(theirs) == 50
    for x, y in zip(ours, theirs, strict=True):
        assert x.request.get_state() == y.request.get_state()  # type: ignore[attr-defined]
        assert x.response.content == y.response.content == answers.BODY  # type: ignore[attr-defined]


def test_the_flood_server_streams_until_the_client_leaves(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    log = tmp_path / "flood.log"
    with started([sys.executable, "-m", "benchkit.servers", "flood"], log, env=env, stdin=True) as proc:
        assert proc.stdin is not None
        out = read_log_until(log, re.compile(r'^\{"ports".*\n', re.M), 30, proc)
        port = json.loads(answer_lines(out)[0])["ports"]["flood"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nx-mitmproxy-shadow: 1\r\n\r\n")
            got = bytearray()
            deadline = time.monotonic() + 30
            while len(got) < 4 << 20 and time.monotonic() < deadline:  # far more than the socket buffers hold
                got += c.recv(1 << 20)
            assert len(got) >= 4 << 20
            assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)
        proc.stdin.write(b"stats\n")
        proc.stdin.flush()
        out = read_log_until(log, re.compile(r'^\{"flood".*\n', re.M), 30, proc)
        stats = json.loads(answer_lines(out)[1])["flood"]
        assert (stats["requests"], stats["marked"], stats["answered"]) == (1, 1, 1)
        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0


def answer_lines(log: str) -> list[str]:
    """The servers' JSON lines (their ports, then one answer a command) among whatever else went to the log."""
    return [line for line in log.splitlines() if line.startswith("{")]


def test_the_routed_set_is_the_default_route_without_its_shadow(tmp_path) -> None:
    from shadow_addon import mappings

    assert select_scenarios("routed")[0] == ["plain", "routed"]
    for name, shadows in (("routed", 0), ("default", 1)):
        for rel, text in mapping_set(name).items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
        path = tmp_path / ("routed" if name == "routed" else "mappings.yaml")
        loaded = mappings.load_path(str(path))
        assert not loaded.errors and [m.prefix for m in loaded.mappings if not m.shadow] == ["/"]
        assert sum(m.shadow for m in loaded.mappings) == shadows


def test_the_grpc_pair_routes_the_grpc_service_over_http2_with_and_without_its_shadow(tmp_path) -> None:
    from benchkit.grpcservers import GRPC_METHOD

    from shadow_addon import mappings, routing
    from shadow_addon.routing import RequestView

    assert select_scenarios("grpc")[0] == ["grpcrouted", "grpc"]
    assert SCENARIOS["grpc"].grpc and SCENARIOS["grpc"].reference == "grpcrouted"
    for name, shadows in (("grpcrouted", 0), ("grpc", 1)):
        for rel, text in mapping_set(name).items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
        loaded = mappings.load_path(str(tmp_path / name))
        assert not loaded.errors and all(m.grpc for m in loaded.mappings)
        assert sum(m.shadow for m in loaded.mappings) == shadows
        table = routing.build_table(loaded.mappings)
        route = routing.resolve(table, RequestView("POST", GRPC_METHOD, "x", {}), 0.0, 0.0)  # type: ignore[arg-type]
        assert route is not None and route.mapping is not None and route.mapping.name == "echo"
        assert (route.shadow is not None) == bool(shadows)


def test_the_replay_case_counts_the_pairs_its_report_judged() -> None:
    """`--replay` checks every entry was judged: the counts of the report's `compared` lines, over its Mappings."""
    out = [
        "/                        production   100000       0      0.1      0.1      0.1  200:100000",
        "  -> app-shadow          shadow       100000       0      0.5      1.0      2.3  200:100000",
        "                         compared   match:99998 skipped:2",
        "  -> grpc-shadow         shadow           10       0      0.5      1.0      2.3  200:10",
        "                         compared   mismatch:3 noise:7",
        "ok: app-shadow: 0 of 100000 pairs differ (0.0%; allowed 0.0%)",
    ]
    assert replaycase.judged(out) == 100010
    assert replaycase.judged(out[:2]) == 0  # no comparison reported: nothing judged


def test_the_replay_case_gives_the_measured_package_over_the_baseline_at_equal_speed() -> None:
    """`--replay --baseline`: each capture's wall and CPU time over the baseline's, fitted to the CPU speed. Here
    the measured package takes 0.8x the baseline's time at any speed, and a faster host shortens both."""

    def run(package: str, speed: float, seconds: float) -> replaycase.ReplayRun:
        r = replaycase.ReplayRun("har", 10, 1.0, exit_code=0, speed=speed, package=package)
        r.wall_s, r.cpu_s = seconds, 2 * seconds
        return r

    runs = [run("", s, 0.8 * 30 / s) for s in (0.9, 1.1, 1.0)] + [run("base", s, 30 / s) for s in (1.2, 0.8, 1.0)]
    runs.append(run("", 1.0, 1.0))
    runs[-1].exit_code = 1  # failed: not measured
    wall, cpu = replaycase.over_base(runs, "har")
    assert wall.name == "replay har: wall time over the baseline" and wall.result == "info"
    assert wall.value.startswith("0.800x") and cpu.value.startswith("0.800x")
    assert "speed^-1.00" in wall.value
    assert replaycase.over_base(runs, "flows")[0].value == "-"  # no run of that capture


def test_every_part_the_in_situ_timing_wraps_is_in_the_package() -> None:
    """`scripts/bench_insitu.py` skips a name an older release lacks: in this one, each must be there, or the
    figure would leave the part out unseen."""
    import importlib

    import bench_insitu

    for module, path, label, _ in bench_insitu.TIMED:
        owner: object = importlib.import_module(f"shadow_addon.{module}")
        for name in path.split("."):
            owner = getattr(owner, name)
        assert callable(owner), label


def test_the_in_situ_report_is_per_request_and_sums_the_outer_parts_only(capsys: pytest.CaptureFixture[str]) -> None:
    import bench_insitu

    acc = {
        "hook: requestheaders": [400_000, 4],  # 100 us a request
        "step: the copy": [200_000, 4],
        "  making the copy": [120_000, 4],  # inside the step: not added again
        "cpu": [4_000_000, 1],  # 1000 us a request
        "other": [40, 1],  # % of a core outside the benchmark
        "steal": [30, 1],
    }
    bench_insitu.report("pkg", dict(acc))
    out = capsys.readouterr().out
    assert "pkg: 4 requests; mitmdump's CPU 1000 us a request; other CPU on the machine 40 % of a core;" in out
    assert "stolen by the hypervisor 30 %" in out
    assert "disturbed: over 25 % of a core" in out
    assert re.search(r"hook: requestheaders\s+100\.0\s+1\.00", out)
    assert re.search(r"  making the copy\s+30\.0\s+1\.00", out)
    assert re.search(r"the addon, all of the above unindented\s+150\.0\s+\(15\.0% of the CPU\)", out)
    bench_insitu.report("quiet", {**acc, "other": [3, 1]})
    assert "disturbed" not in capsys.readouterr().out


def test_a_disturbed_run_says_how_much_of_its_other_cpu_the_hypervisor_stole() -> None:
    """'Other' CPU is the machine's busy time (steal included) outside the benchmark's processes; its steal is
    read apart from /proc/stat's steal column, and the note on disturbed runs gives it."""
    from benchkit.procstats import CpuSnap, cpu_figures
    from benchkit.runs import Run
    from benchkit.summary import notes

    run = Run(3, "healthy", requests=1000)
    # 2 s: mitmdump 1 core, the servers and the client 0.2 each, the machine 2.4 cores busy of it 0.6 stolen.
    cpu_figures(run, CpuSnap(10.0, 5.0, 1.0, 1.0, 100.0, 0.5, 40.0), CpuSnap(12.0, 7.0, 1.4, 1.4, 104.8, 0.6, 41.2))
    assert round(run.cpu_other_pct) == 100 and round(run.cpu_steal_pct) == 60
    said = " ".join(notes([run, Run(3, "plain", requests=1000, cpu_other_pct=0.0)], {}, []))
    assert "1 of 2 runs shared the machine" in said and "round 3 healthy, 100%, of it 60% stolen" in said


def _runs_following_the_speed(level: float, exponent: float, speeds: list[float], name: str) -> list:
    """Runs whose throughput is `level` x speed ** exponent, with a +-1 % wobble that does not follow the speed."""
    from benchkit.runs import Run

    wobble = (1.01, 0.99, 1.0, 1.01, 0.99, 1.0)
    return [
        Run(i + 1, name, requests=1000, rps=level * s**exponent * wobble[i % 6], core_speed=s, cpu_other_pct=0.0)
        for i, s in enumerate(speeds)
    ]


def test_the_fit_reads_the_ratio_at_equal_speed_where_dividing_by_the_speed_does_not() -> None:
    """Throughput that follows the speed probe as speed^1.8 (as on the shared VM): the fit finds the exponent and
    the true ratio (0.85) inside its interval; dividing each run by its speed leaves a bias when the two
    scenarios ran at different speeds."""
    from benchkit.speedfit import fit
    from benchkit.summary import summarise

    plain = _runs_following_the_speed(500.0, 1.8, [1.0, 1.1, 1.2, 1.05, 1.15, 1.25], "plain")
    healthy = _runs_following_the_speed(425.0, 1.8, [1.1, 1.2, 1.3, 1.15, 1.25, 1.3], "healthy")
    f = fit([(r.core_speed, r.rps) for r in healthy], [(r.core_speed, r.rps) for r in plain])
    assert f is not None and f.low < 0.85 < f.high and f.high - f.low < 0.05 and 1.6 < f.exponent < 2.0
    divided = sorted(h.rps / h.core_speed / (p.rps / p.core_speed) for h, p in zip(healthy, plain, strict=True))
    assert divided[3] > 0.88  # the median of the per-round ratios: the bias the fit removes

    summary, checks = summarise(plain + healthy, ["plain", "healthy"], 8)
    assert summary["healthy"]["fitted"]["throughput"].ratio == pytest.approx(f.ratio)
    rows = {c.name: c for c in checks}
    row = rows["healthy vs plain: throughput, fitted to CPU speed"]
    assert row.result == "not met" and row.target == ">= 0.9x" and row.value.startswith(f"{f.ratio:.3f}x [95%: ")
    # The benchmark's own target (0.85x) is read from the fit as well, the per-round median shown beside it.
    fitted_row = rows["healthy vs plain: throughput at equal CPU speed, fitted"]
    assert fitted_row.figure == f.ratio and fitted_row.result == ("PASS" if f.ratio >= 0.85 else "FAIL")
    assert rows["healthy vs plain: throughput at equal CPU speed, per-round median"].result == "info"


def test_the_fit_leaves_out_disturbed_runs_and_needs_two_quiet_runs_of_each() -> None:
    from benchkit.speedfit import fit
    from benchkit.summary import fitted

    plain = _runs_following_the_speed(500.0, 1.8, [1.0, 1.1, 1.2], "plain")
    healthy = _runs_following_the_speed(480.0, 1.8, [1.0, 1.1, 1.2], "healthy")
    whole = fitted(dict(enumerate(healthy)), dict(enumerate(plain)))["throughput"]
    assert whole.runs == 6 and whole.low < 0.96 < whole.high
    healthy[0].cpu_other_pct = 40.0  # disturbed: not fitted
    assert fitted(dict(enumerate(healthy)), dict(enumerate(plain)))["throughput"].runs == 5
    healthy[1].cpu_other_pct = 40.0
    assert "throughput" not in fitted(dict(enumerate(healthy)), dict(enumerate(plain)))
    # All at one speed: the ratio of the geometric means, with no exponent to fit.
    same = fit([(1.0, 90.0), (1.0, 110.0)], [(1.0, 100.0), (1.0, 100.0)])
    assert same is not None and same.exponent == 0.0 and same.ratio == pytest.approx((90 * 110) ** 0.5 / 100)


def test_runs_pooled_over_files_keep_each_files_level_and_share_the_ratio(tmp_path: Path) -> None:
    """Two benchmark files an hour apart (the host 20 % faster in the second): pooled, the ratio (0.87) and the
    exponent (1.8) are found; a disturbed run is left out as the report flags it."""
    import bench_fit

    def doc(level: float, speeds: list[float]) -> dict:
        plain = _runs_following_the_speed(level, 1.8, speeds, "plain")
        healthy = _runs_following_the_speed(level * 0.87, 1.8, [s * 1.05 for s in speeds], "healthy")
        runs = [
            {"scenario": r.scenario, "core_speed": r.core_speed, "rps": r.rps, "cpu_other_pct": 0.0}
            for r in plain + healthy
        ]
        runs.append({"scenario": "healthy", "core_speed": 1.0, "rps": 1.0, "cpu_other_pct": 90.0})  # disturbed
        return {"runs": runs}

    files = []
    for i, (level, speeds) in enumerate(((500.0, [1.0, 1.1, 1.2]), (600.0, [1.1, 1.25, 1.3]))):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps(doc(level, speeds)))
    from benchkit.speedfit import pooled

    docs = [json.loads(f.read_text()) for f in files]
    f = pooled([bench_fit.points(d, "healthy", "plain", "rps") for d in docs])
    assert f is not None and f.runs == 12 and f.low < 0.87 < f.high and 1.6 < f.exponent < 2.0
    assert pooled([bench_fit.points(docs[0], "routed", "plain", "rps")]) is None  # no run of the one compared
    assert bench_fit.main(["healthy", "plain", *map(str, files)]) == 0


def test_a_disturbed_soak_phase_says_how_much_of_its_other_cpu_the_hypervisor_stole() -> None:
    from benchkit.soak import Phase, SoakRun, soak_notes

    run = SoakRun(2, phases=[Phase(0, "healthy", cpu_other_pct=5.0), Phase(1, "slow", cpu_other_pct=40.0)])
    run.phases[1].cpu_steal_pct = 30.0
    said = " ".join(soak_notes(run))
    assert "phases 2 shared the machine" in said and "worst: phase 2, 40%, of it 30% stolen" in said


def test_a_pooled_interval_is_no_narrower_than_the_runs_disagree() -> None:
    """Three runs that each see a tight ratio, but a different one (0.84, 0.87, 0.90): the pooled interval
    covers their spread, not only each run's scatter."""
    from benchkit.speedfit import pooled

    runs = []
    for ratio in (0.84, 0.87, 0.90):
        plain = _runs_following_the_speed(500.0, 1.8, [1.0, 1.1, 1.2], "plain")
        healthy = _runs_following_the_speed(500.0 * ratio, 1.8, [1.05, 1.15, 1.25], "healthy")
        runs.append([(r.core_speed, r.rps, r.scenario == "healthy") for r in plain + healthy])
    f = pooled(runs)
    assert f is not None and f.low < 0.85 and f.high > 0.89 and abs(f.ratio - 0.87) < 0.01


@pytest.mark.e2e
def test_the_pairs_benchmark_times_each_mode_in_both_packages_and_gives_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`scripts/bench_pairs.py --baseline`: every pair of each batch a match (it stops otherwise), in child processes
    of both packages taking turns; here the baseline is this package, so the ratio is about one."""
    import bench_pairs

    assert bench_pairs.main(["--pairs", "200", "--batches", "3", "--baseline", str(ROOT / "shadow_addon")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["replay", "live"]
    for line in lines:
        m = re.search(r"this over the baseline (\d+\.\d+) \[(\d+\.\d+)\.\.(\d+\.\d+)\]", line)
        assert m is not None, line
        assert 0.2 < float(m[1]) < 5 and float(m[2]) <= float(m[1]) <= float(m[3])


@pytest.mark.e2e
def test_the_capture_reading_benchmark_reads_each_kind_and_part_in_both_packages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`scripts/bench_capture.py --baseline`: a HAR and a flow file of the replay benchmark's exchanges, read whole
    and in half (each batch checks the flows made), by both packages taking turns; the baseline is this package."""
    import bench_capture

    args = ["--entries", "200", "--batches", "3", "--baseline", str(ROOT / "shadow_addon")]
    assert bench_capture.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [tuple(line.split()[:2]) for line in lines] == [
        ("har", "all"),
        ("har", "half"),
        ("flows", "all"),
        ("flows", "half"),
    ]
    for line in lines:
        m = re.search(r"this over the baseline (\d+\.\d+) \[(\d+\.\d+)\.\.(\d+\.\d+)\]", line)
        assert m is not None, line
        assert 0.2 < float(m[1]) < 5 and float(m[2]) <= float(m[1]) <= float(m[3])


def test_a_replays_time_at_cpu_speed_one_is_fitted_over_the_rounds_of_several_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench_fit.py --replay`: the rounds of several `--replay --json` files, the time following the speed as
    speed^-1.8 (with a little scatter), give the time at speed 1 (30 s), where multiplying the fastest round by its
    speed would say 23 s; a baseline's round, a failed one and ones that did not copy or judge everything are left
    out, as the report's own check (`ReplayRun.complete`) leaves them."""
    import bench_fit
    from benchkit.speedfit import at_speed_one

    def rounds(speeds: list[float], scatter: list[float]) -> list[dict]:
        return [
            {
                "capture": "har",
                "capture_mib": 0.01,
                "package": "",
                "exit_code": 0,
                "entries": 10,
                "shadow_received": 10,
                "output": ["compared   match:9 mismatch:1"],
                "speed": s,
                "wall_s": 30.0 * s**-1.8 * k,
                "cpu_s": 50.0 * s**-1.8 * k,
            }
            for s, k in zip(speeds, scatter, strict=True)
        ]

    slow, fast = rounds([0.95, 1.0, 1.05], [1.02, 0.98, 1.0]), rounds([1.3, 1.4, 1.45], [0.99, 1.01, 1.0])
    odd = [{**slow[0], "package": "base", "wall_s": 1.0}, {**slow[0], "exit_code": 1, "wall_s": 1.0}]
    odd.append({**slow[0], "shadow_received": 9, "wall_s": 1.0})
    odd.append({**slow[0], "output": ["compared   match:5"], "wall_s": 1.0})  # its report judged fewer pairs
    files = []
    for i, runs in enumerate((slow + odd, fast)):
        files.append(tmp_path / f"replay{i}.json")
        files[-1].write_text(json.dumps({"runs": runs}))
    docs = [json.loads(f.read_text()) for f in files]
    level = at_speed_one([p for d in docs for p in bench_fit.replay_points(d, "har", "wall_s")])
    assert level is not None and level.runs == 6 and level.low < 30.0 < level.high and -1.9 < level.exponent < -1.7
    assert level.worst < 0.03
    assert at_speed_one([(1.0, 30.0), (1.1, 28.0)]) is None and at_speed_one([(1.0, 30.0)] * 3) is None
    assert bench_fit.main(["--replay", "har", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "wall time        30.0 s" in out and "cpu time         50.0 s" in out and "6 runs" in out
    assert bench_fit.main(["--replay", "flows", str(files[0])]) == 0  # no round of that capture
    assert "too few rounds" in capsys.readouterr().out
