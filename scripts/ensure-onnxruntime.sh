#!/usr/bin/env bash
# Sourced by serve.sh and test.sh: makes ONNX Runtime available to fovea by
# installing the pinned `onnxruntime` wheel (which ships libonnxruntime.so)
# into ./.venv, then exports ORT_DYLIB_PATH. If that cannot be done (no
# Python, no network), fovea falls back to tract and says so in its log.
#
# Keep ORT_VERSION in step with the `ort` crate's api-* feature (rc.15 + api-31
# needs onnxruntime >= 1.31).
ORT_VERSION=1.32.0
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.venv"

find_ort_library() {
    "$venv/bin/python" - <<'PY' 2>/dev/null
import glob, os, onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
print(libs[-1] if libs else "")
PY
}

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    if [ ! -x "$venv/bin/python" ] || [ -z "$(find_ort_library)" ]; then
        echo "fovea: installing onnxruntime==$ORT_VERSION into $venv (one time)" >&2
        { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "onnxruntime==$ORT_VERSION"; } >&2 \
            || echo "fovea: could not install onnxruntime; fovea will use tract" >&2
    fi
    lib=$(find_ort_library)
    if [ -n "$lib" ]; then
        export ORT_DYLIB_PATH="$lib"
    fi
fi
