#!/usr/bin/env python3
"""Reference values for fovea-vision's parity test with torchvision/PIL.

Reproduces, with PIL and numpy only, what torchvision's evaluation transform
does to a PIL image:

    Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(ImageNet mean, std)

and, for the CIFAR-10 preset, Resize((32, 32)) -> ToTensor() -> Normalize(CIFAR mean, std).
torchvision's size arithmetic is reproduced exactly: the longer side becomes
int(256 * long / short); the crop offset is int(round((size - crop) / 2.0))
(Python rounds halves to even); an image smaller than the crop is padded with
black, (crop - size) // 2 before. Resizing a PIL image is always PIL's
antialiased BILINEAR filter (torchvision's `antialias` flag only affects
tensors). fovea applies EXIF orientation, so the reference does too
(ImageOps.exif_transpose); torchvision on a plain Image.open would not.

Writes crates/fovea-vision/tests/reference/imagenet_preprocess.json:
per photo the sizes, the per-channel mean of the decoded image (to tell
decoder differences from resize differences), the per-channel mean/std of the
3x224x224 tensor and 500 tensor elements at indices 0, 301, 602, ...; for
two photos the whole 3x32x32 CIFAR tensor; and PIL's exact resize output for
a synthetic pattern (no JPEG decoder involved) in three sizes.

Usage: python3 scripts/vision_reference.py [IMAGES_DIR] [OUT_JSON]
"""

import json
import os
import sys

import numpy as np
import PIL
from PIL import Image, ImageOps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(REPO, "..", "shared", "data", "images")
OUT = os.path.join(REPO, "crates", "fovea-vision", "tests", "reference", "imagenet_preprocess.json")

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]
SAMPLE_STRIDE = 301
SAMPLE_COUNT = 500
CIFAR_PHOTOS = ["puppy.jpg", "tabby_kitten.jpg"]


def load_rgb(path):
    image = Image.open(path)
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def resize_shorter_side(image, size):
    """torchvision.transforms.functional.resize(img, size) for an int size."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), Image.BILINEAR)


def center_crop(image, crop_h, crop_w):
    """torchvision.transforms.functional.center_crop on a PIL image."""
    w, h = image.size
    if crop_w > w or crop_h > h:
        left = (crop_w - w) // 2 if crop_w > w else 0
        top = (crop_h - h) // 2 if crop_h > h else 0
        padded = Image.new("RGB", (max(w, crop_w), max(h, crop_h)), (0, 0, 0))
        padded.paste(image, (left, top))
        image = padded
        w, h = image.size
        if (w, h) == (crop_w, crop_h):
            return image, (left, top)
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    return image.crop((left, top, left + crop_w, top + crop_h)), (left, top)


def to_normalized_chw(image, mean, std):
    """ToTensor + Normalize, in float32 like torch: (x / 255 - mean) / std."""
    hwc = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    hwc = (hwc - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def synthetic(width, height):
    """A deterministic high-frequency RGB pattern that fovea's test rebuilds
    byte for byte, to compare the resize filter without any JPEG decoder."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    channels = [(x * 7 + y * 13 + c * 50 + (x * y) % 31) % 256 for c in range(3)]
    return Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8), "RGB")


def rounded(values, digits=6):
    return [round(float(v), digits) for v in values]


def main():
    images_dir = sys.argv[1] if len(sys.argv) > 1 else IMAGES
    out_path = sys.argv[2] if len(sys.argv) > 2 else OUT
    photos = []
    for name in sorted(os.listdir(images_dir)):
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        rgb = load_rgb(os.path.join(images_dir, name))
        decoded = np.asarray(rgb, dtype=np.float64)
        resized = resize_shorter_side(rgb, 256)
        cropped, (left, top) = center_crop(resized, 224, 224)
        tensor = to_normalized_chw(cropped, IMAGENET_MEAN, IMAGENET_STD)
        flat = tensor.reshape(-1)
        indices = [i * SAMPLE_STRIDE for i in range(SAMPLE_COUNT)]
        entry = {
            "file": name,
            "size": list(rgb.size),
            "resized": list(resized.size),
            "crop_offset": [left, top],
            "decoded_mean": rounded(decoded.reshape(-1, 3).mean(axis=0), 4),
            "mean": rounded(tensor.reshape(3, -1).astype(np.float64).mean(axis=1)),
            "std": rounded(tensor.reshape(3, -1).astype(np.float64).std(axis=1)),
            "samples": rounded(flat[indices]),
        }
        if name in CIFAR_PHOTOS:
            small = rgb.resize((32, 32), Image.BILINEAR)
            entry["cifar"] = rounded(to_normalized_chw(small, CIFAR_MEAN, CIFAR_STD).reshape(-1))
        photos.append(entry)

    resize_cases = []
    for (w, h), (nw, nh) in [((200, 150), (85, 64)), ((40, 30), (85, 64)), ((123, 77), (32, 32))]:
        resized = synthetic(w, h).resize((nw, nh), Image.BILINEAR)
        resize_cases.append({"source": [w, h], "resized": [nw, nh], "rgb_hex": resized.tobytes().hex()})

    document = {
        "generator": "scripts/vision_reference.py",
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "imagenet": {
            "resize_shorter_side": 256,
            "crop": [224, 224],
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
        },
        "cifar": {"exact": [32, 32], "mean": CIFAR_MEAN, "std": CIFAR_STD},
        "sample_stride": SAMPLE_STRIDE,
        "photos": photos,
        "synthetic_resize": resize_cases,
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(document, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(photos)} photos to {out_path} ({os.path.getsize(out_path)} bytes)")


if __name__ == "__main__":
    main()
