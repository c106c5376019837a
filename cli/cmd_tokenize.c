// cmd_tokenize.c — `lorac tokenize --model DIR [--bos] [--chat] [TEXT]`: prints token ids,
// space separated, on one line; without TEXT, one line of ids per line of stdin (the line's
// "\n" not included). Special-token text such as "<|eot_id|>" becomes the special token.
// --bos puts <|begin_of_text|> first; --chat renders TEXT as one user message followed by the
// assistant header (the rendering already starts with <|begin_of_text|>).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cli.h"
#include "opts.h"
#include "tokenizer.h"
#include "util.h"

typedef struct tk_opts {
    int bos, chat;
    int32_t bos_id;
} tk_opts;

// Encodes one text and prints its ids line. Returns 0, or -1 (err_set) on failure.
static int tokenize_one(const tok_tokenizer *t, const tk_opts *o, const char *text, size_t len, FILE *out) {
    tok_ids ids = {0};
    char *rendered = NULL;
    int rc;
    if (o->chat) {
        char *content = xmalloc(len + 1);
        memcpy(content, text, len);
        content[len] = 0;
        chat_msg m = {"user", content};
        size_t rlen;
        rendered = chat_render_spans(&m, 1, 1, NULL, &rlen);
        free(content);
        rc = tok_encode(t, rendered, rlen, 1, &ids);
    } else {
        if (o->bos) tok_ids_push(&ids, o->bos_id);
        rc = tok_encode(t, text, len, 1, &ids);
    }
    free(rendered);
    if (!rc) {
        for (size_t i = 0; i < ids.n; i++) fprintf(out, i ? " %d" : "%d", ids.ids[i]);
        fputc('\n', out);
    }
    tok_ids_free(&ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    tk_opts o = {0};
    const cli_opt opts[] = {
        CLI_TEXT("model", OPT_STR, &model, "DIR", "the folder with tokenizer.json (required)"),
        CLI_FLAG("bos", &o.bos, "put <|begin_of_text|> first"),
        CLI_FLAG("chat", &o.chat, "render TEXT as one user message + the assistant header"),
    };
    const cli_spec spec = {"tokenize", "--model DIR [--bos] [--chat] [TEXT]   (no TEXT: one line of ids per stdin line)",
                           NULL, opts, CLI_NOPTS(opts), "a TEXT starting with '-' goes after --\n", 0};
    char *pos[argc];   // the TEXT arguments (one at most)
    int npos, prc = cli_parse(&spec, argc, argv, pos, argc, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    if (npos > 1) return cli_usage("tokenize", "expected one TEXT argument, found a second one '%s' (quote the text)", pos[1]);
    if (npos) text = pos[0];
    if (!model) return cli_usage("tokenize", "missing --model DIR");
    tok_tokenizer *t = tok_load(model);
    if (!t) return cli_fail();
    o.bos_id = tok_special(t, "<|begin_of_text|>");
    if (o.bos && !o.chat && o.bos_id < 0) {
        err_set("%s: the tokenizer has no <|begin_of_text|> token (needed by --bos)", model);
        tok_free(t);
        return cli_fail();
    }
    int rc = 0;
    if (text) {
        rc = tokenize_one(t, &o, text, strlen(text), stdout);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0;
        while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            size_t len = (size_t)n;
            if (len && line[len - 1] == '\n') len--;
            if (len && line[len - 1] == '\r' && len + 1 == (size_t)n) len--;   // CRLF ends a line too
            rc = tokenize_one(t, &o, line, len, stdout);
            if (rc) err_prefix("stdin line %ld", lineno);
        }
        if (!rc && ferror(stdin)) rc = err_set("stdin: read error");
        free(line);
    }
    tok_free(t);
    if (!rc && (fflush(stdout) || ferror(stdout))) rc = err_set("stdout: write error");
    return rc ? cli_fail() : 0;
}
