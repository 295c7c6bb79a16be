"""Production vs shadow answers: the reply model, field names and ignore rules, noise learned from production,
the diff, endpoint names, the mismatch store, and decoding bodies without trusting their size."""

from .decode import decode_capped
from .diff import MAX_LISTED, MAX_VALUE, CompareConfig, Comparison, compare, skipped
from .endpoints import EndpointNamer, endpoint
from .fields import parse_ignore, pointer
from .noise import NoiseLearner, NoiseSet, request_key
from .reply import BODY_LIMIT, NOT_JSON, Reply
from .store import OTHER, MismatchStore, record_line

__all__ = [
    "BODY_LIMIT",
    "MAX_LISTED",
    "MAX_VALUE",
    "NOT_JSON",
    "OTHER",
    "CompareConfig",
    "Comparison",
    "EndpointNamer",
    "MismatchStore",
    "NoiseLearner",
    "NoiseSet",
    "Reply",
    "compare",
    "decode_capped",
    "endpoint",
    "parse_ignore",
    "pointer",
    "record_line",
    "request_key",
    "skipped",
]
