#!/usr/bin/env bash
# Two fovea binaries side by side on the same machine, same session: each
# serves the reference ResNet-18 in turn, and `fovea bench` (from A) loads it
# over the simple API (c1, c16) and KServe gRPC (c16), in A B A B order so
# drift in the machine's load falls on both. Prints req/s per point and B/A.
#
#   bench/ab.sh BIN_A BIN_B      (DURATION=15 per point by default)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2
SHARED=${SHARED:-$PWD/../shared}
MODEL=$SHARED/models/resnet18-imagenet-random.onnx
LABELS=$SHARED/data/imagenet_classes.txt
IMAGE=$SHARED/data/images/puppy.jpg
DURATION=${DURATION:-15}
HTTP=127.0.0.1:${HTTP_PORT:-18280}; GRPC=127.0.0.1:${GRPC_PORT:-18580}
OUT=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null || true' EXIT
ready() { for _ in $(seq 1 240); do curl -sf "http://$HTTP/readyz" >/dev/null && return 0; sleep 0.5; done; return 1; }
rate() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['requests_per_second'])" "$1"; }
for round in 1 2; do
  for side in A B; do
    bin=${!side}
    "$bin" serve --model "$MODEL" --labels "$LABELS" --preset imagenet --http "$HTTP" --grpc "$GRPC" >"$OUT/$side.log" 2>&1 &
    PID=$!; ready
    "$A" bench --url "http://$HTTP" --image "$IMAGE" --concurrency 1 --duration-secs "$DURATION" --json >"$OUT/$side-simple-c1-$round.json"
    "$A" bench --url "http://$HTTP" --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION" --json >"$OUT/$side-simple-c16-$round.json"
    "$A" bench --url "http://$GRPC" --protocol v2-grpc --model resnet18-imagenet-random --image "$IMAGE" --concurrency 16 --duration-secs "$DURATION" --json >"$OUT/$side-v2grpc-c16-$round.json"
    kill $PID; wait $PID 2>/dev/null || true; PID=
  done
done
printf "%-14s %10s %10s %8s\n" point "A req/s" "B req/s" "B/A"
for point in simple-c1 simple-c16 v2grpc-c16; do
  a=0; b=0
  for round in 1 2; do
    a=$(python3 -c "print($a + $(rate "$OUT/A-$point-$round.json") / 2)")
    b=$(python3 -c "print($b + $(rate "$OUT/B-$point-$round.json") / 2)")
  done
  python3 -c "print(f'{\"$point\":14s} {$a:10.1f} {$b:10.1f} {$b/$a:8.3f}')"
done
