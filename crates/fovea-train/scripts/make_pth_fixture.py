#!/usr/bin/env python3
"""Writes the committed `.pth` test fixture without PyTorch.

torch is not installed here (and is huge), so this writes the exact archive
`torch.save(model.state_dict(), path)` produces, by hand:

* a zip archive, entries STORED (uncompressed), tensor data 64-byte aligned,
  all under one top-level folder: `<name>/data.pkl`, `<name>/byteorder`,
  `<name>/data/<key>` (one raw little-endian storage per tensor),
  `<name>/version`, `<name>/.format_version`, `<name>/.storage_alignment`,
  `<name>/.data/serialization_id`;
* `data.pkl`: pickle protocol 2 of a `collections.OrderedDict` whose values
  are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, OrderedDict())`, with each storage a persistent id
  `('storage', torch.FloatStorage|torch.LongStorage, key, 'cpu', numel)`.

The pickler needs `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage`
to exist to emit GLOBAL opcodes for them, so stand-in modules named `torch`
and `torch._utils` are registered first; only their names reach the file.

The network is torchvision's ResNet-18 layout (BasicBlock, downsample.0/1,
fc [out, in]) at a small width with the CIFAR 3×3 stem, and random BatchNorm
statistics so that inference-mode BN is exercised. The reference logits come
from an independent NumPy forward pass in this script; `--check` first
validates that NumPy forward against PyTorch's own logits for
../shared/models/resnet18-cifar10-random.pth.

Usage: scripts/make_pth_fixture.py [--check SHARED_MODELS_DIR] OUT_DIR
"""

import argparse
import collections
import io
import os
import pickle
import sys
import types
import zipfile

import numpy as np

# --- stand-ins so that pickle writes torch's global names -----------------
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class FloatStorage:
    pass


class LongStorage:
    pass


for cls in (FloatStorage, LongStorage):
    cls.__module__ = "torch"
    setattr(torch, cls.__name__, cls)
torch._utils = torch_utils
sys.modules.setdefault("torch", torch)
sys.modules.setdefault("torch._utils", torch_utils)


class _Storage:
    def __init__(self, key, array):
        self.key = key
        self.array = array


class _Tensor:
    def __init__(self, storage, shape):
        self.storage = storage
        self.shape = shape

    def __reduce__(self):
        stride = []
        acc = 1
        for dim in reversed(self.shape):
            stride.insert(0, acc)
            acc *= dim
        return (
            _rebuild_tensor_v2,
            (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()),
        )


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = LongStorage if obj.array.dtype == np.int64 else FloatStorage
            return ("storage", kind, obj.key, "cpu", obj.array.size)
        return None


def save_state_dict(state, path, folder="archive"):
    """Writes an OrderedDict name -> np.ndarray (float32 or int64) like torch.save."""
    storages = []
    entries = collections.OrderedDict()
    for name, array in state.items():
        storage = _Storage(str(len(storages)), np.ascontiguousarray(array))
        storages.append(storage)
        entries[name] = _Tensor(storage, list(array.shape))
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(entries)

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:

        def write(name, data):
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            # torch aligns each record's data to 64 bytes with a padding extra field.
            header = 30 + len(info.filename.encode())
            offset = archive.fp.tell() + header + 4
            pad = (-offset) % 64
            info.extra = b"FB" + pad.to_bytes(2, "little") + b"Z" * pad
            archive.writestr(info, data)

        write("data.pkl", buffer.getvalue())
        write(".format_version", b"1")
        write(".storage_alignment", b"64")
        write("byteorder", b"little")
        for storage in storages:
            write(f"data/{storage.key}", storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())
        write("version", b"3\n")
        write(".data/serialization_id", b"0" * 40)


def load_state_dict(path):
    """Reads a torch zip state_dict into name -> np.ndarray, without torch."""
    archive = zipfile.ZipFile(path)
    pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
    root = pkl[: -len("data.pkl")]

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                def rebuild(storage, offset, size, stride, *_):
                    return np.lib.stride_tricks.as_strided(
                        storage[offset:], size, [s * storage.itemsize for s in stride]
                    ).copy()
                return rebuild
            if module == "torch":
                return {"FloatStorage": np.float32, "LongStorage": np.int64}[name]
            return super().find_class(module, name)

        def persistent_load(self, pid):
            _, dtype, key, _, _ = pid
            return np.frombuffer(archive.read(f"{root}data/{key}"), dtype=dtype)

    return Unpickler(io.BytesIO(archive.read(pkl))).load()


