"""Field names for gRPC messages, from a FileDescriptorSet (`protoc --include_imports --descriptor_set_out=FILE`,
`buf build -o FILE`): the answer of `/pkg.Service/Method` is its method's output type, whose fields are named.

The set is itself protobuf: read with the same wire reader as the messages, directed by descriptor.proto's field
numbers (FileDescriptorSet.file 1; FileDescriptorProto package 2, message_type 4, service 6; DescriptorProto name 1,
field 2, nested_type 3; FieldDescriptorProto name 1, number 3, type 5, type_name 6; ServiceDescriptorProto name 1,
method 2; MethodDescriptorProto name 1, output_type 3).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any

from .protowire import WireError, message, varint

MAX_FILE = 16 * 1024 * 1024
TYPE_MESSAGE = 11


def _fields(b: bytes) -> list[tuple[int, int | bytes]]:
    """The raw fields of a message: (number, int or bytes)."""
    out: list[tuple[int, int | bytes]] = []
    i, n = 0, len(b)
    while i < n:
        key, i = varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(b, i)
            out.append((number, v))
        elif wire == 2:
            length, i = varint(b, i)
            if i + length > n:
                raise WireError("length-delimited field cut short")
            out.append((number, b[i : i + length]))
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise WireError(f"wire type {wire}")
    return out


def _text(v: int | bytes) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else ""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    message: str | None  # the full type name (".pkg.Msg") of a message field


@dataclass(slots=True)
class Descriptors:
    messages: dict[str, dict[int, Field]] = field(default_factory=dict)  # ".pkg.Msg" -> fields by number
    outputs: dict[str, str] = field(default_factory=dict)  # "/pkg.Service/Method" -> ".pkg.Msg"

    def namer(self, path: str) -> Any:
        """A function naming the decoded messages of `path`'s answer, or None when the method is unknown."""
        out = self.outputs.get(path.split("?", 1)[0])
        if out is None or out not in self.messages:
            return None
        return lambda messages: [self._name(m, out) if isinstance(m, dict) else m for m in messages]

    def _name(self, m: dict[str, Any], type_name: str, depth: int = 0) -> dict[str, Any]:
        fields = self.messages.get(type_name, {})
        named: dict[str, Any] = {}
        for k, v in m.items():
            f = fields.get(int(k)) if k.isdigit() else None
            if f is None:
                named[k] = v
                continue
            if f.message is not None and depth < 32:
                if isinstance(v, list):
                    v = [self._sub(x, f.message, depth) for x in v]
                else:
                    v = self._sub(v, f.message, depth)
            named[f.name] = v
        return named

    def _sub(self, v: Any, type_name: str, depth: int) -> Any:
        if isinstance(v, str):  # read as text without the schema: the schema says it is a message
            raw = base64.b64decode(v[7:]) if v.startswith("base64:") else v.encode("utf-8")
            try:
                v = message(raw)
            except WireError:
                return v
        return self._name(v, type_name, depth + 1) if isinstance(v, dict) else v


def _message(d: Descriptors, b: bytes, scope: str) -> None:
    raw = _fields(b)
    name = next((_text(v) for n, v in raw if n == 1), "")
    full = f"{scope}.{name}"
    fields: dict[int, Field] = {}
    for n, v in raw:
        if n == 2 and isinstance(v, bytes):
            f = dict(_fields(v))
            number, ftype = f.get(3), f.get(5)
            if isinstance(number, int):
                type_name = _text(f.get(6, b"")) if ftype == TYPE_MESSAGE else None
                fields[number] = Field(_text(f.get(1, b"")) or str(number), type_name or None)
        elif n == 3 and isinstance(v, bytes):
            _message(d, v, full)
    d.messages[full] = fields


def parse(data: bytes) -> Descriptors:
    """A FileDescriptorSet's messages and methods. Raises ValueError when it is not one."""
    d = Descriptors()
    try:
        for n, fd in _fields(data):
            if n != 1 or not isinstance(fd, bytes):
                continue
            raw = _fields(fd)
            package = next((_text(v) for k, v in raw if k == 2), "")
            scope = f".{package}" if package else ""
            for k, v in raw:
                if k == 4 and isinstance(v, bytes):
                    _message(d, v, scope)
            for k, v in raw:
                if k == 6 and isinstance(v, bytes):
                    svc = _fields(v)
                    sname = next((_text(x) for j, x in svc if j == 1), "")
                    for j, mv in svc:
                        if j == 2 and isinstance(mv, bytes):
                            m = dict(_fields(mv))
                            path = f"/{package + '.' if package else ''}{sname}/{_text(m.get(1, b''))}"
                            d.outputs[path] = _text(m.get(3, b""))
    except (WireError, UnicodeDecodeError) as e:
        raise ValueError(f"not a FileDescriptorSet: {e}") from None
    if not d.outputs and not d.messages:
        raise ValueError("not a FileDescriptorSet: no message or service in it")
    return d


def load(path: str) -> Descriptors:
    """Read a FileDescriptorSet file. Raises ValueError with a one-line reason."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE:
            raise ValueError(f"descriptor set {path}: {size} bytes, over the {MAX_FILE} read")
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise ValueError(f"descriptor set {path}: {e.strerror}") from None
    try:
        return parse(data)
    except ValueError as e:
        raise ValueError(f"descriptor set {path}: {e}") from None
