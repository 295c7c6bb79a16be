"""The bounded YAML reader: the documents of one file's text, read by libyaml when present (the pure-Python
reader's message when it fails), with limits on size, nodes and nesting, duplicate keys refused, and every failure
one line with its position.

Anchors and aliases are allowed (Kubernetes YAML has them) and never expanded, and messages show values through
`words.show`, which stops after a few elements, so an alias "billion laughs" costs no more than its text.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from ..words import MAX_INT_BITS
from ..words import clean as _clean
from ..words import show as _show
from .model import LoadResult, MappingError

# Reading limits. The pure-Python YAML reader costs tens of microseconds per node: these keep a mistaken path (a
# log, a dump) from taking minutes.
MAX_FILE_BYTES = 4 * 1024 * 1024  # ~20,000 Mappings of ordinary size
MAX_NODES = 200_000  # per file: ~9,000 Mappings, a few seconds of reading at most
MAX_DEPTH = 64  # a Mapping nests about 6 levels (List > items > Mapping > spec > headers > value)


class _Limit(yaml.MarkedYAMLError):
    """A reading limit was reached (not a syntax error): reported as "YAML <problem> at line L column C"."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds, and with every failure turned into a YAMLError carrying a position.

    PyYAML's constructors raise ValueError, IndexError, KeyError... on some hostile scalars (`!!int ''`,
    `2001-02-30`, a 5000-digit integer); here each becomes a ConstructorError at the scalar's line and column.
    """

    def __init__(self, text: str, nodes: int = 0) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = nodes  # already read from the same file (an annotation's YAML counts with its file's)

    def compose_node(self, parent: Any, index: Any) -> Any:
        # The composer recurses once per nesting level: bound it here, where the position is known, rather
        # than by RecursionError, whose depth depends on the caller's stack.
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Limit(None, None, f"has more than {MAX_NODES} nodes in one file", self.peek_event().start_mark)
        if self._depth >= MAX_DEPTH:
            raise _Limit(None, None, f"nests deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        # A repeated key silently wins in PyYAML; Kubernetes refuses it ("mapping key already defined"), and a
        # second `shadow:` or `weight:` further down a spec is exactly the mistake that must not pass unseen.
        # Checked on the keys as written (at compose time): merging (`<<`) adds keys later, and overriding merged
        # keys is what merging is for.
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            k = (key_node.tag, key_node.value)
            if k in seen:
                raise ConstructorError(None, None, f"duplicate key {_show(key_node.value)}", key_node.start_mark)
            seen.add(k)
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # noqa: BLE001 - third-party constructors fail in many ways; each is reported
            kind = node.tag.rsplit(":", 1)[-1] if isinstance(node.tag, str) else "value"
            value = f" {_show(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            reason = _clean(str(e).split(";")[0])[:120]
            raise ConstructorError(None, None, f"invalid {kind}{value}: {reason}", node.start_mark) from None

    def construct_yaml_int(self, node: Any) -> int:
        raw = node.value if isinstance(node.value, str) else ""
        if len(raw) > 100:  # checked before converting: Python refuses decimals past 4300 digits, in its own words
            raise ConstructorError(None, None, f"integer too large: {_show(raw)}", node.start_mark)
        value = super().construct_yaml_int(node)
        if value.bit_length() > MAX_INT_BITS:  # `1:1:1:...` (base 60) grows fast from short text
            raise ConstructorError(None, None, f"integer too large: {_show(raw)}", node.start_mark)
        return value

    def construct_yaml_str(self, node: Any) -> str:
        value = super().construct_yaml_str(node)
        # A "\udcff" escape yields a lone surrogate: not a character, and it cannot be logged or sent as UTF-8.
        if isinstance(value, str) and not value.isascii() and _SURROGATE_RE.search(value):
            raise ConstructorError(None, None, f"not a Unicode character in {_show(value)}", node.start_mark)
        return value


_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.construct_yaml_str)

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    _CLoader: type[_Loader] | None = None
    _CTreeLoader: type[Any] | None = None
else:

    class _CLoader(CParser, _Loader):  # type: ignore[no-redef]
        """libyaml's scanner and parser under the same composer (bounds, duplicate keys) and constructor: only
        the events come from C. PyYAML's reader still checks every character first, as it does for `_Loader`."""

        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node
        get_single_node = yaml.composer.Composer.get_single_node
        compose_document = yaml.composer.Composer.compose_document

        def __init__(self, text: str, nodes: int = 0) -> None:
            if yaml.reader.Reader.NON_PRINTABLE.search(text):
                raise ValueError("a character the reader refuses")
            CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
            self._depth = 0
            self._nodes = nodes  # already read from the same file (an annotation's YAML counts with its file's)

    class _CTreeLoader(CParser, _Loader):  # type: ignore[no-redef]
        """libyaml's own composer too (CParser's, in C: several times faster than the bounded one above), for text
        whose shape bounds its nesting well within the C stack (`_c_composer_is_safe`); the bounds and the
        duplicate-key rule are then checked as `_Builder` builds each document from the composed tree."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._depth = 0
            self._nodes = 0


# The C composer recurses once per nesting level without Python's recursion check. Nesting needs either a bracket
# (flow style) or, in block style, more indentation or an indicator (`- `, `? `, `: `) on the line: so it is at
# most the line's length plus the brackets open. Text within this bound composes in C; deeper nesting could
# still be refused (MAX_DEPTH), but by the bounded composer, which knows where.
_C_COMPOSE_BOUND = 2_000
_BRACKETS_RE = re.compile(r"[\[\]{}]")


def _c_composer_is_safe(text: str) -> bool:
    longest = max(map(len, text.split("\n")), default=0)
    if longest > _C_COMPOSE_BOUND:
        return False
    depth = deepest = 0
    for m in _BRACKETS_RE.finditer(text):  # quoted brackets count too: an over-estimate, never an under-estimate
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return longest + deepest <= _C_COMPOSE_BOUND


_TAG = "tag:yaml.org,2002:"
_STR, _INT, _NULL, _BOOL, _FLOAT, _MAP, _SEQ, _MERGE = (
    _TAG + t for t in ("str", "int", "null", "bool", "float", "map", "seq", "merge")
)


class _Unsupported(Exception):
    """A node the direct builder leaves to PyYAML's constructor (merge keys, other tags, non-scalar keys)."""


