// test_hostile_files.c — the atomic-output helpers of autograd/util.c that the end-to-end
// tests reach only by a kill at the right instant: dir_replace over an existing folder (the
// re-save of a checkpoint step: exchanged, never deleted first), publish_recover finishing a
// journal left by a crash after its commit, a journal-less stage left alone by readers, and
// remove_stale_tmp.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "util.h"

static char root[256];

static void put(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    CHECK(file_write_atomic(p, text, strlen(text)) == 0, "write %s: %s", p, err_get());
    free(p);
}
static int has(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name), *s = file_read_all(p, NULL);
    int ok = s && !strcmp(s, text);
    free(s);
    free(p);
    return ok;
}

static void test_dir_replace_exchanges(void) {
    char *old = path_join(root, "step_0000002"), *neu = path_join(root, "step_0000002.tmp123");
    mkdir_p(old);
    mkdir_p(neu);
    put(old, "a", "old");
    put(old, "only_old", "x");
    put(neu, "a", "new");
    CHECK(dir_replace(neu, old) == 0, "dir_replace: %s", err_get());
    CHECK(has(old, "a", "new"), "the new folder is in place");
    char *p = path_join(old, "only_old");
    CHECK(!file_exists(p), "nothing of the old folder is mixed in");
    CHECK(!dir_exists(neu), "the old folder (exchanged to the temporary name) is removed");
    free(p);
    CHECK(dir_replace(neu, old) != 0, "a missing source is an error");
    CHECK(has(old, "a", "new"), "and leaves the target as it was");
    free(old);
    free(neu);
}

static void test_publish_and_recover(void) {
    char *dir = path_join(root, "out");
    mkdir_p(dir);
    put(dir, "w.safetensors", "old w");
    put(dir, "config.json", "old c");
    // a complete publish
    char *stage = publish_stage_name(dir);
    mkdir_p(stage);
    put(stage, "w.safetensors", "new w");
    put(stage, "config.json", "new c");
    CHECK(dir_publish(stage, dir) == 0, "publish: %s", err_get());
    CHECK(has(dir, "w.safetensors", "new w") && has(dir, "config.json", "new c"), "new set in place");
    CHECK(!dir_exists(stage), "stage removed");
    char *journal = path_join(dir, ".lorac-publish");
    CHECK(!file_exists(journal), "journal removed");
    // a crash after the commit and the first rename: the journal is there, one file moved
    mkdir_p(stage);
    put(stage, "config.json", "newer c");
    put(dir, "w.safetensors", "newer w");   // already renamed before the crash
    char text[128];
    snprintf(text, sizeof text, "lorac-publish 1\n%s\nw.safetensors\nconfig.json\n", strrchr(stage, '/') + 1);
    put(dir, ".lorac-publish", text);
    CHECK(has(dir, "config.json", "new c"), "(a mixed set on disk before recovery)");
    CHECK(publish_recover(dir) == 0, "recover: %s", err_get());
    CHECK(has(dir, "w.safetensors", "newer w") && has(dir, "config.json", "newer c"), "recovery finishes the set");
    CHECK(!file_exists(journal) && !dir_exists(stage), "journal and stage removed");
    CHECK(publish_recover(dir) == 0, "no journal: nothing to do");
    // a crash before the commit: a stage without a journal is not used by a reader
    mkdir_p(stage);
    put(stage, "w.safetensors", "uncommitted");
    CHECK(publish_recover(dir) == 0 && has(dir, "w.safetensors", "newer w"), "an uncommitted stage is ignored");
    // ... and removed with the other temporaries by the folder's owner
    put(dir, "metrics.jsonl.tmp.4242", "partial");
    put(dir, "keep.tmp.notapid", "x");
    remove_stale_tmp(dir);
    char *m = path_join(dir, "metrics.jsonl.tmp.4242"), *k = path_join(dir, "keep.tmp.notapid");
    CHECK(!dir_exists(stage) && !file_exists(m), "stale stage and temporary removed");
    CHECK(file_exists(k), "a name that is not <name>.tmp.<digits> is kept");
    // a malformed journal is an error naming it, and changes nothing
    put(dir, ".lorac-publish", "something else\n");
    CHECK(publish_recover(dir) != 0 && strstr(err_get(), ".lorac-publish"), "malformed journal: %s", err_get());
    CHECK(has(dir, "w.safetensors", "newer w"), "files untouched");
    free(m);
    free(k);
    free(journal);
    free(stage);
    free(dir);
}

static void test_lock(void) {
    char *p = path_join(root, "x.lock");
    int fd = lock_acquire(p);
    CHECK(fd >= 0, "lock: %s", err_get());
    pid_t pid = fork();
    if (pid == 0) _exit(lock_acquire(p) >= 0 ? 1 : strstr(err_get(), "locked by another lorac process") ? 0 : 2);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a second process is refused (status %d)", st);
    lock_release(fd);
    fd = lock_acquire(p);
    CHECK(fd >= 0, "free again after release");
    lock_release(fd);
    free(p);
}

static void test_json_num(void) {
    char b[64];
    CHECK(!strcmp(json_num(b, "%.3f", 1.5), "1.500"), "finite");
    CHECK(!strcmp(json_num(b, "%.3f", NAN), "null"), "NaN");
    CHECK(!strcmp(json_num(b, "%.3f", -INFINITY), "null"), "-Inf");
}

int main(void) {
    snprintf(root, sizeof root, "%s/tmp/test_hostile_files", getenv("BUILD") ? getenv("BUILD") : "build");
    rm_rf(root);
    mkdir_p(root);
    RUN(test_dir_replace_exchanges);
    RUN(test_publish_and_recover);
    RUN(test_lock);
    RUN(test_json_num);
    rm_rf(root);
    return test_summary();
}
