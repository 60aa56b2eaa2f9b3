"""fovea-proto's own .proto files must match the official ones on the wire:
every message field (number, type, repeated-ness), enum value and RPC
signature fovea declares is compared with the descriptors shipped in
tensorflow-serving-api / tensorflow and tritonclient. Needs no server, only
the descriptor set that fovea-proto's build script writes."""

import glob
import os
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

# Importing these registers the official descriptors in the default pool.
import tensorflow.core.protobuf.meta_graph_pb2  # noqa: F401
import tensorflow_serving.apis.model_service_pb2  # noqa: F401
import tensorflow_serving.apis.prediction_service_pb2  # noqa: F401
import tritonclient.grpc.service_pb2  # noqa: F401

from conftest import REPO_ROOT


def _descriptor_set():
    explicit = os.environ.get("FOVEA_PROTO_DESCRIPTOR")
    if explicit:
        return Path(explicit)
    candidates = glob.glob(str(REPO_ROOT / "target" / "*" / "build" / "fovea-proto-*" / "out" / "fovea_descriptor.bin"))
    if not candidates:
        pytest.fail("no fovea_descriptor.bin under target/; run `cargo build -p fovea-proto` first")
    return Path(max(candidates, key=os.path.getmtime))


def _ours():
    fds = descriptor_pb2.FileDescriptorSet.FromString(_descriptor_set().read_bytes())
    return [f for f in fds.file if not f.package.startswith("google.")]


def _compare_messages(official, prefix, messages, problems, counter):
    for m in messages:
        full = f"{prefix}.{m.name}"
        try:
            theirs = official.FindMessageTypeByName(full)
        except KeyError:
            problems.append(f"{full}: no such official message")
            continue
        for f in m.field:
            of = theirs.fields_by_name.get(f.name)
            if of is None:
                problems.append(f"{full}.{f.name}: no such official field")
                continue
            ours_type = f.type_name.lstrip(".") if f.type_name else f.type
            if of.message_type:
                their_type = of.message_type.full_name
            elif of.enum_type:
                their_type = of.enum_type.full_name
            else:
                their_type = of.type
            ours_repeated = f.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            if (f.number, ours_type, ours_repeated) != (of.number, their_type, of.label == of.LABEL_REPEATED):
                problems.append(f"{full}.{f.name}: ours {f.number} {ours_type}, official {of.number} {their_type}")
            counter.append(full)
        _compare_messages(official, full, m.nested_type, problems, counter)
        for e in m.enum_type:
            _compare_enum(official, full, e, problems, counter)


def _compare_enum(official, prefix, enum, problems, counter):
    full = f"{prefix}.{enum.name}"
    theirs = official.FindEnumTypeByName(full)
    for v in enum.value:
        ov = theirs.values_by_name.get(v.name)
        if ov is None or ov.number != v.number:
            problems.append(f"{full}.{v.name} = {v.number}: official {ov.number if ov else 'absent'}")
        counter.append(full)


def test_every_declared_field_enum_value_and_rpc_matches_the_official_descriptors():
    official = descriptor_pool.Default()
    problems, counter = [], []
    files = _ours()
    assert {f.package for f in files} >= {"tensorflow", "tensorflow.serving", "tensorflow.error", "inference"}
    for f in files:
        _compare_messages(official, f.package, f.message_type, problems, counter)
        for e in f.enum_type:
            _compare_enum(official, f.package, e, problems, counter)
        for s in f.service:
            theirs = official.FindServiceByName(f"{f.package}.{s.name}")
            for m in s.method:
                om = theirs.methods_by_name.get(m.name)
                if om is None or (om.input_type.full_name, om.output_type.full_name) != (
                    m.input_type.lstrip("."),
                    m.output_type.lstrip("."),
                ):
                    problems.append(f"rpc {s.name}.{m.name} differs from the official signature")
                counter.append(m.name)
    assert not problems, "\n".join(problems)
    assert len(counter) > 200


def test_the_services_clients_call_are_all_declared():
    declared = {(f.package, s.name, m.name) for f in _ours() for s in f.service for m in s.method}
    needed = {
        ("tensorflow.serving", "PredictionService", "Predict"),
        ("tensorflow.serving", "PredictionService", "Classify"),
        ("tensorflow.serving", "PredictionService", "GetModelMetadata"),
        ("tensorflow.serving", "ModelService", "GetModelStatus"),
        ("inference", "GRPCInferenceService", "ServerLive"),
        ("inference", "GRPCInferenceService", "ServerReady"),
        ("inference", "GRPCInferenceService", "ModelReady"),
        ("inference", "GRPCInferenceService", "ServerMetadata"),
        ("inference", "GRPCInferenceService", "ModelMetadata"),
        ("inference", "GRPCInferenceService", "ModelInfer"),
    }
    assert needed <= declared, needed - declared
