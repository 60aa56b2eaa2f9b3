"""deploy/nginx/nginx.conf in front of a real `fovea serve`, on loopback.

One fovea (the bundled `models/` repository, a 1 MiB body limit) and one
nginx running the shipped config, rendered with free ports, a temporary
prefix and a matching 1 MiB `client_max_body_size`, serve the whole module.
Every answer that comes through nginx is compared with the same request made
to fovea directly: the simple API with real photos and CIFAR-10 test images,
TF Serving Predict and KServe ModelInfer over gRPC with the official clients.
Also: the body limit on both sides of it, X-Request-Id, ops endpoints, the
errors nginx makes itself.

Needs: nginx (on PATH or /usr/sbin/nginx; missing: skip, or fail when
FOVEA_REQUIRE_NGINX=1), the fovea binary (FOVEA_BIN, default
target/debug/fovea), the protocol clients of tests/compat/requirements.txt,
and ../shared for the photo tests (missing: skip, or fail when
FOVEA_REQUIRE_SHARED=1). Installs nothing.

    FOVEA_BIN=target/debug/fovea .venv/bin/python -m pytest tests/deploy -q -p no:cacheprovider
"""

import importlib.util
import json
import os
import sys
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import require_shared, fovea_binary, ort_environment, free_port, stop, wait_until  # noqa: E402
SHIPPED_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"
MODELS = REPO_ROOT / "models"
SHARED = REPO_ROOT.parent / "shared"
PHOTOS_DIR = SHARED / "data" / "images"
CIFAR_TEST_DIR = SHARED / "data" / "cifar10" / "test"

