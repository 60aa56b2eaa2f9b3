"""KServe V2 gRPC (inference.GRPCInferenceService) through tritonclient.grpc:
health, metadata, raw FP32 and BYTES inference, classification, gRPC status
codes for errors, and UNAVAILABLE under overload."""

import concurrent.futures

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import protocols
from conftest import CIFAR10_LABELS, CLASSES, INPUT, ITEM_SHAPE, MODEL, OUTPUT, assert_server_alive, skip_unless_required


@pytest.fixture(scope="module")
def client(server):
    return tgrpc.InferenceServerClient(url=server.grpc)


@pytest.fixture(scope="module")
def stub(server):
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc))


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_model_is_ready(client):
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")


def test_server_metadata_names_the_supported_extensions(client):
    meta = client.get_server_metadata()
    assert meta.name == "fovea"
    assert meta.version
    assert {"binary_tensor_data", "classification"} <= set(meta.extensions)


def test_model_metadata_describes_the_input_and_output_tensors(client):
    meta = client.get_model_metadata(MODEL)
    assert meta.name == MODEL
    assert "1" in meta.versions
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [(INPUT, "FP32", [-1, *ITEM_SHAPE])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [(OUTPUT, "FP32", [-1, CLASSES])]


def test_raw_fp32_inference_matches_rest(server, tensor):
    out = protocols.kserve_grpc_tensor(server, MODEL, tensor)
    assert out.shape == (1, CLASSES) and out.dtype == np.float32
    np.testing.assert_allclose(out, protocols.kserve_http_tensor(server, MODEL, tensor, binary=True), atol=1e-5)


def test_typed_fp32_contents_are_answered_in_contents(stub, tensor):
    # tritonclient always sends raw contents; other KServe clients use the typed field.
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="typed-1")
    inp = request.inputs.add(name=INPUT, datatype="FP32", shape=list(tensor.shape))
    inp.contents.fp32_contents.extend(tensor.ravel().tolist())
    response = stub.ModelInfer(request, timeout=30)
    assert response.id == "typed-1"
    assert not response.raw_output_contents
    out = response.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == (OUTPUT, "FP32", [1, CLASSES])
    assert len(out.contents.fp32_contents) == CLASSES


def test_an_encoded_image_as_bytes_matches_the_simple_api(server, jpeg, simple_api_prediction):
    logits = protocols.kserve_grpc_image(server, MODEL, jpeg)
    assert logits.shape == (1, CLASSES)
    assert CIFAR10_LABELS[int(np.argmax(logits[0]))] == simple_api_prediction["class"]


def test_classification_returns_triton_style_top_k_strings(server, client, tensor):
    inp = tgrpc.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    result = client.infer(MODEL, [inp], outputs=[tgrpc.InferRequestedOutput(OUTPUT, class_count=2)])
    classes = result.as_numpy(OUTPUT)
    assert classes.shape == (1, 2)
    logits = protocols.kserve_grpc_tensor(server, MODEL, tensor)[0]
    expected = np.argsort(-logits, kind="stable")[:2]
    for entry, index in zip(classes[0], expected):
        value, idx, label = entry.decode().split(":", 2)
        assert (int(idx), label) == (index, CIFAR10_LABELS[index])
        assert abs(float(value) - logits[index]) < 1e-5


# --- errors: gRPC status codes --------------------------------------------


def _infer_error(client, model, inp):
    with pytest.raises(InferenceServerException) as e:
        client.infer(model, [inp])
    return e.value.status()


def test_unknown_model_is_not_found(server, client, tensor):
    inp = tgrpc.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    assert _infer_error(client, "no-such-model", inp) == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no-such-model")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert_server_alive(server)


def test_wrong_shape_is_invalid_argument(server, client):
    bad = np.zeros((1, 3, 16, 16), dtype=np.float32)
    inp = tgrpc.InferInput(INPUT, list(bad.shape), "FP32")
    inp.set_data_from_numpy(bad)
    assert _infer_error(client, MODEL, inp) == "StatusCode.INVALID_ARGUMENT"
    assert_server_alive(server)


def test_unsupported_datatype_is_invalid_argument(server, client):
    inp = tgrpc.InferInput(INPUT, [1, *ITEM_SHAPE], "BOOL")
    inp.set_data_from_numpy(np.zeros((1, *ITEM_SHAPE), dtype=bool))
    assert _infer_error(client, MODEL, inp) == "StatusCode.INVALID_ARGUMENT"
    assert_server_alive(server)


def test_truncated_raw_contents_are_invalid_argument(server, stub, tensor):
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name=INPUT, datatype="FP32", shape=list(tensor.shape))
    request.raw_input_contents.append(tensor.astype("<f4").tobytes()[:-3])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bytes" in e.value.details()
    assert_server_alive(server)


def test_truncated_bytes_elements_are_invalid_argument(server, stub, jpeg):
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name=INPUT, datatype="BYTES", shape=[1])
    framed = len(jpeg).to_bytes(4, "little") + jpeg
    request.raw_input_contents.append(framed[: len(framed) // 2])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_server_alive(server)


def test_overload_is_unavailable_never_a_crash(server):
    if not server.has_resnet:
        skip_unless_required("needs ../shared/models/resnet18-imagenet-random.onnx for a model slow enough to overload")
    client = tgrpc.InferenceServerClient(url=server.grpc)
    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)

    def one(_):
        inp = tgrpc.InferInput(INPUT, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        try:
            client.infer("resnet18-narrow", [inp], client_timeout=120)
            return "OK"
        except InferenceServerException as e:
            return e.status()

    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as pool:
        outcomes = list(pool.map(one, range(48)))
    assert set(outcomes) <= {"OK", "StatusCode.UNAVAILABLE"}, outcomes
    assert "StatusCode.UNAVAILABLE" in outcomes
    assert "OK" in outcomes
    assert client.is_server_live()
