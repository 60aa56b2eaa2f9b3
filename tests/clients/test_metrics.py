"""/metrics against a real `fovea serve`: known traffic (simple API, KServe
V2 REST, TF Serving REST, KServe V2 gRPC, a non-image) between two scrapes
must move each counter and histogram by exactly what the code says, with
its labels; and docs/METRICS.md must list exactly the fovea_* metrics the
server exports, with their types and label names."""

import base64
import re

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import NOT_AN_IMAGE, REPO_ROOT

METRICS_DOC = REPO_ROOT / "docs" / "METRICS.md"
N = 3  # successful requests per protocol

SIMPLE = "/api/v1/predict"
V2_INFER = "/v2/models/{name}/infer"
TF_ANY = "/v1/models/{*rest}"

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


class Scrape:
    """A parsed Prometheus text exposition."""

    def __init__(self, text: str):
        self.types = {}    # metric family -> counter | gauge | histogram | ...
        self.samples = []  # (sample name, {label: value}, float)
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                self.types[name] = kind.strip()
            elif line and not line.startswith("#"):
                m = _SAMPLE.match(line)
                assert m, f"unparsable exposition line: {line!r}"
                labels, rest = {}, m["labels"] or ""
                while rest:
                    lm = _LABEL.match(rest)
                    assert lm, f"unparsable labels in {line!r}"
                    labels[lm[1]] = lm[2]
                    rest = rest[lm.end():]
                self.samples.append((m["name"], labels, float(m["value"])))

    def value(self, name, **labels) -> float:
        """The sum over the samples of `name` whose labels include `labels`
        (0 when none: a label set not seen yet has not moved)."""
        return sum(v for n, ls, v in self.samples if n == name and labels.items() <= ls.items())

    def label_names(self, family: str) -> set:
        names = {family, f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        return {k for n, ls, _ in self.samples if n in names for k in ls} - {"le"}


def scrape(server) -> Scrape:
    r = requests.get(f"{server.http}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return Scrape(r.text)


@pytest.fixture(scope="module")
def traffic(server, jpeg_bytes):
    """Scrapes, sends known traffic, scrapes again: (before, after, what was sent)."""
    model, default = server.model, server.default_version
    other = server.versions[0] if len(server.versions) > 1 else None
    before = scrape(server)

    for _ in range(N):  # simple API, one multipart image each, default version
        r = requests.post(f"{server.http}{SIMPLE}", params={"model": model},
                          files={"image": ("photo.jpg", jpeg_bytes, "image/jpeg")}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == default

    client = httpclient.InferenceServerClient(url=server.http.split("://", 1)[1])
    for _ in range(N):  # KServe V2 REST, the encoded image as BYTES
        inp = httpclient.InferInput("input", [1], "BYTES")
        inp.set_data_from_numpy(np.array([jpeg_bytes], dtype=np.object_), binary_data=True)
        client.infer(model, [inp])
    # ... and one ready FP32 tensor of two items: inferred, never decoded.
    meta = client.get_model_metadata(model)
    tensor = np.zeros((2, *meta["inputs"][0]["shape"][1:]), dtype=np.float32)
    inp = httpclient.InferInput(meta["inputs"][0]["name"], list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor, binary_data=True)
    client.infer(model, [inp])

    b64 = base64.b64encode(jpeg_bytes).decode()
    for _ in range(N):  # TF Serving REST :predict with a {"b64"} image
        r = requests.post(f"{server.http}/v1/models/{model}:predict", json={"instances": [{"b64": b64}]}, timeout=60)
        assert r.status_code == 200, r.text

    # One KServe V2 gRPC image: the engine's metrics count it, the HTTP ones cannot.
    grpc_client = grpcclient.InferenceServerClient(url=server.grpc)
    inp = grpcclient.InferInput("input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([jpeg_bytes], dtype=np.object_))
    grpc_client.infer(model, [inp])

    # One non-image through the simple API: admitted, waits for a decoder, fails to decode.
    r = requests.post(f"{server.http}{SIMPLE}", params={"model": model},
                      files={"image": ("bad.txt", NOT_AN_IMAGE, "application/octet-stream")}, timeout=60)
    bad_status = r.status_code
    assert 400 <= bad_status < 500, r.text

    if other is not None:  # one image for an explicit, non-default version
        r = requests.post(f"{server.http}{SIMPLE}", params={"model": model, "version": other},
                          files={"image": ("photo.jpg", jpeg_bytes, "image/jpeg")}, timeout=60)
        assert r.status_code == 200 and r.json()["version"] == other, r.text

    after = scrape(server)
    return before, after, {"bad_status": str(bad_status), "other": other}


def delta(traffic, name, **labels):
    before, after, _ = traffic
    return after.value(name, **labels) - before.value(name, **labels)


def test_http_requests_are_counted_by_method_route_and_status(traffic, server):
    sent = traffic[2]
    extra = 1 if sent["other"] is not None else 0
    expected = {
        ("POST", SIMPLE, "200"): N + extra,
        ("POST", SIMPLE, sent["bad_status"]): 1,
        ("POST", V2_INFER, "200"): N + 1,
        ("POST", TF_ANY, "200"): N,
        ("GET", "/v2/models/{name}", "200"): 1,
        # The first scrape is counted once its answer is written: the second one sees it.
        ("GET", "/metrics", "200"): 1,
    }
    for (method, route, status), count in expected.items():
        labels = {"method": method, "route": route, "status": status}
        assert delta(traffic, "fovea_http_requests_total", **labels) == count, labels
        assert delta(traffic, "fovea_http_request_duration_seconds_count", **labels) == count, labels
        assert delta(traffic, "fovea_http_request_duration_seconds_bucket", le="+Inf", **labels) == count, labels
    # Nothing else was asked over HTTP.
    assert delta(traffic, "fovea_http_requests_total") == sum(expected.values())
    assert delta(traffic, "fovea_http_request_duration_seconds_sum", method="POST", route=SIMPLE, status="200") > 0


def test_engine_metrics_count_every_protocol_per_model_and_version(traffic, server):
    labels = {"model": server.model, "version": str(server.default_version)}
    images = 3 * N + 1  # simple API, V2 REST and TF REST images, and the gRPC one
    items = images + 2  # plus the two-item FP32 tensor
    # One queue wait per request reaching a batch: each image is its own request, the tensor one.
    assert delta(traffic, "fovea_queue_wait_seconds_count", **labels) == images + 1
    # Every item inferred lands in exactly one batch.
    assert delta(traffic, "fovea_batch_size_sum", **labels) == items
    batches = delta(traffic, "fovea_batch_size_count", **labels)
    assert 1 <= batches <= images + 1
    assert delta(traffic, "fovea_inference_seconds_count", **labels) == batches
    assert delta(traffic, "fovea_inference_seconds_sum", **labels) > 0
    # Decoding: every encoded image waits for a decode thread, the non-image too;
    # only the ones that decode are timed. The tensor is neither.
    assert delta(traffic, "fovea_decode_wait_seconds_count", **labels) == images + 1
    assert delta(traffic, "fovea_preprocess_seconds_count", **labels) == images
    assert delta(traffic, "fovea_preprocess_seconds_sum", **labels) > 0
    # Nothing is left in the queue, and nothing was dropped.
    after = traffic[1]
    assert after.value("fovea_queue_depth", **labels) == 0
    for reason in ("queue_full", "deadline", "cancelled"):
        assert delta(traffic, "fovea_requests_dropped_total", reason=reason, **labels) == 0, reason


def test_a_non_default_version_is_counted_under_its_own_label(traffic, server):
    other = traffic[2]["other"]
    if other is None:
        pytest.skip(f"{server.model} serves a single version, {server.versions}")
    labels = {"model": server.model, "version": str(other)}
    assert delta(traffic, "fovea_batch_size_sum", **labels) == 1
    assert delta(traffic, "fovea_preprocess_seconds_count", **labels) == 1
    assert delta(traffic, "fovea_queue_wait_seconds_count", **labels) == 1


def test_histogram_buckets_are_cumulative_and_end_at_the_count(traffic):
    after = traffic[1]
    for family, kind in after.types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in after.samples:
            if name == f"{family}_bucket":
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                series.setdefault(key, []).append((float(labels["le"]), value))
        assert series, family
        for key, buckets in series.items():
            counts = [v for _, v in sorted(buckets)]
            assert counts == sorted(counts), (family, key)
            assert counts[-1] == after.value(f"{family}_count", **dict(key)), (family, key)


# ---- docs/METRICS.md --------------------------------------------------------


def documented():
    """{name: (type, {labels})} from the tables of docs/METRICS.md: rows
    `| `fovea_name` | type | `label`, ... | meaning |`."""
    assert METRICS_DOC.exists(), f"{METRICS_DOC} is missing"
    rows = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`fovea_[a-z0-9_]+`", cells[0]):
            continue
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is documented twice"
        rows[name] = (cells[1], set(re.findall(r"`([a-z_]+)`", cells[2])))
    assert rows, f"no metric table found in {METRICS_DOC}"
    return rows


def test_every_exported_metric_is_documented_and_every_documented_one_exported(traffic):
    after = traffic[1]
    exported = {name: kind for name, kind in after.types.items() if name.startswith("fovea_")}
    docs = documented()
    assert sorted(set(exported) - set(docs)) == [], "exported but not documented in docs/METRICS.md"
    assert sorted(set(docs) - set(exported)) == [], "documented in docs/METRICS.md but not exported"
    for name, (kind, labels) in docs.items():
        assert kind == exported[name], f"{name}: documented as {kind}, exported as {exported[name]}"
        assert labels == after.label_names(name), f"{name}: documented labels {labels}, exported {after.label_names(name)}"