class _Builder:
    """A composed document's value, built directly for the plain shapes Mapping files have (str, int, bool, null,
    float scalars; maps with scalar keys; sequences), with the bounded composer's checks on the way (nodes, an alias
    counted where it stands; nesting; duplicate keys), in document order so an anchored node is checked where it is
    defined. Values are PyYAML's (its scalar constructors, anchors shared as it shares
    them); raises _Unsupported for anything else, ValueError where the bounded composer would refuse.
    (A class, not a recursive closure: a closure that calls itself is a reference cycle, which would keep what it
    built until a collection.)"""

    __slots__ = ("loader", "built", "count")

    def __init__(self, loader: Any, nodes: int) -> None:
        self.loader = loader
        self.built: dict[int, Any] = {}
        self.count = nodes

    def document(self, root: Any) -> Any:
        value = self.build(root, 1)
        if self.count > MAX_NODES:
            raise ValueError("over a reading limit")
        return value

    def build(self, node: Any, depth: int) -> Any:
        self.count += 1  # every occurrence, an alias too, as the bounded composer counts events
        if depth > MAX_DEPTH:
            raise ValueError("over a reading limit")
        built = self.built
        if (done := built.get(id(node), built)) is not built:  # an alias: the anchored value itself
            return done
        cls, tag = node.__class__, node.tag
        if cls is yaml.ScalarNode:
            if tag == _STR:
                value = node.value
                if not value.isascii() and _SURROGATE_RE.search(value):
                    raise ValueError("not a Unicode character")
            elif tag == _INT:
                value = self.loader.construct_yaml_int(node)
            elif tag == _NULL:
                value = None
            elif tag == _BOOL:
                value = self.loader.construct_yaml_bool(node)
            elif tag == _FLOAT:
                value = self.loader.construct_yaml_float(node)
            else:
                raise _Unsupported(tag)
            built[id(node)] = value
            return value
        if cls is yaml.SequenceNode and tag == _SEQ:
            items: list[Any] = []
            built[id(node)] = items  # before its items: an alias among them is this list, as PyYAML builds it
            for item in node.value:
                items.append(self.build(item, depth + 1))
            return items
        if cls is yaml.MappingNode and tag == _MAP:
            out: dict[Any, Any] = {}
            built[id(node)] = out
            keys: set[tuple[str, str]] = set()
            for key_node, value_node in node.value:
                if key_node.__class__ is not yaml.ScalarNode or key_node.tag == _MERGE:
                    raise _Unsupported("key")
                k = (key_node.tag, key_node.value)
                if k in keys:
                    raise ValueError("duplicate key")
                keys.add(k)
                key = self.build(key_node, depth + 1)
                out[key] = self.build(value_node, depth + 1)
            return out
        raise _Unsupported(tag)


