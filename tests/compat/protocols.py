"""One helper per protocol path that returns the model's logits as numpy, all
through the official clients, so that tests can compare protocols with each
other and with /api/v1/predict."""

import base64

import grpc
import numpy as np
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

# tensorflow's own helpers, as TF Serving users call them.
from tensorflow import make_ndarray, make_tensor_proto
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from conftest import INPUT, OUTPUT


def kserve_http_tensor(server, model, tensor, binary):
    client = thttp.InferenceServerClient(url=server.http_hostport)
    inp = thttp.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor, binary_data=binary)
    out = thttp.InferRequestedOutput(OUTPUT, binary_data=binary)
    return client.infer(model, [inp], outputs=[out]).as_numpy(OUTPUT)


def kserve_http_image(server, model, jpeg):
    client = thttp.InferenceServerClient(url=server.http_hostport)
    inp = thttp.InferInput(INPUT, [1], "BYTES")
    inp.set_data_from_numpy(np.array([jpeg], dtype=np.object_), binary_data=True)
    return client.infer(model, [inp], outputs=[thttp.InferRequestedOutput(OUTPUT)]).as_numpy(OUTPUT)


def kserve_grpc_tensor(server, model, tensor):
    client = tgrpc.InferenceServerClient(url=server.grpc)
    inp = tgrpc.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    return client.infer(model, [inp], outputs=[tgrpc.InferRequestedOutput(OUTPUT)]).as_numpy(OUTPUT)


def kserve_grpc_image(server, model, jpeg):
    client = tgrpc.InferenceServerClient(url=server.grpc)
    inp = tgrpc.InferInput(INPUT, [1], "BYTES")
    inp.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
    return client.infer(model, [inp]).as_numpy(OUTPUT)


def tf_stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc))


def float_val_proto(tensor):
    """A DT_FLOAT TensorProto with float_val (make_tensor_proto would use tensor_content)."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in tensor.shape]
        ),
        float_val=tensor.ravel().tolist(),
    )


def tf_grpc_predict(server, model, proto, timeout=30):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[INPUT].CopyFrom(proto)
    response = tf_stub(server).Predict(request, timeout=timeout)
    return response, make_ndarray(response.outputs[OUTPUT])


def tf_grpc_tensor(server, model, tensor, content):
    proto = make_tensor_proto(tensor) if content else float_val_proto(tensor)
    if content:
        assert proto.tensor_content, "make_tensor_proto is expected to use tensor_content"
    return tf_grpc_predict(server, model, proto)[1]


def tf_grpc_image(server, model, jpeg):
    proto = make_tensor_proto([jpeg], shape=[1])
    assert proto.dtype == types_pb2.DT_STRING
    return tf_grpc_predict(server, model, proto)[1]


def tf_rest_row(server, model, tensor):
    r = requests.post(f"{server.http}/v1/models/{model}:predict", json={"instances": tensor.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["predictions"], dtype=np.float32)


def tf_rest_columnar(server, model, tensor):
    r = requests.post(
        f"{server.http}/v1/models/{model}:predict", json={"inputs": {INPUT: tensor.tolist()}}, timeout=30
    )
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["outputs"], dtype=np.float32)


def tf_rest_image(server, model, jpeg):
    b64 = base64.b64encode(jpeg).decode()
    r = requests.post(f"{server.http}/v1/models/{model}:predict", json={"instances": [{"b64": b64}]}, timeout=30)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["predictions"], dtype=np.float32)
