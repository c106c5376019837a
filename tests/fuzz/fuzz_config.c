// fuzz_config.c — training configs (train/config.c): the YAML file, dotted `key=value`
// overrides, validation, and the JSON round trip of the trainer state.
// Input: the YAML file, then after the first NUL byte the overrides, one per line (at most 16).
// A config that loads is validated, written to JSON, read back and compared.
#include "fuzz_common.h"
#include "config.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t an, bn;
    fz_split(data, size, &a, &an, &b, &bn);
    char *path = fz_write("cfg/config.yaml", a, an);
    char *ovr = fz_str(b, bn);
    char *over[16];
    int n = 0;
    if (bn)
        for (char *s = ovr, *e; s && n < 16; s = e ? e + 1 : NULL) {
            e = strchr(s, '\n');
            if (e) *e = 0;
            over[n++] = s;
        }
    cfg_train c;
    if (cfg_load(&c, path, n, over) == 0) {
        (void)cfg_validate(&c);
        char *json = cfg_to_json(&c);
        cfg_train d;
        if (cfg_from_json(&d, json, "trainer_state.json") == 0) {
            // the JSON round trip must give the same config back
            if (cfg_first_diff(&c, &d)) {
                fprintf(stderr, "fuzz_config: round trip changed %s\n", cfg_first_diff(&c, &d));
                abort();
            }
            cfg_free(&d);
        } else {
            fprintf(stderr, "fuzz_config: cfg_from_json rejected cfg_to_json's output: %s\n", err_get());
            abort();
        }
        free(json);
        cfg_free(&c);
    } else {
        cfg_free(&c);
    }
    free(ovr);
    free(path);
    return 0;
}