def _documents_c_tree(text: str, result: LoadResult) -> list[tuple[int, Any]] | None:
    """The documents, composed by libyaml's composer and built by `_Builder`; None where the text's shape does not
    bound its nesting, or a document holds what the builder leaves to PyYAML (merge keys, other tags): the bounded
    composer then reads the text instead."""
    if _CTreeLoader is None or not _c_composer_is_safe(text):
        return None
    if yaml.reader.Reader.NON_PRINTABLE.search(text):
        raise ValueError("a character the reader refuses")
    loader = _CTreeLoader(text)
    nodes = result.nodes
    docs: list[tuple[int, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            builder = _Builder(loader, nodes)
            try:
                value, nodes = builder.document(node), builder.count
            except _Unsupported:
                return None
            docs.append((len(docs) + 1, value))
    finally:
        loader.dispose()
    result.nodes = nodes
    return docs


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position)
    return line + 1, position - (text.rfind("\n", 0, position) + 1) + 1


def iter_documents(text: str, path: str, result: LoadResult) -> list[tuple[int, Any]]:
    """The documents of one file (or annotation), numbered from 1; raise MappingError (one line) for anything
    unreadable. `result.nodes` carries the YAML nodes read so far from the same file.

    libyaml reads them when PyYAML has it (four times faster: 10,000 Mappings take seconds in pure Python); any
    failure there is read again by the pure-Python loader, whose message is the one reported."""
    if _CLoader is not None:
        try:
            fast = _documents_c_tree(text, result)
            if fast is not None:
                return fast
        except Exception:  # noqa: BLE001, S110 - read again below: the bounded composer says where and what
            pass
        try:
            loader = _CLoader(text, result.nodes)
            docs = _documents(loader)
            result.nodes = loader._nodes
            return docs
        except Exception:  # noqa: BLE001, S110 - the reference reader below says what is wrong, in its words
            pass
    return _documents_reported(text, path, result)


def _documents(loader: Any) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    try:
        while loader.check_data():
            docs.append((len(docs) + 1, loader.get_data()))
    finally:
        loader.dispose()
    return docs


def _documents_reported(text: str, path: str, result: LoadResult) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    n = cur = 0
    loader: _Loader | None = None
    try:
        loader = _Loader(text, result.nodes)  # the reader checks every character here, before the first document
        while True:
            cur = n + 1
            if not loader.check_data():
                break
            data = loader.get_data()
            n = cur
            docs.append((n, data))
    except yaml.reader.ReaderError as e:
        # Not tied to a document: the reader refuses the character wherever it is.
        line, col = _line_col(text, e.position)
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise MappingError(
            f"{path}: YAML syntax error at line {line} column {col}: unacceptable character "
            f"#x{char:04x}: {_clean(str(e.reason))}"
        ) from None
    except _Limit as e:
        raise MappingError(f"{path} doc {cur}: YAML {e.problem}{_at(e.problem_mark)}", cur) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MappingError(f"{path} doc {cur}: YAML syntax error{_at(mark)}: {_clean(problem)}", cur) from None
    except RecursionError:  # not expected (nesting is bounded above); kept so a deep stack never escapes
        raise MappingError(f"{path} doc {cur}: YAML nesting too deep", cur) from None
    finally:
        if loader is not None:
            result.nodes = loader._nodes
            loader.dispose()
    return docs