MODEL = "resnet18-cifar10"
INPUT = "input"
OUTPUT = "logits"
CLASSES = 10
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The small body limit the test runs both sides with (fovea --max-body-bytes,
# nginx client_max_body_size), so that bodies around it stay cheap.
LIMIT = 1024 * 1024
LIMIT_NGINX = "1m"


# ---------------------------------------------------------------- rendering

def render(conf: str, *, http_port: int, grpc_port: int, fovea_http: str, fovea_grpc: str,
           prefix: Path, access_log: Path, body_limit: str, temp_paths: str) -> str:
    """The shipped config with test ports and paths. Each replaced string must
    occur exactly as often as stated; when the shipped file changes one of
    them this fails, naming it, instead of silently testing something else."""
    substitutions = [
        ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        ("listen 8081 http2;", f"listen 127.0.0.1:{grpc_port} http2;", 1),
        ("server 127.0.0.1:8080;", f"server {fovea_http};", 1),
        ("server 127.0.0.1:8500;", f"server {fovea_grpc};", 1),
        ("pid /run/nginx-fovea.pid;", f"pid {prefix / 'nginx.pid'};", 1),
        ("access_log /dev/stdout fovea;", f"access_log {access_log} fovea;", 1),
        ("client_max_body_size 20m;", f"client_max_body_size {body_limit};", 1),
        ("\nhttp {\n", "\nhttp {\n" + temp_paths, 1),
    ]
    for old, new, count in substitutions:
        found = conf.count(old)
        assert found == count, (
            f"{SHIPPED_CONF} has {found} occurrence(s) of {old!r}, the test expects {count}: "
            "update render() in tests/deploy/test_nginx.py and deploy/nginx/README.md with it"
        )
        conf = conf.replace(old, new)
    return conf


def temp_path_directives(nginx: str, prefix: Path) -> str:
    """Temp paths under `prefix` for every module this nginx has (otherwise
    it would create the compiled-in ones, under /var)."""
    configure = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
    lines = [f"    client_body_temp_path {prefix / 'client_body'};\n",
             f"    proxy_temp_path {prefix / 'proxy'};\n"]
    for module in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in configure:
            lines.append(f"    {module}_temp_path {prefix / module};\n")
    return "".join(lines)


# ----------------------------------------------------------------- helpers

def find_nginx() -> "str | None":
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def require_nginx() -> str:
    nginx = find_nginx()
    if nginx is None:
        reason = "nginx not found on PATH or at /usr/sbin/nginx (apt-get install nginx-light)"
        if os.environ.get("FOVEA_REQUIRE_NGINX") == "1":
            pytest.fail(f"FOVEA_REQUIRE_NGINX=1 but {reason}")
        print(f"skipping the nginx deploy tests: {reason}")
        pytest.skip(reason)
    return nginx


def start_nginx(nginx: str, conf_text: str, prefix: Path) -> subprocess.Popen:
    """`nginx -t` on the rendered config, then nginx in the foreground."""
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    base = [nginx, "-p", f"{prefix}/", "-e", "stderr", "-c", str(conf)]
    check = subprocess.run(base + ["-t", "-q", "-g", "daemon off;"], capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t failed on the rendered config {conf}:\n{check.stderr}"
    log = open(prefix / "nginx.stderr", "wb")
    return subprocess.Popen(base + ["-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT)


def make_prefix(tag: str) -> Path:
    prefix = Path(tempfile.mkdtemp(prefix=f"fovea-nginx-{tag}-"))
    # nginx's workers run as `nobody` under a root master: they write the
    # body temp files below this directory.
    prefix.chmod(0o755)
    return prefix


@dataclass(frozen=True)
class Stack:
    direct: str        # fovea HTTP, "http://127.0.0.1:PORT"
    proxy: str         # nginx HTTP
    direct_grpc: str   # fovea gRPC, "127.0.0.1:PORT"
    proxy_grpc: str    # nginx gRPC (h2c)
    access_log: Path   # nginx's access log

    def log_line(self, request_id: str, timeout: float = 5.0) -> str:
        """nginx's access-log line for `request_id` (written just after the answer)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
            lines = [line for line in text.splitlines() if f"rid={request_id} " in line]
            if lines or time.monotonic() > deadline:
                assert len(lines) == 1, f"expected one access-log line with rid={request_id}, got:\n{text[-3000:]}"
                return lines[0]
            time.sleep(0.05)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def nginx_bin():
    return require_nginx()


@pytest.fixture(scope="module")
def stack(nginx_bin):
    binary = fovea_binary()
    prefix = make_prefix("stack")
    fovea_http, fovea_grpc = free_port(), free_port()
    proxy_http, proxy_grpc = free_port(), free_port()

    fovea_log_path = prefix / "fovea.log"
    fovea_log = open(fovea_log_path, "wb")
    fovea = subprocess.Popen(
        [str(binary), "serve", "--models", str(MODELS),
         "--http", f"127.0.0.1:{fovea_http}", "--grpc", f"127.0.0.1:{fovea_grpc}",
         "--max-body-bytes", str(LIMIT)],
        stdout=fovea_log, stderr=subprocess.STDOUT, cwd=prefix, env=ort_environment(),
    )
    direct = f"http://127.0.0.1:{fovea_http}"
    timeout = float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "180"))
    if not wait_until(lambda: requests.get(f"{direct}/readyz", timeout=2).status_code == 200, timeout, fovea):
        stop(fovea)
        pytest.fail(f"fovea serve did not become ready (exit code {fovea.returncode}); log:\n"
                    f"{fovea_log_path.read_text(errors='replace')[-4000:]}")

    nginx = None
    try:
        access_log = prefix / "access.log"
        conf = render(SHIPPED_CONF.read_text(), http_port=proxy_http, grpc_port=proxy_grpc,
                      fovea_http=f"127.0.0.1:{fovea_http}", fovea_grpc=f"127.0.0.1:{fovea_grpc}",
                      prefix=prefix, access_log=access_log, body_limit=LIMIT_NGINX,
                      temp_paths=temp_path_directives(nginx_bin, prefix))
        nginx = start_nginx(nginx_bin, conf, prefix)
        proxy = f"http://127.0.0.1:{proxy_http}"
        if not wait_until(lambda: requests.get(f"{proxy}/healthz", timeout=2).status_code == 200, 30, nginx):
            pytest.fail(f"nginx did not start; its log:\n{(prefix / 'nginx.stderr').read_text(errors='replace')[-4000:]}")

        yield Stack(direct=direct, proxy=proxy, direct_grpc=f"127.0.0.1:{fovea_grpc}",
                    proxy_grpc=f"127.0.0.1:{proxy_grpc}", access_log=access_log)
    finally:
        if nginx is not None:
            stop(nginx, signal.SIGQUIT)  # graceful: finish what is in flight
        stop(fovea)
        fovea_log.close()
        shutil.rmtree(prefix, ignore_errors=True)


def photos():
    require_shared(PHOTOS_DIR)
    files = sorted(PHOTOS_DIR.glob("*.jpg"))
    assert files, f"no .jpg in {PHOTOS_DIR}"
    return files


def cifar_images():
    """The first test image of each CIFAR-10 class."""
    require_shared(CIFAR_TEST_DIR)
    return [CIFAR_TEST_DIR / label / "0000.jpg" for label in CIFAR10_LABELS]


def predict(base: str, files, headers=None):
    fields = [("image", (Path(f).name, Path(f).read_bytes(), "image/jpeg")) for f in files]
    return requests.post(f"{base}/api/v1/predict", params={"top_k": CLASSES}, files=fields,
                         headers=headers or {}, timeout=60)


def without_latency(answer):
    """An answer of /api/v1/predict less its timing (the one field that differs between two calls)."""
    if isinstance(answer, list):
        return [without_latency(a) for a in answer]
    return {k: v for k, v in answer.items() if k != "latency_ms"}


# ------------------------------------------------------- the shipped config

def test_shipped_config_passes_nginx_t(nginx_bin):
    if os.geteuid() != 0:
        pytest.skip("the shipped config uses /run and the package's temp paths: `nginx -t` on it needs root")
    pid_file = Path(re.search(r"^pid\s+(\S+);", SHIPPED_CONF.read_text(), re.M).group(1))
    existed = pid_file.exists()
    check = subprocess.run([nginx_bin, "-t", "-c", str(SHIPPED_CONF)], capture_output=True, text=True)
    # `nginx -t` creates the (empty) pid file to test it: leave no trace.
    if not existed and pid_file.exists() and pid_file.stat().st_size == 0:
        pid_file.unlink()
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


def nginx_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", text).groups()
    return int(number) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]


def test_shipped_body_limit_equals_fovea_default():
    help_text = subprocess.run([str(fovea_binary()), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    # The option's own paragraph: from `--max-body-bytes` to the next option.
    paragraph = re.search(r"--max-body-bytes\b(.*?)(?=\n\s+-)", help_text, re.S)
    assert paragraph, f"no --max-body-bytes in `fovea serve --help`:\n{help_text}"
    default = re.search(r"\[default: (\d+)\]", paragraph.group(1))
    assert default, f"no default shown for --max-body-bytes:\n{paragraph.group(0)}"
    fovea_default = int(default.group(1))

    conf = SHIPPED_CONF.read_text()
    active = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    limits = re.findall(r"^\s*client_max_body_size\s+(\S+);", active, re.M)
    assert limits, "the shipped config sets no client_max_body_size"
    assert [nginx_size(v) for v in limits] == [fovea_default] * len(limits), (limits, fovea_default)
    # ... and the comment next to it states the number.
    assert str(fovea_default) in conf


# ------------------------------------------------------- (a) simple API

def test_photos_through_nginx_answer_exactly_as_fovea(stack):
    for photo in photos():
        via_nginx, direct = predict(stack.proxy, [photo]), predict(stack.direct, [photo])
        assert via_nginx.status_code == 200, (photo.name, via_nginx.text)
        assert direct.status_code == 200, (photo.name, direct.text)
        assert without_latency(via_nginx.json()) == without_latency(direct.json()), photo.name
        assert via_nginx.json()["model"] == MODEL and len(via_nginx.json()["predictions"]) == CLASSES


def test_cifar10_test_images_through_nginx_answer_exactly_as_fovea(stack):
    for image in cifar_images():
        via_nginx, direct = predict(stack.proxy, [image]), predict(stack.direct, [image])
        assert via_nginx.status_code == 200, (image, via_nginx.text)
        assert without_latency(via_nginx.json()) == without_latency(direct.json()), image


def test_a_multipart_batch_through_nginx_answers_exactly_as_fovea(stack):
    batch = photos()[:4]
    via_nginx, direct = predict(stack.proxy, batch), predict(stack.direct, batch)
    assert via_nginx.status_code == 200, via_nginx.text
    assert isinstance(via_nginx.json(), list) and len(via_nginx.json()) == len(batch)
    assert without_latency(via_nginx.json()) == without_latency(direct.json())


# ------------------------------------------------------- (b) body limit

def jpeg_padded_to(path: Path, size: int) -> bytes:
    """The JPEG at `path` grown to exactly `size` bytes with COM segments
    after SOI: the same picture, so the same predictions."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    padding = bytearray()
    missing = size - len(data)
    assert missing >= 4, f"{path} is already {len(data)} bytes"
    while missing > 0:
        chunk = min(missing, 65535 + 2)  # marker (2) + length field counts itself (<= 65535)
        if 0 < missing - chunk < 4:      # leave room for a last whole segment
            chunk -= 4
        payload = chunk - 4
        padding += b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + b"f" * payload
        missing -= chunk
    out = data[:2] + bytes(padding) + data[2:]
    assert len(out) == size
    return out


def raw_post(base: str, body: bytes, request_id: str):
    return requests.post(f"{base}/api/v1/predict", params={"top_k": CLASSES}, data=body,
                         headers={"Content-Type": "image/jpeg", "X-Request-Id": request_id}, timeout=60)


def test_a_body_at_the_limit_reaches_fovea_and_one_byte_more_is_refused_by_nginx(stack):
    # At the limit: not nginx's business; fovea answers, here a bad image, in its own JSON.
    at = raw_post(stack.proxy, b"\x00" * LIMIT, "limit-at-garbage")
    assert at.status_code != 413, at.text
    assert 400 <= at.status_code < 500, at.text  # 415: not an image format fovea knows
    assert isinstance(at.json()["error"], dict) and at.json()["error"]["code"], at.text
    assert f"ustatus={at.status_code} " in stack.log_line("limit-at-garbage")
    direct = raw_post(stack.direct, b"\x00" * LIMIT, "limit-at-garbage-direct")
    assert (at.status_code, at.json()) == (direct.status_code, direct.json())

    # Over it by one byte: nginx answers 413 itself; fovea never sees it.
    over = raw_post(stack.proxy, b"\x00" * (LIMIT + 1), "limit-over")
    assert over.status_code == 413, over.text
    assert over.json()["error"]["code"] == "body_too_large"
    assert over.headers.get("X-Request-Id") == "limit-over"
    line = stack.log_line("limit-over")
    assert " 413 " in line and "ustatus=- " in line, line


def test_a_real_photo_padded_to_the_limit_is_classified_through_nginx(stack):
    photo = max(photos(), key=lambda p: p.stat().st_size)
    reference = predict(stack.direct, [photo]).json()
    at = raw_post(stack.proxy, jpeg_padded_to(photo, LIMIT), "limit-at-photo")
    assert at.status_code == 200, at.text
    assert at.json()["predictions"] == reference["predictions"]
    assert "ustatus=200" in stack.log_line("limit-at-photo")


def test_a_chunked_body_over_the_limit_is_refused_by_nginx(stack):
    # No Content-Length: nginx counts while reading.
    def chunks():
        for _ in range(LIMIT // 65536 + 2):
            yield b"\x00" * 65536

    r = requests.post(f"{stack.proxy}/api/v1/predict", data=chunks(),
                      headers={"Content-Type": "image/jpeg", "X-Request-Id": "limit-chunked"}, timeout=60)
    assert r.status_code == 413, r.text
    assert "ustatus=- " in stack.log_line("limit-chunked")


def test_fovea_errors_pass_through_nginx_unchanged(stack):
    for path in ("/api/v1/predict?model=no-such-model", "/v1/models/no-such-model:predict"):
        body = {"image_base64": "AAAA"} if path.startswith("/api") else {"instances": [[0.0]]}
        via_nginx = requests.post(stack.proxy + path, json=body, timeout=30)
        direct = requests.post(stack.direct + path, json=body, timeout=30)
        assert via_nginx.status_code == direct.status_code == 404, (path, via_nginx.text)
        assert via_nginx.json() == direct.json()


# ------------------------------------------------------- (c) X-Request-Id

def test_a_client_request_id_reaches_fovea_and_comes_back(stack):
    photo = photos()[0]
    r = predict(stack.proxy, [photo], headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == "abc-123"
    line = stack.log_line("abc-123")
    assert "ustatus=200" in line and "POST /api/v1/predict" in line


def test_a_request_without_an_id_gets_the_one_nginx_generated_and_logged(stack):
    r = requests.get(f"{stack.proxy}/healthz", timeout=10)
    assert r.status_code == 200
    generated = r.headers.get("X-Request-Id", "")
    # nginx's $request_id (fovea's own would be a UUID with dashes).
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
    assert "GET /healthz" in stack.log_line(generated)
    # ... and a fresh one per request.
    assert requests.get(f"{stack.proxy}/healthz", timeout=10).headers["X-Request-Id"] != generated


def test_a_malformed_client_request_id_is_replaced(stack):
    r = requests.get(f"{stack.proxy}/healthz", headers={"X-Request-Id": "x" * 300}, timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers.get("X-Request-Id", "")), r.headers


# ------------------------------------------------------- (d) gRPC

@pytest.fixture(scope="module")
def cifar_tensor():
    return np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)


def tf_predict(target: str, proto):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[INPUT].CopyFrom(proto)
    with grpc.insecure_channel(target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)


def test_tf_serving_grpc_predict_through_nginx_equals_direct(stack, cifar_tensor):
    from tensorflow import make_ndarray, make_tensor_proto

    inputs = [make_tensor_proto(cifar_tensor)]
    if PHOTOS_DIR.is_dir() or os.environ.get("FOVEA_REQUIRE_SHARED") == "1":
        inputs.append(make_tensor_proto([photos()[0].read_bytes()], shape=[1]))  # DT_STRING image
    for proto in inputs:
        via_nginx, direct = tf_predict(stack.proxy_grpc, proto), tf_predict(stack.direct_grpc, proto)
        assert via_nginx == direct
        assert via_nginx.model_spec.name == MODEL
        assert make_ndarray(via_nginx.outputs[OUTPUT]).shape == (1, CLASSES)


def test_tf_serving_model_service_through_nginx_equals_direct(stack):
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL

    def status(target):
        with grpc.insecure_channel(target) as channel:
            return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)

    via_nginx = status(stack.proxy_grpc)
    assert via_nginx == status(stack.direct_grpc)
    assert len(via_nginx.model_version_status) >= 1


def test_kserve_grpc_model_infer_through_nginx_equals_direct(stack, cifar_tensor):
    import tritonclient.grpc as tgrpc

    def infer(target, kind):
        client = tgrpc.InferenceServerClient(url=target)
        try:
            if kind == "tensor":
                inp = tgrpc.InferInput(INPUT, list(cifar_tensor.shape), "FP32")
                inp.set_data_from_numpy(cifar_tensor)
            else:
                inp = tgrpc.InferInput(INPUT, [1], "BYTES")
                inp.set_data_from_numpy(np.array([photos()[0].read_bytes()], dtype=np.object_))
            return client.infer(MODEL, [inp], outputs=[tgrpc.InferRequestedOutput(OUTPUT)])
        finally:
            client.close()

    kinds = ["tensor"]
    if PHOTOS_DIR.is_dir() or os.environ.get("FOVEA_REQUIRE_SHARED") == "1":
        kinds.append("image")
    for kind in kinds:
        via_nginx, direct = infer(stack.proxy_grpc, kind), infer(stack.direct_grpc, kind)
        assert via_nginx.get_response() == direct.get_response(), kind
        np.testing.assert_array_equal(via_nginx.as_numpy(OUTPUT), direct.as_numpy(OUTPUT))
        assert via_nginx.as_numpy(OUTPUT).shape == (1, CLASSES)

    client = tgrpc.InferenceServerClient(url=stack.proxy_grpc)
    try:
        assert client.is_server_live() and client.is_model_ready(MODEL)
        assert client.get_model_metadata(MODEL).name == MODEL
    finally:
        client.close()


def test_grpc_body_limit_at_nginx(stack):
    import grpc
    from tensorflow import make_tensor_proto

    # Just under the limit (gRPC framing and protobuf included): fovea's answer.
    with pytest.raises(grpc.RpcError) as under:
        tf_predict(stack.proxy_grpc, make_tensor_proto([b"\x00" * (LIMIT - 4096)], shape=[1]))
    assert under.value.code() == grpc.StatusCode.INVALID_ARGUMENT, under.value
    # Over it: nginx's own answer, as fovea's size errors map, RESOURCE_EXHAUSTED.
    with pytest.raises(grpc.RpcError) as over:
        tf_predict(stack.proxy_grpc, make_tensor_proto([b"\x00" * (LIMIT + 4096)], shape=[1]))
    assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, over.value
    assert "proxy" in over.value.details()


def test_an_unknown_grpc_service_is_unimplemented_at_nginx(stack):
    import grpc

    with grpc.insecure_channel(stack.proxy_grpc) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ------------------------------------------------------- (e) operations

def test_ops_endpoints_through_nginx(stack):
    ready = requests.get(f"{stack.proxy}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert requests.get(f"{stack.proxy}/healthz", timeout=10).status_code == 200

    metrics = requests.get(f"{stack.proxy}/metrics", timeout=10)
    assert metrics.status_code == 200, metrics.text
    assert "fovea_http_requests_total" in metrics.text

    page = requests.get(f"{stack.proxy}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert page.text == requests.get(f"{stack.direct}/", timeout=10).text


def test_tf_serving_and_kserve_rest_through_nginx(stack):
    for path in (f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/metadata", "/v2", "/v2/health/ready",
                 f"/v2/models/{MODEL}"):
        via_nginx, direct = requests.get(stack.proxy + path, timeout=10), requests.get(stack.direct + path, timeout=10)
        assert via_nginx.status_code == direct.status_code == 200, (path, via_nginx.text)
        # (/v2/health/ready answers with an empty body)
        assert via_nginx.content == direct.content, path
        assert via_nginx.headers.get("Content-Type") == direct.headers.get("Content-Type"), path


def test_an_unknown_path_is_refused_by_nginx_in_foveas_shape(stack):
    r = requests.get(f"{stack.proxy}/admin", headers={"X-Request-Id": "unknown-path"}, timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "route_not_found"
    assert "ustatus=- " in stack.log_line("unknown-path")


def test_upstream_keepalive_reuses_connections(stack):
    """Requests through nginx leave pooled, established connections to fovea
    (counted in /proc/net/tcp: ss would need iproute2)."""
    session = requests.Session()
    for i in range(20):
        assert session.get(f"{stack.proxy}/healthz", headers={"X-Request-Id": f"ka-{i}"}, timeout=10).status_code == 200
    fovea_port = stack.direct.rsplit(":", 1)[1]
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, remote, state = row.split()[1:4]
            # Connections nginx holds to fovea: remote port = fovea's, established (01).
            if int(remote.split(":")[1], 16) == int(fovea_port) and state == "01":
                peers.add(local)
    # Without keepalive nginx closes each upstream connection after its
    # answer (none would be established now); with it, a few stay pooled.
    assert 1 <= len(peers) < 20, peers


# ------------------------------------------------------- fovea unreachable

def test_nginx_answers_in_foveas_shape_when_fovea_is_down(nginx_bin):
    """A second nginx whose upstreams are closed ports: 502 JSON over HTTP,
    UNAVAILABLE over gRPC."""
    import grpc

    prefix = make_prefix("down")
    nginx = None
    try:
        http_port, grpc_port = free_port(), free_port()
        conf = render(SHIPPED_CONF.read_text(), http_port=http_port, grpc_port=grpc_port,
                      fovea_http=f"127.0.0.1:{free_port()}", fovea_grpc=f"127.0.0.1:{free_port()}",
                      prefix=prefix, access_log=prefix / "access.log", body_limit=LIMIT_NGINX,
                      temp_paths=temp_path_directives(nginx_bin, prefix))
        nginx = start_nginx(nginx_bin, conf, prefix)
        proxy = f"http://127.0.0.1:{http_port}"
        assert wait_until(lambda: requests.get(f"{proxy}/x", timeout=2).status_code == 404, 30, nginx), \
            (prefix / "nginx.stderr").read_text(errors="replace")
        r = requests.get(f"{proxy}/readyz", headers={"X-Request-Id": "down-1"}, timeout=10)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "upstream_unavailable"
        assert r.headers["X-Request-Id"] == "down-1"

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
            with pytest.raises(grpc.RpcError) as err:
                call(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    finally:
        if nginx is not None:
            stop(nginx, signal.SIGQUIT)
        shutil.rmtree(prefix, ignore_errors=True)
