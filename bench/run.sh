#!/usr/bin/env bash
# Produces every figure in BENCHMARKS.md in one run on this machine: the raw
# engine (ORT and tract), fovea end to end over each protocol, an independent
# cross-check with `hey`, and the FastAPI + onnxruntime baseline measured by the
# same tool. Raw JSON goes to bench/results/, a markdown table to stdout.
#
#   bench/run.sh            (DURATION=20 per point by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/resnet18-imagenet-random.onnx
LABELS=$SHARED/data/imagenet_classes.txt
IMAGE=$SHARED/data/images/puppy.jpg
NAME=resnet18-imagenet-random
DURATION=${DURATION:-20}
HTTP_PORT=${HTTP_PORT:-18080}
GRPC_PORT=${GRPC_PORT:-18500}
BASE_PORT=${BASE_PORT:-18090}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
for f in "$MODEL" "$LABELS" "$IMAGE"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }; done

ORT_DIR=$(python3 -c "import onnxruntime,os;print(os.path.dirname(onnxruntime.__file__))")
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(ls "$ORT_DIR"/capi/libonnxruntime.so.* | head -1)}

cargo build --release -p fovea
FOVEA=$ROOT/target/release/fovea

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

load() { cut -d' ' -f1 /proc/loadavg; }
wait_ready() { for _ in $(seq 1 120); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done; echo "not ready: $1" >&2; return 1; }
# Runs `fovea bench` and records the load average beside its JSON.
point() { local file=$1; shift; local l0; l0=$(load)
  "$FOVEA" bench "$@" --json > "$OUT/$file.json.tmp"
  python3 - "$OUT/$file.json.tmp" "$l0" "$(load)" > "$OUT/$file.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["loadavg_before"] = float(sys.argv[2]); r["loadavg_after"] = float(sys.argv[3])
print(json.dumps(r))
PY
  rm "$OUT/$file.json.tmp"; }

echo "== machine: numpy sgemm peak" >&2
python3 - > "$OUT/numpy_sgemm.json" <<'PY'
import json, time, numpy as np
a = np.random.rand(2048, 2048).astype(np.float32); b = np.random.rand(2048, 2048).astype(np.float32)
a @ b; n = 0; t = time.perf_counter()
while time.perf_counter() - t < 3: a @ b; n += 1
print(json.dumps({"numpy_sgemm_gflops": 2 * 2048**3 * n / (time.perf_counter() - t) / 1e9}))
PY

echo "== raw engine" >&2
for b in ort tract; do
  l0=$(load)
  "$FOVEA" bench --engine --model "$MODEL" --backend $b --batch-sizes 1,8,16 --duration-secs "$DURATION" $([ $b = ort ] && echo --peak) --json > "$OUT/engine_$b.json"
  echo "engine $b load $l0 -> $(load)" >&2
done

echo "== fovea serve (ORT)" >&2
"$FOVEA" serve --model "$MODEL" --preset imagenet --labels "$LABELS" --http 127.0.0.1:$HTTP_PORT --grpc 127.0.0.1:$GRPC_PORT > "$OUT/fovea_serve.log" 2>&1 &
SERVER=$!; PIDS+=("$SERVER")
wait_ready http://127.0.0.1:$HTTP_PORT/readyz
for c in 1 4 16; do
  point fovea_simple_c$c --url http://127.0.0.1:$HTTP_PORT --image "$IMAGE" --concurrency $c --duration-secs "$DURATION"
done
grep VmHWM /proc/$SERVER/status | awk '{print "{\"fovea_vmhwm_kib\": " $2 "}"}' > "$OUT/fovea_rss.json"
point fovea_simple_open40 --url http://127.0.0.1:$HTTP_PORT --image "$IMAGE" --rate 40 --duration-secs "$DURATION"
for p in tf-rest v2-rest; do
  point fovea_${p}_c16 --url http://127.0.0.1:$HTTP_PORT --protocol $p --model $NAME --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION"
done
for p in v2-grpc tf-grpc; do
  point fovea_${p}_c16 --url http://127.0.0.1:$GRPC_PORT --protocol $p --model $NAME --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION"
