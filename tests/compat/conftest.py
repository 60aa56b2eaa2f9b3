"""Fixtures for the protocol compatibility tests: one `fovea serve` per test
session, started on free ports over a temporary model repository, plus test
images and tensors. The tests talk to it only through the official clients
(tritonclient, tensorflow-serving-api) and plain HTTP (requests)."""

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import (  # noqa: E402
    REPO_ROOT, fovea_binary, free_port, ort_environment, skip_unless_required, stop, wait_until,
)

__all__ = ["skip_unless_required"]
SHARED = REPO_ROOT.parent / "shared"
TINY_ONNX = REPO_ROOT / "crates" / "fovea-engine" / "tests" / "fixtures" / "tiny-cifar.onnx"
RESNET_ONNX = SHARED / "models" / "resnet18-imagenet-random.onnx"
IMAGENET_LABELS = SHARED / "data" / "imagenet_classes.txt"
IMAGES_DIR = SHARED / "data" / "images"

CIFAR10_LABELS = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]

TINY_CONFIG = """\
name = "tiny"
platform = "onnx"
description = "random-weight CIFAR-10 CNN for protocol tests"

[input]
name = "input"
shape = [3, 32, 32]
format = "image"

[output]
name = "logits"
labels = "labels.txt"
classes = 10

[preprocess]
resize = { exact = [32, 32] }
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]

[batching]
max_batch_size = 8
max_queue_delay_us = 1000
queue_capacity = 64
"""

RESNET_CONFIG = """\
name = "resnet18"
platform = "onnx"
description = "random-weight torchvision ResNet-18 for protocol tests"

[input]
name = "input"
shape = [3, 224, 224]
format = "image"

[output]
name = "logits"
labels = "labels.txt"
classes = 1000

[preprocess]
resize = { shorter_side = 256 }
crop = [224, 224]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[batching]
max_batch_size = 4
max_queue_delay_us = 1000
queue_capacity = 64
"""

# The model every protocol test uses; resnet18 is additionally served (and
# checked) when ../shared is present.
MODEL = "tiny"
INPUT = "input"
OUTPUT = "logits"
CLASSES = 10
ITEM_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class Server:
    http: str          # "http://127.0.0.1:PORT"
    http_hostport: str  # "127.0.0.1:PORT" (tritonclient wants no scheme)
    grpc: str          # "127.0.0.1:PORT"
    has_resnet: bool


def _write_model(repo: Path, name: str, config: str, onnx: Path, labels: "Path | list[str]", copy: bool) -> None:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.toml").write_text(config)
    target = model_dir / "1" / "model.onnx"
    # The shared models are never copied (they are large and must stay in
    # ../shared); the small in-repo fixture is.
    if copy:
        shutil.copyfile(onnx, target)
    else:
        target.symlink_to(onnx)
    if isinstance(labels, Path):
        (model_dir / "labels.txt").symlink_to(labels)
    else:
        (model_dir / "labels.txt").write_text("\n".join(labels) + "\n")


@pytest.fixture(scope="session")
def server():
    binary = fovea_binary()
    tmp = Path(tempfile.mkdtemp(prefix="fovea-compat-"))
    repo = tmp / "models"
    repo.mkdir()
    _write_model(repo, "tiny", TINY_CONFIG, TINY_ONNX, CIFAR10_LABELS, copy=True)
    has_resnet = RESNET_ONNX.exists() and IMAGENET_LABELS.exists()
    if has_resnet:
        _write_model(repo, "resnet18", RESNET_CONFIG, RESNET_ONNX, IMAGENET_LABELS, copy=False)
        # Same network with a one-slot queue, so that concurrent requests overflow it.
        narrow = RESNET_CONFIG.replace('name = "resnet18"', 'name = "resnet18-narrow"')
        narrow = narrow.replace("max_batch_size = 4", "max_batch_size = 1").replace("queue_capacity = 64", "queue_capacity = 1")
        _write_model(repo, "resnet18-narrow", narrow, RESNET_ONNX, IMAGENET_LABELS, copy=False)
    else:
        print(f"note: {RESNET_ONNX} absent; serving only the tiny model", file=sys.stderr)

    http_port, grpc_port = free_port(), free_port()
    log_path = tmp / "fovea.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            str(binary), "serve",
            "--models", str(repo),
            "--http", f"127.0.0.1:{http_port}",
            "--grpc", f"127.0.0.1:{grpc_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env=ort_environment(),
    )
    base = f"http://127.0.0.1:{http_port}"
    startup = float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "180"))
    if not wait_until(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, startup, proc):
        stop(proc, signal.SIGKILL)
        log.close()
        pytest.fail(f"fovea serve did not become ready (exit code {proc.returncode}); log:\n{log_path.read_text(errors='replace')[-4000:]}")

    yield Server(
        http=base,
        http_hostport=f"127.0.0.1:{http_port}",
        grpc=f"127.0.0.1:{grpc_port}",
        has_resnet=has_resnet,
    )

    stop(proc)
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def image_files():
    """(name, JPEG bytes) for real photos when ../shared is present, else
    generated images (so the tests still run, with less realistic input)."""
    if IMAGES_DIR.is_dir():
        files = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if files:
            return [(p.name, p.read_bytes()) for p in files]
    if os.environ.get("FOVEA_REQUIRE_SHARED"):
        pytest.fail(f"{IMAGES_DIR} is absent, and FOVEA_REQUIRE_SHARED is set")
    print(f"note: {IMAGES_DIR} absent; using generated images", file=sys.stderr)
    from PIL import Image

    rng = np.random.default_rng(7)
    out = []
    for i in range(3):
        arr = (rng.random((120 + 40 * i, 160, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        out.append((f"generated-{i}.jpg", buf.getvalue()))
    return out


@pytest.fixture(scope="session")
def jpeg(image_files):
    """One encoded photo."""
    return image_files[0][1]


@pytest.fixture(scope="session")
def tensor():
    """A fixed [1, 3, 32, 32] float32 input for the tiny model."""
    return np.random.default_rng(0).standard_normal((1, *ITEM_SHAPE)).astype(np.float32)


@pytest.fixture(scope="session")
def simple_api_prediction(server, jpeg):
    """`/api/v1/predict`'s answer for `jpeg`: the reference the protocols must match."""
    r = requests.post(
        f"{server.http}/api/v1/predict",
        params={"model": MODEL, "top_k": CLASSES},
        files={"image": ("photo.jpg", jpeg, "image/jpeg")},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def assert_server_alive(server):
    """After an error case the server must still answer."""
    r = requests.get(f"{server.http}/v2/health/live", timeout=10)
    assert r.status_code == 200
