"""The one safetensors reader and writer of the tests (no safetensors package needed).

    save_fixture(path, {"x": np_or_torch_array, ...}, meta={"eps": 1e-5})   # golden fixtures
    tensors, meta = read_safetensors(path)            # name -> numpy array (BF16 widened to F32)
    lines = check_safetensors(path)                   # the reference reader's checks

Fixtures are read back in C with tests/fixture.h. Used by every tests/gen_*.py generator and
by the shell tests, which call it as a program:

    /usr/bin/python3 tests/fixtures_io.py check FILE   # runs check_safetensors, prints
                                                      # "name DTYPE AxB" per tensor, sorted
"""
import json
import struct
import sys

import numpy as np

_DT = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("int64"): "I64",
       np.dtype("uint8"): "U8"}
# dtype name -> (numpy dtype of the stored bytes, bytes per element); BF16 is read as uint16
_NP = {"F64": (np.float64, 8), "F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2),
       "I64": (np.int64, 8), "I32": (np.int32, 4), "I16": (np.int16, 2), "I8": (np.int8, 1),
       "U8": (np.uint8, 1), "BOOL": (np.bool_, 1)}


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


def _read(path):
    """(raw bytes, header length, tensor table, metadata or None)"""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    meta = h.pop("__metadata__", None)
    return raw, n, h, meta


def read_entries(path):
    """([(name, dtype string, shape, raw bytes)] in file order, metadata): write_safetensors'
    input, for tests that edit a file's tensor table"""
    raw, n, h, meta = _read(path)
    items = sorted(h.items(), key=lambda kv: kv[1]["data_offsets"])
    return [(k, v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in items], meta


def read_safetensors(path, widen_bf16=True):
    """(name -> numpy array, metadata dict). BF16 tensors come back as float32 (exact) when
    widen_bf16, else as their raw uint16 bits."""
    raw, n, h, meta = _read(path)
    out = {}
    for k, v in h.items():
        dt, _ = _NP[v["dtype"]]
        a, b = v["data_offsets"]
        x = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(v["shape"]).copy()
        if v["dtype"] == "BF16" and widen_bf16:
            x = (x.astype(np.uint32) << 16).view(np.float32)
        out[k] = x
    return out, meta or {}


def bf16_bits(a):
    """float32 array -> uint16 BF16 bits (round to nearest even, as torch's .bfloat16())"""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def check_safetensors(path):
    """The reference reader's checks (huggingface/safetensors, plus transformers' metadata
    rule): header under 100,000,000 bytes and a JSON object; __metadata__ {"format": "pt"} with
    string values; offsets contiguous from 0 without gaps or overlaps; sizes numel x dtype size;
    no trailing bytes. Raises AssertionError naming the problem; returns the sorted lines
    "name DTYPE AxB"."""
    raw, n, h, meta = _read(path)
    assert n < 100_000_000, "header over 100 MB"
    assert isinstance(meta, dict) and meta.get("format") == "pt", "missing __metadata__ format pt: %r" % meta
    assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
    pos = 0
    for k, v in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"]):
        s, e = v["data_offsets"]
        assert s == pos, "%s: starts at %d, expected %d (gap or overlap)" % (k, s, pos)
        numel = 1
        for d in v["shape"]:
            numel *= d
        assert e - s == numel * _NP[v["dtype"]][1], "%s: %d bytes for %s %s" % (k, e - s, v["dtype"], v["shape"])
        pos = e
    assert 8 + n + pos == len(raw), "trailing bytes after the data"
    return ["%s %s %s" % (k, h[k]["dtype"], "x".join(map(str, h[k]["shape"]))) for k in sorted(h)]


def read_safetensors_f32(path):
    """name -> float32 numpy array, for an all-F32 safetensors file (e.g. a tiny F32 model)."""
    _, _, h, _ = _read(path)
    for k, v in h.items():
        assert v["dtype"] == "F32", (path, k, v["dtype"])
    return read_safetensors(path)[0]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        try:
            print("\n".join(check_safetensors(sys.argv[2])))
        except AssertionError as e:
            sys.exit("%s: %s" % (sys.argv[2], e))
    else:
        sys.exit("usage: fixtures_io.py check FILE.safetensors")
