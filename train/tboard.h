// tboard.h — TensorBoard event files for training scalars (output_dir/tb/), written by hand.
//
// The file is TensorFlow's TFRecord framing of `Event` protos (tensorflow/core/util/event.proto,
// summary.proto): per record
//   uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// with masked_crc(x) = ((x >> 15) | (x << 17)) + 0xa282ead8 over CRC-32C (Castagnoli).
// The first record is Event{wall_time, file_version: "brain.Event:2"}; each scalar is
// Event{wall_time (1, double), step (2, int64), summary (5): Summary{value (1): Value{tag (1),
// simple_value (2, float)}}}. TensorBoard picks up any file whose name contains "tfevents".
//
// One file per output_dir, `tb/events.out.tfevents.lorac`: a fresh run starts it anew; a
// resumed run keeps the records up to the checkpoint's step and drops the rest, as
// metrics.jsonl does, so a resumed run's file equals an uninterrupted run's (but for wall_time).
#ifndef LORAC_TBOARD_H
#define LORAC_TBOARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct tb_writer tb_writer;

// Opens output_dir/tb/events.out.tfevents.lorac, keeping the scalar records with step <=
// keep_upto (0: none, a new file) of an existing file. NULL + err_set on failure (an existing
// file that is not a valid event file is an error naming it and the byte offset).
tb_writer *tb_open(const char *output_dir, int64_t keep_upto);
// One Event with one scalar; buffered until tb_flush. -1 + err_set on a write error.
int tb_scalar(tb_writer *w, int64_t step, const char *tag, double value);
int tb_flush(tb_writer *w);          // -1 + err_set on failure
int tb_close(tb_writer *w);          // flushes and closes; -1 + err_set on failure; NULL ok

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes, and TFRecord's mask.
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc(const void *data, size_t n);

#endif
