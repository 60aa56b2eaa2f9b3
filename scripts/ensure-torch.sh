#!/usr/bin/env bash
# Sourced by test.sh and .ci/run (and by hand before `cargo build --features
# train`): makes libtorch available to fovea-train's `tch`. The pinned PyTorch
# wheel (which carries libtorch) is installed into a venv of its own under the
# user's cache, keyed by version, so that every clone on the machine shares
# one copy: the Linux wheel is the CUDA build and pulls NVIDIA's libraries
# (about 4 GB). Then exports what torch-sys's build script and the built
# binaries need:
#   LIBTORCH_USE_PYTORCH=1, VIRTUAL_ENV and PATH (that venv's python finds libtorch),
#   LD_LIBRARY_PATH (torch/lib: libtorch_cpu.so and friends, at run time).
#
# Keep TORCH_VERSION in step with the `tch` crate (tch 0.24 <-> torch 2.11.0).
TORCH_VERSION=2.11.0
torch_venv=${FOVEA_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fovea/torch-$TORCH_VERSION}

torch_lib_dir() {
    "$torch_venv/bin/python" - <<PY 2>/dev/null
import os, torch
assert torch.__version__.split("+")[0] == "$TORCH_VERSION"
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
PY
}

lib=$(torch_lib_dir || true)
if [ -z "$lib" ]; then
    echo "fovea: installing torch==$TORCH_VERSION into $torch_venv (one time per machine, about 4 GB)" >&2
    mkdir -p "$(dirname "$torch_venv")"
    { [ -x "$torch_venv/bin/python" ] || python3 -m venv "$torch_venv"; } >&2
    "$torch_venv/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" >&2
    lib=$(torch_lib_dir || true)
    [ -n "$lib" ] || { echo "fovea: torch==$TORCH_VERSION did not install into $torch_venv" >&2; return 1 2>/dev/null || exit 1; }
fi
export LIBTORCH_USE_PYTORCH=1
export VIRTUAL_ENV="$torch_venv"
case ":$PATH:" in *":$torch_venv/bin:"*) ;; *) export PATH="$torch_venv/bin:$PATH" ;; esac
case ":${LD_LIBRARY_PATH:-}:" in *":$lib:"*) ;; *) export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