# --- NumPy ResNet-18 forward (inference mode) ------------------------------
def conv2d(x, w, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return np.einsum("ncklhw,ockl->nohw", cols, w.astype(np.float64))


def batch_norm(x, s, prefix):
    scale = s[prefix + ".weight"] / np.sqrt(s[prefix + ".running_var"].astype(np.float64) + 1e-5)
    shift = s[prefix + ".bias"] - s[prefix + ".running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def max_pool(x):
    n, c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(3):
        for j in range(3):
            out = np.maximum(out, x[:, :, i : i + 2 * oh : 2, j : j + 2 * ow : 2])
    return out


def forward(s, x):
    relu = lambda t: np.maximum(t, 0)
    stem = s["conv1.weight"]
    torchvision_stem = stem.shape[2] == 7
    x = relu(batch_norm(conv2d(x, stem, 2 if torchvision_stem else 1, stem.shape[2] // 2), s, "bn1"))
    if torchvision_stem:
        x = max_pool(x)
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            identity = x
            if p + ".downsample.0.weight" in s:
                identity = batch_norm(conv2d(x, s[p + ".downsample.0.weight"], stride, 0), s, p + ".downsample.1")
            out = relu(batch_norm(conv2d(x, s[p + ".conv1.weight"], stride, 1), s, p + ".bn1"))
            out = batch_norm(conv2d(out, s[p + ".conv2.weight"], 1, 1), s, p + ".bn2")
            x = relu(out + identity)
    x = x.mean(axis=(2, 3))
    return x @ s["fc.weight"].T.astype(np.float64) + s["fc.bias"]


def random_state_dict(rng, width, classes):
    s = collections.OrderedDict()

    def conv(name, o, i, k):
        s[name] = (rng.standard_normal((o, i, k, k)) * np.sqrt(2.0 / (o * k * k))).astype(np.float32)

    def bn(name, c):
        s[name + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        s[name + ".bias"] = rng.uniform(-0.2, 0.2, c).astype(np.float32)
        s[name + ".running_mean"] = rng.uniform(-0.2, 0.2, c).astype(np.float32)
        s[name + ".running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        s[name + ".num_batches_tracked"] = np.array(7, dtype=np.int64)

    conv("conv1.weight", width, 3, 3)
    bn("bn1", width)
    channels = width
    for layer in range(1, 5):
        out = width * 2 ** (layer - 1)
        for block in range(2):
            p = f"layer{layer}.{block}"
            inp = channels if block == 0 else out
            conv(p + ".conv1.weight", out, inp, 3)
            bn(p + ".bn1", out)
            conv(p + ".conv2.weight", out, out, 3)
            bn(p + ".bn2", out)
            if block == 0 and (layer > 1 or inp != out):
                conv(p + ".downsample.0.weight", out, inp, 1)
                bn(p + ".downsample.1", out)
        channels = out
    s["fc.weight"] = (rng.standard_normal((classes, 8 * width)) * 0.3).astype(np.float32)
    s["fc.bias"] = rng.uniform(-0.1, 0.1, classes).astype(np.float32)
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--check", metavar="SHARED_MODELS_DIR")
    args = parser.parse_args()

    if args.check:
        base = os.path.join(args.check, "resnet18-cifar10-random")
        state = load_state_dict(base + ".pth")
        x = np.fromfile(base + ".input.f32", dtype="<f4").reshape(4, 3, 32, 32)
        want = np.fromfile(base + ".logits.f32", dtype="<f4").reshape(4, 10)
        diff = np.abs(forward(state, x) - want).max()
        print(f"numpy forward vs PyTorch logits on the shared .pth: max abs diff {diff:.2e}")
        assert diff < 1e-4, diff

    rng = np.random.default_rng(20261124)
    state = random_state_dict(rng, width=4, classes=3)
    path = os.path.join(args.out_dir, "resnet18-cifar-w4-c3.pth")
    save_state_dict(state, path)
    again = load_state_dict(path)
    assert all(np.array_equal(again[k], v) for k, v in state.items())
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    logits = forward(state, x).astype(np.float32)
    x.astype("<f4").tofile(os.path.join(args.out_dir, "resnet18-cifar-w4-c3.input.f32"))
    logits.astype("<f4").tofile(os.path.join(args.out_dir, "resnet18-cifar-w4-c3.logits.f32"))
    print(f"wrote {path} ({os.path.getsize(path)} bytes), logits {logits.tolist()}")


if __name__ == "__main__":
    main()
