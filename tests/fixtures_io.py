"""Write golden fixtures as safetensors (F32/I32/I64) without the safetensors package.

    save_fixture(path, {"x": np_or_torch_array, ...}, meta={"eps": 1e-5})

Read back in C with tests/fixture.h. Used by every tests/gen_*.py generator.
"""
import json
import struct

import numpy as np

_DT = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("int64"): "I64",
       np.dtype("uint8"): "U8"}


def write_safetensors(path, entries, meta=None):
    """entries: [(name, dtype string, shape, raw bytes)] in file order; meta: str -> str or None."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dt, shape, b in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_fixture(path, tensors, meta=None):
    entries = []
    for name, arr in tensors.items():
        if hasattr(arr, "detach"):
            arr = arr.detach().cpu().numpy()
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        entries.append((name, _DT[arr.dtype], arr.shape, arr.tobytes()))
    m = {k: repr(v) if not isinstance(v, str) else v for k, v in meta.items()} if meta else None
    write_safetensors(path, entries, m)


def read_safetensors_f32(path):
    """name -> float32 numpy array, for an all-F32 safetensors file (e.g. a tiny F32 model)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for k, v in json.loads(raw[8:8 + n]).items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (path, k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(v["shape"]).copy()
    return out
