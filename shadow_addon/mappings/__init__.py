"""Emissary `Mapping` records: reading every YAML form, validation with one-line errors.

Pure: `parse_text` takes text; `load_path` is the only function that touches the file system.

- `fields`: the vocabulary (fields applied or accepted, apiVersions, kinds, defaults);
- `model`: `Mapping`, its parts, `LoadResult`, `MappingError`;
- `checks`: one validator per kind of field value;
- `build`: one spec validated into a `Mapping` (`build_mapping`);
- `yamlreader`: the bounded YAML reader (size, nodes, nesting; one line per failure);
- `documents`: the document forms (metadata/spec, flat, `kind: List`, annotations) and files (`load_path`).

Service addresses are `shadow_addon.addresses` (no YAML there: the sender imports it); re-exported here.
"""

from __future__ import annotations

from ..addresses import Address, override_matches, parse_service_override, service_address
from ..httpsyntax import breaks_line, is_field_name
from .build import build_mapping, qualify_service
from .documents import check_duplicates, load_path, mapping_files, parse_text
from .fields import (
    ANNOTATION,
    CORE_KEYS,
    DEFAULT_TIMEOUT_MS,
    FLAT_API_VERSIONS,
    HONOURED_FIELDS,
    IGNORED_FIELDS,
    MAPPING_API_VERSIONS,
    MAX_TIMEOUT_MS,
    NOT_HONOURED_NOTE,
    not_honoured,
)
from .model import HeaderAdd, LoadError, LoadResult, Mapping, MappingError, Redirect
from .yamlreader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

__all__ = [
    "ANNOTATION",
    "CORE_KEYS",
    "DEFAULT_TIMEOUT_MS",
    "FLAT_API_VERSIONS",
    "HONOURED_FIELDS",
    "IGNORED_FIELDS",
    "MAPPING_API_VERSIONS",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_TIMEOUT_MS",
    "NOT_HONOURED_NOTE",
    "Address",
    "HeaderAdd",
    "LoadError",
    "LoadResult",
    "Mapping",
    "MappingError",
    "Redirect",
    "breaks_line",
    "build_mapping",
    "check_duplicates",
    "is_field_name",
    "load_path",
    "mapping_files",
    "not_honoured",
    "override_matches",
    "parse_service_override",
    "parse_text",
    "qualify_service",
    "service_address",
]
