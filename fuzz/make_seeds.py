"""Writes the committed seed inputs of fuzz/seeds/<target>/: tiny images of
every accepted format and hand-made request bodies (JSON, multipart, KServe
binary, protobuf). Real photos are added to the corpus at run time by
scripts/fuzz.sh from ../shared, never committed.

Run with the test venv (Pillow, tensorflow-serving-api, tritonclient):
    .venv/bin/python fuzz/make_seeds.py
"""

import base64
import io
import json
import struct
from pathlib import Path

from PIL import Image

SEEDS = Path(__file__).resolve().parent / "seeds"


def write(target: str, name: str, data: bytes) -> None:
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def image(fmt: str, mode: str = "RGB", size=(6, 4), **save) -> bytes:
    img = Image.new("RGB", size)
    # A gradient, so that resizing and normalising see distinct values.
    img.putdata([((x * 40) % 256, (y * 60) % 256, 128) for y in range(size[1]) for x in range(size[0])])
    out = io.BytesIO()
    img.convert(mode).save(out, fmt, **save)
    return out.getvalue()


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def images() -> dict:
    return {
        "rgb.png": image("PNG"),
        "grey16.png": image("PNG", "I;16", (5, 3)),
        "rgba.png": image("PNG", "RGBA"),
        "grey.png": image("PNG", "L"),
        "rotated.png": image("PNG", exif=exif_orientation(6)),
        "rgb.jpg": image("JPEG", quality=90),
        "grey.jpg": image("JPEG", "L", quality=90),
        "rotated.jpg": image("JPEG", exif=exif_orientation(8)),
        "progressive.jpg": image("JPEG", progressive=True),
        "palette.gif": image("GIF", "P"),
        "rgb.bmp": image("BMP"),
        "rgb.tiff": image("TIFF"),
        "lossless.webp": image("WEBP", lossless=True),
        "lossy.webp": image("WEBP", quality=50),
    }


def multipart(parts) -> bytes:
    body = b""
    for name, data in parts:
        body += (f'--XX\r\nContent-Disposition: form-data; name="{name}"; filename="f"\r\n\r\n').encode()
        body += data + b"\r\n"
    return body + b"--XX--\r\n"


def predict_input(png: bytes) -> None:
    b64 = base64.b64encode(png).decode()
    write("predict_input", "multipart", b"\x00" + multipart([("image", png), ("top_k", b"3")]))
    write("predict_input", "multipart_batch",
          b"\x00" + multipart([("image", png), ("model", b"m"), ("version", b"2"), ("image", png)]))
    write("predict_input", "json_base64",
          b"\x01" + json.dumps({"image_base64": b64, "top_k": 2, "model": "m", "version": 1}).encode())
    write("predict_input", "json_data_url",
          b"\x01" + json.dumps({"image_base64": "data:image/png;base64," + b64}).encode())
    write("predict_input", "json_url", b"\x01" + json.dumps({"url": "https://example.com/a.jpg"}).encode())
    write("predict_input", "raw_png", b"\x02" + png)
    write("predict_input", "no_type", b"\x04" + png)
    write("predict_input", "own_type",
          b"\x05multipart/form-data; boundary=b\n"
          + multipart([("image", png)]).replace(b"--XX", b"--b"))


def tf_json() -> None:
    bodies = {
        "row_numbers": {"instances": [[[1, 2.5], [3, 4]], [[5, 6], [7, 8e-1]]]},
        "row_named": {"signature_name": "serving_default", "instances": [{"input": [1.5e3, -2]}]},
        "row_images": {"instances": [{"b64": "iVBORw0KGgo="}, {"b64": "AAAA"}]},
        "columnar": {"inputs": {"input": [[0.5, 16777216]]}},
        "columnar_scalar": {"inputs": 3},
        "examples": {"examples": [{"image": {"b64": "AAAA"}}, {"input": [1, 2]}, {}],
                     "context": {"inputs": [3, 4.5]}},
    }
    for name, body in bodies.items():
        write("tf_json", name, json.dumps(body).encode())


