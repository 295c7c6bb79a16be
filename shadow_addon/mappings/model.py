"""The Mapping record and what reading produces: `Mapping`, its parts, `LoadResult`, `LoadError`, `MappingError`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .fields import DEFAULT_TIMEOUT_MS


class LoadError(str):
    """One load error: its one-line text (str() and equality are that text, as logged and shown), and where it is:
    the file, the document (None: the file as a whole), the Mapping (`name.namespace`, or the name when the
    namespace is the mistake; None when the error is not one Mapping's) and the field (`weight`,
    `add_request_headers.x-a`, `metadata.name`; None when no one field is wrong), so `/diag` and `explain` can
    show it with its Mapping."""

    file: str
    doc: int | None
    mapping: str | None
    field: str | None
    message: str  # the text after the location

    def __new__(
        cls,
        text: str,
        file: str = "",
        doc: int | None = None,
        mapping: str | None = None,
        field: str | None = None,
        message: str | None = None,
    ) -> LoadError:
        self = super().__new__(cls, text)
        self.file, self.doc, self.mapping, self.field = file, doc, mapping, field
        self.message = message if message is not None else text.split(": ", 1)[1] if ": " in text else text
        return self

    @classmethod
    def at(
        cls,
        where: str,
        message: str,
        file: str,
        doc: int | None,
        mapping: str | None = None,
        field: str | None = None,
    ) -> LoadError:
        """`where: message`, `where` being the location as messages spell it (file, doc, item, Mapping)."""
        return cls(f"{where}: {message}", file, doc, mapping, field, message)


class FieldError(ValueError):
    """A field's value refused: the message (one line, naming the field) and the field (`weight`,
    `headers.x-a`), which the load error keeps."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class MappingError(ValueError):
    """One configuration error, already formatted as the single line a user reads; `doc`: the document it is in,
    when one is."""

    def __init__(self, message: str, doc: int | None = None) -> None:
        super().__init__(message)
        self.doc = doc


@dataclass(frozen=True, slots=True)
class HeaderAdd:
    name: str
    value: str
    append: bool = True  # Emissary: add_request_headers `append` defaults to True (v3route.py)


@dataclass(frozen=True, slots=True)
class Redirect:
    """host_redirect: answer a redirect to `service` instead of proxying (v3route.py V3Route host_redirect)."""

    host: str
    path: str | None = None  # path_redirect
    prefix: str | None = None  # prefix_redirect
    regex: tuple[str, str] | None = None  # regex_redirect (pattern, substitution)
    code: int = 301


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    namespace: str
    source: str  # "file doc N" (plus "item K" inside a List): where it came from, for messages
    prefix: str
    service: str
    prefix_regex: bool = False
    prefix_exact: bool = False
    rewrite: str | None = "/"  # Emissary default: the prefix is replaced by "/"; "" means no rewrite
    regex_rewrite: tuple[str, str] | None = None  # (pattern, substitution)
    hostname: str | None = None  # v3 DNS glob on :authority
    host: str | None = None
    host_regex: bool = False
    method: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()  # value None: header must be present
    regex_headers: tuple[tuple[str, str], ...] = ()
    query_parameters: tuple[tuple[str, str | None], ...] = ()
    regex_query_parameters: tuple[tuple[str, str], ...] = ()
    precedence: int = 0
    weight: int | None = None
    shadow: bool = False
    timeout_ms: int | None = None
    add_request_headers: tuple[HeaderAdd, ...] = ()
    remove_request_headers: tuple[str, ...] = ()
    add_response_headers: tuple[HeaderAdd, ...] = ()
    remove_response_headers: tuple[str, ...] = ()
    host_rewrite: str | None = None
    case_sensitive: bool = True  # Emissary default (v3route.py)
    ignored_fields: tuple[str, ...] = ()
    method_regex: bool = False
    ambassador_id: tuple[str, ...] = ("default",)  # config.py good_ambassador_id: default "default"
    redirect: Redirect | None = None
    allow_upgrade: tuple[str, ...] = ()  # upgrade types Envoy accepts on this route (lower case)
    core: tuple[tuple[str, str, str], ...] = ()  # CORE_KEYS set here: (key, canonical JSON, Python text)
    explicit: frozenset[str] = frozenset()  # the fields as written, for group-wide flattening
    warnings: tuple[str, ...] = ()  # what Emissary posts but still serves (e.g. a service with a path)
    # HTTP/2 to the service (v3cluster.py V3Cluster: http2_protocol_options when the cluster is grpc); a shadow's
    # own field decides for its copies (irhttpmappinggroup.py add_cluster_for_mapping(shadow, marker='shadow')).
    grpc: bool = False
    # The file and document it came from (`source` spells them for messages); not part of what the Mapping is:
    # a Mapping moved to another document is the same Mapping.
    file: str = field(default="", compare=False)
    doc: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Emissary's resource key, `name.namespace`: the order in which it adds Mappings to groups."""
        return f"{self.name}.{self.namespace}"

    @property
    def effective_timeout_ms(self) -> int:
        return self.timeout_ms if self.timeout_ms is not None else DEFAULT_TIMEOUT_MS


@dataclass(slots=True)
class LoadResult:
    mappings: list[Mapping] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # skipped documents, ignored fields
    errors: list[LoadError] = field(default_factory=list)  # every error (file-level and per-Mapping)
    files: list[str] = field(default_factory=list)
    file_errors: list[LoadError] = field(default_factory=list)  # a file that cannot be read as YAML: nothing loads
    nodes: int = 0  # YAML nodes read from the file being parsed (bounded by MAX_NODES)

    def errors_of(self, key: str) -> list[LoadError]:
        """The errors of one Mapping (`name.namespace`)."""
        return [e for e in self.errors if e.mapping == key]

    def blocking(self, strict: bool = False) -> list[str]:
        """The errors that stop loading: a file-level error always, any error with `mappings_strict`.

        As in Emissary, an invalid Mapping invalidates itself only (config.py: a resource with errors is skipped).
        """
        return list(self.errors) if strict else list(self.file_errors)
