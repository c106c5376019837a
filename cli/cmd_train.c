// cmd_train.c — `lorac train CONFIG.yaml [key=value ...]`.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "opts.h"
#include "config.h"
#include "trainer.h"

int cmd_train(int argc, char **argv) {
    const cli_spec spec = {"train", "CONFIG.yaml [key=value ...]   (keys: see configs/README.md)", NULL, NULL, 0, NULL, 0};
    char *pos[argc];   // CONFIG.yaml, then the overrides
    int npos, prc = cli_parse(&spec, argc, argv, pos, argc, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    if (npos < 1) return cli_usage("train", "missing CONFIG.yaml");
    for (int i = 1; i < npos; i++)
        if (!strchr(pos[i], '=')) return cli_usage("train", "'%s' is not a key=value override", pos[i]);
    cfg_train cfg;
    if (cfg_load(&cfg, pos[0], npos - 1, pos + 1) != 0 || cfg_validate(&cfg) != 0) {
        cli_fail();
        cfg_free(&cfg);
        return 1;
    }
    int rc = train_run(&cfg);
    cfg_free(&cfg);
    return rc;
}
