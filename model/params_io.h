// params_io.h — writing a trainable parameter block and its JSON config to a folder: shared by
// the projector (model/projector.c) and the cross-attention blocks (model/xattn.c).
#ifndef LORAC_PARAMS_IO_H
#define LORAC_PARAMS_IO_H

#include <cJSON.h>

#include "ag.h"

// Every tensor of p (data, or grad when grads != 0) as F32 safetensors at path, under the
// tensors' names (atomic). 0, or -1 + err_set.
int params_save(const ag_params *p, const char *path, int grads);
// dir/name = the JSON of j, pretty-printed, newline-terminated (atomic). Deletes j. 0, or -1.
int json_save(cJSON *j, const char *dir, const char *name);

#endif
