// test_util.c — errors, growing strings and atomic file helpers.
#include "test.h"
#include "util.h"

static void test_err(void) {
    CHECK(err_set("a %d", 1) == -1, "err_set returns -1");
    err_prefix("file.txt");
    CHECK(!strcmp(err_get(), "file.txt: a 1"), "got '%s'", err_get());
}

static void test_strbuf(void) {
    strbuf b = {0};
    sb_puts(&b, "");
    CHECK(b.s && b.n == 0 && b.s[0] == 0, "an empty append leaves an empty string");
    sb_puts(&b, "ab");
    sb_put(&b, "cdef", 2);   // only the first 2 bytes
    CHECK(b.n == 4 && !strcmp(b.s, "abcd"), "got '%s' (%zu bytes)", b.s, b.n);
    for (int i = 0; i < 1000; i++) sb_put(&b, "0123456789", 10);   // grows past the first block
    CHECK(b.n == 10004 && strlen(b.s) == 10004 && !memcmp(b.s + 9994, "0123456789", 10),
          "after 1000 appends: %zu bytes", b.n);
    free(b.s);
}

static void test_atomic(void) {
    const char *dir = test_tmpdir("util");
    char *p = path_join(dir, "x.bin");
    CHECK(file_write_atomic(p, "hello", 5) == 0, "write: %s", err_get());
    size_t n = 0;
    char *s = file_read_all(p, &n);
    CHECK(s && n == 5 && !memcmp(s, "hello", 5), "read back");
    free(s);
    afile *af = afile_open(p);
    fputs("partial", af->fp);
    afile_abort(af);
    s = file_read_all(p, &n);
    CHECK(s && n == 5, "aborted write leaves the old file");
    free(s);
    CHECK(file_read_all("/nonexistent/zz", NULL) == NULL && strstr(err_get(), "/nonexistent/zz"),
          "missing file error names the path: %s", err_get());
    free(p);
}

int main(void) {
    RUN(test_err);
    RUN(test_strbuf);
    RUN(test_atomic);
    return test_summary();
}
