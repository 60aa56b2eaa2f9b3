"""What every Python test suite under tests/ shares about its environment
(the Python side of crates/fovea-testkit): the fovea binary, ONNX Runtime
for it, free ports, and the rule that a test needing ../shared skips with a
printed reason on a user's clone but fails when FOVEA_REQUIRE_SHARED=1 (CI)."""

import glob
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]


def skip_unless_required(reason: str) -> None:
    """Skips the test, printing why; fails it instead when
    FOVEA_REQUIRE_SHARED=1 (CI), where everything must run."""
    if os.environ.get("FOVEA_REQUIRE_SHARED") == "1":
        pytest.fail(f"FOVEA_REQUIRE_SHARED=1 but {reason}")
    print(f"skipping: {reason}")
    pytest.skip(reason)


def require_shared(path: Path) -> None:
    """Skips the test when `path` (reference data from ../shared) is absent,
    saying why; fails it instead when FOVEA_REQUIRE_SHARED=1 (CI)."""
    if not path.exists():
        skip_unless_required(f"{path} absent (reference data from ../shared)")


def fovea_binary() -> Path:
    """The binary under test: FOVEA_BIN (relative to the repository) or target/debug/fovea."""
    binary = Path(os.environ.get("FOVEA_BIN", REPO_ROOT / "target" / "debug" / "fovea"))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.exists():
        pytest.fail(f"fovea binary not found at {binary}; build it (cargo build -p fovea) or set FOVEA_BIN")
    return binary


def ort_environment() -> dict:
    """fovea's environment: ORT_DYLIB_PATH as scripts/ensure-onnxruntime.sh
    sets it, found in this Python's onnxruntime package when the caller did
    not set it (else fovea looks for ONNX Runtime itself, or falls back to
    tract, which answers the same)."""
    env = dict(os.environ)
    if not env.get("ORT_DYLIB_PATH"):
        spec = importlib.util.find_spec("onnxruntime")
        if spec is not None and spec.submodule_search_locations:
            capi = os.path.join(list(spec.submodule_search_locations)[0], "capi")
            libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so*")))
            if libs:
                env["ORT_DYLIB_PATH"] = libs[-1]
    return env


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=30) -> None:
    """Sends `sig` (SIGTERM: graceful) and waits; kills after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check, timeout: float, proc: subprocess.Popen) -> bool:
    """Polls `check` (an HTTP probe, say) until it holds; false when `proc`
    exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if check():
                return True
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    return False
