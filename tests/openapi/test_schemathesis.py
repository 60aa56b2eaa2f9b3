"""fovea's REST API against its own OpenAPI document, with schemathesis.

One real `fovea serve` (the bundled `models/` repository, FOVEA_BIN, default
target/debug/fovea; ONNX Runtime from this Python's onnxruntime package when
ORT_DYLIB_PATH is not set, else tract) serves the module. schemathesis reads
its GET /openapi.json and, for every documented operation, sends generated
requests, valid and invalid ones (its examples, coverage and fuzzing phases),
checking each answer:

- not_a_server_error: no 5xx for anything a client sends;
- status_code_conformance: the status is one the document lists;
- content_type_conformance: the Content-Type is one the document lists;
- response_schema_conformance: the body matches the documented schema.

schemathesis.toml (next to this file) points path and query parameters at the
bundled model most of the time. FOVEA_SCHEMATHESIS_EXAMPLES (default 25)
bounds the generated requests per operation and phase, FOVEA_SCHEMATHESIS_SEED
(default 1) makes a run repeatable; the defaults take well under a minute.

    FOVEA_BIN=target/debug/fovea .venv/bin/python -m pytest tests/openapi -q -p no:cacheprovider
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import fovea_binary, free_port, ort_environment  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
MODELS = REPO_ROOT / "models"
CONFIG = HERE / "schemathesis.toml"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = os.environ.get("FOVEA_SCHEMATHESIS_EXAMPLES", "25")
SEED = os.environ.get("FOVEA_SCHEMATHESIS_SEED", "1")


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def schemathesis_cli() -> Path:
    cli = Path(sys.executable).parent / "schemathesis"
    if not cli.exists():
        pytest.fail(f"schemathesis is not installed next to {sys.executable}: "
                    f"{Path(sys.executable).parent / 'pip'} install -r {HERE / 'requirements.txt'}")
    return cli


@pytest.fixture(scope="module")
def fovea():
    """A `fovea serve` on a free loopback port, ready: its base URL and log file."""
    binary = fovea_binary()
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="fovea-openapi-", suffix=".log")[1])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            # JSON logs: each line's level can be read without ANSI colours in the way.
            [str(binary), "--log-format", "json", "serve", "--models", str(MODELS),
             "--http", f"127.0.0.1:{port}", "--grpc", "off"],
            stdout=log, stderr=subprocess.STDOUT, env=ort_environment(),
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "180"))
    ready = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            ready = requests.get(f"{base}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            pass
        if ready:
            break
        time.sleep(0.2)
    if not ready:
        stop(proc)
        pytest.fail(f"fovea serve did not become ready (exit code {proc.returncode}); log:\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}")
    try:
        yield base, log_path
    finally:
        stop(proc)
        log_path.unlink(missing_ok=True)


def logged_errors(log_path: Path) -> list:
    """fovea's ERROR log lines (its own faults: a client's mistake is logged at DEBUG)."""
    errors = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") == "ERROR":
            errors.append(line)
    return errors


def test_the_document_describes_every_api(fovea):
    base, _ = fovea
    response = requests.get(f"{base}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.1")
    for path in ["/api/v1/predict", "/api/v1/models", "/v1/models", "/v1/models/{name}:predict",
                 "/v1/models/{name}/versions/{version}/metadata", "/v2/models/{name}/infer",
                 "/v2/models", "/v2/repository/index", "/v2/health/ready", "/healthz", "/readyz",
                 "/metrics", "/", "/openapi.json"]:
        assert path in document["paths"], f"{path} is not documented"


def test_every_answer_conforms_to_the_document(fovea, tmp_path):
    base, log_path = fovea
    command = [
        str(schemathesis_cli()), "--no-color", "--config-file", str(CONFIG),
        "run", f"{base}/openapi.json",
        "--checks", CHECKS,
        # Stateful testing needs links between operations; the document has none.
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", MAX_EXAMPLES, "--seed", SEED,
        "--workers", "2", "--request-timeout", "60",
    ]
    # In a temporary directory: schemathesis and hypothesis keep caches in the working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = result.stdout + result.stderr
    print(output)
    server_errors = logged_errors(log_path)
    assert result.returncode == 0, (
        f"schemathesis found problems (exit code {result.returncode}):\n{output[-12000:]}\n"
        f"fovea's errors:\n" + "\n".join(server_errors[-20:])
    )
    # Internal errors are logged at ERROR even when they answered in a documented shape.
    assert not server_errors, "fovea logged errors:\n" + "\n".join(server_errors[-20:])
