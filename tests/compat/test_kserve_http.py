"""KServe V2 REST through tritonclient.http: health, metadata, inference with
JSON and binary tensors, encoded images as BYTES, the classification
extension, and the protocol's error form."""

import json

import numpy as np
import pytest
import requests
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

import protocols
from conftest import CIFAR10_LABELS, CLASSES, INPUT, ITEM_SHAPE, MODEL, OUTPUT, assert_server_alive


@pytest.fixture(scope="module")
def client(server):
    return thttp.InferenceServerClient(url=server.http_hostport)


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_model_readiness_is_reported_per_model_and_version(client):
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no-such-model")


def test_server_metadata_names_the_supported_extensions(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "fovea"
    assert meta["version"]
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])


def test_model_metadata_describes_the_input_and_output_tensors(client):
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL
    assert "1" in meta["versions"]
    assert meta["inputs"] == [{"name": INPUT, "datatype": "FP32", "shape": [-1, *ITEM_SHAPE]}]
    assert meta["outputs"] == [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, CLASSES]}]


def test_fp32_json_and_binary_tensors_give_the_same_logits(server, tensor):
    as_json = protocols.kserve_http_tensor(server, MODEL, tensor, binary=False)
    as_binary = protocols.kserve_http_tensor(server, MODEL, tensor, binary=True)
    assert as_json.shape == (1, CLASSES)
    assert as_json.dtype == np.float32
    np.testing.assert_allclose(as_json, as_binary, atol=1e-5)


def test_a_batch_of_two_returns_one_row_per_item(server, tensor):
    batch = np.concatenate([tensor, -tensor])
    out = protocols.kserve_http_tensor(server, MODEL, batch, binary=True)
    assert out.shape == (2, CLASSES)
    single = protocols.kserve_http_tensor(server, MODEL, tensor, binary=True)
    np.testing.assert_allclose(out[:1], single, atol=1e-5)
    assert not np.allclose(out[0], out[1])


def test_an_encoded_image_as_bytes_matches_the_simple_api(server, jpeg, simple_api_prediction):
    logits = protocols.kserve_http_image(server, MODEL, jpeg)
    assert logits.shape == (1, CLASSES)
    assert CIFAR10_LABELS[int(np.argmax(logits[0]))] == simple_api_prediction["class"]


def test_outputs_default_to_binary_when_none_are_requested(server, tensor):
    # tritonclient then sets "binary_data_output": true for the whole request.
    client = thttp.InferenceServerClient(url=server.http_hostport)
    inp = thttp.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    result = client.infer(MODEL, [inp])
    assert result.get_output(OUTPUT)["parameters"]["binary_data_size"] == CLASSES * 4
    np.testing.assert_allclose(
        result.as_numpy(OUTPUT), protocols.kserve_http_tensor(server, MODEL, tensor, binary=False), atol=1e-5
    )


def test_classification_returns_triton_style_top_k_strings(server, tensor):
    client = thttp.InferenceServerClient(url=server.http_hostport)
    inp = thttp.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    result = client.infer(MODEL, [inp], outputs=[thttp.InferRequestedOutput(OUTPUT, class_count=3)])
    classes = result.as_numpy(OUTPUT)
    assert classes.shape == (1, 3)
    logits = protocols.kserve_http_tensor(server, MODEL, tensor, binary=True)[0]
    expected = np.argsort(-logits, kind="stable")[:3]
    for entry, index in zip(classes[0], expected):
        value, idx, label = entry.decode().split(":", 2)
        assert int(idx) == index
        assert label == CIFAR10_LABELS[index]
        # Triton reports the output value itself (here the logit), six decimals.
        assert abs(float(value) - logits[index]) < 1e-5


def test_versioned_inference_uses_that_version(server, tensor):
    client = thttp.InferenceServerClient(url=server.http_hostport)
    inp = thttp.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    result = client.infer(MODEL, [inp], model_version="1")
    assert result.get_response()["model_version"] == "1"
    assert result.get_response()["model_name"] == MODEL


# --- errors: KServe REST answers {"error": "..."} with a 4xx status ---------


def _error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


def test_unknown_model_is_404(server, client, tensor):
    inp = thttp.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    with pytest.raises(InferenceServerException) as e:
        client.infer("no-such-model", [inp])
    assert e.value.status() == "404"
    _error(requests.get(f"{server.http}/v2/models/no-such-model", timeout=10), 404)
    _error(requests.get(f"{server.http}/v2/models/{MODEL}/versions/99", timeout=10), 404)
    assert_server_alive(server)


def test_wrong_shape_is_400(server, client):
    bad = np.zeros((1, 3, 16, 16), dtype=np.float32)
    inp = thttp.InferInput(INPUT, list(bad.shape), "FP32")
    inp.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, [inp])
    assert e.value.status() == "400"
    assert_server_alive(server)


def test_unsupported_datatype_is_400(server, client):
    inp = thttp.InferInput(INPUT, [1, *ITEM_SHAPE], "BOOL")
    inp.set_data_from_numpy(np.zeros((1, *ITEM_SHAPE), dtype=bool))
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, [inp])
    assert e.value.status() == "400"
    assert_server_alive(server)


def test_json_data_that_does_not_fill_the_shape_is_400(server):
    body = {"inputs": [{"name": INPUT, "shape": [1, *ITEM_SHAPE], "datatype": "FP32", "data": [0.0] * 5}]}
    _error(requests.post(f"{server.http}/v2/models/{MODEL}/infer", json=body, timeout=10), 400)
    assert_server_alive(server)


def test_malformed_json_is_400(server):
    r = requests.post(
        f"{server.http}/v2/models/{MODEL}/infer",
        data=b'{"inputs": [ {"name": ',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    _error(r, 400)
    assert_server_alive(server)


def _binary_request(tensor, cut):
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT,
                    "shape": list(tensor.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes},
                }
            ]
        }
    ).encode()
    payload = tensor.astype("<f4").tobytes()[: tensor.nbytes - cut]
    return header, header + payload


def test_truncated_binary_payload_is_400(server, tensor):
    header, body = _binary_request(tensor, cut=10)
    r = requests.post(
        f"{server.http}/v2/models/{MODEL}/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert "truncated" in _error(r, 400)
    assert_server_alive(server)


def test_header_length_beyond_the_body_is_400(server, tensor):
    header, body = _binary_request(tensor, cut=0)
    r = requests.post(
        f"{server.http}/v2/models/{MODEL}/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(len(body) + 100)},
        timeout=10,
    )
    _error(r, 400)
    assert_server_alive(server)


def test_raw_binary_request_without_the_client_round_trips(server, tensor):
    header, body = _binary_request(tensor, cut=0)
    r = requests.post(
        f"{server.http}/v2/models/{MODEL}/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == OUTPUT and out["datatype"] == "FP32" and out["shape"] == [1, CLASSES]
    np.testing.assert_allclose(
        np.asarray(out["data"], dtype=np.float32).reshape(1, CLASSES),
        protocols.kserve_http_tensor(server, MODEL, tensor, binary=True),
        atol=1e-5,
    )
