#!/usr/bin/env bash
# One command for a fresh machine: build fovea and serve the bundled models/
# on http://127.0.0.1:8080 with ONNX Runtime (installed here if missing).
# Extra arguments go to `fovea serve`, e.g. `scripts/serve.sh --http 0.0.0.0:8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-onnxruntime.sh
cargo build --release -p fovea
exec "${CARGO_TARGET_DIR:-target}/release/fovea" serve "$@"
