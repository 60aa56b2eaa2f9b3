"""The same input through every protocol must give the same logits (within
1e-5) and the same top class as /api/v1/predict."""

import numpy as np
import pytest
import requests

import protocols
from conftest import CIFAR10_LABELS, IMAGENET_LABELS, MODEL, skip_unless_required

TOL = 1e-5


def test_one_tensor_gives_the_same_logits_through_every_protocol(server, tensor):
    results = {
        "kserve-http-json": protocols.kserve_http_tensor(server, MODEL, tensor, binary=False),
        "kserve-http-binary": protocols.kserve_http_tensor(server, MODEL, tensor, binary=True),
        "kserve-grpc": protocols.kserve_grpc_tensor(server, MODEL, tensor),
        "tf-grpc-float_val": protocols.tf_grpc_tensor(server, MODEL, tensor, content=False),
        "tf-grpc-tensor_content": protocols.tf_grpc_tensor(server, MODEL, tensor, content=True),
        "tf-rest-row": protocols.tf_rest_row(server, MODEL, tensor),
        "tf-rest-columnar": protocols.tf_rest_columnar(server, MODEL, tensor),
    }
    reference = results["kserve-grpc"]
    for name, logits in results.items():
        np.testing.assert_allclose(logits, reference, atol=TOL, err_msg=name)


def test_every_image_gets_the_simple_api_class_through_every_protocol(server, image_files):
    for name, jpeg in image_files:
        r = requests.post(
            f"{server.http}/api/v1/predict",
            params={"model": MODEL},
            files={"image": (name, jpeg, "application/octet-stream")},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        expected = r.json()["class"]
        results = {
            "kserve-http": protocols.kserve_http_image(server, MODEL, jpeg),
            "kserve-grpc": protocols.kserve_grpc_image(server, MODEL, jpeg),
            "tf-grpc": protocols.tf_grpc_image(server, MODEL, jpeg),
            "tf-rest": protocols.tf_rest_image(server, MODEL, jpeg),
        }
        reference = results["kserve-grpc"]
        for proto, logits in results.items():
            np.testing.assert_allclose(logits, reference, atol=TOL, err_msg=f"{name} via {proto}")
            assert CIFAR10_LABELS[int(np.argmax(logits[0]))] == expected, f"{name} via {proto}"


def test_resnet18_on_real_photos_agrees_with_the_simple_api(server, image_files):
    if not server.has_resnet:
        skip_unless_required("../shared/models/resnet18-imagenet-random.onnx is absent")
    labels = [line.strip() for line in IMAGENET_LABELS.read_text().splitlines() if line.strip()]
    assert len(labels) == 1000
    for name, jpeg in image_files[:3]:
        r = requests.post(
            f"{server.http}/api/v1/predict",
            params={"model": "resnet18"},
            files={"image": (name, jpeg, "image/jpeg")},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        grpc_logits = protocols.kserve_grpc_image(server, "resnet18", jpeg)
        tf_logits = protocols.tf_grpc_image(server, "resnet18", jpeg)
        assert grpc_logits.shape == (1, 1000)
        np.testing.assert_allclose(grpc_logits, tf_logits, atol=TOL)
        assert labels[int(np.argmax(grpc_logits[0]))] == r.json()["class"]

