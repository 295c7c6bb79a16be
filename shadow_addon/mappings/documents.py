"""Mapping files and their documents: every form Emissary reads (metadata/spec, the flat annotation style,
`kind: List`, `getambassador.io/config` annotations on a Service or Ingress), each problem one line naming the file,
the document, the Mapping and the field. `parse_text` takes text; `load_path` is the only function that reads files.
"""

from __future__ import annotations

import os
from typing import Any

from ..words import clean as _clean
from ..words import show as _show
from ..words import type_name as _type_name
from .build import build_mapping
from .fields import (
    ANNOTATED_KINDS,
    ANNOTATION,
    FLAT_API_VERSIONS,
    FLAT_META_KEYS,
    LIST_KINDS,
    MAPPING_API_VERSIONS,
    not_honoured,
)
from .model import FieldError, LoadError, LoadResult, Mapping, MappingError
from .yamlreader import MAX_FILE_BYTES, iter_documents


def _where(path: str, doc: int, item: int | None, name: str | None = None) -> str:
    loc = f"{path} doc {doc}" + (f" item {item}" if item is not None else "")
    return f"{loc} (Mapping {name})" if name else loc


def _one_document(
    obj: Any, path: str, doc: int, item: int | None, result: LoadResult, annotation: str | None = None
) -> None:
    """One YAML document; `annotation`: where it was read from when it comes from a getambassador.io/config
    annotation (the location of its messages)."""
    where = annotation or _where(path, doc, item)
    if obj is None:
        return  # an empty document (e.g. a trailing `---`)
    if not isinstance(obj, dict):
        result.errors.append(LoadError.at(where, f"document must be a mapping, got {_type_name(obj)}", path, doc))
        return
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        # Checked first: kind and apiVersion go through set lookups, which a list or a mapping would break.
        shown = "" if kind is None else f", got {_type_name(kind)} {_show(kind)}"
        result.errors.append(
            LoadError.at(where, f"kind is required (e.g. kind: Mapping){shown}", path, doc, field="kind")
        )
        return
    if kind in LIST_KINDS and annotation is not None:
        result.errors.append(LoadError.at(where, f"a {kind} inside an annotation is not supported", path, doc))
        return
    if kind in LIST_KINDS:
        items = obj.get("items")
        if not isinstance(items, list):
            result.errors.append(
                LoadError.at(
                    where, f"{kind} must have a list of items, got {_type_name(items)}", path, doc, field="items"
                )
            )
            return
        if item is not None:
            result.errors.append(LoadError.at(where, f"a {kind} inside a List is not supported", path, doc))
            return
        for i, sub in enumerate(items, 1):
            _one_document(sub, path, doc, i, result)
        return
    if kind != "Mapping":
        if annotation is None and _annotated(obj, kind, path, doc, item, result):
            return
        result.notices.append(f"{where}: skipped kind {_clean(kind[:80])} (only Mappings are used)")
        return
    if not isinstance(api, str) or api not in MAPPING_API_VERSIONS:
        result.errors.append(
            LoadError.at(
                where,
                f"apiVersion must be one of getambassador.io/v3alpha1, v2, v1 or ambassador/v0, v1; got {_show(api)}",
                path,
                doc,
                field="apiVersion",
            )
        )
        return
    if api in FLAT_API_VERSIONS or ("spec" not in obj and "metadata" not in obj and "name" in obj):
        # The annotation style, which Emissary's KAT also writes with getambassador.io/ apiVersions.
        name, namespace = obj.get("name"), obj.get("namespace", "default")
        spec: Any = {k: v for k, v in obj.items() if k not in FLAT_META_KEYS}
        name_field = "name"
    else:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            result.errors.append(
                LoadError.at(
                    where,
                    f"metadata must be a mapping with a name, got {_type_name(meta)}",
                    path,
                    doc,
                    field="metadata",
                )
            )
            return
        name, namespace = meta.get("name"), meta.get("namespace", "default")
        spec = obj.get("spec")
        name_field = "metadata.name"
    if not isinstance(name, str) or not name:
        result.errors.append(
            LoadError.at(where, f"{name_field} is required and must be a string", path, doc, None, name_field)
        )
        return
    if not name.isprintable():
        # The name is in every message, log line and metric label of this Mapping: no line breaks or controls.
        result.errors.append(
            LoadError.at(where, f"{name_field} must be printable text, got {_show(name)}", path, doc, None, name_field)
        )
        return
    if not isinstance(namespace, str) or not namespace or not namespace.isprintable():
        result.errors.append(
            LoadError.at(
                f"{where} (Mapping {name})",
                "namespace must be a non-empty printable string",
                path,
                doc,
                name,
                "metadata.namespace" if name_field == "metadata.name" else "namespace",
            )
        )
        return
    if not isinstance(spec, dict):
        result.errors.append(
            LoadError.at(
                f"{where} (Mapping {name}.{namespace})",
                f"spec must be a mapping, got {_type_name(spec)}",
                path,
                doc,
                f"{name}.{namespace}",
                "spec",
            )
        )
        return
    try:
        m = build_mapping(name, namespace, where, spec, api, path, doc)
    except ValueError as e:
        key, fld = f"{name}.{namespace}", e.field if isinstance(e, FieldError) else None
        result.errors.append(LoadError.at(f"{where} (Mapping {key})", f"{e}", path, doc, key, fld))
        return
    if m.ignored_fields:
        result.notices.append(f"{where} (Mapping {m.key}): {not_honoured(m.ignored_fields)}")
    result.notices += [f"{where} (Mapping {m.key}): {w}" for w in m.warnings]
    result.mappings.append(m)


