#!/usr/bin/env python3
"""Classify images over KServe V2 / Open Inference Protocol gRPC
(`inference.GRPCInferenceService`) with tritonclient.grpc.

The gRPC twin of kserve_v2_http.py, with the same two ways of feeding the
model for each image:

  bytes  the encoded file as a BYTES input of shape [1]: fovea decodes and
         preprocesses it exactly as for /api/v1/predict
  fp32   the model's own FP32 tensor [1, C, H, W], preprocessed here with
         Pillow and numpy; the shape comes from the model's metadata, mean
         and std from --mean/--std or the model's config.toml
         (--model-config); the defaults are CIFAR-10's

Labels come from the classification extension (`class_count` on the
requested output) when the server metadata lists it: every class as
"logit:index:label", so the printed scores are the softmax of the logits,
the numbers /api/v1/predict returns.

Examples:

  python kserve_v2_grpc.py cat.jpg
  python kserve_v2_grpc.py --grpc 127.0.0.1:8500 --model resnet18-cifar10 --version 5 cat.jpg

Exits 1 with the server's gRPC status and message when the server refuses a
request, 2 on bad arguments.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image, ImageOps
from tritonclient.utils import InferenceServerException

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ---- client-side preprocessing (what the server does for BYTES inputs) ----


def load_preprocess(args, item_shape):
    """The preprocessing recipe: from the model's config.toml when given
    (its [preprocess] table), else squash to the input's H x W with
    --mean/--std. Returns a dict with resize/crop/mean/std/color."""
    _, height, width = item_shape
    recipe = {"resize": {"exact": [height, width]}, "crop": None,
              "mean": args.mean, "std": args.std, "color": "rgb"}
    if args.model_config:
        try:
            import tomllib  # Python 3.11+
        except ImportError:
            sys.exit("error: --model-config needs Python 3.11+ (tomllib); pass --mean/--std instead")
        with open(args.model_config, "rb") as f:
            pre = tomllib.load(f).get("preprocess", {})
        recipe.update({k: pre[k] for k in ("resize", "crop", "mean", "std", "color") if k in pre})
    return recipe


def preprocess(path: Path, recipe, item_shape) -> np.ndarray:
    """torchvision-style preprocessing with Pillow: EXIF orientation, RGB,
    resize (bilinear, antialiased), centre crop, /255, normalise, CHW."""
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    resize = recipe["resize"]
    if isinstance(resize, dict) and "exact" in resize:
        h, w = resize["exact"]
        img = img.resize((w, h), Image.BILINEAR)
    elif isinstance(resize, dict) and "shorter_side" in resize:
        s = resize["shorter_side"]
        w, h = img.size
        size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        img = img.resize(size, Image.BILINEAR)
    if recipe.get("crop"):
        ch, cw = recipe["crop"]
        w, h = img.size
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        img = img.crop((left, top, left + cw, top + ch))
    x = np.asarray(img, dtype=np.float32) / 255.0
    if recipe.get("color") == "bgr":
        x = x[:, :, ::-1]
    x = (x - np.asarray(recipe["mean"], dtype=np.float32)) / np.asarray(recipe["std"], dtype=np.float32)
    x = x.transpose(2, 0, 1)[np.newaxis].astype(np.float32)  # HWC -> [1, C, H, W]
    if x.shape[1:] != tuple(item_shape):
        sys.exit(f"error: preprocessing gave {list(x.shape[1:])}, the model takes {list(item_shape)}; "
                 "pass --model-config with the model's config.toml")
    return x


# ---- the requests ----------------------------------------------------------


def version_string(args) -> str:
    """tritonclient takes the version as a string; "" means the default."""
    return "" if args.version is None else str(args.version)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def scores_and_labels(result, output, classification, classes):
    """(probabilities, labels) for the one item of a result."""
    if classification:
        # class_count=classes: every class as b"logit:index:label", best first.
        logits, labels = np.zeros(classes, dtype=np.float64), [""] * classes
        for entry in result.as_numpy(output).reshape(-1):
            value, index, label = entry.decode().split(":", 2)
            logits[int(index)], labels[int(index)] = float(value), label
        return softmax(logits), labels
    logits = result.as_numpy(output).reshape(-1).astype(np.float64)
    return softmax(logits), [f"#{i}" for i in range(len(logits))]


def infer(client, args, meta, inp, classification):
    output, classes = meta.outputs[0].name, meta.outputs[0].shape[-1]
    requested = grpcclient.InferRequestedOutput(output, class_count=classes if classification else 0)
    result = client.infer(args.model, [inp], model_version=version_string(args), outputs=[requested],
                          client_timeout=60)
    probs, labels = scores_and_labels(result, output, classification, classes)
    return probs, labels, result.get_response().model_version


def report(path, method, model, top_k, probs, labels, version):
    order = np.argsort(-probs, kind="stable")[:top_k]
    best = order[0]
    print(f"{path}: {labels[best]} ({probs[best]:.4f})  [{method}]  {model} v{version}")
    for rank, i in enumerate(order, 1):
        print(f"    {rank}. {labels[i]:<16} {probs[i]:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="image files")
    parser.add_argument("--grpc", default=os.environ.get("FOVEA_GRPC", "127.0.0.1:8500"),
                        help="fovea's gRPC address, host:port (default: $FOVEA_GRPC or 127.0.0.1:8500)")
    parser.add_argument("--model", default="resnet18-cifar10", help="model name (default resnet18-cifar10)")
    parser.add_argument("--version", type=int, help="model version (default: the highest served)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    parser.add_argument("--mean", type=float, nargs=3, default=CIFAR10_MEAN, help="for the fp32 path")
    parser.add_argument("--std", type=float, nargs=3, default=CIFAR10_STD, help="for the fp32 path")
    parser.add_argument("--model-config", help="the model's config.toml: take the fp32 preprocessing from it")
    parser.add_argument("--skip-fp32", action="store_true", help="send encoded images only")
    args = parser.parse_args()
    for path in args.files:
        if not path.is_file():
            parser.error(f"no such file: {path}")

    client = grpcclient.InferenceServerClient(url=args.grpc)
    try:
        if not client.is_server_ready(client_timeout=10):
            print(f"error: the server at {args.grpc} is not ready", file=sys.stderr)
            return 1
        server = client.get_server_metadata()  # ServerMetadataResponse: name, version, extensions
        classification = "classification" in server.extensions
        # ModelMetadataResponse: name, versions, platform, inputs/outputs (name, datatype, shape [-1, C, H, W])
        meta = client.get_model_metadata(args.model, model_version=version_string(args))
        item_shape = list(meta.inputs[0].shape[1:])
        print(f"{server.name} {server.version}: model {meta.name} versions {list(meta.versions)}, "
              f"input {meta.inputs[0].name} {list(meta.inputs[0].shape)}, "
              f"classification extension: {'yes' if classification else 'no'}")
        recipe = None if args.skip_fp32 else load_preprocess(args, item_shape)

        for path in args.files:
            # 1. The encoded file as BYTES, preprocessed by the server.
            inp = grpcclient.InferInput(meta.inputs[0].name, [1], "BYTES")
            inp.set_data_from_numpy(np.array([path.read_bytes()], dtype=np.object_))
            report(path, "bytes", args.model, args.top_k, *infer(client, args, meta, inp, classification))

            # 2. The model's FP32 tensor, preprocessed here.
            if not args.skip_fp32:
                tensor = preprocess(path, recipe, item_shape)
                inp = grpcclient.InferInput(meta.inputs[0].name, list(tensor.shape), "FP32")
                inp.set_data_from_numpy(tensor)
                report(path, "fp32", args.model, args.top_k, *infer(client, args, meta, inp, classification))
    except InferenceServerException as e:
        # gRPC errors: a status code (INVALID_ARGUMENT, NOT_FOUND, ...) and a message.
        print(f"error: server answered {e.status()}: {e.message()}", file=sys.stderr)
        return 1
    except OSError as e:  # an image Pillow cannot read on the fp32 path
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
