// test_records.c — JSONL records (data/records.c) and batches (data/batch.c).
//
// Records are checked against strings rendered by hand here from docs/formats.md "Data: JSONL records"
// and encoded whole with the real Llama 3 tokenizer (TOKENIZER_DIR); loss masks by decoding
// the supervised tokens; the 1,100 demo instruction records as alpaca, chat and
// alpaca_classic. Batches are checked on synthetic data sets against index arithmetic.
#include <cJSON.h>

#include "batch.h"
#include "chat.h"
#include "generate.h"
#include "records.h"
#include "test.h"
#include "util.h"

static tok_tokenizer *tok;
static const char *tmp;

// --- helpers

static char *write_file(const char *name, const char *content) {
    char *p = path_join(tmp, name);
    char *d = path_dirname(p);
    mkdir_p(d);
    free(d);
    if (file_write_atomic(p, content, strlen(content))) printf("cannot write %s: %s\n", p, err_get());
    return p;
}

static tok_ids enc(const char *s) {
    tok_ids v = {0};
    if (tok_encode(tok, s, strlen(s), 1, &v)) printf("tok_encode failed: %s\n", err_get());
    return v;
}

static int ids_equal(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, sizeof(int32_t) * (size_t)na));
}

// Decodes the supervised tokens: each maximal run of mask = 1, runs joined by "|".
static char *supervised_text(const data_record *r) {
    size_t cap = 64, len = 0;
    char *out = xmalloc(cap);
    out[0] = 0;
    for (int64_t i = 0; i < r->n;) {
        if (!r->mask[i]) { i++; continue; }
        int64_t j = i;
        while (j < r->n && r->mask[j]) j++;
        char *s = tok_decode(tok, r->ids + i, (size_t)(j - i));
        size_t k = strlen(s);
        if (len + k + 2 > cap) { cap = 2 * (len + k + 2); out = xrealloc(out, cap); }
        if (len) out[len++] = '|';
        memcpy(out + len, s, k + 1);
        len += k;
        free(s);
        i = j;
    }
    return out;
}

static int load1(const char *name, const char *jsonl, data_opts *o, data_set *ds) {
    char *p = write_file(name, jsonl);
    int rc = data_load(ds, p, tok, o);
    free(p);
    return rc;
}

// Checks record r against whole-string encoding of `rendered` and its supervised text.
static void check_rec(const data_record *r, const char *rendered, const char *sup, const char *what) {
    tok_ids v = enc(rendered);
    CHECK(ids_equal(r->ids, r->n, v.ids, (int64_t)v.n), "%s: ids differ from encoding the rendered string (%lld vs %zu)",
          what, (long long)r->n, v.n);
    char *s = supervised_text(r);
    CHECK(!strcmp(s, sup), "%s: supervised '%s', expected '%s'", what, s, sup);
    CHECK(r->n > 0 && r->mask[0] == 0, "%s: first token supervised", what);
    CHECK(r->image_pos == -1 && !r->image, "%s: no image expected", what);
    free(s);
    tok_ids_free(&v);
}

#define BOS "<|begin_of_text|>"
#define EOS "<|end_of_text|>"
#define EOT "<|eot_id|>"
#define HDR(role) "<|start_header_id|>" role "<|end_header_id|>\n\n"

// --- formats

