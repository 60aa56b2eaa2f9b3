#!/usr/bin/env bash
# Every test fovea has, in one command:
#   1. Rust unit and integration tests (both backends, real HTTP and gRPC on loopback);
#   2. the protocol-compatibility tests: the official Python clients
#      (tritonclient, tensorflow-serving-api, requests) against a real `fovea serve`;
#   3. the client examples (examples/python) and the documented metrics;
#   4. the deployment tests: nginx with deploy/nginx/nginx.conf in front of fovea,
#      and the Kubernetes/KServe manifests of deploy/k8s validated offline;
#   5. the container image (deploy/Dockerfile) built and run with podman;
#   6. the demo page in headless Chromium (Playwright driving the system browser);
#   7. the REST API against its own OpenAPI document, with schemathesis;
#   8. a two-minute soak of every protocol with a reload midway (scripts/soak.py).
# ONNX Runtime and the Python clients are installed into ./.venv on first use,
# PyTorch's wheel (libtorch, for the trainer) into a shared cache venv
# (scripts/ensure-torch.sh).
# Tests that need ../shared (reference models and data) skip, saying why, when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-onnxruntime.sh
source scripts/ensure-torch.sh

cargo test --workspace --all-features

if [ ! -x .venv/bin/pytest ] || ! .venv/bin/python -c "import tritonclient.grpc, tensorflow_serving, kubernetes_validate, jsonschema, yaml, playwright, schemathesis" 2>/dev/null \
    || [ ! -x .venv/bin/hadolint ]; then
    echo "fovea: installing the protocol clients and manifest validators for tests/ into .venv (one time)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt -r tests/deploy/requirements.txt -r tests/ui/requirements.txt -r tests/openapi/requirements.txt
fi
cargo build -p fovea
# The compat tests need the binary and fovea-proto's descriptor set from the
# build just made, wherever CARGO_TARGET_DIR puts it.
target_dir="${CARGO_TARGET_DIR:-target}"
descriptor=$(ls -t "$target_dir"/debug/build/fovea-proto-*/out/fovea_descriptor.bin | head -n 1)
FOVEA_BIN="$target_dir/debug/fovea" FOVEA_PROTO_DESCRIPTOR="$descriptor" \
    .venv/bin/python -m pytest tests/compat -q -p no:cacheprovider
# 3. the Python client examples (examples/python) against a real fovea, and
#    /metrics moving with traffic as docs/METRICS.md documents it.
FOVEA_BIN="$target_dir/debug/fovea" .venv/bin/python -m pytest tests/clients -q -p no:cacheprovider
# 4. deploy/: nginx (deploy/nginx/nginx.conf) in front of a real fovea on
#    loopback, skipped with a reason when nginx is not installed (CI installs
#    it); the Kubernetes/KServe manifests validated offline against their
#    schemas and against what `fovea serve` really exposes.
FOVEA_BIN="$target_dir/debug/fovea" .venv/bin/python -m pytest tests/deploy -q -p no:cacheprovider
# 5. deploy/Dockerfile: hadolint, then `podman build` and `podman run` for real
#    (skipped with a reason when podman is not installed; CI installs it).
#    The first build compiles fovea in the container (~10 min on two cores).
FOVEA_BIN="$target_dir/debug/fovea" .venv/bin/python -m pytest tests/container -q -p no:cacheprovider -s
# 6. the demo page (GET /) in the system Chromium via Playwright: upload,
#    model/version picker, errors, layout at 1280x720 and 390x844 (screenshots
#    in target/ui/); skipped with a reason when /usr/bin/chromium is missing.
FOVEA_BIN="$target_dir/debug/fovea" .venv/bin/python -m pytest tests/ui -q -p no:cacheprovider
# 7. the REST API against its own OpenAPI document (GET /openapi.json):
#    schemathesis against a real fovea serve: no 5xx, documented statuses,
#    content types and bodies.
FOVEA_BIN="$target_dir/debug/fovea" .venv/bin/python -m pytest tests/openapi -q -p no:cacheprovider
# 8. soak: a real fovea serve under mixed good and bad traffic on every
#    protocol for two minutes, a version added and the old one removed midway;
#    fails on any unexpected answer or on RSS/descriptor growth past its bounds
#    (FOVEA_SOAK_MINUTES to change the length; the 30-minute figures are in
#    BENCHMARKS.md).
FOVEA_BIN="$target_dir/debug/fovea" .venv/bin/python scripts/soak.py --minutes "${FOVEA_SOAK_MINUTES:-2}" --json "$target_dir/soak.json" > /dev/null
