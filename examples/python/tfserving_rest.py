#!/usr/bin/env python3
"""Classify images over fovea's TensorFlow Serving REST API (the paths TF
Serving serves on port 8501) with plain `requests`.

What it calls, in order:

  GET  /v1/models/{model}[/versions/{v}]           model status (versions, state)
  GET  /v1/models/{model}[/versions/{v}]/metadata  the serving_default signature
  POST /v1/models/{model}[/versions/{v}]:predict   {"instances": [{"b64": "..."}, ...]}
       -> {"predictions": [[logit, ...], ...]}, one row per image (softmaxed here)
  POST /v1/models/{model}[/versions/{v}]:classify  {"examples": [{"image": {"b64": "..."}}, ...]}
       -> {"result": [[[label, score], ...], ...]}, the top classes with softmax scores

:predict answers bare tensors, without class names: pass --labels (the
model's labels.txt, one per line) to name its rows, else they are shown by
index (#3). :classify names them itself; a server without it (404/501) is
reported and skipped.

Examples:

  python tfserving_rest.py cat.jpg dog.jpg
  python tfserving_rest.py --url http://127.0.0.1:8080 --version 5 \\
      --labels ../../models/resnet18-cifar10/labels.txt cat.jpg

Exits 1 with the server's error message when the server refuses a request
(TF Serving's error body: {"error": "message"}), 2 on bad arguments.
"""

import argparse
import base64
import os
import sys
from pathlib import Path

import numpy as np
import requests

TIMEOUT_S = 60


class ServerError(Exception):
    """The server answered with an error status."""


def check(response: requests.Response):
    if response.ok:
        return response.json()
    try:
        detail = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip() or response.reason
    raise ServerError(f"server answered HTTP {response.status_code}: {detail}")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def report(path, method, ranked, top_k, model, version):
    """ranked: [(label, score)] best first."""
    label, score = ranked[0]
    print(f"{path}: {label} ({score:.4f})  [{method}]  {model} v{version}")
    for rank, (label, score) in enumerate(ranked[:top_k], 1):
        print(f"    {rank}. {label:<16} {score:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="image files")
    parser.add_argument("--url", default=os.environ.get("FOVEA_URL", "http://127.0.0.1:8080"),
                        help="fovea's HTTP address (default: $FOVEA_URL or http://127.0.0.1:8080)")
    parser.add_argument("--model", default="resnet18-cifar10", help="model name (default resnet18-cifar10)")
    parser.add_argument("--version", type=int, help="model version (default: the highest served)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    parser.add_argument("--labels", type=Path, help="labels file naming :predict's output rows")
    args = parser.parse_args()
    for path in args.files:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    labels = None
    if args.labels:
        labels = [line.strip() for line in args.labels.read_text().splitlines() if line.strip()]

    base = f"{args.url.rstrip('/')}/v1/models/{args.model}"
    if args.version is not None:
        base += f"/versions/{args.version}"
    try:
        # {"model_version_status": [{"version": "4", "state": "AVAILABLE", "status": {...}}]}
        status = check(requests.get(base, timeout=TIMEOUT_S))
        available = [s["version"] for s in status["model_version_status"] if s["state"] == "AVAILABLE"]
        # {"model_spec": {"name", "version"}, "metadata": {"signature_def": {"signature_def": {...}}}}
        meta = check(requests.get(f"{base}/metadata", timeout=TIMEOUT_S))
        version = meta["model_spec"]["version"]
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        (input_name, input_info), = signature["inputs"].items()
        shape = [int(d["size"]) for d in input_info["tensor_shape"]["dim"]]
        print(f"model {args.model}: available versions {available}, serving v{version}, "
              f"input {input_name} {input_info['dtype']} {shape}")

        images = [base64.b64encode(path.read_bytes()).decode("ascii") for path in args.files]

        # :predict, every image in one request. {"b64": ...} marks binary data;
        # fovea accepts an encoded image where the model's input is an image.
        answer = check(requests.post(f"{base}:predict", json={"instances": [{"b64": b} for b in images]},
                                     timeout=TIMEOUT_S))
        for path, logits in zip(args.files, answer["predictions"]):
            probs = softmax(np.asarray(logits, dtype=np.float64))
            names = labels or [f"#{i}" for i in range(len(probs))]
            ranked = [(names[i], probs[i]) for i in np.argsort(-probs, kind="stable")]
            report(path, "predict", ranked, args.top_k, args.model, version)

        # :classify, with the same images as tf.Example-style features.
        response = requests.post(f"{base}:classify", json={"examples": [{"image": {"b64": b}} for b in images]},
                                 timeout=TIMEOUT_S)
        if response.status_code in (404, 501):
            print(f"note: :classify not supported here ({response.status_code}): {response.text.strip()}",
                  file=sys.stderr)
        else:
            for path, ranked in zip(args.files, check(response)["result"]):
                report(path, "classify", [tuple(pair) for pair in ranked], args.top_k, args.model, version)
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except requests.RequestException as e:
        print(f"error: cannot reach fovea at {args.url}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
