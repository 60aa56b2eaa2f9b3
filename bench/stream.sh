#!/usr/bin/env bash
# The stream figures of BENCHMARKS.md ("Streams"): N WebSocket streams to the
# bundled model (models/, its default version), each sending a real photo at F
# frames per second, for 1, 4 and 16 streams at 15 and 30 fps; then 16 streams
# at 15 fps together with single-image requests at a fixed rate, whose latency
# is compared with the same requests on an idle server. Raw JSON goes to
# bench/results/stream_*.json, a table to stdout. Server CPU use is read from
# /proc (utime + stime of the fovea process over the point).
#
#   bench/stream.sh            (DURATION=15 per point by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared}
IMAGE=${IMAGE:-$SHARED/data/images/tabby_kitten.jpg}
DURATION=${DURATION:-15}
PORT=${PORT:-18280}
RATE=${RATE:-10}
FOVEA=${FOVEA:-$ROOT/target/release/fovea}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
[ -f "$IMAGE" ] || { echo "missing $IMAGE" >&2; exit 1; }
source scripts/ensure-onnxruntime.sh
[ -x "$FOVEA" ] || cargo build --release -p fovea

"$FOVEA" serve --models models --http 127.0.0.1:$PORT --grpc off --max-streams 64 > "$OUT/stream_serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.5; done
URL=http://127.0.0.1:$PORT
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$SERVER/stat; }

# point NAME ARGS...: one `fovea bench` run, with the server's CPU use (cores) beside it.
point() { local name=$1; shift; local c0 t0 c1 t1
  c0=$(cpu); t0=$(date +%s.%N)
  "$FOVEA" bench --url "$URL" --image "$IMAGE" --duration-secs "${POINT_DURATION:-$DURATION}" --json "$@" > "$OUT/$name.json.tmp"
  c1=$(cpu); t1=$(date +%s.%N)
  python3 - "$OUT/$name.json.tmp" "$c0" "$c1" "$t0" "$t1" "$ticks" > "$OUT/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c0, c1, t0, t1, hz = map(float, sys.argv[2:7])
r["server_cpu_cores"] = (c1 - c0) / hz / (t1 - t0)
print(json.dumps(r))
PY
  rm "$OUT/$name.json.tmp"; }

"$FOVEA" bench --url "$URL" --image "$IMAGE" --requests 20 --json > /dev/null # warm-up
point stream_single_idle --protocol simple --rate "$RATE"
for fps in 15 30; do
  for n in 1 4 16; do
    echo "== $n streams at $fps fps" >&2
    point "stream_${n}x${fps}" --streams "$n" --fps "$fps"
  done
done
echo "== 16 streams at 15 fps + single requests at $RATE/s" >&2
point stream_mixed_streams --streams 16 --fps 15 &
MIXED=$!
sleep 1
POINT_DURATION=$((DURATION - 2)) point stream_mixed_single --protocol simple --rate "$RATE"
wait $MIXED

python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(n): return json.load(open(os.path.join(out, n + ".json")))
print("| streams × fps | answered fps per stream | dropped | frame latency p50 / p99 ms | server CPU (cores) |")
print("|---|---:|---:|---:|---:|")
for fps in (15, 30):
    for n in (1, 4, 16):
        r = load(f"stream_{n}x{fps}")
        print(f"| {n} × {fps} | {r['answered_fps_per_stream']:.1f} | {100*r['dropped_fraction']:.1f}% | "
              f"{r['frame_latency_ms']['p50']:.1f} / {r['frame_latency_ms']['p99']:.1f} | {r['server_cpu_cores']:.2f} |")
idle, mixed, ms = load("stream_single_idle"), load("stream_mixed_single"), load("stream_mixed_streams")
print()
print("| single requests at a fixed rate | ok/s | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
print(f"| idle server | {idle['requests_per_second']:.1f} | {idle['latency_ms']['p50']:.1f} | {idle['latency_ms']['p99']:.1f} |")
print(f"| beside 16 streams × 15 fps | {mixed['requests_per_second']:.1f} | {mixed['latency_ms']['p50']:.1f} | {mixed['latency_ms']['p99']:.1f} |")
print(f"(the 16 streams meanwhile: {ms['answered_fps_per_stream']:.1f} answered fps per stream, {100*ms['dropped_fraction']:.1f}% dropped)")
PY
