#!/usr/bin/env python3
"""Top-1 accuracy of a served model on an ImageFolder test set, asked through
fovea's own /api/v1/predict (so preprocessing is exactly what users get).
Used for the figures of models/resnet18-cifar10/README.md.

  fovea serve --models models --http 127.0.0.1:18181 --grpc off &
  python3 scripts/served_accuracy.py --server http://127.0.0.1:18181 \
      --model resnet18-cifar10 --versions 5 6 --data ../shared/data/cifar10/test
"""

import argparse
import concurrent.futures
import json
import os
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--model", required=True)
    parser.add_argument("--versions", nargs="+", type=int, required=True)
    parser.add_argument("--data", required=True, help="ImageFolder root: <class>/<image>")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    files = [
        (label, os.path.join(args.data, label, name))
        for label in sorted(os.listdir(args.data))
        for name in sorted(os.listdir(os.path.join(args.data, label)))
    ]

    def correct(item, version):
        label, path = item
        with open(path, "rb") as f:
            body = f.read()
        request = urllib.request.Request(
            f"{args.server}/api/v1/predict?model={args.model}&version={version}&top_k=1",
            data=body,
            headers={"Content-Type": "image/jpeg"},
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)["class"] == label

    for version in args.versions:
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            right = sum(pool.map(lambda item: correct(item, version), files))
        print(f"{args.model} version {version}: {right}/{len(files)} = {100 * right / len(files):.2f}% top-1")


if __name__ == "__main__":
    main()
