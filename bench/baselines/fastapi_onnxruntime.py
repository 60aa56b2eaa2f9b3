"""The server a user would otherwise write: FastAPI + uvicorn + onnxruntime,
PIL preprocessing (torchvision's eval transform: resize shorter side 256
bilinear, centre crop 224, ImageNet mean/std), same JSON answer as fovea's
/api/v1/predict. Used only as the comparison point in BENCHMARKS.md.

    python fastapi_onnxruntime.py --model M.onnx --labels L.txt --port 8090
"""

import argparse
import io
import os
import time

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def preprocess(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = 256, int(256 * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    image = image.crop((left, top, left + 224, top + 224))
    x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return ((x - MEAN) / STD)[None]


def build_app(model: str, labels_path: str, threads: int) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    with open(labels_path) as f:
        labels = f.read().splitlines()
    app = FastAPI()

    @app.post("/api/v1/predict")
    def predict(image: UploadFile = File(...), top_k: int = 5):
        start = time.perf_counter()
        try:
            x = preprocess(image.file.read())
        except Exception as e:  # the baseline a user writes: any decode failure is a 400
            raise HTTPException(status_code=400, detail=str(e))
        logits = session.run(None, {input_name: x})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:top_k]
        preds = [{"label": labels[i], "index": int(i), "score": float(p[i])} for i in top]
        return {
            "class": preds[0]["label"],
            "score": preds[0]["score"],
            "predictions": preds,
            "latency_ms": (time.perf_counter() - start) * 1000,
        }

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model, args.labels, args.threads), host="127.0.0.1", port=args.port, log_level="warning")
