"""TF Serving gRPC through tensorflow-serving-api's stubs: Predict with
float_val, tensor_content and DT_STRING images, GetModelMetadata,
GetModelStatus, Classify, HandleReloadConfigRequest, and gRPC status codes
for errors."""

import grpc
import numpy as np
import pytest
from google.protobuf import wrappers_pb2
from tensorflow import make_ndarray, make_tensor_proto
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

import protocols
from conftest import CIFAR10_LABELS, CLASSES, INPUT, ITEM_SHAPE, MODEL, OUTPUT, assert_server_alive


@pytest.fixture(scope="module")
def stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc))


@pytest.fixture(scope="module")
def model_stub(server):
    return model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc))


def test_predict_with_float_val_returns_logits_and_the_model_spec(server, tensor):
    response, logits = protocols.tf_grpc_predict(server, MODEL, protocols.float_val_proto(tensor))
    assert logits.shape == (1, CLASSES) and logits.dtype == np.float32
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.outputs[OUTPUT].dtype == types_pb2.DT_FLOAT
    # TF Serving answers with float_val, which clients often read directly.
    assert len(response.outputs[OUTPUT].float_val) == CLASSES


def test_predict_with_tensor_content_matches_float_val(server, tensor):
    a = protocols.tf_grpc_tensor(server, MODEL, tensor, content=True)
    b = protocols.tf_grpc_tensor(server, MODEL, tensor, content=False)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_predict_with_a_dt_string_image_matches_the_simple_api(server, jpeg, simple_api_prediction):
    logits = protocols.tf_grpc_image(server, MODEL, jpeg)
    assert logits.shape == (1, CLASSES)
    assert CIFAR10_LABELS[int(np.argmax(logits[0]))] == simple_api_prediction["class"]


def test_predict_honours_an_explicit_version(server, stub, tensor):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=1))
    request.inputs[INPUT].CopyFrom(make_tensor_proto(tensor))
    response = stub.Predict(request, timeout=30)
    assert response.model_spec.version.value == 1
    assert make_ndarray(response.outputs[OUTPUT]).shape == (1, CLASSES)


def test_get_model_metadata_returns_the_serving_default_signature(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    any_msg = response.metadata["signature_def"]
    assert any_msg.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert any_msg.Unpack(sigs)
    sig = sigs.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    inp, out = sig.inputs[INPUT], sig.outputs[OUTPUT]
    assert inp.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in inp.tensor_shape.dim] == [-1, *ITEM_SHAPE]
    assert out.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in out.tensor_shape.dim] == [-1, CLASSES]


def test_get_model_status_reports_the_available_version(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = model_stub.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    assert response.model_version_status[0].status.error_code == 0


def _image_example(jpeg):
    return example_pb2.Example(
        features=feature_pb2.Features(
            feature={"image": feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[jpeg]))}
        )
    )


def test_classify_returns_labels_with_the_simple_api_scores(stub, image_files, simple_api_prediction):
    jpegs = [image_files[0][1], image_files[-1][1]]
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.input.example_list.examples.extend([_image_example(j) for j in jpegs])
    response = stub.Classify(request, timeout=30)
    assert len(response.result.classifications) == 2
    first = response.result.classifications[0].classes
    assert first, "no classes returned"
    reference = {p["label"]: p["score"] for p in simple_api_prediction["predictions"]}
    for c in first:
        assert c.label in CIFAR10_LABELS
        assert abs(c.score - reference[c.label]) < 1e-5
    assert max(first, key=lambda c: c.score).label == simple_api_prediction["class"]


# --- errors: gRPC status codes --------------------------------------------


def _rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=30)
    return e.value


def _predict_request(model, proto):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[INPUT].CopyFrom(proto)
    return request


def test_unknown_model_is_not_found(server, stub, model_stub, tensor):
    err = _rpc_error(stub.Predict, _predict_request("no-such-model", make_tensor_proto(tensor)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "no-such-model"
    assert _rpc_error(model_stub.GetModelStatus, status).code() == grpc.StatusCode.NOT_FOUND
    assert_server_alive(server)


def test_unknown_version_is_not_found(server, stub, tensor):
    request = _predict_request(MODEL, make_tensor_proto(tensor))
    request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=99))
    assert _rpc_error(stub.Predict, request).code() == grpc.StatusCode.NOT_FOUND
    assert_server_alive(server)


def test_wrong_shape_is_invalid_argument(server, stub):
    bad = make_tensor_proto(np.zeros((1, 3, 16, 16), dtype=np.float32))
    assert _rpc_error(stub.Predict, _predict_request(MODEL, bad)).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_server_alive(server)


def test_wrong_dtype_is_invalid_argument(server, stub):
    bad = make_tensor_proto(np.zeros((1, *ITEM_SHAPE), dtype=bool))
    err = _rpc_error(stub.Predict, _predict_request(MODEL, bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DT_BOOL" in err.details()
    assert_server_alive(server)


def test_truncated_tensor_content_is_invalid_argument(server, stub, tensor):
    proto = make_tensor_proto(tensor)
    proto.tensor_content = proto.tensor_content[:-2]
    assert _rpc_error(stub.Predict, _predict_request(MODEL, proto)).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_server_alive(server)


def test_reload_config_without_a_config_rescans_the_repository(server, model_stub):
    # fovea has no model config list: an empty request rescans its repository.
    response = model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=60)
    assert response.status.error_code == 0, response.status.error_message
    assert_server_alive(server)


def test_reload_config_naming_models_is_unimplemented(server, model_stub):
    request = model_management_pb2.ReloadConfigRequest()
    model = request.config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = MODEL, "/models/tiny", "tensorflow"
    assert _rpc_error(model_stub.HandleReloadConfigRequest, request).code() == grpc.StatusCode.UNIMPLEMENTED
    assert_server_alive(server)


def test_regress_is_unimplemented(server, stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    assert _rpc_error(stub.Regress, request).code() == grpc.StatusCode.UNIMPLEMENTED
    assert_server_alive(server)
