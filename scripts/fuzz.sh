#!/usr/bin/env bash
# Fuzzes the parsers a request reaches (fuzz/fuzz_targets) with cargo-fuzz
# (libFuzzer), each target for SECONDS (default 60), and fails if any target
# crashes, panics, allocates past its limit or hangs. Prints libFuzzer's
# final statistics per target.
#
#   scripts/fuzz.sh [SECONDS]
#
# Stable toolchain (fovea builds with no nightly): cargo-fuzz's coverage
# instrumentation is stable -C flags, and its only unstable one,
# -Zsanitizer=address, is accepted by stable rustc under RUSTC_BOOTSTRAP=1
# (the ASan runtime ships with stable rust-std for x86_64 Linux); the
# variable is set for this script's builds only. FOVEA_FUZZ_SANITIZER=none
# builds without ASan and without RUSTC_BOOTSTRAP, at the cost of the
# per-allocation limit: libFuzzer's -malloc_limit_mb works only through a
# sanitizer's malloc hooks.
#
# Corpora: the committed seeds (fuzz/seeds/<target>, made by
# fuzz/make_seeds.py) are read-only; what libFuzzer finds goes to
# fuzz/corpus/<target> (ignored by git), into which a few real photos from
# ../shared/data are copied for the image target. A crash is saved under
# fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> <file>   (in fuzz/)
# Delete fuzz/corpus to start again from the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
sanitizer="${FOVEA_FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fovea: installing cargo-fuzz (one time)" >&2
    cargo install cargo-fuzz --locked
fi
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
# -a: debug assertions and overflow checks in the optimised build, so that
# arithmetic on client-declared sizes that would wrap is a crash here.
build=(-a --sanitizer "$sanitizer")
# FOVEA_FUZZ_TARGET_DIR: where the instrumented build goes (default
# fuzz/target). CI points it at the machine's cache, so that a later run on
# the same machine rebuilds only fovea's crates, not its ~400 dependencies.
if [ -n "${FOVEA_FUZZ_TARGET_DIR:-}" ]; then
    build+=(--target-dir "$FOVEA_FUZZ_TARGET_DIR")
fi

# target, largest single allocation (MiB), largest input (bytes; 0: libFuzzer
# picks from the corpus). A request target's input never needs more than a
# few MiB: an allocation past 32 MiB is one sized by a declared shape or
# header rather than by data. The image target's decoder budget is its pixel
# limit (1 Mpx, 8 bytes each) plus fovea-vision's 64 MiB metadata allowance.
targets=(
    "preprocess 128 0"
    "predict_input 32 4096"
    "tf_json 32 4096"
    "kserve_rest 32 4096"
    "proto_tensors 32 4096"
)

shared=../shared/data
if [ -d "$shared" ]; then
    mkdir -p fuzz/corpus/preprocess
    # Real photos: one small 256×256 one and three 32×32 CIFAR-10 test images.
    cp -f "$shared/images/car.jpg" fuzz/corpus/preprocess/photo-car.jpg
    for class in cat ship frog; do
        cp -f "$shared/cifar10/test/$class/0000.jpg" "fuzz/corpus/preprocess/cifar-$class.jpg"
    done
    chmod u+w fuzz/corpus/preprocess/*
elif [ -n "${FOVEA_REQUIRE_SHARED:-}" ]; then
    echo "fovea: $shared is absent and FOVEA_REQUIRE_SHARED is set" >&2
    exit 1
else
    echo "fovea: $shared is absent; fuzzing images from the committed seeds only" >&2
fi

(cd fuzz && cargo fuzz build "${build[@]}")

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
for entry in "${targets[@]}"; do
    read -r target malloc_mb max_len <<<"$entry"
    mkdir -p "fuzz/corpus/$target"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
        -malloc_limit_mb="$malloc_mb" -max_len="$max_len" -print_final_stats=1)
    # The JSON targets' tokens: JSON's own and the numbers at fovea's limits,
    # then the protocol's member names (libFuzzer takes one dictionary).
    if [ -f "fuzz/dicts/$target.dict" ]; then
        cat fuzz/dicts/json.dict "fuzz/dicts/$target.dict" >"$logs/$target.dict"
        options+=(-dict="$logs/$target.dict")
    fi
    echo "=== fuzz $target (${seconds} s)"
    if (cd fuzz && cargo fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        "${options[@]}") >"$logs/$target.log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
        # The crash report: libFuzzer's and the sanitizer's lines, and the input.
        grep -E -A40 "^(==[0-9]+==|thread '|.*panicked at|SUMMARY|Test unit written|artifact_prefix)" \
            "$logs/$target.log" | head -120 || tail -60 "$logs/$target.log"
    fi
    final_stat() { grep -oP "^stat::$1:\s*\K[0-9]+" "$logs/$target.log" | tail -1 || echo "?"; }
    printf '%-14s %-6s executions %-10s exec/s %-6s new units %-5s peak RSS %s MiB\n' \
        "$target" "$status" "$(final_stat number_of_executed_units)" "$(final_stat average_exec_per_sec)" \
        "$(final_stat new_units_added)" "$(final_stat peak_rss_mb)"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fovea: fuzzing found failures in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
