"""Production vs shadow answers: the reply model, field names and ignore rules, noise learned from production,
the diff, endpoint names, the mismatch store, and decoding bodies without trusting their size."""

from .config import LOOP_SHARE, PARSE_LIMIT, CompareConfig
from .decode import decode_capped
from .diff import compare
from .endpoints import EndpointNamer, endpoint
from .fields import parse_ignore, pointer
from .jsondiff import MAX_LISTED
from .noise import NoiseLearner, request_key
from .noiseset import NoiseSet
from .render import MAX_VALUE
from .reply import BODY_LIMIT, NOT_JSON, Reply
from .result import Comparison, Difference, failed, skipped
from .store import OTHER, MismatchStore, record_line

__all__ = [
    "BODY_LIMIT",
    "MAX_LISTED",
    "MAX_VALUE",
    "NOT_JSON",
    "OTHER",
    "PARSE_LIMIT",
    "LOOP_SHARE",
    "CompareConfig",
    "Comparison",
    "EndpointNamer",
    "Difference",
    "MismatchStore",
    "NoiseLearner",
    "NoiseSet",
    "Reply",
    "compare",
    "decode_capped",
    "endpoint",
    "failed",
    "parse_ignore",
    "pointer",
    "record_line",
    "request_key",
    "skipped",
]
