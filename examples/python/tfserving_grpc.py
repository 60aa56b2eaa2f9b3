#!/usr/bin/env python3
"""Classify images over fovea's TensorFlow Serving gRPC API with the official
tensorflow-serving-api stubs.

What it calls, in order:

  ModelService/GetModelStatus            the model's versions and their state
  PredictionService/GetModelMetadata     the serving_default signature (input name, shape)
  PredictionService/Predict              the encoded files as one DT_STRING tensor [n]
                                         -> the logits [n, classes] (softmaxed here)
  PredictionService/Classify             the files as tf.Example features "image"
                                         -> the top classes with softmax scores

Predict answers bare tensors, without class names: pass --labels (the
model's labels.txt, one per line) to name its rows, else they are shown by
index (#3). Classify names them itself; a server without it (UNIMPLEMENTED)
is reported and skipped.

Examples:

  python tfserving_grpc.py cat.jpg dog.jpg
  python tfserving_grpc.py --grpc 127.0.0.1:8500 --version 5 \\
      --labels ../../models/resnet18-cifar10/labels.txt cat.jpg

Exits 1 with the server's gRPC status and message when the server refuses a
request, 2 on bad arguments.
"""

import argparse
import os
import sys
from pathlib import Path

import grpc
import numpy as np
from tensorflow import make_ndarray, make_tensor_proto
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

TIMEOUT_S = 60


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def set_spec(spec, args) -> None:
    """Fills a ModelSpec: the name, and the version when one was asked for."""
    spec.name = args.model
    if args.version is not None:
        spec.version.value = args.version


def report(path, method, ranked, top_k, model, version):
    """ranked: [(label, score)] best first."""
    label, score = ranked[0]
    print(f"{path}: {label} ({score:.4f})  [{method}]  {model} v{version}")
    for rank, (label, score) in enumerate(ranked[:top_k], 1):
        print(f"    {rank}. {label:<16} {score:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="image files")
    parser.add_argument("--grpc", default=os.environ.get("FOVEA_GRPC", "127.0.0.1:8500"),
                        help="fovea's gRPC address, host:port (default: $FOVEA_GRPC or 127.0.0.1:8500)")
    parser.add_argument("--model", default="resnet18-cifar10", help="model name (default resnet18-cifar10)")
    parser.add_argument("--version", type=int, help="model version (default: the highest served)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    parser.add_argument("--labels", type=Path, help="labels file naming Predict's output rows")
    args = parser.parse_args()
    for path in args.files:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    labels = None
    if args.labels:
        labels = [line.strip() for line in args.labels.read_text().splitlines() if line.strip()]

    channel = grpc.insecure_channel(args.grpc)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        status_request = get_model_status_pb2.GetModelStatusRequest()
        set_spec(status_request.model_spec, args)
        status = models.GetModelStatus(status_request, timeout=TIMEOUT_S)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        versions = [f"{s.version} {state_name(s.state)}" for s in status.model_version_status]

        meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        set_spec(meta_request.model_spec, args)
        meta = predictions.GetModelMetadata(meta_request, timeout=TIMEOUT_S)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(signatures)
        signature = signatures.signature_def["serving_default"]
        (input_name, input_info), = signature.inputs.items()
        (output_name, _), = signature.outputs.items()
        shape = [d.size for d in input_info.tensor_shape.dim]
        print(f"model {args.model}: versions {versions}, serving v{meta.model_spec.version.value}, "
              f"input {input_name} {shape} -> output {output_name}")

        images = [path.read_bytes() for path in args.files]

        # Predict: the encoded images as one DT_STRING tensor of shape [n].
        request = predict_pb2.PredictRequest()
        set_spec(request.model_spec, args)
        request.inputs[input_name].CopyFrom(make_tensor_proto(images, shape=[len(images)]))
        response = predictions.Predict(request, timeout=TIMEOUT_S)
        version = response.model_spec.version.value  # the version that ran
        for path, logits in zip(args.files, make_ndarray(response.outputs[output_name])):
            probs = softmax(logits.astype(np.float64))
            names = labels or [f"#{i}" for i in range(len(probs))]
            ranked = [(names[i], probs[i]) for i in np.argsort(-probs, kind="stable")]
            report(path, "predict", ranked, args.top_k, args.model, version)

        # Classify: one tf.Example per image, the bytes in a feature named "image".
        request = classification_pb2.ClassificationRequest()
        set_spec(request.model_spec, args)
        for image in images:
            feature = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[image]))
            request.input.example_list.examples.append(
                example_pb2.Example(features=feature_pb2.Features(feature={"image": feature})))
        try:
            response = predictions.Classify(request, timeout=TIMEOUT_S)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            print(f"note: Classify not supported here: {e.details()}", file=sys.stderr)
        else:
            for path, result in zip(args.files, response.result.classifications):
                ranked = sorted(((c.label, c.score) for c in result.classes), key=lambda c: -c[1])
                report(path, "classify", ranked, args.top_k, args.model, response.model_spec.version.value)
    except grpc.RpcError as e:
        # gRPC errors: a status code (INVALID_ARGUMENT, NOT_FOUND, ...) and a message.
        print(f"error: server answered {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