static void test_chat(void) {
    data_opts o = data_opts_default();
    data_set ds;
    const char *jl =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief. \"}, {\"role\": \"user\", \"content\": \"Hi\\n\"},"
        " {\"role\": \"assistant\", \"content\": \" Hello there! \"}, {\"role\": \"user\", \"content\": \"Bye <|eot_id|> now\"},"
        " {\"role\": \"assistant\", \"content\": \"See you.\\n\\n\"}]}\n"
        "\n   \n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"\\u3000x\\u00a0\\u001c\"}, {\"role\": \"assistant\", \"content\": \"\\t\\u2003ok\\u2029 \"}]}\n";
    if (load1("chat.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); return; }
    CHECK(ds.n == 2, "records %lld", (long long)ds.n);
    if (ds.n != 2) { data_set_free(&ds); return; }
    check_rec(&ds.r[0],
              BOS HDR("system") "Be brief." EOT HDR("user") "Hi" EOT HDR("assistant") "Hello there!" EOT HDR("user")
                  "Bye <|eot_id|> now" EOT HDR("assistant") "See you." EOT,
              "Hello there!" EOT "|See you." EOT, "chat");
    // trimmed as Python str.strip(): U+3000, U+00A0, U+001C, U+2003, U+2029 are whitespace
    check_rec(&ds.r[1], BOS HDR("user") "x" EOT HDR("assistant") "ok" EOT, "ok" EOT, "chat unicode trim");
    CHECK(ds.r[0].line == 1 && ds.r[1].line == 4, "lines %lld %lld", (long long)ds.r[0].line, (long long)ds.r[1].line);
    data_set_free(&ds);

    // train_on_prompt: all but the first
    o.train_on_prompt = 1;
    if (load1("chat2.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); return; }
    for (int64_t k = 0; k < ds.n; k++)
        for (int64_t i = 0; i < ds.r[k].n; i++) CHECK(ds.r[k].mask[i] == (i > 0), "train_on_prompt mask[%lld]", (long long)i);
    data_set_free(&ds);
}

static void test_alpaca(void) {
    data_opts o = data_opts_default();
    data_set ds;
    const char *jl =
        "{\"instruction\": \"Translate to French.\", \"input\": \"Good morning\", \"output\": \"Bonjour\"}\n"
        "{\"instruction\": \" Name a color. \", \"input\": \"\", \"output\": \"Blue.\"}\n"
        "{\"instruction\": \"Say hi.\", \"output\": \" Hi! \", \"input\": null}\n";
    if (load1("alpaca.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); return; }
    CHECK(ds.n == 3, "records %lld", (long long)ds.n);
    if (ds.n == 3) {
        check_rec(&ds.r[0], BOS HDR("user") "Translate to French.\n\nGood morning" EOT HDR("assistant") "Bonjour" EOT,
                  "Bonjour" EOT, "alpaca input");
        check_rec(&ds.r[1], BOS HDR("user") "Name a color." EOT HDR("assistant") "Blue." EOT, "Blue." EOT, "alpaca no input");
        check_rec(&ds.r[2], BOS HDR("user") "Say hi." EOT HDR("assistant") "Hi!" EOT, "Hi!" EOT, "alpaca null input");
    }
    data_set_free(&ds);

    // alpaca_classic: the Stanford Alpaca prompts, exact
    o.template_ = "alpaca_classic";
    if (load1("alpaca_c.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); return; }
    CHECK(ds.n == 3, "records %lld", (long long)ds.n);
    if (ds.n == 3) {
        check_rec(&ds.r[0],
                  BOS "Below is an instruction that describes a task, paired with an input that provides further context. "
                      "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate to French."
                      "\n\n### Input:\nGood morning\n\n### Response:\nBonjour" EOS,
                  "Bonjour" EOS, "alpaca_classic input");
        check_rec(&ds.r[1],
                  BOS "Below is an instruction that describes a task. Write a response that appropriately completes the "
                      "request.\n\n### Instruction:\n Name a color. \n\n### Response:\nBlue." EOS,
                  "Blue." EOS, "alpaca_classic no input");
        check_rec(&ds.r[2],
                  BOS "Below is an instruction that describes a task. Write a response that appropriately completes the "
                      "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n Hi! " EOS,
                  " Hi! " EOS, "alpaca_classic untrimmed output");
    }
    data_set_free(&ds);

    // an output starting with a newline merges with the prompt's last "\n" (":\n\n" is one
    // token): ids still equal the whole encoding; the shared token counts as supervised
    if (load1("alpaca_nl.jsonl", "{\"instruction\": \"Go.\", \"output\": \"\\nDone\"}\n", &o, &ds)) {
        CHECK(0, "load: %s", err_get());
        return;
    }
    if (ds.n == 1) {
        const char *full = BOS "Below is an instruction that describes a task. Write a response that appropriately "
                               "completes the request.\n\n### Instruction:\nGo.\n\n### Response:\n\nDone" EOS;
        tok_ids v = enc(full);
        CHECK(ids_equal(ds.r[0].ids, ds.r[0].n, v.ids, (int64_t)v.n), "alpaca_classic newline output: ids differ");
        char *s = supervised_text(&ds.r[0]);
        size_t ls = strlen(s);
        CHECK(ls >= strlen("\nDone" EOS) && !strcmp(s + ls - strlen("\nDone" EOS), "\nDone" EOS), "supervised '%s'", s);
        free(s);
        tok_ids_free(&v);
    }
    data_set_free(&ds);
}

static void test_text_and_txt(void) {
    data_opts o = data_opts_default();
    data_set ds;
    if (load1("text.jsonl", "{\"text\": \"Once upon a time, <|eot_id|> there was\\n a cat.\"}\n", &o, &ds)) {
        CHECK(0, "load: %s", err_get());
        return;
    }
    CHECK(ds.n == 1, "records");
    if (ds.n == 1) {
        tok_ids v = enc(BOS "Once upon a time, <|eot_id|> there was\n a cat.");
        CHECK(ids_equal(ds.r[0].ids, ds.r[0].n, v.ids, (int64_t)v.n), "text ids");
        for (int64_t i = 0; i < ds.r[0].n; i++) CHECK(ds.r[0].mask[i] == (i > 0), "text mask[%lld]", (long long)i);
        tok_ids_free(&v);
    }
    data_set_free(&ds);

    // a .txt file is one text document (lines included)
    const char *doc = "First line.\n\n{\"text\": \"not json here\"}\nLast line\n";
    if (load1("doc.txt", doc, &o, &ds)) { CHECK(0, "load txt: %s", err_get()); return; }
    CHECK(ds.n == 1, "txt records %lld", (long long)ds.n);
    if (ds.n == 1) {
        char buf[256];
        snprintf(buf, sizeof buf, BOS "%s", doc);
        tok_ids v = enc(buf);
        CHECK(ids_equal(ds.r[0].ids, ds.r[0].n, v.ids, (int64_t)v.n), "txt ids");
        CHECK(data_record_n_supervised(&ds.r[0]) == ds.r[0].n - 1, "txt mask");
        tok_ids_free(&v);
    }
    data_set_free(&ds);
}

static void test_images(void) {
    data_opts o = data_opts_default();
    o.num_patches = 9;
    data_set ds;
    char *img = write_file("vis/img/a.jpg", "not really a jpeg: only the path is checked here");
    const char *jl =
        "{\"image\": \"img/a.jpg\", \"caption\": \"A cat on a mat.\"}\n"
        "{\"image\": \"img/a.jpg\", \"messages\": [{\"role\": \"user\", \"content\": \" What is in <image> this picture?\"},"
        " {\"role\": \"assistant\", \"content\": \"A cat.\"}]}\n"
        "{\"image\": \"img/a.jpg\", \"messages\": [{\"role\": \"user\", \"content\": \"<image>\\nDescribe.\"},"
        " {\"role\": \"assistant\", \"content\": \"A cat.\"}]}\n";
    if (load1("vis/caps.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); free(img); return; }
    CHECK(ds.n == 3, "records %lld", (long long)ds.n);
    const char *parts[3][2] = {
        {BOS, "A cat on a mat." EOS},
        {BOS HDR("user") "What is in ", " this picture?" EOT HDR("assistant") "A cat." EOT},
        {BOS HDR("user"), "\nDescribe." EOT HDR("assistant") "A cat." EOT},
    };
    const char *sup[3] = {"A cat on a mat." EOS, "A cat." EOT, "A cat." EOT};
    for (int k = 0; k < 3 && k < ds.n; k++) {
        data_record *r = &ds.r[k];
        tok_ids a = enc(parts[k][0]), b = enc(parts[k][1]);
        CHECK(r->image_pos == (int64_t)a.n, "rec %d: image_pos %lld, expected %zu", k, (long long)r->image_pos, a.n);
        CHECK(r->n == (int64_t)(a.n + b.n) && ids_equal(r->ids, (int64_t)a.n, a.ids, (int64_t)a.n) &&
                  ids_equal(r->ids + a.n, (int64_t)b.n, b.ids, (int64_t)b.n),
              "rec %d: ids differ from the two parts encoded separately", k);
        CHECK(r->image && !strcmp(r->image, img), "rec %d: image path '%s', expected '%s'", k, r->image ? r->image : "(null)", img);
        CHECK(r->image_ref && !strcmp(r->image_ref, "img/a.jpg"), "rec %d: image_ref", k);
        CHECK(data_record_rows(r, 9) == r->n + 9, "rec %d: rows", k);
        char *s = supervised_text(r);
        CHECK(!strcmp(s, sup[k]), "rec %d: supervised '%s', expected '%s'", k, s, sup[k]);
        free(s);
        tok_ids_free(&a);
        tok_ids_free(&b);
    }
    if (ds.n) CHECK(ds.r[0].image_pos == 1 && ds.r[0].mask[0] == 0 && data_record_n_supervised(&ds.r[0]) == ds.r[0].n - 1,
                    "caption: BOS, image, all caption tokens supervised");
    data_set_free(&ds);

    // without a vision model (P = 0) image records are a configuration error, never skipped
    o.num_patches = 0;
    o.skip_bad_lines = 1;
    CHECK(load1("vis/caps2.jsonl", jl, &o, &ds) == -1 && strstr(err_get(), "caps2.jsonl:1: field 'image'"),
          "no vision model: %s", err_get());
    free(img);
}

static void test_auto_and_explicit(void) {
    data_opts o = data_opts_default();
    data_set ds;
    char *img = write_file("mix/i.png", "x");
    const char *jl =
        "{\"text\": \"Plain text.\"}\n"
        "{\"instruction\": \"Do it.\", \"output\": \"Done.\"}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}\n"
        "{\"image\": \"i.png\", \"caption\": \"Cap.\"}\n";
    o.num_patches = 4;
    if (load1("mix/mix.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); free(img); return; }
    CHECK(ds.n == 4, "records %lld", (long long)ds.n);
    if (ds.n == 4) {
        check_rec(&ds.r[0], BOS "Plain text.", "Plain text.", "auto text");
        check_rec(&ds.r[1], BOS HDR("user") "Do it." EOT HDR("assistant") "Done." EOT, "Done." EOT, "auto alpaca");
        check_rec(&ds.r[2], BOS HDR("user") "Q" EOT HDR("assistant") "A" EOT, "A" EOT, "auto chat");
        CHECK(ds.r[3].image_pos == 1, "auto caption");
    }
    data_set_free(&ds);
    // an explicit format reads that format's fields only
    o.format = "alpaca";
    CHECK(load1("mix/mix2.jsonl", jl, &o, &ds) == -1 && strstr(err_get(), "mix2.jsonl:1: missing field 'instruction'"),
          "explicit alpaca on a text record: %s", err_get());
    o.format = "text";
    CHECK(load1("mix/mix3.jsonl", jl + strlen("{\"text\": \"Plain text.\"}\n"), &o, &ds) == -1 &&
              strstr(err_get(), "mix3.jsonl:1: missing field 'text'"),
          "explicit text: %s", err_get());
    o.format = "jsonl";
    CHECK(load1("mix/mix4.jsonl", jl, &o, &ds) == -1 && strstr(err_get(), "data.format") && strstr(err_get(), "jsonl"),
          "bad format name: %s", err_get());
    o.format = "auto";
    o.template_ = "alpaca_classic";
    CHECK(load1("mix/mix5.jsonl", jl, &o, &ds) == -1 && strstr(err_get(), "mix5.jsonl:3:") && strstr(err_get(), "alpaca_classic"),
          "alpaca_classic on a chat record: %s", err_get());
    free(img);
}

// --- the 1,100 demo records: whole-string equality as alpaca, chat and alpaca_classic

static char *strip_ascii(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static char *cat(const char **parts) {
    size_t n = 0;
    for (int i = 0; parts[i]; i++) n += strlen(parts[i]);
    char *s = xmalloc(n + 1);
    s[0] = 0;
    for (int i = 0; parts[i]; i++) strcat(s, parts[i]);
    return s;
}

static void test_demo_records(void) {
    const char *files[2] = {"data/demo/train.jsonl", "data/demo/eval.jsonl"};
    size_t cap = 1 << 20, len = 0;
    char *all = xmalloc(cap);
    all[0] = 0;
    for (int f = 0; f < 2; f++) {
        size_t n;
        char *s = file_read_all(files[f], &n);
        CHECK(s, "%s: %s", files[f], err_get());
        if (!s) { free(all); return; }
        if (len + n + 1 > cap) { cap = 2 * (len + n + 1); all = xrealloc(all, cap); }
        memcpy(all + len, s, n + 1);
        len += n;
        free(s);
    }
    char *alp = write_file("demo/alpaca.jsonl", all);
    // the same records converted to chat
    size_t ccap = 2 * len + 1024, clen = 0;
    char *chat = xmalloc(ccap);
    int nrec = 0;
    char **user = NULL, **asst = NULL, **ins = NULL, **inp = NULL, **out = NULL;
    for (char *line = all; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        cJSON *j = cJSON_ParseWithLength(line, ll);
        CHECK(j, "demo line %d is not JSON", nrec + 1);
        if (!j) break;
        const char *i_ = cJSON_GetObjectItem(j, "instruction")->valuestring;
        const char *n_ = cJSON_GetObjectItem(j, "input")->valuestring;
        const char *o_ = cJSON_GetObjectItem(j, "output")->valuestring;
        user = xrealloc(user, sizeof(char *) * (size_t)(nrec + 1));
        asst = xrealloc(asst, sizeof(char *) * (size_t)(nrec + 1));
        ins = xrealloc(ins, sizeof(char *) * (size_t)(nrec + 1));
        inp = xrealloc(inp, sizeof(char *) * (size_t)(nrec + 1));
        out = xrealloc(out, sizeof(char *) * (size_t)(nrec + 1));
        const char *up[] = {i_, n_[0] ? "\n\n" : "", n_, NULL};
        char *u = cat(up);
        user[nrec] = strip_ascii(u);
        free(u);
        asst[nrec] = strip_ascii(o_);
        ins[nrec] = xstrdup(i_);
        inp[nrec] = xstrdup(n_);
        out[nrec] = xstrdup(o_);
        cJSON *c = cJSON_CreateObject(), *ms = cJSON_AddArrayToObject(c, "messages");
        cJSON *m1 = cJSON_CreateObject(), *m2 = cJSON_CreateObject();
        cJSON_AddStringToObject(m1, "role", "user");
        cJSON_AddStringToObject(m1, "content", user[nrec]);
        cJSON_AddStringToObject(m2, "role", "assistant");
        cJSON_AddStringToObject(m2, "content", o_);
        cJSON_AddItemToArray(ms, m1);
        cJSON_AddItemToArray(ms, m2);
        char *p = cJSON_PrintUnformatted(c);
        size_t pl = strlen(p);
        if (clen + pl + 2 > ccap) { ccap = 2 * (clen + pl + 2); chat = xrealloc(chat, ccap); }
        memcpy(chat + clen, p, pl);
        clen += pl;
        chat[clen++] = '\n';
        chat[clen] = 0;
        free(p);
        cJSON_Delete(c);
        cJSON_Delete(j);
        nrec++;
        line += ll + (nl ? 1 : 0);
    }
    CHECK(nrec == 1100, "demo records: %d, expected 1100", nrec);
    char *chp = write_file("demo/chat.jsonl", chat);

    data_opts o = data_opts_default();
    data_set da, dc, dk;
    int ok = data_load(&da, alp, tok, &o) == 0;
    CHECK(ok, "alpaca: %s", err_get());
    o.format = "chat";
    ok = ok && data_load(&dc, chp, tok, &o) == 0;
    CHECK(ok, "chat: %s", err_get());
    o.format = "auto";
    o.template_ = "alpaca_classic";
    ok = ok && data_load(&dk, alp, tok, &o) == 0;
    CHECK(ok, "alpaca_classic: %s", err_get());
    if (ok) {
        CHECK(da.n == nrec && dc.n == nrec && dk.n == nrec, "counts %lld %lld %lld", (long long)da.n, (long long)dc.n,
              (long long)dk.n);
        int bad_render = 0, bad_ids = 0, bad_chat = 0, bad_mask = 0, bad_classic = 0, bad_cmask = 0;
        for (int k = 0; k < nrec && k < da.n && k < dc.n && k < dk.n; k++) {
            const char *rp[] = {BOS HDR("user"), user[k], EOT HDR("assistant"), asst[k], EOT, NULL};
            char *rendered = cat(rp);
            // the tokenizer module's chat rendering (model/chat.c) agrees with this one
            chat_msg cm[2] = {{"user", user[k]}, {"assistant", out[k]}};
            char *cr = chat_render(cm, 2, 0);
            bad_render += strcmp(cr, rendered) != 0;
            free(cr);
            tok_ids v = enc(rendered);
            bad_ids += !ids_equal(da.r[k].ids, da.r[k].n, v.ids, (int64_t)v.n);
            bad_chat += !ids_equal(dc.r[k].ids, dc.r[k].n, v.ids, (int64_t)v.n) ||
                        memcmp(dc.r[k].mask, da.r[k].mask, (size_t)da.r[k].n);
            // supervised tokens = encode(assistant content) + <|eot_id|>, at the end
            tok_ids a = enc(asst[k]);
            tok_ids_push(&a, tok_special(tok, EOT));
            int64_t ns = data_record_n_supervised(&da.r[k]), n = da.r[k].n;
            bad_mask += ns != (int64_t)a.n || !ids_equal(da.r[k].ids + n - ns, ns, a.ids, (int64_t)a.n) ||
                        da.r[k].mask[n - ns - 1] || !da.r[k].mask[n - ns];
            tok_ids_free(&a);
            tok_ids_free(&v);
            free(rendered);
            // alpaca_classic
            const char *cp[] = {BOS "Below is an instruction that describes a task",
                                inp[k][0] ? ", paired with an input that provides further context. " : ". ",
                                "Write a response that appropriately completes the request.\n\n### Instruction:\n", ins[k],
                                inp[k][0] ? "\n\n### Input:\n" : "", inp[k], "\n\n### Response:\n", out[k], EOS, NULL};
            rendered = cat(cp);
            v = enc(rendered);
            bad_classic += !ids_equal(dk.r[k].ids, dk.r[k].n, v.ids, (int64_t)v.n);
            a = enc(out[k]);
            tok_ids_push(&a, tok_special(tok, EOS));
            ns = data_record_n_supervised(&dk.r[k]);
            n = dk.r[k].n;
            bad_cmask += ns != (int64_t)a.n || !ids_equal(dk.r[k].ids + n - ns, ns, a.ids, (int64_t)a.n);
            tok_ids_free(&a);
            tok_ids_free(&v);
            free(rendered);
        }
        CHECK(!bad_render, "%d of %d renderings differ from chat_render", bad_render, nrec);
        CHECK(!bad_ids, "alpaca: %d of %d records differ from encoding the whole rendered string", bad_ids, nrec);
        CHECK(!bad_chat, "chat: %d of %d records differ from the whole string / the alpaca records", bad_chat, nrec);
        CHECK(!bad_mask, "alpaca: %d records with supervised tokens != encode(output) + <|eot_id|>", bad_mask);
        CHECK(!bad_classic, "alpaca_classic: %d records differ from encoding the whole rendered string", bad_classic);
        CHECK(!bad_cmask, "alpaca_classic: %d records with supervised tokens != encode(output) + <|end_of_text|>", bad_cmask);
        if (getenv("TEST_VERBOSE"))
            printf("demo: %d records, %lld alpaca tokens, %lld alpaca_classic tokens\n", nrec, (long long)da.n_tokens,
                   (long long)dk.n_tokens);
        data_set_free(&da);
        data_set_free(&dc);
        data_set_free(&dk);
    }
    for (int k = 0; k < nrec; k++) {
        free(user[k]);
        free(asst[k]);
        free(ins[k]);
        free(inp[k]);
        free(out[k]);
    }
    free(user);
    free(asst);
    free(ins);
    free(inp);
    free(out);
    free(chat);
    free(chp);
    free(alp);
    free(all);
}

// --- malformed lines

static int n_warn;
static void count_warn(void *ctx, const char *msg) {
    (void)ctx;
    (void)msg;
    n_warn++;
}

static void test_malformed(void) {
    static const char *cases[][3] = {
        // line, expected substrings
        {"{\"messages\": [", "not valid JSON", NULL},
        {"{\"text\": \"a\"} x", "not valid JSON", "after the object"},
        {"[1, 2]", "expected a JSON object", "an array"},
        {"{\"foo\": 1}", "cannot tell the record's format", "'foo'"},
        {"{\"messages\": \"hi\"}", "field 'messages'", "expected an array"},
        {"{\"messages\": []}", "field 'messages'", "empty"},
        {"{\"messages\": [3]}", "field 'messages[0]'", "found a number"},
        {"{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", "field 'messages[0].role'", "'bot'"},
        {"{\"messages\": [{\"content\": \"x\"}]}", "missing field 'messages[0].role'", NULL},
        {"{\"messages\": [{\"role\": \"user\"}]}", "missing field 'messages[0].content'", NULL},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 3}]}", "field 'messages[0].content'", "expected a string, found a number"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \" \\n \"}]}",
         "field 'messages[1].content'", "empty assistant"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "field 'messages'", "no assistant message"},
        {"{\"instruction\": \"x\"}", "missing field 'output'", NULL},
        {"{\"output\": \"x\"}", "missing field 'instruction'", NULL},
        {"{\"instruction\": \"x\", \"input\": 5, \"output\": \"y\"}", "field 'input'", "found a number"},
        {"{\"instruction\": \"x\", \"output\": \"  \"}", "field 'output'", "empty"},
        {"{\"text\": \"\"}", "field 'text'", "empty"},
        {"{\"text\": false}", "field 'text'", "found a boolean"},
        {"{\"image\": \"nope.jpg\", \"caption\": \"x\"}", "field 'image'", "not found"},
        {"{\"image\": \"ok.jpg\", \"caption\": 1}", "field 'caption'", "expected a string"},
        {"{\"image\": \"ok.jpg\", \"messages\": [{\"role\": \"user\", \"content\": \"no mark\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}",
         "field 'messages'", "<image>"},
        {"{\"image\": \"ok.jpg\", \"messages\": [{\"role\": \"user\", \"content\": \"<image> <image>\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}",
         "field 'messages[0].content'", "more than once"},
        {"{\"image\": \"ok.jpg\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"<image>\"}]}",
         "field 'messages[1].content'", "user message"},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    char *okimg = write_file("bad/ok.jpg", "x");
    const char *good = "{\"text\": \"good\"}\n";
    data_opts o = data_opts_default();
    o.num_patches = 4;
    data_set ds;
    // each case at line 4 (after two good lines and a blank one): FILE:4: and the field
    for (int i = 0; i < nc; i++) {
        char buf[1024], name[64];
        snprintf(buf, sizeof buf, "%s%s\n%s\n%s", good, good, cases[i][0], good);
        snprintf(name, sizeof name, "bad/case%02d.jsonl", i);
        char *p = write_file(name, buf);
        char prefix[600];
        snprintf(prefix, sizeof prefix, "%s:4: ", p);
        int rc = data_load(&ds, p, tok, &o);
        const char *e = err_get();
        CHECK(rc == -1 && !strncmp(e, prefix, strlen(prefix)) && strstr(e, cases[i][1]) &&
                  (!cases[i][2] || strstr(e, cases[i][2])),
              "case %d (%s): got rc %d '%s'", i, cases[i][0], rc, e);
        CHECK(ds.n == 0 && ds.r == NULL, "case %d: data set left empty", i);
        if (getenv("TEST_VERBOSE")) printf("  %s\n", e);
        free(p);
    }
    // skip_bad_lines: all of them skipped and counted, the good ones kept, no crash
    size_t cap = 1 << 14, len = 0;
    char *all = xmalloc(cap);
    all[0] = 0;
    for (int i = 0; i < nc; i++) {
        len += (size_t)snprintf(all + len, cap - len, "%s%s\n\n", good, cases[i][0]);
        AG_ASSERT(len < cap, "buffer");
    }
    char *p = write_file("bad/all.jsonl", all);
    o.skip_bad_lines = 1;
    o.warn = count_warn;
    n_warn = 0;
    int rc = data_load(&ds, p, tok, &o);
    CHECK(rc == 0, "skip_bad_lines: %s", err_get());
    CHECK(ds.n == nc && ds.n_skipped_bad == nc && n_warn == nc, "kept %lld, skipped %lld, warned %d; expected %d each",
          (long long)ds.n, (long long)ds.n_skipped_bad, n_warn, nc);
    for (int64_t k = 0; k < ds.n; k++) CHECK(ds.r[k].line == 1 + 3 * k, "record %lld at line %lld", (long long)k, (long long)ds.r[k].line);
    data_set_free(&ds);
    o.skip_bad_lines = 0;
    CHECK(data_load(&ds, "bad/none.jsonl", tok, &o) == -1 && strstr(err_get(), "none.jsonl"), "missing file: %s", err_get());
    free(p);
    free(all);
    free(okimg);
}

// --- length policy

// invalid UTF-8 is one error naming file:line (never an abort), or a counted skip
static void test_invalid_utf8(void) {
    char *p = write_file("utf8.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"a\xff\xfe b\"}\n");
    data_set ds = {0};
    data_opts o = data_opts_default();
    CHECK(data_load(&ds, p, tok, &o) != 0 && strstr(err_get(), "utf8.jsonl:2") && strstr(err_get(), "UTF-8"),
          "got: %s", err_get());
    data_set_free(&ds);
    o.skip_bad_lines = 1;
    CHECK(data_load(&ds, p, tok, &o) == 0 && ds.n == 1 && ds.n_skipped_bad == 1, "skip: %s", err_get());
    data_set_free(&ds);
    free(p);
    p = write_file("utf8.txt", "some \xc3 text");
    o.skip_bad_lines = 0;
    CHECK(data_load(&ds, p, tok, &o) != 0 && strstr(err_get(), "utf8.txt") && strstr(err_get(), "UTF-8"), "got: %s",
          err_get());
    data_set_free(&ds);
    free(p);
}

static void test_length(void) {
    data_opts o = data_opts_default();
    data_set ds;
    char *img = write_file("len/i.jpg", "x");
    const char *jl =
        "{\"text\": \"one two three four five six seven eight nine ten eleven twelve\"}\n"   // 13 tokens
        "{\"text\": \"short\"}\n"                                                           // 2 tokens
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a long question with many many many words in it\"},"
        " {\"role\": \"assistant\", \"content\": \"yes\"}]}\n"
        "{\"image\": \"i.jpg\", \"caption\": \"a b c\"}\n";                                   // BOS + 6 image + 4 tokens
    // lengths without a limit
    o.num_patches = 6;
    if (load1("len/a.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); free(img); return; }
    int64_t n0 = ds.n > 0 ? ds.r[0].n : 0, n2 = ds.n > 2 ? ds.r[2].n : 0;
    CHECK(ds.n == 4 && n0 == 13 && ds.r[1].n == 2 && data_record_rows(&ds.r[3], 6) == 11, "lengths %lld %lld rows %lld",
          (long long)n0, (long long)(ds.n > 1 ? ds.r[1].n : 0), (long long)(ds.n > 3 ? data_record_rows(&ds.r[3], 6) : 0));
    data_set_free(&ds);
    // drop: 13 > 10, the chat (> 10), the caption (11 rows > 10)
    o.max_seq_len = 10;
    if (load1("len/b.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); free(img); return; }
    CHECK(ds.n == 1 && ds.n_dropped_long == 3 && ds.n_truncated == 0, "drop: kept %lld dropped %lld truncated %lld",
          (long long)ds.n, (long long)ds.n_dropped_long, (long long)ds.n_truncated);
    data_set_free(&ds);
    // truncate: the text is cut to 10; the chat's answer lies past 10 tokens (nothing left to
    // learn: dropped); the caption keeps its image and 4 - 1 tokens (10 rows)
    o.truncate = 1;
    if (load1("len/c.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); free(img); return; }
    CHECK(ds.n == 3 && ds.n_dropped_long == 1 && ds.n_truncated == 2, "truncate: kept %lld dropped %lld truncated %lld (chat %lld)",
          (long long)ds.n, (long long)ds.n_dropped_long, (long long)ds.n_truncated, (long long)n2);
    if (ds.n == 3) {
        CHECK(ds.r[0].n == 10 && ds.r[1].n == 2 && data_record_rows(&ds.r[2], 6) == 10, "truncated lengths");
        tok_ids v = enc(BOS "one two three four five six seven eight nine ten eleven twelve");
        CHECK(ids_equal(ds.r[0].ids, 10, v.ids, 10), "truncation keeps the first tokens");
        tok_ids_free(&v);
    }
    data_set_free(&ds);
    // an image that does not fit is dropped even when truncating
    o.max_seq_len = 5;
    if (load1("len/d.jsonl", jl, &o, &ds)) { CHECK(0, "load: %s", err_get()); free(img); return; }
    CHECK(ds.n == 2 && ds.n_dropped_long == 2 && ds.n_truncated == 1, "max 5: kept %lld dropped %lld truncated %lld",
          (long long)ds.n, (long long)ds.n_dropped_long, (long long)ds.n_truncated);
    data_set_free(&ds);
    free(img);
}

static void test_reader_stream(void) {
    data_opts o = data_opts_default();
    char *p = write_file("stream.jsonl", "\xef\xbb\xbf{\"text\": \"a\"}\r\n\r\n{\"text\": \"b c\"}\r\n{\"text\": \"d\"}");
    data_reader *rd = data_reader_open(p, tok, &o);
    CHECK(rd, "open: %s", err_get());
    if (!rd) { free(p); return; }
    data_record r;
    int64_t lines[3] = {1, 3, 4}, k = 0;
    int rc;
    while ((rc = data_reader_next(rd, &r)) == 1) {
        CHECK(k < 3 && r.line == lines[k], "record %lld at line %lld", (long long)k, (long long)r.line);
        data_record_free(&r);
        k++;
    }
    CHECK(rc == 0 && k == 3 && rd->n_records == 3, "stream: rc %d, %lld records (%s)", rc, (long long)k, err_get());
    data_reader_close(rd);
    free(p);
}

// --- batches (synthetic data sets)

// Record k: n = 2 + (k * 5) % 7 tokens, ids 1000 k + i, mask i >= 1 && (i + k) % 3 != 0;
// every third record (k % 3 == 2) has an image at (k % 2) + 1 when P > 0.
static void make_set(data_set *ds, int64_t n, int P) {
    memset(ds, 0, sizeof *ds);
    for (int64_t k = 0; k < n; k++) {
        data_record r = {0};
        r.n = 2 + (k * 5) % 7;
        r.ids = xmalloc(sizeof(int32_t) * (size_t)r.n);
        r.mask = xmalloc((size_t)r.n);
        for (int64_t i = 0; i < r.n; i++) {
            r.ids[i] = (int32_t)(1000 * k + i);
            r.mask[i] = i >= 1 && (i + k) % 3 != 0;
        }
        r.image_pos = -1;
        if (P > 0 && k % 3 == 2) {
            r.image_pos = (k % 2) + 1;
            r.image = xstrdup("img.jpg");
        }
        r.line = k + 1;
        data_set_push(ds, &r);
    }
}

// Checks every row of b against its records (index arithmetic on the record itself).
static int check_batch(const data_batch *b, const data_set *ds, int P) {
    int bad = 0;
    int64_t sup = 0;
    if (b->seq_begin[0] != 0 || b->seq_begin[b->nseq] != b->n) bad++;
    for (int s = 0; s < b->nseq; s++) {
        const data_record *r = &ds->r[b->record[s]];
        int64_t s0 = b->seq_begin[s], rows = b->seq_begin[s + 1] - s0, Pi = r->image_pos >= 0 ? P : 0;
        if (rows != r->n + Pi) bad++;
        if (b->image_row[s] != (r->image_pos >= 0 ? s0 + r->image_pos : -1)) bad++;
        if ((b->image[s] != NULL) != (r->image_pos >= 0)) bad++;
        for (int64_t k = 0; k < rows && k < r->n + Pi; k++) {
            // row k of the sequence: token index t (or an image row)
            int img = r->image_pos >= 0 && k >= r->image_pos && k < r->image_pos + Pi;
            int64_t t = r->image_pos >= 0 && k >= r->image_pos + Pi ? k - Pi : k;
            int32_t id = img ? -1 : r->ids[t];
            // the next row's token, if it is one
            int64_t k1 = k + 1;
            int32_t tgt = -1;
            if (k1 < rows) {
                int img1 = r->image_pos >= 0 && k1 >= r->image_pos && k1 < r->image_pos + Pi;
                int64_t t1 = r->image_pos >= 0 && k1 >= r->image_pos + Pi ? k1 - Pi : k1;
                if (!img1 && r->mask[t1]) tgt = r->ids[t1];
            }
            sup += tgt >= 0;
            if (b->ids[s0 + k] != id || b->pos[s0 + k] != k || b->kv_begin[s0 + k] != s0 || b->targets[s0 + k] != tgt) bad++;
        }
    }
    if (sup != b->n_supervised) bad++;
    return bad;
}

static void test_batch_order(void) {
    data_set ds;
    make_set(&ds, 7, 0);
    data_loader L;
    data_loader_opts lo = {.batch_size = 3, .max_seq_len = 0, .packing = 0, .shuffle = 0, .seed = 1, .num_patches = 0};
    CHECK(data_loader_init(&L, &ds, &lo) == 0, "init: %s", err_get());
    data_batch b = {0};
    // file order, wrapping into the next epoch inside a batch
    int64_t expect[5][3] = {{0, 1, 2}, {3, 4, 5}, {6, 0, 1}, {2, 3, 4}, {5, 6, 0}};
    int64_t epochs[5] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        data_loader_next(&L, &b);
        CHECK(b.nseq == 3 && b.record[0] == expect[i][0] && b.record[1] == expect[i][1] && b.record[2] == expect[i][2],
              "batch %d: records %lld %lld %lld", i, (long long)b.record[0], (long long)b.record[1], (long long)b.record[2]);
        CHECK(b.start.epoch == epochs[i] && b.start.cursor == expect[i][0], "batch %d start (%lld, %lld)", i,
              (long long)b.start.epoch, (long long)b.start.cursor);
        CHECK(check_batch(&b, &ds, 0) == 0, "batch %d rows", i);
    }
    data_pos p = data_loader_tell(&L);
    CHECK(p.epoch == 2 && p.cursor == 1, "position after 15 records (%lld, %lld)", (long long)p.epoch, (long long)p.cursor);
    CHECK(data_loader_steps_for_epochs(&L, 3, 2) == 4, "steps for 3 epochs (21 records, 6 per step): %lld",
          (long long)data_loader_steps_for_epochs(&L, 3, 2));
    p.cursor = 7;
    CHECK(data_loader_seek(&L, p) == -1 && strstr(err_get(), "7 records"), "bad seek: %s", err_get());
    data_batch_free(&b);
    data_loader_free(&L);
    data_set_free(&ds);

    data_loader_opts bad = lo;
    bad.batch_size = 0;
    make_set(&ds, 3, 0);
    CHECK(data_loader_init(&L, &ds, &bad) == -1 && strstr(err_get(), "batch_size"), "batch_size 0: %s", err_get());
    data_set_free(&ds);
}

static void test_batch_images(void) {
    data_set ds;
    make_set(&ds, 6, 5);
    // plus a caption-like record: [BOS, c1, c2, EOS], image at 1, mask 0 1 1 1
    data_record r = {0};
    int32_t ids[4] = {128000, 10, 11, 128001};
    uint8_t mask[4] = {0, 1, 1, 1};
    r.n = 4;
    r.ids = xmalloc(sizeof ids);
    memcpy(r.ids, ids, sizeof ids);
    r.mask = xmalloc(sizeof mask);
    memcpy(r.mask, mask, sizeof mask);
    r.image_pos = 1;
    r.image = xstrdup("cap.jpg");
    data_set_push(&ds, &r);
    data_loader L;
    data_loader_opts lo = {.batch_size = 7, .num_patches = 5};
    CHECK(data_loader_init(&L, &ds, &lo) == 0, "init: %s", err_get());
    data_batch b = {0};
    data_loader_next(&L, &b);
    CHECK(b.nseq == 7 && check_batch(&b, &ds, 5) == 0, "image batch rows");
    // the caption record literally: BOS, 5 image rows, 10, 11, EOS
    int64_t s0 = b.seq_begin[6];
    int32_t eid[9] = {128000, -1, -1, -1, -1, -1, 10, 11, 128001};
    int32_t etg[9] = {-1, -1, -1, -1, -1, 10, 11, 128001, -1};
    int bad = b.n - s0 != 9 || b.image_row[6] != s0 + 1 || strcmp(b.image[6], "cap.jpg");
    for (int k = 0; k < 9 && s0 + k < b.n; k++)
        bad += b.ids[s0 + k] != eid[k] || b.targets[s0 + k] != etg[k] || b.pos[s0 + k] != k || b.kv_begin[s0 + k] != s0;
    CHECK(!bad, "caption sequence rows");
    data_batch_free(&b);
    data_loader_free(&L);
    data_set_free(&ds);
}

static int same_batch(const data_batch *a, const data_batch *b) {
    if (a->n != b->n || a->nseq != b->nseq || a->n_supervised != b->n_supervised) return 0;
    size_t n = (size_t)a->n;
    return !memcmp(a->ids, b->ids, 4 * n) && !memcmp(a->pos, b->pos, 4 * n) && !memcmp(a->kv_begin, b->kv_begin, 4 * n) &&
           !memcmp(a->targets, b->targets, 4 * n) && !memcmp(a->record, b->record, 8 * (size_t)a->nseq);
}

static void test_shuffle(void) {
    enum { N = 50 };
    data_set ds;
    make_set(&ds, N, 0);
    data_loader_opts lo = {.batch_size = 5, .shuffle = 1, .seed = 42};
    data_loader A, B;
    CHECK(data_loader_init(&A, &ds, &lo) == 0 && data_loader_init(&B, &ds, &lo) == 0, "init");
    data_batch a = {0}, b = {0};
    int64_t seen[3][N];
    int same = 1, perm_ok = 1;
    for (int e = 0; e < 3; e++) {
        int count[N] = {0};
        for (int i = 0; i < N / 5; i++) {
            data_loader_next(&A, &a);
            data_loader_next(&B, &b);
            same &= same_batch(&a, &b);
            for (int s = 0; s < a.nseq; s++) {
                seen[e][i * 5 + s] = a.record[s];
                count[a.record[s]]++;
            }
            CHECK(check_batch(&a, &ds, 0) == 0, "shuffled batch rows");
        }
        for (int k = 0; k < N; k++) perm_ok &= count[k] == 1;
    }
    CHECK(same, "two loaders with the same seed give the same batches");
    CHECK(perm_ok, "each epoch visits every record once");
    CHECK(memcmp(seen[0], seen[1], sizeof seen[0]) && memcmp(seen[1], seen[2], sizeof seen[0]), "a different order per epoch");
    int identity = 1;
    for (int k = 0; k < N; k++) identity &= seen[0][k] == k;
    CHECK(!identity, "shuffled");
    // the order is a pure function of (seed, epoch)
    int64_t o1[N], o2[N];
    data_epoch_order(o1, N, 1, 42, 1);
    CHECK(!memcmp(o1, seen[1], sizeof o1), "epoch 1 order = data_epoch_order(42, 1)");
    data_epoch_order(o2, N, 1, 43, 1);
    CHECK(memcmp(o1, o2, sizeof o1), "another seed, another order");
    // pinned against an independent Python transcription of the splitmix64 Fisher-Yates
    // (the order is part of the resume format: a checkpoint stores only (epoch, cursor))
    int64_t p[10];
    static const int64_t ref[3][10] = {{5, 3, 1, 6, 0, 4, 2, 7}, {0, 1, 4, 2, 5, 7, 6, 3}, {2, 0, 8, 3, 5, 6, 9, 7, 4, 1}};
    data_epoch_order(p, 8, 1, 42, 0);
    CHECK(!memcmp(p, ref[0], 8 * sizeof p[0]), "order(seed 42, epoch 0)");
    data_epoch_order(p, 8, 1, 42, 1);
    CHECK(!memcmp(p, ref[1], 8 * sizeof p[0]), "order(seed 42, epoch 1)");
    data_epoch_order(p, 10, 1, 7, 3);
    CHECK(!memcmp(p, ref[2], 10 * sizeof p[0]), "order(seed 7, epoch 3)");

    // save/restore: the position after 13 batches (inside epoch 1) gives identical batches
    data_loader_free(&B);
    data_loader_free(&A);
    CHECK(data_loader_init(&A, &ds, &lo) == 0, "init");
    for (int i = 0; i < 13; i++) data_loader_next(&A, &a);
    data_pos pos = data_loader_tell(&A);
    CHECK(data_loader_init(&B, &ds, &lo) == 0 && data_loader_seek(&B, pos) == 0, "seek: %s", err_get());
    int ident = 1;
    for (int i = 0; i < 15; i++) {
        data_loader_next(&A, &a);
        data_loader_next(&B, &b);
        ident &= same_batch(&a, &b);
    }
    CHECK(ident, "restored loader gives identical batches (across an epoch boundary)");
    data_batch_free(&a);
    data_batch_free(&b);
    data_loader_free(&A);
    data_loader_free(&B);
    data_set_free(&ds);
}

static void test_packing(void) {
    enum { N = 40, MAXLEN = 16, BS = 3 };
    data_set ds;
    make_set(&ds, N, 4);   // rows per record 2..8 (+4 with an image)
    data_loader_opts lo = {.batch_size = BS, .max_seq_len = MAXLEN, .packing = 1, .shuffle = 1, .seed = 7, .num_patches = 4};
    data_loader L;
    CHECK(data_loader_init(&L, &ds, &lo) == 0, "init: %s", err_get());
    data_batch b = {0};
    int bad_rows = 0, bad_fill = 0, bad_greedy = 0;
    int64_t micro = 0;
    while (L.pos.epoch < 2) {
        data_loader_next(&L, &b);
        micro++;
        bad_rows += check_batch(&b, &ds, 4);
        // replay the greedy packing: sequences fill rows of MAXLEN in order
        int rows = 1;
        int64_t fill = 0;
        for (int s = 0; s < b.nseq; s++) {
            int64_t len = b.seq_begin[s + 1] - b.seq_begin[s];
            if (fill + len > MAXLEN) { rows++; fill = 0; }
            fill += len;
        }
        bad_fill += rows > BS;
        // the record after the batch would not have fit in the last row of a full batch
        int64_t next = L.order[L.pos.cursor];
        int64_t nlen = data_record_rows(&ds.r[next], 4);
        bad_greedy += !(rows == BS && fill + nlen > MAXLEN);
    }
    CHECK(!bad_rows, "packed batches: %d row errors (positions restart, kv_begin = document start, targets)", bad_rows);
    CHECK(!bad_fill, "%d batches hold more than %d rows of %d", bad_fill, BS, MAXLEN);
    CHECK(!bad_greedy, "%d batches stopped before they were full", bad_greedy);
    CHECK(data_loader_steps_for_epochs(&L, 2, 1) == micro, "steps_for_epochs %lld vs %lld micro-batches",
          (long long)data_loader_steps_for_epochs(&L, 2, 1), (long long)micro);
    // documents never cross: every sequence's first row has position 0 and kv_begin itself
    data_loader_free(&L);
    CHECK(data_loader_init(&L, &ds, &lo) == 0, "init");
    data_loader_next(&L, &b);
    int ok = 1;
    for (int64_t i = 0; i < b.n; i++) ok &= b.pos[i] == i - b.kv_begin[i] && (b.pos[i] != 0 || b.kv_begin[i] == i);
    CHECK(ok && b.n <= BS * MAXLEN, "positions restart at document starts");
    data_batch_free(&b);
    data_loader_free(&L);
    data_set_free(&ds);
}

// One prompt through gen_prompt_ids (generate's rule, through data_encode_spliced): its ids must
// be enc(before) + nrows ids -1 + enc(after), image_pos at the first -1 (before = NULL: no image,
// after encoded alone with image_pos -1). bos, when >= 0, is expected first (plain prompts).
static void check_prompt(const char *what, const char *prompt, int chat, int image, const char *before,
                         const char *after) {
    enum { NROWS = 3 };
    const int32_t bos = 128000;
    tok_ids got = {0}, want = {0};
    int64_t pos = -2;
    CHECK(gen_prompt_ids(tok, prompt, chat, bos, image, NROWS, &got, &pos) == 0, "%s: %s", what, err_get());
    if (!chat) tok_ids_push(&want, bos);
    int64_t want_pos = -1;
    if (before) {
        tok_ids a = enc(before);
        for (size_t i = 0; i < a.n; i++) tok_ids_push(&want, a.ids[i]);
        tok_ids_free(&a);
        want_pos = (int64_t)want.n;
        for (int k = 0; k < NROWS; k++) tok_ids_push(&want, -1);
    }
    tok_ids b = enc(after);
    for (size_t i = 0; i < b.n; i++) tok_ids_push(&want, b.ids[i]);
    tok_ids_free(&b);
    CHECK(pos == want_pos, "%s: image_pos %lld, expected %lld", what, (long long)pos, (long long)want_pos);
    CHECK(ids_equal(got.ids, (int64_t)got.n, want.ids, (int64_t)want.n), "%s: %zu ids differ from the %zu expected",
          what, got.n, want.n);
    tok_ids_free(&got);
    tok_ids_free(&want);
}

static void test_prompt_splice(void) {
    check_prompt("plain, no image", "Hi <image> there", 0, 0, NULL, "Hi <image> there");
    check_prompt("plain, image at <image>", "Hi <image> there", 0, 1, "Hi ", " there");
    check_prompt("plain, image without <image>: after bos", "Describe.", 0, 1, "", "Describe.");
    check_prompt("chat, no image", "Hi <image>", 1, 0, NULL, BOS HDR("user") "Hi <image>" EOT HDR("assistant"));
    check_prompt("chat, image at <image>", " What is <image> here? ", 1, 1, BOS HDR("user") "What is ",
                 " here?" EOT HDR("assistant"));
    check_prompt("chat, image without <image>: LLaVA's <image>\\n first", "Describe.", 1, 1, BOS HDR("user"),
                 "\nDescribe." EOT HDR("assistant"));
}

int main(void) {
    const char *dir = getenv("TOKENIZER_DIR");
    tok = tok_load(dir ? dir : ".cache/tokenizer");
    tmp = test_tmpdir("records");
    if (!tok) {
        test_fail("cannot load the tokenizer: %s", err_get());
    } else {
        RUN(test_chat);
        RUN(test_alpaca);
        RUN(test_text_and_txt);
        RUN(test_images);
        RUN(test_prompt_splice);
        RUN(test_auto_and_explicit);
        RUN(test_demo_records);
        RUN(test_malformed);
        RUN(test_length);
        RUN(test_invalid_utf8);
        RUN(test_reader_stream);
    }
    RUN(test_batch_order);
    RUN(test_batch_images);
    RUN(test_shuffle);
    RUN(test_packing);
    if (tok) tok_free(tok);
    return test_summary();
}
