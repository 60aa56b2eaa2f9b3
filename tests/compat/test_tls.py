"""TLS with the official clients: `fovea serve --tls-cert/--tls-key` (and
`--tls-client-ca`) with certificates made here by the openssl command line,
answered over HTTPS (requests), KServe V2 gRPC (tritonclient.grpc with
ssl=True) and TF Serving gRPC (tensorflow-serving-api's stubs on a
grpc.secure_channel); plain text and unknown clients refused; a new
certificate served after SIGHUP without a restart."""

import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import CIFAR10_LABELS, INPUT, ITEM_SHAPE, OUTPUT, TINY_CONFIG, TINY_ONNX, _write_model
from fovea_env import fovea_binary, free_port, ort_environment, stop, wait_until

MODEL = "tiny"


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates (apt-get install openssl)")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(dir: Path, name: str) -> None:
    """`name`.pem and `name`.key: a self-signed CA."""
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=dir,
    )


def make_leaf(dir: Path, ca: str, name: str, server: bool) -> None:
    """`name`.pem and `name`.key signed by CA `ca`: a server certificate for
    127.0.0.1 and localhost, or a client certificate."""
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=dir,
    )
    ext = dir / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", ext.name,
        cwd=dir,
    )


@dataclass
class TlsServer:
    dir: Path
    proc: subprocess.Popen
    https: str
    grpc: str

    def path(self, name: str) -> str:
        return str(self.dir / name)


def start(dir: Path, client_ca: bool) -> TlsServer:
    repo = dir / "models"
    repo.mkdir()
    _write_model(repo, MODEL, TINY_CONFIG, TINY_ONNX, CIFAR10_LABELS, copy=True)
    http_port, grpc_port = free_port(), free_port()
    args = [
        str(fovea_binary()), "serve", "--models", str(repo),
        "--http", f"127.0.0.1:{http_port}", "--grpc", f"127.0.0.1:{grpc_port}",
        "--tls-cert", "server.pem", "--tls-key", "server.key",
    ]
    if client_ca:
        args += ["--tls-client-ca", "clients.pem"]
    log = open(dir / "fovea.log", "wb")
    proc = subprocess.Popen(args, cwd=dir, stdout=log, stderr=subprocess.STDOUT, env=ort_environment())
    server = TlsServer(dir, proc, f"https://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")
    cert = (server.path("client.pem"), server.path("client.key")) if client_ca else None
    ready = lambda: requests.get(f"{server.https}/readyz", verify=server.path("ca.pem"), cert=cert, timeout=2).ok
    if not wait_until(ready, 180, proc):
        stop(proc, signal.SIGKILL)
        pytest.fail(f"fovea serve with TLS did not become ready; log:\n{(dir / 'fovea.log').read_text(errors='replace')[-4000:]}")
    return server


@pytest.fixture(scope="module")
def tls_server():
    dir = Path(tempfile.mkdtemp(prefix="fovea-tls-"))
    make_ca(dir, "ca")
    make_leaf(dir, "ca", "server", server=True)
    server = start(dir, client_ca=False)
    yield server
    stop(server.proc)
    shutil.rmtree(dir, ignore_errors=True)


@pytest.fixture(scope="module")
def mtls_server():
    dir = Path(tempfile.mkdtemp(prefix="fovea-mtls-"))
    make_ca(dir, "ca")
    make_leaf(dir, "ca", "server", server=True)
    make_ca(dir, "clients")
    make_leaf(dir, "clients", "client", server=False)
    make_ca(dir, "strangers")
    make_leaf(dir, "strangers", "stranger", server=False)
    server = start(dir, client_ca=True)
    yield server
    stop(server.proc)
    shutil.rmtree(dir, ignore_errors=True)


def _tensor() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, *ITEM_SHAPE)).astype(np.float32)


def _triton(server: TlsServer, **tls) -> tgrpc.InferenceServerClient:
    def read(name):
        return Path(server.path(name)).read_bytes() if name else None

    return tgrpc.InferenceServerClient(
        url=server.grpc,
        ssl=True,
        root_certificates=server.path("ca.pem"),
        private_key=tls.get("key") and server.path(tls["key"]),
        certificate_chain=tls.get("cert") and server.path(tls["cert"]),
    )


def _infer(client: tgrpc.InferenceServerClient) -> np.ndarray:
    inp = tgrpc.InferInput(INPUT, [1, *ITEM_SHAPE], "FP32")
    inp.set_data_from_numpy(_tensor())
    return client.infer(MODEL, [inp]).as_numpy(OUTPUT)


def test_https_and_both_grpc_services_answer_the_official_clients(tls_server):
    ca = tls_server.path("ca.pem")
    listed = requests.get(f"{tls_server.https}/v2/models/{MODEL}", verify=ca, timeout=10)
    assert listed.status_code == 200 and listed.json()["name"] == MODEL

    client = _triton(tls_server)
    assert client.is_server_live()
    assert _infer(client).shape == (1, len(CIFAR10_LABELS))

    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.secure_channel(tls_server.grpc, credentials))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    status = stub.GetModelStatus(request, timeout=10)
    assert status.model_version_status[0].state == 30  # AVAILABLE


def test_plain_text_and_untrusting_clients_get_nothing(tls_server):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_server.https.replace("https://", "http://") + "/readyz", timeout=10)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.https}/readyz", timeout=10)  # the system CAs do not know ours
    plain = tgrpc.InferenceServerClient(url=tls_server.grpc)
    with pytest.raises(InferenceServerException):
        plain.is_server_live()


def test_a_renewed_certificate_is_served_after_sighup(tls_server):
    make_ca(tls_server.dir, "ca2")
    make_leaf(tls_server.dir, "ca2", "server", server=True)
    tls_server.proc.send_signal(signal.SIGHUP)
    renewed = lambda: requests.get(f"{tls_server.https}/readyz", verify=tls_server.path("ca2.pem"), timeout=2).ok
    assert wait_until(renewed, 30, tls_server.proc), "the new certificate was not served"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.https}/readyz", verify=tls_server.path("ca.pem"), timeout=10)
    assert tls_server.proc.poll() is None, "SIGHUP must not stop the server"


def test_client_certificates_are_required_and_checked(mtls_server):
    ca = mtls_server.path("ca.pem")
    good = (mtls_server.path("client.pem"), mtls_server.path("client.key"))
    stranger = (mtls_server.path("stranger.pem"), mtls_server.path("stranger.key"))
    assert requests.get(f"{mtls_server.https}/v2/health/ready", verify=ca, cert=good, timeout=10).ok
    for cert in (None, stranger):
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(f"{mtls_server.https}/v2/health/ready", verify=ca, cert=cert, timeout=10)

    assert _triton(mtls_server, cert="client.pem", key="client.key").is_server_live()
    for tls in ({}, {"cert": "stranger.pem", "key": "stranger.key"}):
        with pytest.raises(InferenceServerException):
            _triton(mtls_server, **tls).is_server_live()
