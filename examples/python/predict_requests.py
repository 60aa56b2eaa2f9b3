#!/usr/bin/env python3
"""Classify images with fovea's simple REST API (`POST /api/v1/predict`).

The three ways of sending an image, all with plain `requests`:

  multipart  one request, one `image` form field per file (several files are
             a batch: the answer is then a list, one entry per file, in order)
  raw        one request per file, the bytes as the body with an image
             Content-Type (the format itself is detected from the bytes)
  json       one request per file, `{"image_base64": "..."}`

Examples:

  python predict_requests.py cat.jpg
  python predict_requests.py --url http://127.0.0.1:8080 --top-k 3 cat.jpg dog.png
  python predict_requests.py --mode all --model resnet18-cifar10 --version 5 cat.jpg

Prints, per image and way of sending it, the top class and its score, then
the top-k. Exits 1 with the server's error message when the server refuses
a request (an undecodable image, an unknown model, ...), 2 on bad arguments.
"""

import argparse
import base64
import mimetypes
import os
import sys
from pathlib import Path

import requests

TIMEOUT_S = 60


class ServerError(Exception):
    """The server answered with an error status."""


def check(response: requests.Response):
    """Returns the JSON answer of a successful request; raises ServerError
    with the server's message otherwise. The simple API's error body is
    {"error": {"code": "...", "message": "..."}}."""
    if response.ok:
        return response.json()
    try:
        error = response.json()["error"]
        detail = f"{error['message']} ({error['code']})"
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip() or response.reason
    raise ServerError(f"server answered HTTP {response.status_code}: {detail}")


def options(args) -> dict:
    """model / version / top_k, as query parameters (or JSON fields)."""
    opts = {"top_k": args.top_k}
    if args.model:
        opts["model"] = args.model
    if args.version is not None:
        opts["version"] = args.version
    return opts


def predict_multipart(args, files):
    """All files in one multipart request: a batch."""
    fields = [("image", (path.name, path.read_bytes(), "application/octet-stream")) for path in files]
    answer = check(requests.post(f"{args.url}/api/v1/predict", params=options(args), files=fields, timeout=TIMEOUT_S))
    # One image: one object; several: a list in the order sent.
    return answer if isinstance(answer, list) else [answer]


def predict_raw(args, files):
    """One request per file, the image as the body."""
    answers = []
    for path in files:
        content_type = mimetypes.guess_type(path.name)[0]
        if not content_type or not content_type.startswith("image/"):
            content_type = "application/octet-stream"  # accepted too: the server sniffs the format
        response = requests.post(
            f"{args.url}/api/v1/predict",
            params=options(args),
            data=path.read_bytes(),
            headers={"Content-Type": content_type},
            timeout=TIMEOUT_S,
        )
        answers.append(check(response))
    return answers


def predict_json(args, files):
    """One request per file, base64 in a JSON body (options as JSON fields)."""
    answers = []
    for path in files:
        body = {"image_base64": base64.b64encode(path.read_bytes()).decode("ascii"), **options(args)}
        answers.append(check(requests.post(f"{args.url}/api/v1/predict", json=body, timeout=TIMEOUT_S)))
    return answers


MODES = {"multipart": predict_multipart, "raw": predict_raw, "json": predict_json}


def print_answer(path: Path, mode: str, answer: dict) -> None:
    # {"class", "score", "predictions": [{"label", "index", "score"}], "model", "version", "latency_ms"}
    print(
        f"{path}: {answer['class']} ({answer['score']:.4f})  [{mode}]"
        f"  {answer['model']} v{answer['version']}, {answer['latency_ms']:.1f} ms"
    )
    for rank, p in enumerate(answer["predictions"], 1):
        print(f"    {rank}. {p['label']:<16} {p['score']:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="image files (JPEG, PNG, WebP, GIF, BMP, TIFF)")
    parser.add_argument("--url", default=os.environ.get("FOVEA_URL", "http://127.0.0.1:8080"),
                        help="fovea's HTTP address (default: $FOVEA_URL or http://127.0.0.1:8080)")
    parser.add_argument("--model", help="model name (default: the server's default model)")
    parser.add_argument("--version", type=int, help="model version (default: the highest served)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to return per image (default 5)")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="multipart",
                        help="how to send the images (default multipart; all: each way in turn)")
    args = parser.parse_args()
    args.url = args.url.rstrip("/")
    for path in args.files:
        if not path.is_file():
            parser.error(f"no such file: {path}")

    modes = list(MODES) if args.mode == "all" else [args.mode]
    try:
        for mode in modes:
            for path, answer in zip(args.files, MODES[mode](args, args.files)):
                print_answer(path, mode, answer)
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except requests.RequestException as e:
        print(f"error: cannot reach fovea at {args.url}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
