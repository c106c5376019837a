#!/usr/bin/env python3
"""Decodes a TensorBoard event file with python3-protobuf and checks it against metrics.jsonl.

usage: tb_decode.py PB2_DIR EVENTS METRICS [--dump]
PB2_DIR holds tb_event_pb2.py (protoc --python_out from tests/tb_event.proto). Checks: every
record's framing (uint64 length, masked CRC-32C of the length and of the data, computed here
independently of lorac), the first Event is file_version "brain.Event:2", every other Event
has one Summary scalar; the scalars equal the metrics.jsonl values (tag <- key below) at the
same steps, each one present in both, within float32 rounding of the value plus the rounding
of the printed metrics value. --dump prints "step tag value" lines (no wall_time) to stdout.
Exit 0 when everything holds, 1 with the first mismatch on stderr.
"""
import json, struct, sys

sys.path.insert(0, sys.argv[1])
import tb_event_pb2  # noqa: E402

TAGS = {"train/loss": ("loss", 5e-7), "train/lr": ("lr", None), "train/grad_norm": ("grad_norm", 5e-7),
        "train/tokens_per_s": ("tokens_per_s", 0.05), "eval/loss": ("eval_loss", 5e-7),
        "eval/ppl": ("eval_ppl", 5e-5)}


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fail(msg):
    print("tb_decode: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    raw = open(sys.argv[2], "rb").read()
    events, pos = [], 0
    while pos < len(raw):
        if len(raw) - pos < 12:
            fail(f"truncated header at byte {pos}")
        (n,) = struct.unpack_from("<Q", raw, pos)
        (hc,) = struct.unpack_from("<I", raw, pos + 8)
        if hc != masked(raw[pos:pos + 8]):
            fail(f"bad length CRC at byte {pos}")
        data = raw[pos + 12:pos + 12 + n]
        (dc,) = struct.unpack_from("<I", raw, pos + 12 + n)
        if dc != masked(data):
            fail(f"bad data CRC at byte {pos}")
        ev = tb_event_pb2.Event()
        ev.ParseFromString(data)
        events.append(ev)
        pos += 16 + n
    if not events or events[0].WhichOneof("what") != "file_version" or events[0].file_version != "brain.Event:2":
        fail("the first event is not file_version brain.Event:2")
    got = {}
    for ev in events[1:]:
        if ev.WhichOneof("what") != "summary" or len(ev.summary.value) != 1:
            fail(f"event at step {ev.step} is not one summary scalar")
        v = ev.summary.value[0]
        if v.WhichOneof("value") != "simple_value" or v.tag not in TAGS:
            fail(f"unexpected value {v}")
        if not ev.wall_time > 1.6e9:
            fail(f"wall_time {ev.wall_time} is not a current Unix time")
        key = (ev.step, v.tag)
        if key in got:
            fail(f"{key} written twice")
        got[key] = v.simple_value
    want = {}
    for line in open(sys.argv[3]):
        j = json.loads(line)
        for tag, (k, _) in TAGS.items():
            if k in j:
                want[(j["step"], tag)] = j[k]
    if set(got) != set(want):
        fail(f"steps/tags differ: only in tb {sorted(set(got) - set(want))[:5]}, "
             f"only in metrics {sorted(set(want) - set(got))[:5]}")
    for key, w in want.items():
        g, tol = got[key], TAGS[key[1]][1]
        # float32 rounding of the value (2^-24 relative) + the printed metrics value's rounding
        # (%.6f: 5e-7, %.4f: 5e-5, %.1f: 0.05; lr is %.6g: 5e-6 relative)
        t = abs(w) * 2.0 ** -24 + (tol if tol is not None else abs(w) * 5e-6)
        if not abs(g - w) <= t * 1.0001:
            fail(f"{key}: tb {g!r} vs metrics {w!r} (tolerance {t:.3g})")
    if "--dump" in sys.argv:
        for (s, tag), v in sorted(got.items()):
            print(s, tag, repr(v))
    print(f"tb_decode: {len(events)} events, {len(got)} scalars match metrics.jsonl", file=sys.stderr)


main()
