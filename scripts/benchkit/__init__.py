"""The benchmark behind `scripts/bench`: plain mitmdump against mitmdump with the shadow addon on loopback, in
interleaved rounds, with healthy, slow, dead and hostile shadows; and a soak. The method: docs/benchmark.md."""
