#!/usr/bin/env python3
"""Checks proto/onnx.proto against the descriptors of the installed onnx
Python package: every message and enum there must exist here with the same
field names, numbers, kinds (repeated or not) and types. Run by hand after
editing the .proto: python3 crates/fovea-onnx/tests/onnx_fields.py"""

import re
import sys
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor
import onnx.onnx_ml_pb2 as official

PROTO = Path(__file__).resolve().parent.parent / "proto" / "onnx.proto"


def parse(text):
    """Message/enum path -> {field name: (number, label, type name)}."""
    text = re.sub(r"//[^\n]*", "", text)
    scopes, out = [], {}
    for token in re.finditer(r"(message|enum|oneof)\s+(\w+)\s*\{|\}|([^;{}]+);", text):
        if token.group(1):
            kind, name = token.group(1), token.group(2)
            scopes.append((kind, name))
            if kind != "oneof":
                out[".".join(n for k, n in scopes if k != "oneof")] = {}
        elif token.group(0) == "}":
            scopes.pop()
        else:
            stmt = " ".join(token.group(3).split())
            if not scopes or stmt.startswith(("reserved", "syntax", "package")):
                continue
            path = ".".join(n for k, n in scopes if k != "oneof")
            m = re.fullmatch(r"(repeated )?(\w[\w.]*) (\w+) = (\d+)", stmt)
            e = re.fullmatch(r"(\w+) = (\d+)", stmt)
            if m:
                out[path][m.group(3)] = (int(m.group(4)), bool(m.group(1)), m.group(2))
            elif e:
                out[path][e.group(1)] = (int(e.group(2)), False, "enum value")
    return out


SCALARS = {
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def is_repeated(field):
    # protobuf 6 replaced `label` with `is_repeated`.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == FieldDescriptor.LABEL_REPEATED


def official_fields(desc, prefix, out):
    path = f"{prefix}{desc.name}"
    fields = {}
    for f in desc.fields:
        if f.type in SCALARS:
            ty = SCALARS[f.type]
        elif f.message_type is not None:
            ty = f.message_type.name
        else:
            ty = f.enum_type.name
        fields[f.name] = (f.number, is_repeated(f), ty)
    out[path] = fields
    for nested in desc.nested_types:
        official_fields(nested, path + ".", out)
    for enum in desc.enum_types:
        out[f"{path}.{enum.name}"] = {v.name: (v.number, False, "enum value") for v in enum.values}


def main():
    ours = parse(PROTO.read_text())
    theirs = {}
    for desc in official.DESCRIPTOR.message_types_by_name.values():
        official_fields(desc, "", theirs)
    for enum in official.DESCRIPTOR.enum_types_by_name.values():
        theirs[enum.name] = {v.name: (v.number, False, "enum value") for v in enum.values}
    problems = []
    for path, fields in sorted(theirs.items()):
        if path not in ours:
            problems.append(f"missing {path}")
            continue
        for name, spec in fields.items():
            mine = ours[path].get(name)
            # Nested type names are written unqualified here and in the descriptor.
            if mine is None or mine[0] != spec[0] or mine[1] != spec[1] or mine[2].split(".")[-1] != spec[2]:
                problems.append(f"{path}.{name}: official {spec}, ours {mine}")
        for name in ours[path].keys() - fields.keys():
            problems.append(f"{path}.{name}: not in the official descriptor")
    for line in problems:
        print(line)
    print(f"onnx {official.DESCRIPTOR.name}: {len(theirs)} messages and enums compared, {len(problems)} differences")
    sys.exit(1 if problems else 0)


main()
