"""The scenarios: which mitmdump runs, with which shadow, measured against which reference in the same round."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

COMPARE = ("shadow_compare=true",)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    addon: bool
    shadow: str | None  # the upstream the shadow Mapping points at (None: plain mitmdump)
    reference: str | None  # the scenario its ratios are computed against
    description: str
    options: tuple[str, ...] = ()  # addon options of this scenario (--set KEY=VALUE), before --addon-option ones
    production: str = "prod"  # the upstream production's Mapping points at
    paths: int = 1  # distinct URLs the client asks for in turn (the asyncio client; wrk asks for one)
    mappings: str = "default"  # the Mapping set (MAPPING_SETS): a file, or a directory for the large ones
    grpc: bool = False  # gRPC calls (benchkit.grpcload) to gRPC upstreams (benchkit.grpcservers), not HTTP/1.1
    baseline: bool = False  # run with the --baseline package instead of the one measured


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plain", False, None, None, "plain mitmdump reverse proxy"),
        Scenario("routed", True, None, "plain", "addon, routing only (no shadow Mapping)", mappings="routed"),
        Scenario("healthy", True, "healthy", "plain", "addon, 100% copies to a healthy shadow"),
        Scenario("compare", True, "healthy", "plain", "as healthy, with shadow_compare=true", COMPARE),
        Scenario("slow", True, "slow", "healthy", "shadow answers after 200 ms"),
        Scenario("veryslow", True, "veryslow", "healthy", "shadow answers after 2 s"),
        Scenario("blackhole", True, "blackhole", "healthy", "shadow accepts, never answers"),
        Scenario("refusing", True, "refusing", "healthy", "shadow port closed (connection refused)"),
        Scenario("flood", True, "flood", "healthy", "shadow sends 100 Continue without end"),
        Scenario("hints", True, "hints", "healthy", "shadow sends 103 Early Hints of 2,000 headers, repeated"),
        Scenario("stream", True, "stream", "healthy", "shadow answers 200 with an endless chunked body"),
        Scenario("stream10", True, "stream10", "healthy", "shadow answers HTTP/1.0 200, body until close (never)"),
        Scenario("bomb", True, "bomb", "compare", "compare on; shadow answers a brotli bomb", COMPARE),
        Scenario("bombgz", True, "bombgz", "compare", "compare on; shadow answers a gzip bomb", COMPARE),
        # Comparison's hard cases, each against the same proxy with the same production and a healthy shadow.
        Scenario(
            "listok",
            True,
            "listsame",
            None,
            "compare on; production and shadow answer the same ~90 KB JSON list",
            COMPARE,
            "prodlist",
        ),
        Scenario(
            "listdiff",
            True,
            "listdiff",
            "listok",
            "compare on; the shadow's ~90 KB list differs in every element",
            COMPARE,
            "prodlist",
        ),
        Scenario("bigjson", True, "bigjson", "compare", "compare on; shadow answers ~1 MB of JSON", COMPARE),
        Scenario(
            "gzjson", True, "gzjson", "compare", "compare on; shadow answers gzip JSON decoding to ~1 MB", COMPARE
        ),
        Scenario(
            "deepoff",
            True,
            "deepsame",
            None,
            "compare off; production and shadow answer 8 KB of JSON nested 4,000 deep, 60 URLs",
            (),
            "proddeep",
            60,
        ),
        Scenario("deepok", True, "deepsame", "deepoff", "as deepoff with compare on", COMPARE, "proddeep", 60),
        Scenario(
            "deepnoise",
            True,
            "deepleaf",
            "deepok",
            "compare on; deep answers with a field that varies in production, the shadow's differ at the leaves",
            COMPARE,
            "proddeepts",
            60,
        ),
        Scenario("wide", True, "wide", "compare", "compare on; shadow answers 20 JSON keys of 50 KB each", COMPARE),
        Scenario("map10", True, "healthy", "plain", "as healthy, 10 prefix Mappings", (), mappings="prefix10"),
        Scenario("map10k", True, "healthy", "map10", "as map10 with 10,000 prefix Mappings", (), mappings="prefix10k"),
        Scenario("regex10", True, "healthy", "plain", "as healthy, 10 prefix_regex Mappings", (), mappings="regex10"),
        Scenario(
            "regex200", True, "healthy", "regex10", "as regex10 with 200 prefix_regex Mappings", (), mappings="regex200"
        ),
        # gRPC: unary calls over cleartext HTTP/2 to a `grpc: true` Mapping, copied over HTTP/2 or not at all.
        Scenario(
            "grpcrouted",
            True,
            None,
            None,
            "addon routing gRPC calls (grpc: true Mapping, h2c), no shadow",
            production="grpcprod",
            mappings="grpcrouted",
            grpc=True,
        ),
        Scenario(
            "grpc",
            True,
            "grpcshadow",
            "grpcrouted",
            "as grpcrouted, 100% of calls copied over HTTP/2 to a gRPC shadow",
            production="grpcprod",
            mappings="grpc",
            grpc=True,
        ),
    )
}
SCALE = ("map10", "map10k", "regex10", "regex200")
BAD_SHADOWS = ("slow", "veryslow", "blackhole", "refusing")
HOSTILE = ("flood", "hints", "stream", "stream10", "bomb", "bombgz")  # served by their own server process
# Comparison's hard cases: production's throughput >= 0.90x, p99 <= 1.5x, peak RSS within +50 MiB of their
# reference (the same proxy, the same production, a healthy shadow, compare on).
# (bombgz, the ~1 MB gzip of zeros, is one of them too, checked with the hostile shadows at 0.95x.)
COMPARE_CASES = ("listdiff", "bigjson", "gzjson", "deepok", "deepnoise", "wide")

# Routes / to prod-svc and copies 100 % of it to shadow-svc; mapping_services says where both are.
MAPPINGS_YAML = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app}
spec: {prefix: /, rewrite: "", service: prod-svc}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app-shadow}
spec: {prefix: /, rewrite: "", service: shadow-svc, shadow: true}
"""

