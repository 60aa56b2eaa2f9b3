#!/usr/bin/env bash
# Training throughput, fovea against PyTorch, side by side in one run: full
# training steps of the full-width CIFAR ResNet-18 at each precision, fovea's
# `train_speed` example and bench/baselines/train_pytorch.py alternating
# (ROUNDS rounds, so both see the same machine), one JSON line each into
# bench/results/train_speed.jsonl, then the medians and fovea/PyTorch ratios.
#
#   bench/train_speed.sh          (BATCH=128 STEPS=10 WARMUP=3 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-torch.sh
BATCH=${BATCH:-128} STEPS=${STEPS:-10} WARMUP=${WARMUP:-3} ROUNDS=${ROUNDS:-3}
OUT=bench/results/train_speed.jsonl
mkdir -p bench/results
cargo build --release -p fovea-train --example train_speed
: > "$OUT"
for round in $(seq "$ROUNDS"); do
    for precision in fp32 bf16; do
        args=(--precision "$precision" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP")
        target/release/examples/train_speed "${args[@]}" | tee -a "$OUT"
        python bench/baselines/train_pytorch.py "${args[@]}" | tee -a "$OUT"
    done
done
python - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| precision | fovea img/s | PyTorch img/s | fovea / PyTorch |\n|---|---:|---:|---:|")
for p in ("fp32", "bf16"):
    med = lambda eng: statistics.median(r["img_per_s"] for r in rows if r["precision"] == p and r["engine"].startswith(eng))
    f, t = med("fovea"), med("pytorch")
    print(f"| {p} | {f:.1f} | {t:.1f} | {f / t:.0%} |")
PY
