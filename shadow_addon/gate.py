"""`mitmshadow replay`: shadow a recorded capture offline and gate a release on the comparison.

Exit codes: 0 every Mapping within the threshold, 1 a Mapping's mismatch rate over it, 2 a usage or configuration
error (bad arguments, a Mapping file or a capture that cannot be read, no request that went to a shadow).

mitmdump runs with the addon and no proxy server, as `mitmdump -n -r CAPTURE -s ADDON` would, except that the
capture is handed to the addon alone (`Replay.play`) rather than read by mitmproxy and passed through every
addon's hooks: the same copies, metrics, comparison and report, in the time the shadow takes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import ADDON, replayjobs, replayshards
from .reasons import DropReason
from .replayshards import Shard
from .words import plural

OK, FAILED, USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Verdict:
    mapping: str  # the shadow Mapping
    differing: int  # mismatches, and copies the shadow did not answer for another reason than a timeout
    total: int  # pairs compared, and copies not answered (timeouts left out)
    failed: bool
    timeouts: int = 0  # copies that timed out: not differences, but the release was not checked on them

    @property
    def rate(self) -> float:
        return self.differing / self.total if self.total else 0.0

    def line(self, threshold: float) -> str:
        word = "FAIL" if self.failed else "ok"
        line = (
            f"{word}: {self.mapping}: {self.differing} of {plural(self.total, 'pair')} differ ({self.rate:.1%}; "
            f"allowed {threshold:.1%})"
        )
        if self.timeouts:
            line += (
                f"; {plural(self.timeouts, 'copy', 'copies')} timed out, not counted as differences, which fails the "
                "gate: raise --set shadow_timeout=SECONDS, or lower --set shadow_max_inflight=N for a server that "
                "takes few connections at once"
            )
        return line


def verdicts(
    counts: Mapping[str, Mapping[str, int]], threshold: float, timeouts: Mapping[str, int] | None = None
) -> list[Verdict]:
    """Per shadow Mapping: the share of pairs that differ (mismatch, or `skipped`: the shadow gave no answer to
    compare) against the threshold. Noise is not a difference; a timeout is counted apart (a slow or overloaded
    server says nothing of the release) and fails the gate on its own."""
    out = []
    for mapping, c in sorted(counts.items()):
        late = min((timeouts or {}).get(mapping, 0), c.get("skipped", 0))
        differing = c.get("mismatch", 0) + c.get("skipped", 0) - late
        total = differing + c.get("match", 0) + c.get("noise", 0)
        failed = late > 0 or (total > 0 and differing / total > threshold)
        out.append(Verdict(mapping, differing, total, failed, late))
    return out


def _rate(text: str) -> float:
    try:
        v = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate such as 0.01 or 1%, got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1 (or 0% and 100%), got {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mitmshadow replay",
        description="Copy every request of a recorded capture (mitmproxy flow file or HAR) to the shadow services of "
        "the Mappings, compare each answer with the recorded one, print the report, and exit 1 when a Mapping's "
        "share of differing answers is over the threshold. Production is never contacted.",
        epilog="exit codes: 0 within the threshold, 1 over it, 2 usage or configuration error",
    )
    p.add_argument("capture", help="a mitmproxy flow file (mitmdump -w) or a HAR file")
    p.add_argument("--mappings", required=True, help="Mapping YAML: a file or a directory")
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=ADDR",
        help="where a Mapping service is: NAME=[scheme://]HOST:PORT (repeatable)",
    )
    p.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare each answer with the recorded one (default); --no-compare only sends the copies",
    )
    p.add_argument(
        "--fail-on-mismatch",
        type=_rate,
        default=None,
        metavar="RATE",
        help="exit 1 when more than RATE (0.05 or 5%%) of a Mapping's pairs differ; default 0: any difference",
    )
    p.add_argument(
        "--every-request",
        action="store_true",
        help="copy every recorded request a shadow's route gets, whatever its weight, so runs compare alike",
    )
    p.add_argument("--speed", type=float, default=0.0, help="1 = recorded pace, 2 = twice as fast, 0 = at once")
    p.add_argument(
        "--jobs",
        type=replayjobs.jobs_arg,
        default="auto",
        metavar="N",
        help="processes replaying the capture at once, each its part (default auto: one per CPU, at most "
        f"{replayjobs.MAX_AUTO}, for a capture of {replayjobs.AUTO_MIN_MIB} MiB or more at --speed 0; else 1)",
    )
    # A process of a split replay (`replayjobs`): its part, and the directory the processes share.
    p.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    p.add_argument("--shard-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--report", default="", metavar="FILE", help="append each mismatch as a JSON line to FILE")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="any other mitmproxy or shadow option, e.g. --set shadow_timeout=2 (repeatable)",
    )
    return p


class _Errors(logging.Handler):
    """Counts errors logged during the run (a capture that cannot be read is logged, not raised)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))  # exits 2 on a usage error
    if not os.path.isfile(args.capture) or not os.access(args.capture, os.R_OK):
        print(f"mitmshadow replay: cannot read capture {args.capture}", file=sys.stderr)
        return USAGE
    try:
        shard = Shard.parse(args.shard, args.shard_dir) if args.shard else None
    except ValueError as e:
        print(f"mitmshadow replay: {e}", file=sys.stderr)
        return USAGE
    jobs = replayjobs.jobs_for(args.jobs, args.capture, args.speed) if shard is None else 1
    if jobs > 1:
        return replayjobs.run(argv, jobs)
    if shard is not None and not shard.merges:
        # The first process judges every pair (`compare.ordered`) and writes the report; the others write none.
        args.report = ""
        args.sets = [s for s in args.sets if not _sets_report(s)]
    compare = args.compare or args.fail_on_mismatch is not None
    threshold = args.fail_on_mismatch or 0.0
    cmd = ["-n", "-s", ADDON, "--set", f"mappings={args.mappings}"]
    cmd += ["--set", "shadow_admin=", "--set", "flow_detail=0", "--set", f"shadow_replay_speed={args.speed}"]
    for spec in args.service:
        cmd += ["--set", f"mapping_services={spec}"]
    if compare:
        cmd += ["--set", "shadow_compare=true"]
    if args.every_request:
        cmd += ["--set", "shadow_replay_every_request=true"]
    if args.report:
        cmd += ["--set", f"shadow_compare_report={args.report}"]
    for spec in args.sets:
        cmd += ["--set", spec]

    from mitmproxy.tools import cmdline
    from mitmproxy.tools import main as tools

    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        master = tools.run(_master(args.capture, shard), cmdline.mitmdump, cmd)
    except SystemExit as e:  # mitmdump refused an option or a Mapping file, and said why
        return USAGE if e.code else OK
    finally:
        logging.getLogger().removeHandler(errors)
    shadow = master.addons.get("shadow")
    if shadow is not None and shard is not None and not shard.merges:
        replayshards.write(shard.path("result"), _part(shadow, errors.count))
        return USAGE if errors.count else OK  # the first process reports, and decides the verdict
    if shadow is None or errors.count or shadow.replay.parts_errors:
        print("mitmshadow replay: errors were logged (see above); no verdict", file=sys.stderr)
        return USAGE
    if not compare:
        return OK
    results = verdicts(shadow.metrics.compare_counts(), threshold, shadow.metrics.drops(DropReason.TIMEOUT))
    if not results:
        why = shadow.replay.nothing_copied() or "no request of the capture went to a shadow"
        print(f"mitmshadow {why}; nothing to compare", file=sys.stderr)
        return USAGE
    for v in results:
        print(v.line(threshold))
    return FAILED if any(v.failed for v in results) else OK


