"""The scenarios: which mitmdump runs, with which shadow, measured against which reference in the same round."""

from __future__ import annotations

from dataclasses import dataclass

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


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plain", False, None, None, "plain mitmdump reverse proxy"),
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
    )
}
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
