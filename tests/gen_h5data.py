"""A prepared text dataset written by h5py the way a user's own pipeline would (for
tests/test_h5data.c): contiguous (not chunked) datasets, h5py's default types for Python values
(str -> variable-length UTF-8, int -> int64, numpy bool -> HDF5 enum), a fixed-length byte
string attribute, no doc_lines. lorac's reader must load it. tokenizer_hash is a placeholder the
C test replaces with the real tokenizer's hash. Writes tests/fixtures/h5data_h5py.h5.
"""
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

records = [  # (ids, mask, image_pos, image)
    ([128000, 9906, 1917, 0], [0, 1, 1, 1], -1, ""),
    ([128000, 5, 6], [0, 0, 1], 1, "img/c.jpg"),
    ([128000, 100], [0, 1], -1, ""),
]
tokens = np.concatenate([np.array(r[0], np.int32) for r in records])
mask = np.concatenate([np.array(r[1], np.uint8) for r in records])
offsets = np.cumsum([0] + [len(r[0]) for r in records]).astype(np.int64)

path = os.path.join(HERE, "fixtures", "h5data_h5py.h5")
with h5py.File(path, "w", track_order=False) as f:
    f["tokens"] = tokens
    f["loss_mask"] = mask
    f["doc_offsets"] = offsets
    f["image_pos"] = np.array([r[2] for r in records], np.int64)
    f.create_dataset("images", data=[r[3] for r in records], dtype=h5py.string_dtype())
    f.attrs["tokenizer_hash"] = "0000000000000000"
    f.attrs["format"] = "auto"
    f.attrs["template"] = "llama3"
    f.attrs["train_on_prompt"] = np.bool_(False)
    f.attrs["source"] = np.bytes_(b"data/x.jsonl")
    f.attrs["records"] = len(records)
    f.attrs["tokens"] = int(len(tokens))
print("wrote", path, os.path.getsize(path), "bytes")
