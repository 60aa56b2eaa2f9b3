#!/usr/bin/env python3
"""Soak test: a real `fovea serve` on loopback under mixed good and bad
traffic over every protocol for N minutes, with a new model version added and
the old one removed in the middle, reporting requests, errors by class, p99
latency per protocol, and RSS and open file descriptors over time.

Fails (exit 1) on any unexpected answer (a good request not answered 200/OK,
a bad one not refused with its documented status, any 5xx) or when RSS or
the descriptor count keep growing after warm-up beyond the stated bounds.

    .venv/bin/python scripts/soak.py --minutes 2 [--workers 6] [--json report.json]

Needs the protocol clients of tests/compat/requirements.txt (tritonclient,
tensorflow-serving-api) and a built fovea (FOVEA_BIN or target/debug/fovea).
"""

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "compat"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
import tritonclient.grpc as tgrpc  # noqa: E402
from PIL import Image  # noqa: E402
from tensorflow import make_tensor_proto  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from conftest import CIFAR10_LABELS, TINY_CONFIG, TINY_ONNX  # noqa: E402
from fovea_env import fovea_binary, free_port, ort_environment, stop, wait_until  # noqa: E402

# Growth allowed between the end of warm-up (first quarter) and the end.
RSS_GROWTH_BOUND_MIB = 48
FD_GROWTH_BOUND = 32
MAX_BODY = 1_000_000


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class Soak:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="fovea-soak-"))
        self.repo = self.tmp / "models"
        model = self.repo / "tiny"
        (model / "1").mkdir(parents=True)
        (model / "config.toml").write_text(TINY_CONFIG)
        (model / "labels.txt").write_text("\n".join(CIFAR10_LABELS) + "\n")
        shutil.copyfile(TINY_ONNX, model / "1" / "model.onnx")
        self.http_port, self.grpc_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.lock = threading.Lock()
        self.outcomes = Counter()       # (protocol, "ok" | "expected <status>" | "UNEXPECTED ...")
        self.latencies = defaultdict(list)
        self.versions = Counter()
        self.samples = []               # (seconds, rss MiB, fds)
        self.events = []
        self.stop = threading.Event()
        self.images = [png_bytes(i) for i in range(8)]
        self.tensor = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)

    def start(self):
        self.log = open(self.tmp / "fovea.log", "wb")
        self.proc = subprocess.Popen(
            [str(fovea_binary()), "serve", "--models", str(self.repo),
             "--http", f"127.0.0.1:{self.http_port}", "--grpc", f"127.0.0.1:{self.grpc_port}",
             "--poll-interval-secs", "1", "--max-body-bytes", str(MAX_BODY)],
            stdout=self.log, stderr=subprocess.STDOUT, env=ort_environment(),
        )
        if not wait_until(lambda: requests.get(f"{self.base}/readyz", timeout=2).ok, 120, self.proc):
            raise SystemExit(f"fovea did not become ready; log in {self.tmp / 'fovea.log'}")

    def record(self, protocol, outcome, seconds, version=None):
        with self.lock:
            self.outcomes[(protocol, outcome)] += 1
            if outcome == "ok":
                self.latencies[protocol].append(seconds)
            if version is not None:
                self.versions[version] += 1

    # ---- one request of each kind; each returns (outcome, version) ----
    def simple(self, session):
        r = session.post(f"{self.base}/api/v1/predict", data=random.choice(self.images),
                         headers={"content-type": "image/png"}, timeout=30)
        return ("ok", r.json().get("version")) if r.status_code == 200 else (f"UNEXPECTED {r.status_code}", None)

    def tf_rest(self, session):
        r = session.post(f"{self.base}/v1/models/tiny:predict", json={"instances": self.tensor.tolist()}, timeout=30)
        return ("ok", None) if r.status_code == 200 else (f"UNEXPECTED {r.status_code}", None)

    def kserve_rest(self, session):
        body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                            "data": self.tensor.ravel().tolist()}]}
        r = session.post(f"{self.base}/v2/models/tiny/infer", json=body, timeout=30)
        if r.status_code != 200:
            return f"UNEXPECTED {r.status_code}", None
        return "ok", int(r.json()["model_version"])

    def kserve_grpc(self, clients):
        inp = tgrpc.InferInput("input", [1, 3, 32, 32], "FP32")
        inp.set_data_from_numpy(self.tensor)
        result = clients["triton"].infer("tiny", [inp], client_timeout=30)
        return "ok", int(result.get_response().model_version)

    def tf_grpc(self, clients):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tiny"
        request.inputs["input"].CopyFrom(make_tensor_proto(self.tensor))
        response = clients["tf"].Predict(request, timeout=30)
        return "ok", response.model_spec.version.value

    def bad(self, session):
        kind = random.choice(["corrupt", "unknown", "json", "oversized"])
        if kind == "corrupt":
            r = session.post(f"{self.base}/api/v1/predict", data=self.images[0][:200],
                             headers={"content-type": "image/png"}, timeout=30)
            expected = 400
        elif kind == "unknown":
            r = session.post(f"{self.base}/api/v1/predict?model=nope", data=self.images[0],
                             headers={"content-type": "image/png"}, timeout=30)
            expected = 404
        elif kind == "json":
            r = session.post(f"{self.base}/v2/models/tiny/infer", data=b"{not json",
                             headers={"content-type": "application/json"}, timeout=30)
            expected = 400
        else:
            r = session.post(f"{self.base}/api/v1/predict", data=b"\0" * (MAX_BODY + 200_000),
                             headers={"content-type": "image/png"}, timeout=30)
            expected = 413
        if r.status_code == expected:
            return f"expected {expected}", None
        return f"UNEXPECTED {r.status_code} for {kind}", None

    def worker(self, index):
        session = requests.Session()
        clients = {
            "triton": tgrpc.InferenceServerClient(url=f"127.0.0.1:{self.grpc_port}"),
            "tf": prediction_service_pb2_grpc.PredictionServiceStub(
                grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")),
        }
        kinds = [("simple", self.simple, session), ("tf-rest", self.tf_rest, session),
                 ("kserve-rest", self.kserve_rest, session), ("kserve-grpc", self.kserve_grpc, clients),
                 ("tf-grpc", self.tf_grpc, clients), ("bad", self.bad, session)]
        turn = index
        while not self.stop.is_set():
            protocol, call, client = kinds[turn % len(kinds)]
            turn += 1
            started = time.perf_counter()
            try:
                outcome, version = call(client)
            except Exception as e:  # a refused connection, an RPC error: all unexpected
                outcome, version = f"UNEXPECTED {type(e).__name__}: {str(e)[:120]}", None
            self.record(protocol, outcome, time.perf_counter() - started, version)

    def monitor(self, started):
        pid = self.proc.pid
        while not self.stop.wait(1.0):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, StopIteration):
                continue
            self.samples.append((round(time.monotonic() - started, 1), round(rss_kib / 1024, 1), fds))

    def reloads(self, duration):
        """A third in: version 2 appears; two thirds in: version 1 goes."""
        model = self.repo / "tiny"
        if self.stop.wait(duration / 3):
            return
        staging = self.tmp / "staging"
        staging.mkdir()
        shutil.copyfile(TINY_ONNX, staging / "model.onnx")
        staging.rename(model / "2")
        self.events.append((round(time.monotonic() - self.t0, 1), "added version 2"))
        if self.stop.wait(duration / 3):
            return
        shutil.rmtree(model / "1")
        self.events.append((round(time.monotonic() - self.t0, 1), "removed version 1"))

    def run(self):
        duration = self.args.minutes * 60
        self.start()
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.args.workers)]
        threads.append(threading.Thread(target=self.monitor, args=(self.t0,), daemon=True))
        threads.append(threading.Thread(target=self.reloads, args=(duration,), daemon=True))
        for t in threads:
            t.start()
        time.sleep(duration)
        self.stop.set()
        for t in threads:
            t.join(timeout=60)
        stop(self.proc)
        self.log.close()
        return self.report(duration)

    def report(self, duration):
        unexpected = {f"{p}: {o}": n for (p, o), n in self.outcomes.items() if o.startswith("UNEXPECTED")}
        by_class = Counter()
        for (p, o), n in self.outcomes.items():
            by_class["ok" if o == "ok" else o.split(" for ")[0] if o.startswith("UNEXPECTED") else o] += n
        p99 = {p: round(1000 * float(np.percentile(v, 99)), 2) for p, v in self.latencies.items() if v}
        quarter = [s for s in self.samples if s[0] <= duration / 4]
        last = [s for s in self.samples if s[0] >= duration * 3 / 4]
        growth = {}
        if quarter and last:
            growth = {
                "rss_mib": round(max(s[1] for s in last) - max(s[1] for s in quarter), 1),
                "fds": max(s[2] for s in last) - max(s[2] for s in quarter),
            }
        report = {
            "minutes": self.args.minutes, "workers": self.args.workers,
            "requests": sum(self.outcomes.values()), "by_class": dict(by_class),
            "unexpected": unexpected, "p99_ms": p99, "answered_by_version": dict(self.versions),
            "events": self.events, "growth_after_warmup": growth,
            "bounds": {"rss_mib": RSS_GROWTH_BOUND_MIB, "fds": FD_GROWTH_BOUND},
            "samples_every_10s": self.samples[::10],
        }
        failures = []
        if unexpected:
            failures.append(f"unexpected answers: {unexpected}")
        if growth.get("rss_mib", 0) > RSS_GROWTH_BOUND_MIB:
            failures.append(f"RSS grew {growth['rss_mib']} MiB after warm-up (bound {RSS_GROWTH_BOUND_MIB})")
        if growth.get("fds", 0) > FD_GROWTH_BOUND:
            failures.append(f"open descriptors grew by {growth['fds']} after warm-up (bound {FD_GROWTH_BOUND})")
        if 2 not in self.versions:
            failures.append("no answer ever came from the version added mid-run")
        if not growth:
            failures.append("too few RSS/fd samples to judge growth")
        report["failures"] = failures
        return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        report = soak.run()
    finally:
        proc = getattr(soak, "proc", None)
        if proc is not None and proc.poll() is None:
            stop(proc)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if report["failures"]:
        print("SOAK FAILED:\n  " + "\n  ".join(report["failures"]), file=sys.stderr)
        print(f"fovea's log: {soak.tmp / 'fovea.log'}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(soak.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