def kserve_rest() -> None:
    def body(header: dict, binary: bytes = b"") -> bytes:
        text = json.dumps(header).encode()
        length = struct.pack("<H", len(text)) if binary else b"\xff\xff"
        return length + text + binary

    write("kserve_rest", "json", body({
        "id": "1", "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32",
                                "data": [[1, 2.5], [3, 4]]}],
        "outputs": [{"name": "logits", "parameters": {"classification": 2}}]}))
    write("kserve_rest", "json_int", body({
        "inputs": [{"name": "x", "shape": [3], "datatype": "INT64", "data": [1, -2, 3]},
                   {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["img"]}]}))
    f32 = struct.pack("<3f", 1.0, -2.0, 0.5)
    framed = struct.pack("<I", 3) + b"jpg"
    write("kserve_rest", "binary", body({
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(f32)}},
                   {"name": "img", "shape": [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(framed)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": False}}]}, f32 + framed))
    half = struct.pack("<2e", 0.25, -1.0)
    write("kserve_rest", "binary_fp16", body({
        "inputs": [{"name": "h", "shape": [2], "datatype": "FP16",
                    "parameters": {"binary_data_size": len(half)}}]}, half))


def proto_tensors(png: bytes) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, predict_pb2
    import tritonclient.grpc.service_pb2 as kserve

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "m"
    predict.inputs["input"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0], [3.0, 4.0]], dtype=tf.float32))
    write("proto_tensors", "tf_float_val", b"\x00" + predict.SerializeToString())
    fill = predict_pb2.PredictRequest()
    fill.inputs["input"].dtype = tf.float32.as_datatype_enum
    fill.inputs["input"].tensor_shape.dim.add(size=4)
    fill.inputs["input"].float_val.append(0.5)
    fill.inputs["ids"].dtype = tf.int64.as_datatype_enum
    fill.inputs["ids"].int64_val.extend([7])
    write("proto_tensors", "tf_fill", b"\x00" + fill.SerializeToString())
    content = predict_pb2.PredictRequest()
    content.inputs["input"].CopyFrom(tf.make_tensor_proto([[1, 2, 3]], dtype=tf.uint8))
    content.inputs["x"].CopyFrom(tf.make_tensor_proto([0.5, 1.5], dtype=tf.float16))
    write("proto_tensors", "tf_content", b"\x00" + content.SerializeToString())
    images = predict_pb2.PredictRequest()
    images.inputs["input"].CopyFrom(tf.make_tensor_proto([png], dtype=tf.string))
    write("proto_tensors", "tf_string", b"\x00" + images.SerializeToString())

    infer = kserve.ModelInferRequest(model_name="m", id="1")
    t = infer.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    t.contents.fp32_contents.extend([1.0, -1.0])
    t = infer.inputs.add(name="i", datatype="INT32", shape=[2])
    t.contents.int_contents.extend([3, -4])
    t = infer.inputs.add(name="b", datatype="BYTES", shape=[1])
    t.contents.bytes_contents.append(b"img")
    write("proto_tensors", "kserve_contents", b"\x01" + infer.SerializeToString())
    raw = kserve.ModelInferRequest(model_name="m")
    raw.inputs.add(name="input", datatype="FP32", shape=[2])
    raw.inputs.add(name="img", datatype="BYTES", shape=[1])
    raw.inputs.add(name="u", datatype="UINT16", shape=[1])
    raw.raw_input_contents.extend([struct.pack("<2f", 0.5, 2.0), struct.pack("<I", 3) + b"png",
                                   struct.pack("<H", 9)])
    write("proto_tensors", "kserve_raw", b"\x01" + raw.SerializeToString())

    classify = classification_pb2.ClassificationRequest()
    ctx = classify.input.example_list_with_context
    ctx.context.features.feature["inputs"].float_list.value.extend([1.0, 2.0])
    ctx.examples.add().features.feature["image"].bytes_list.value.append(png)
    ctx.examples.add()
    ctx.examples.add().features.feature["x"].int64_list.value.extend([1, 2])
    write("proto_tensors", "tf_classify", b"\x02" + classify.SerializeToString())


def main() -> None:
    all_images = images()
    for name, data in all_images.items():
        write("preprocess", name, data)
    predict_input(all_images["rgb.png"])
    tf_json()
    kserve_rest()
    proto_tensors(all_images["rgb.png"])


if __name__ == "__main__":
    main()