def _sets_report(spec: str) -> bool:
    """Whether a `--set` asks for a JSON-lines report."""
    name, _, value = spec.partition("=")
    return name.strip() == "shadow_compare_report" and bool(value)


def _part(shadow: Any, errors: int) -> replayshards.Result:
    """What a process of a split replay leaves for the first one (`replayshards.Result`)."""
    pairing = shadow.pairing
    noise = pairing.learner.learned() if pairing is not None else {}
    return replayshards.Result(metrics=shadow.metrics, counts=shadow.replay.tally(), errors=errors, noise=noise)


class _Play:
    """Hands the capture to the shadow addon once everything runs (its sender, its Mappings)."""

    def __init__(self, capture: str, shard: Shard | None = None) -> None:
        self.capture = capture
        self.shard = shard

    def running(self) -> None:
        from mitmproxy import ctx

        shadow: Any = ctx.master.addons.get("shadow")
        if shadow is None:  # the addon did not load: mitmdump has said why and exits
            return
        shadow.replay.play(self.capture, self.shard)


def _master(capture: str, shard: Shard | None = None) -> Any:
    """mitmdump's master with `_Play` last in its chain, so its `running` comes after the addon's."""
    from mitmproxy.tools import dump

    class ReplayMaster(dump.DumpMaster):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.addons.add(_Play(capture, shard))

    return ReplayMaster
