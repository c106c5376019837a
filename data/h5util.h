// h5util.h — small HDF5 helpers shared by the prepared-dataset (h5data.c) and feature-cache
// (featcache.c) files: quiet error stack + one err_set message, vlen UTF-8 strings, scalar and
// small 1-D attributes, extendible 1-D datasets and the atomic tmp -> final rename.
// Call h5u_quiet() at every public entry point that touches HDF5.
#ifndef LORAC_H5UTIL_H
#define LORAC_H5UTIL_H

#include <hdf5.h>
#include <stdint.h>

#include "util.h"

// --- errors

// Turns off HDF5's automatic error stack printing (failures go through h5u_fail).
void h5u_quiet(void);
// err_set(fmt ...) with " (HDF5: detail)" appended when HDF5 recorded something (its innermost
// message); clears the HDF5 error stack. Returns -1.
int h5u_fail(const char *fmt, ...) AG_PRINTF(1, 2);

// --- types and property lists

// File access property list with HDF5's file locking ignored where the file system has none
// (NFS, some containers). Caller closes it (H5Pclose).
hid_t h5u_file_access(void);
// Variable-length UTF-8 string type. Caller closes it (H5Tclose).
hid_t h5u_vlen_utf8(void);

// --- attributes (0 ok, -1 failed: no err_set, the caller wraps with h5u_fail)

// n == 0: a scalar; n > 0: a 1-D attribute of n elements.
int h5u_attr_write(hid_t loc, const char *name, hid_t type, int n, const void *v);
int h5u_attr_str(hid_t loc, const char *name, const char *s);   // vlen UTF-8; NULL -> ""
int h5u_attr_i64(hid_t loc, const char *name, int64_t v);
int h5u_attr_f64(hid_t loc, const char *name, double v);

// Reads a scalar string attribute (variable- or fixed-length) into a malloc'd string.
// 1 found, 0 missing (*out NULL), -1 + err_set when present but unreadable or not a string;
// `hint` ends the wrong-type message: "PATH: attribute 'NAME': expected a string, found another
// type (HINT)".
int h5u_attr_read_str(hid_t loc, const char *path, const char *name, const char *hint, char **out);

// Reads a numeric attribute of n elements (n = 1: a scalar or [1]) converted to mem_type
// (H5T_NATIVE_INT64: integers and the boolean-like enums h5py writes; H5T_NATIVE_DOUBLE:
// integers and floats) into out [n]. 1 found, 0 missing, -1 + err_set: "PATH: attribute
// 'NAME': expected WANT, found another type or size (HINT)".
int h5u_attr_read_num(hid_t loc, const char *path, const char *name, int n, hid_t mem_type, const char *want,
                      const char *hint, void *out);

// --- limits on hostile files

// Deflate inflates at most ~1032:1; a dataset never holds more than this many bytes per stored byte.
#define H5U_MAX_INFLATE 1100
// Checks a dataset's logical size (nelem values of elem_size bytes) against the bytes the file
// stores for it, before a reader allocates and fills that much: a crafted extent must give an
// error, not a multi-GB allocation. 0, or -1 + err_set "PATH: dataset 'NAME': N values (B bytes),
// but the file stores S bytes for it (at most H5U_MAX_INFLATE x S; corrupt file? HINT)".
int h5u_check_extent(hid_t ds, const char *path, const char *name, uint64_t nelem, size_t elem_size,
                     const char *hint);

// libhdf5 1.10 loops forever decoding a global heap collection (the storage of variable-length
// strings) whose object header says index 0 and size 0, and walks off its buffer when an object
// size wraps the pointer. One pass over the file (mmap + memmem for the "GCOL" signature) replays
// HDF5's object walk for every collection before the file is opened. 0, or -1 + err_set
// "PATH: corrupt HDF5 global heap at byte N (HINT)".
int h5u_check_heaps(const char *path, const char *hint);

// --- extendible 1-D datasets

// Creates an empty 1-D dataset of `type` with unlimited size, chunks of `chunk` elements, no
// timestamps (the same input gives the same bytes) and, when compress, shuffle + deflate 1.
// Returns the dataset or a negative id.
hid_t h5u_create_1d(hid_t file, const char *name, hid_t type, hsize_t chunk, int compress);
// Appends n elements of buf (memory type mt) at element `at` of a 1-D extendible dataset,
// extending it to at + n. 0 ok (n <= 0 writes nothing), -1 failed (no err_set).
int h5u_append_1d(hid_t d, hid_t mt, int64_t at, int64_t n, const void *buf);

// --- atomic output

// The temporary file a writer fills before h5u_close_publish: "<path>.tmp.<pid>" (malloc'd).
char *h5u_tmp_name(const char *path);
// Finishes a writer's temporary file: closes the n datasets *ds[i] (those >= 0) and *file
// (all set to -1), then fsyncs tmp, renames it over path and fsyncs the folder.
// 0 ok, -1 + err_set (the caller removes tmp).
int h5u_close_publish(hid_t *file, hid_t *const *ds, int n, const char *tmp, const char *path);
// Removes a writer's temporary file once its handles are closed: clears the HDF5 error
// stack, unlinks tmp (already gone is fine) and frees the string.
void h5u_discard_tmp(char *tmp);

#endif