def _annotated(obj: dict[Any, Any], kind: str, path: str, doc: int, item: int | None, result: LoadResult) -> bool:
    """Mappings in a `getambassador.io/config` annotation (Emissary's original form): read from a Service or an
    Ingress, with the object's namespace as their default (pkg/snapshot/v1/annotations.go
    ParseAnnotationResources). Returns whether the object carries the annotation."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict) or ANNOTATION not in annotations:
        return False
    assert isinstance(meta, dict)
    name, namespace = meta.get("name"), meta.get("namespace")
    owner = f"{_clean(kind[:80])} {_show(name) if not isinstance(name, str) else _clean(name[:200])}"
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    where = f"{_where(path, doc, item)}, {owner}.{_clean(namespace[:200])}, annotation {ANNOTATION}"
    if kind not in ANNOTATED_KINDS:
        # PopulateAnnotations reads Services and Ingresses only (annotations_test.go: a Host's is not parsed).
        result.notices.append(f"{where}: skipped: Emissary reads this annotation only on a Service or an Ingress")
        return True
    text = annotations[ANNOTATION]
    if not isinstance(text, str):
        result.errors.append(
            LoadError.at(
                where,
                f"must be YAML text, got {_type_name(text)}",
                path,
                doc,
                None,
                f"metadata.annotations.{ANNOTATION}",
            )
        )
        return True
    try:
        docs = iter_documents(text, where, result)
    except MappingError as e:
        # This object's Mappings are left out; the file's others load.
        result.errors.append(LoadError(str(e), path, doc, field=f"metadata.annotations.{ANNOTATION}"))
        return True
    for k, sub in docs:
        if sub is None:
            continue
        if isinstance(sub, dict):
            sub = _unfold(sub, namespace)
        _one_document(sub, path, doc, item, result, annotation=f"{where} doc {k}")
    return True


def _unfold(obj: dict[Any, Any], namespace: str) -> dict[Any, Any]:
    """An annotation's resource in the metadata/spec form (annotations.go ParseAnnotationResources): name,
    namespace and generation go to metadata, everything else to spec; the namespace defaults to the owner's;
    `ambassador/` apiVersions become `getambassador.io/`."""
    meta = dict(obj["metadata"]) if isinstance(obj.get("metadata"), dict) else {}
    spec = dict(obj["spec"]) if isinstance(obj.get("spec"), dict) else {}
    out: dict[Any, Any] = {}
    for k, v in obj.items():
        if k in ("apiVersion", "kind", "metadata", "spec", "status"):
            continue
        if k in ("name", "namespace", "generation"):
            meta[k] = v
        elif k == "metadata_labels":
            meta["labels"] = v
        else:
            spec[k] = v
    if not isinstance(meta.get("namespace"), str) or not meta.get("namespace"):
        meta["namespace"] = namespace
    api = obj.get("apiVersion")
    if isinstance(api, str) and api.startswith("ambassador/"):
        api = "getambassador.io/" + api.removeprefix("ambassador/")
    out.update(apiVersion=api, kind=obj.get("kind"), metadata=meta, spec=spec)
    return out


def parse_text(text: str, path: str, result: LoadResult | None = None) -> LoadResult:
    """Parse one file's text into `result` (a new one if None). Never raises for bad input.

    Mappings of valid documents are kept beside the errors of others (for diagnostics); a caller that serves
    traffic must use `mappings` only when `errors` is empty, as `load_path` ensures.
    """
    result = result if result is not None else LoadResult()
    path = _clean(path)
    if len(text) > MAX_FILE_BYTES:
        _file_error(result, f"{path}: {_too_large(len(text), 'characters')}", path)
        return result
    result.nodes = 0
    try:
        docs = iter_documents(text, path, result)
    except MappingError as e:
        _file_error(result, str(e), path, e.doc)
        return result
    for doc, obj in docs:
        _one_document(obj, path, doc, None, result)
    return result


def _file_error(result: LoadResult, message: str, file: str, doc: int | None = None) -> None:
    error = LoadError(message, file, doc)
    result.errors.append(error)
    result.file_errors.append(error)


def _too_large(size: int, unit: str) -> str:
    return (
        f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB ({size} {unit}); split the Mappings into "
        "several files in a directory"
    )


def check_duplicates(result: LoadResult) -> None:
    """A second Mapping with the same name.namespace is reported and dropped; the first one stays."""
    seen: dict[str, Mapping] = {}
    kept: list[Mapping] = []
    for m in result.mappings:
        first = seen.setdefault(m.key, m)
        if first is not m:
            msg = f"duplicate name, already defined at {first.source}"
            result.errors.append(LoadError.at(f"{m.source} (Mapping {m.key})", msg, m.file, m.doc, m.key))
        else:
            kept.append(m)
    result.mappings = kept


def mapping_files(path: str) -> list[str]:
    """A file, or the `*.yaml`/`*.yml` files of a directory (sorted, not recursive).

    As the shell's `*.yaml` does, hidden files are left out: editors and tools that write a temporary copy
    beside the file and rename it into place usually give it a leading dot, and a half-written copy must not load.
    """
    if os.path.isdir(path):
        return [
            os.path.join(path, f)
            for f in sorted(os.listdir(path))
            if f.endswith((".yaml", ".yml")) and not f.startswith(".") and os.path.isfile(os.path.join(path, f))
        ]
    return [path]


def load_path(path: str) -> LoadResult:
    """Read and validate every Mapping under `path`. Errors are collected, never raised.

    As in Emissary, an invalid Mapping is left out and the others load; `blocking()` says whether the caller
    may serve them (a file that cannot be read as YAML blocks everything, any error does under strict). Each file
    is read once, as it is at that moment; a file caught half-written either fails (and the caller keeps its
    previous configuration) or, cut at a document boundary, reads as fewer Mappings. Writers should replace files
    atomically (write a temporary file, then rename it over the old one).
    """
    result = LoadResult()
    try:
        files = mapping_files(path) if os.path.exists(path) else None
    except OSError as e:  # e.g. a directory that cannot be listed
        _file_error(result, f"{_clean(path)}: cannot read: {e.strerror or e}", path)
        return result
    if files is None:
        _file_error(result, f"{_clean(path)}: no such file or directory", path)
        return result
    for f in files:
        result.files.append(f)
        try:
            with open(f, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)  # never more: a huge file is refused without reading it all
            if len(raw) > MAX_FILE_BYTES:
                size = max(os.path.getsize(f), len(raw))  # a device or pipe reports no size
                _file_error(result, f"{_clean(f)}: {_too_large(size, 'bytes')}", f)
                continue
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _file_error(result, f"{_clean(f)}: not UTF-8 text (byte {e.start})", f)
            continue
        except OSError as e:
            _file_error(result, f"{_clean(f)}: cannot read: {e.strerror or e}", f)
            continue
        parse_text(text, f, result)
    check_duplicates(result)
    return result
