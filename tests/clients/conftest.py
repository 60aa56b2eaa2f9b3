"""Fixtures for the client tests: one real `fovea serve` per test session,
serving the bundled model repository (`models/`) on free ports, and the
reference data from ../shared.

The model's name is read from the repository and its versions from the
server (`/v2/models/{name}`), never assumed: the highest is the default."""

import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import require_shared, fovea_binary, ort_environment, free_port  # noqa: E402
MODELS = REPO_ROOT / "models"
EXAMPLES = REPO_ROOT / "examples" / "python"
SHARED = REPO_ROOT.parent / "shared"
PHOTOS_DIR = SHARED / "data" / "images"
CIFAR_TEST_DIR = SHARED / "data" / "cifar10" / "test"


@dataclass(frozen=True)
class Server:
    http: str             # "http://127.0.0.1:PORT"
    grpc: str             # "127.0.0.1:PORT"
    model: str            # the bundled model's name
    versions: tuple       # served versions, ascending (ints)
    labels: Path          # the model's labels.txt

    @property
    def default_version(self) -> int:
        return self.versions[-1]


def bundled_model() -> str:
    """The one model of the bundled repository (a directory with a config.toml)."""
    names = sorted(p.parent.name for p in MODELS.glob("*/config.toml"))
    if not names:
        pytest.fail(f"no model in {MODELS}")
    return names[0]


@pytest.fixture(scope="session")
def server():
    binary = fovea_binary()
    model = bundled_model()
    http_port, grpc_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="fovea-clients-"))
    log_path = tmp / "fovea.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "--models", str(MODELS),
         "--http", f"127.0.0.1:{http_port}", "--grpc", f"127.0.0.1:{grpc_port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=ort_environment(),
    )
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "180"))
    ready = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                ready = True
                break
        except requests.RequestException:
            pass
        time.sleep(0.25)
    if not ready:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"fovea serve did not become ready (exit code {proc.returncode}); "
                    f"log:\n{log_path.read_text(errors='replace')[-4000:]}")

    meta = requests.get(f"{base}/v2/models/{model}", timeout=10)
    assert meta.status_code == 200, meta.text
    versions = tuple(sorted(int(v) for v in meta.json()["versions"]))
    assert versions, f"{model} has no served version"
    try:
        yield Server(http=base, grpc=f"127.0.0.1:{grpc_port}", model=model, versions=versions,
                     labels=MODELS / model / "labels.txt")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def first_file(directory: Path, pattern: str = "*.jpg") -> Path:
    files = sorted(directory.glob(pattern))
    assert files, f"no {pattern} in {directory}"
    return files[0]


@pytest.fixture(scope="session")
def photo() -> Path:
    """A real photo from ../shared/data/images."""
    require_shared(PHOTOS_DIR)
    return first_file(PHOTOS_DIR)


@pytest.fixture(scope="session")
def cifar_image() -> Path:
    """A CIFAR-10 test image from ../shared/data/cifar10/test/<class>/."""
    require_shared(CIFAR_TEST_DIR)
    return first_file(sorted(p for p in CIFAR_TEST_DIR.iterdir() if p.is_dir())[0])


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    """An encoded image: a real photo when ../shared is present, else a
    generated JPEG (the metrics tests count requests, not labels)."""
    if PHOTOS_DIR.is_dir() and any(PHOTOS_DIR.glob("*.jpg")):
        return first_file(PHOTOS_DIR).read_bytes()
    if os.environ.get("FOVEA_REQUIRE_SHARED") == "1":
        pytest.fail(f"FOVEA_REQUIRE_SHARED=1 but {PHOTOS_DIR} is absent")
    print(f"note: {PHOTOS_DIR} absent; using a generated image", file=sys.stderr)
    import numpy as np
    from PIL import Image

    pixels = (np.random.default_rng(7).random((96, 128, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# Not an image: every protocol must refuse it with the same message.
NOT_AN_IMAGE = b"this is a text file, not an image\n"
