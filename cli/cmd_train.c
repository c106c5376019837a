// cmd_train.c — `lorac train CONFIG.yaml [key=value ...]`.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "trainer.h"

int cmd_train(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        if (argc >= 2) {
            printf("usage: lorac train CONFIG.yaml [key=value ...]   (keys: see configs/README.md)\n");
            return 0;
        }
        return cli_usage("train", "missing CONFIG.yaml");
    }
    for (int i = 2; i < argc; i++)
        if (!strchr(argv[i], '=')) return cli_usage("train", "'%s' is not a key=value override", argv[i]);
    cfg_train cfg;
    if (cfg_load(&cfg, argv[1], argc - 2, argv + 2) != 0 || cfg_validate(&cfg) != 0) {
        cli_fail();
        cfg_free(&cfg);
        return 1;
    }
    int rc = train_run(&cfg);
    cfg_free(&cfg);
    return rc;
}
