"""TF Serving REST (the same paths TF Serving serves on 8501) through plain
HTTP: model status and metadata, :predict in row and columnar form, {"b64"}
images, :classify, and the {"error": "..."} form."""

import base64

import numpy as np
import requests

import protocols
from conftest import CIFAR10_LABELS, CLASSES, INPUT, ITEM_SHAPE, MODEL, OUTPUT, assert_server_alive


def _get(server, path):
    r = requests.get(f"{server.http}{path}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_model_status_lists_the_available_version(server):
    expected = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert _get(server, f"/v1/models/{MODEL}") == expected
    assert _get(server, f"/v1/models/{MODEL}/versions/1") == expected


def test_metadata_returns_the_serving_default_signature(server):
    meta = _get(server, f"/v1/models/{MODEL}/metadata")
    assert meta["model_spec"]["name"] == MODEL
    assert str(meta["model_spec"]["version"]) == "1"
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    inp, out = sig["inputs"][INPUT], sig["outputs"][OUTPUT]
    assert inp["dtype"] == "DT_FLOAT" and out["dtype"] == "DT_FLOAT"
    # int64 fields are JSON strings in the proto3 mapping TF Serving uses.
    assert [int(d["size"]) for d in inp["tensor_shape"]["dim"]] == [-1, *ITEM_SHAPE]
    assert [int(d["size"]) for d in out["tensor_shape"]["dim"]] == [-1, CLASSES]


def test_row_and_columnar_predict_agree(server, tensor):
    rows = protocols.tf_rest_row(server, MODEL, tensor)
    columns = protocols.tf_rest_columnar(server, MODEL, tensor)
    assert rows.shape == (1, CLASSES)
    np.testing.assert_allclose(rows, columns, atol=1e-5)


def test_columnar_predict_accepts_an_unnamed_input(server, tensor):
    r = requests.post(f"{server.http}/v1/models/{MODEL}:predict", json={"inputs": tensor.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(
        np.asarray(r.json()["outputs"], dtype=np.float32), protocols.tf_rest_row(server, MODEL, tensor), atol=1e-5
    )


def test_versioned_predict_path_is_served(server, tensor):
    r = requests.post(
        f"{server.http}/v1/models/{MODEL}/versions/1:predict", json={"instances": tensor.tolist()}, timeout=30
    )
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["predictions"]).shape == (1, CLASSES)


def test_b64_images_match_the_simple_api(server, jpeg, simple_api_prediction):
    plain = protocols.tf_rest_image(server, MODEL, jpeg)
    assert plain.shape == (1, CLASSES)
    assert CIFAR10_LABELS[int(np.argmax(plain[0]))] == simple_api_prediction["class"]
    named = requests.post(
        f"{server.http}/v1/models/{MODEL}:predict",
        json={"signature_name": "serving_default", "instances": [{INPUT: {"b64": base64.b64encode(jpeg).decode()}}]},
        timeout=30,
    )
    assert named.status_code == 200, named.text
    predictions = named.json()["predictions"]
    # A named input in row form gets a named output back only when the
    # signature has several outputs; ours has one, so rows are bare lists.
    np.testing.assert_allclose(np.asarray(predictions, dtype=np.float32), plain, atol=1e-5)


def test_classify_returns_label_score_pairs(server, image_files, simple_api_prediction):
    examples = [{"image": {"b64": base64.b64encode(j).decode()}} for _, j in image_files[:2]]
    r = requests.post(f"{server.http}/v1/models/{MODEL}:classify", json={"examples": examples}, timeout=30)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert len(result) == len(examples)
    reference = {p["label"]: p["score"] for p in simple_api_prediction["predictions"]}
    for label, score in result[0]:
        assert abs(score - reference[label]) < 1e-5
    assert max(result[0], key=lambda pair: pair[1])[0] == simple_api_prediction["class"]


# --- errors: {"error": "..."} with TF Serving's statuses -------------------


def _error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


def test_unknown_model_and_version_are_404(server, tensor):
    _error(requests.get(f"{server.http}/v1/models/no-such-model", timeout=10), 404)
    _error(
        requests.post(f"{server.http}/v1/models/no-such-model:predict", json={"instances": tensor.tolist()}, timeout=10),
        404,
    )
    _error(requests.get(f"{server.http}/v1/models/{MODEL}/versions/99", timeout=10), 404)
    assert_server_alive(server)


def test_malformed_json_is_400(server):
    r = requests.post(f"{server.http}/v1/models/{MODEL}:predict", data=b'{"instances": [1, 2', timeout=10)
    _error(r, 400)
    assert_server_alive(server)


def test_wrong_shape_is_400(server):
    bad = np.zeros((1, 3, 16, 16), dtype=np.float32)
    _error(requests.post(f"{server.http}/v1/models/{MODEL}:predict", json={"instances": bad.tolist()}, timeout=10), 400)
    assert_server_alive(server)


def test_ragged_instances_are_400(server):
    body = {"instances": [[1.0, 2.0], [3.0]]}
    _error(requests.post(f"{server.http}/v1/models/{MODEL}:predict", json=body, timeout=10), 400)
    assert_server_alive(server)


def test_strings_for_a_float_input_are_400(server):
    body = {"instances": [["not", "numbers"]]}
    _error(requests.post(f"{server.http}/v1/models/{MODEL}:predict", json=body, timeout=10), 400)
    assert_server_alive(server)


def test_invalid_base64_is_400(server):
    body = {"instances": [{"b64": "***not base64***"}]}
    _error(requests.post(f"{server.http}/v1/models/{MODEL}:predict", json=body, timeout=10), 400)
    assert_server_alive(server)