done
point fovea_v2-grpc_tensor_c16 --url http://127.0.0.1:$GRPC_PORT --protocol v2-grpc --tensor --model $NAME --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION"
curl -s http://127.0.0.1:$HTTP_PORT/metrics | grep -E '^fovea_(decode_wait_seconds|preprocess_seconds|queue_wait_seconds|inference_seconds|batch_size|http_request_duration_seconds)_(sum|count)' > "$OUT/fovea_metrics.txt" || true

echo "== cross-check with hey (c16)" >&2
if command -v hey >/dev/null; then
  hey -z "${DURATION}s" -c 16 -m POST -T image/jpeg -D "$IMAGE" http://127.0.0.1:$HTTP_PORT/api/v1/predict > "$OUT/hey_c16.txt"
  point fovea_simple_c16_after_hey --url http://127.0.0.1:$HTTP_PORT --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION"
else
  echo "hey not installed (apt-get install -y hey): cross-check skipped" >&2
fi
echo "== flood (c256) against the default queue of 128" >&2
point fovea_simple_flood_c256 --url http://127.0.0.1:$HTTP_PORT --image "$IMAGE" --concurrency 256 --duration-secs "$DURATION"
grep VmHWM /proc/$SERVER/status | awk '{print "{\"fovea_vmhwm_kib\": " $2 "}"}' > "$OUT/fovea_rss_after_flood.json"
curl -s http://127.0.0.1:$HTTP_PORT/metrics | grep -E '^fovea_(decode_wait_seconds|preprocess_seconds|queue_wait_seconds|inference_seconds|batch_size)_(sum|count)' > "$OUT/fovea_metrics_after_flood.txt" || true
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

echo "== thread budget: two decode threads instead of one" >&2
"$FOVEA" serve --model "$MODEL" --preset imagenet --labels "$LABELS" --http 127.0.0.1:$HTTP_PORT --grpc off --decode-threads 2 > "$OUT/fovea_serve_decode2.log" 2>&1 &
SERVER=$!; PIDS+=("$SERVER")
wait_ready http://127.0.0.1:$HTTP_PORT/readyz
point fovea_simple_c16_decode2 --url http://127.0.0.1:$HTTP_PORT --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

echo "== int8: fovea quantize, then the same engine and server measurements" >&2
INT8_DIR=$(mktemp -d); INT8=$INT8_DIR/$NAME-int8.onnx
"$FOVEA" quantize --onnx "$MODEL" --preset imagenet --calibrate "$SHARED/data/cifar10/train" \
    --eval-images 256 --output "$INT8" > "$OUT/quantize.log" 2>&1
"$FOVEA" bench --engine --model "$INT8" --backend ort --batch-sizes 1,8,16 --duration-secs "$DURATION" --json > "$OUT/engine_ort_int8.json"
"$FOVEA" serve --model "$INT8" --preset imagenet --labels "$LABELS" --http 127.0.0.1:$HTTP_PORT --grpc off > "$OUT/fovea_serve_int8.log" 2>&1 &
SERVER=$!; PIDS+=("$SERVER")
wait_ready http://127.0.0.1:$HTTP_PORT/readyz
for c in 1 16; do
  point fovea_int8_simple_c$c --url http://127.0.0.1:$HTTP_PORT --image "$IMAGE" --concurrency $c --duration-secs "$DURATION"
done
grep VmHWM /proc/$SERVER/status | awk '{print "{\"fovea_vmhwm_kib\": " $2 "}"}' > "$OUT/fovea_int8_rss.json"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
rm -rf "$INT8_DIR"

echo "== FastAPI + onnxruntime baseline" >&2
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv && bench/.venv/bin/pip install -q -r bench/baselines/requirements.txt
fi
bench/.venv/bin/python bench/baselines/fastapi_onnxruntime.py --model "$MODEL" --labels "$LABELS" --port $BASE_PORT > "$OUT/fastapi.log" 2>&1 &
BASE=$!; PIDS+=("$BASE")
wait_ready http://127.0.0.1:$BASE_PORT/healthz
for c in 1 4 16; do
  point fastapi_c$c --url http://127.0.0.1:$BASE_PORT --image "$IMAGE" --multipart --concurrency $c --duration-secs "$DURATION"
done
grep VmHWM /proc/$BASE/status | awk '{print "{\"fastapi_vmhwm_kib\": " $2 "}"}' > "$OUT/fastapi_rss.json"
kill "$BASE"; wait "$BASE" 2>/dev/null || true

python3 bench/table.py "$OUT"
