"""Triton's streaming extension, ModelStreamInfer on
inference.GRPCInferenceService, through tritonclient.grpc's start_stream /
async_stream_infer, unchanged: answers for every request, in order, equal
to ModelInfer's; errors come back in-stream without closing the stream."""

import queue

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

import protocols
from conftest import INPUT, MODEL, OUTPUT

WAIT = 60  # seconds: a bound on a hung stream, not a timing assertion


class Results:
    """The stream callback's answers, as (result, error) pairs."""

    def __init__(self):
        self.queue = queue.Queue()

    def __call__(self, result, error):
        self.queue.put((result, error))

    def next(self):
        return self.queue.get(timeout=WAIT)


@pytest.fixture
def stream(server):
    client = tgrpc.InferenceServerClient(url=server.grpc)
    results = Results()
    client.start_stream(callback=results)
    yield client, results
    client.stop_stream()
    client.close()


def _tensor_input(tensor):
    inp = tgrpc.InferInput(INPUT, list(tensor.shape), "FP32")
    inp.set_data_from_numpy(tensor)
    return inp


def _image_input(jpeg):
    inp = tgrpc.InferInput(INPUT, [1], "BYTES")
    inp.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
    return inp


def test_stream_answers_every_request_in_order_like_model_infer(server, stream, tensor):
    client, results = stream
    rng = np.random.default_rng(7)
    tensors = [rng.standard_normal(tensor.shape).astype(np.float32) for _ in range(10)]
    for i, t in enumerate(tensors):
        client.async_stream_infer(MODEL, [_tensor_input(t)], request_id=f"frame-{i}",
                                  outputs=[tgrpc.InferRequestedOutput(OUTPUT)])
    for i, t in enumerate(tensors):
        result, error = results.next()
        assert error is None, error
        assert result.get_response().id == f"frame-{i}"
        np.testing.assert_allclose(result.as_numpy(OUTPUT), protocols.kserve_grpc_tensor(server, MODEL, t), atol=1e-5)


def test_encoded_images_stream_like_model_infer(server, stream, jpeg):
    client, results = stream
    client.async_stream_infer(MODEL, [_image_input(jpeg)], request_id="image")
    result, error = results.next()
    assert error is None, error
    np.testing.assert_allclose(result.as_numpy(OUTPUT), protocols.kserve_grpc_image(server, MODEL, jpeg), atol=1e-5)


def test_errors_come_back_in_stream_and_the_stream_goes_on(stream, tensor, jpeg):
    client, results = stream
    client.async_stream_infer("no-such-model", [_tensor_input(tensor)], request_id="bad-model")
    client.async_stream_infer(MODEL, [_image_input(b"not an image")], request_id="bad-image")
    client.async_stream_infer(MODEL, [_tensor_input(tensor)], request_id="good")
    for expected in ("no-such-model", "image"):
        result, error = results.next()
        assert result is None
        assert isinstance(error, InferenceServerException)
        assert expected in error.message().lower(), error.message()
    result, error = results.next()
    assert error is None, error
    assert result.get_response().id == "good"
