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
    )
}
BAD_SHADOWS = ("slow", "veryslow", "blackhole", "refusing")
HOSTILE = ("flood", "hints", "stream", "stream10", "bomb", "bombgz")  # served by their own server process

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