# The same route without its shadow: what routing alone costs.
ROUTED_YAML = MAPPINGS_YAML.split("---\n")[0]

# The gRPC service's calls routed to prod-svc over HTTP/2 and copied to shadow-svc over HTTP/2 (both `grpc: true`).
GRPC_YAML = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: echo}
spec: {prefix: /bench.Echo/, rewrite: /bench.Echo/, service: prod-svc, grpc: true}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: echo-shadow}
spec: {prefix: /bench.Echo/, rewrite: /bench.Echo/, service: shadow-svc, grpc: true, shadow: true}
"""
GRPC_ROUTED_YAML = GRPC_YAML.split("---\n")[0]


FILE_MAPPINGS = 1_000  # Mappings per file in the large sets (a directory of files, as a large cluster exports them)


def _service_mapping(name: str, prefix: str, regex: bool) -> str:
    rx = ", prefix_regex: true" if regex else ""
    return (
        f"apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}, namespace: bench}}\n"
        f"spec: {{prefix: '{prefix}'{rx}, service: prod-svc, timeout_ms: 5000}}\n"
    )


def mapping_set(name: str) -> dict[str, str]:
    """The files of a Mapping set, by name: the catch-all `/` with its shadow (MAPPINGS_YAML) and N Mappings that
    each route one service's prefix, or a prefix_regex. The benchmark's requests (`GET /bench`) match none of them,
    so an ordered scan tries every one before the catch-all: the worst case, as for any request to a small service
    listed late."""
    if name == "default":
        return {"mappings.yaml": MAPPINGS_YAML}
    if name == "routed":
        return {"routed/routed.yaml": ROUTED_YAML}
    if name == "grpc":
        return {"grpc/grpc.yaml": GRPC_YAML}
    if name == "grpcrouted":
        return {"grpcrouted/routed.yaml": GRPC_ROUTED_YAML}
    kind, n = ("regex", int(name[5:])) if name.startswith("regex") else ("prefix", int(name[6:].replace("k", "000")))
    docs = [
        _service_mapping(f"svc-{i}", f"/svc-{i}/[0-9]+" if kind == "regex" else f"/svc-{i}/", kind == "regex")
        for i in range(n)
    ]
    files = {f"{name}/catch-all.yaml": MAPPINGS_YAML}
    for k in range(0, n, FILE_MAPPINGS):
        files[f"{name}/services-{k // FILE_MAPPINGS:03d}.yaml"] = "---\n".join(docs[k : k + FILE_MAPPINGS])
    return files


def write_mapping_set(root: Path, name: str) -> None:
    """The files of a Mapping set (`mapping_set`) written below `root`, at the paths mitmdump is given
    (`mappings_path`)."""
    for rel, text in mapping_set(name).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def mappings_path(name: str) -> str:
    """Where mitmdump finds a set, relative to the benchmark's directory."""
    return "mappings.yaml" if name == "default" else name


def select_scenarios(only: str | None) -> tuple[list[str], list[str]]:
    """Selected scenario names in canonical order, plus the references added so every ratio can be computed."""
    if not only:
        return list(SCENARIOS), []
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        raise ValueError(f"--only: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    chosen = set(wanted)
    for _ in range(len(SCENARIOS)):  # bounded closure over references (blackhole's RSS needs plain too)
        need = {r for n in chosen if (r := SCENARIOS[n].reference)} | ({"plain"} if "blackhole" in chosen else set())
        if need <= chosen:
            break
        chosen |= need
    added = [n for n in SCENARIOS if n in chosen and n not in wanted]
    return [n for n in SCENARIOS if n in chosen], added


BASE = "@base"  # the suffix of a scenario run with the --baseline package


def scenario(name: str) -> Scenario:
    """A scenario by name, NAME@base included: NAME run with the --baseline package, against the same reference
    (plain, or the reference's own twin)."""
    if not name.endswith(BASE):
        return SCENARIOS[name]
    scn = SCENARIOS[name.removesuffix(BASE)]
    if not scn.addon:
        raise KeyError(name)  # plain mitmdump has no package to vary
    ref = scn.reference
    return replace(
        scn,
        name=name,
        baseline=True,
        reference=ref + BASE if ref is not None and SCENARIOS[ref].addon else ref,
        description=f"{scn.description} (the --baseline package)",
    )


def with_baseline(names: list[str]) -> list[str]:
    """`names` with each addon scenario followed by its twin on the baseline package, measured in the same rounds."""
    out: list[str] = []
    for n in names:
        if n.endswith(BASE):
            continue  # placed after its scenario
        out.append(n)
        if SCENARIOS[n].addon:
            out.append(n + BASE)
    return out
