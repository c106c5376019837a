// samples.c — greedy samples during training (see samples.h).
#define _GNU_SOURCE
#include "samples.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "generate.h"
#include "util.h"

static void add(sample_set *s, const chat_msg *msgs, int n, const char *shown, const char *expected) {
    s->shown = xrealloc(s->shown, (size_t)(s->n + 1) * sizeof(char *));
    s->rendered = xrealloc(s->rendered, (size_t)(s->n + 1) * sizeof(char *));
    s->expected = xrealloc(s->expected, (size_t)(s->n + 1) * sizeof(char *));
    s->shown[s->n] = chat_trim(shown);
    s->rendered[s->n] = chat_render(msgs, n, 1);
    s->expected[s->n] = expected ? chat_trim(expected) : NULL;
    s->n_expected += expected != NULL;
    s->n++;
}

static const char *str_item(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// One JSONL record: chat (messages, the last assistant message expected) or alpaca.
static int add_record(sample_set *s, const cJSON *j, const char *path, int line) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const char *ins = str_item(j, "instruction");
    if (cJSON_IsArray(msgs)) {
        int n = cJSON_GetArraySize(msgs), last_asst = -1, last_user = -1;
        chat_msg *m = xcalloc((size_t)(n ? n : 1), sizeof *m);
        for (int i = 0; i < n; i++) {
            const cJSON *it = cJSON_GetArrayItem(msgs, i);
            m[i].role = str_item(it, "role");
            m[i].content = str_item(it, "content");
            if (!m[i].role || !m[i].content) {
                free(m);
                return err_set("%s:%d: messages[%d]: expected string fields role and content", path, line, i);
            }
            if (!strcmp(m[i].role, "assistant")) last_asst = i;
            if (!strcmp(m[i].role, "user")) last_user = i;
        }
        // the prompt: everything before the final assistant message (or all messages)
        int np = last_asst == n - 1 ? n - 1 : n;
        if (last_user < 0 || last_user >= np) {
            free(m);
            return err_set("%s:%d: expected a user message before the last assistant message", path, line);
        }
        add(s, m, np, m[last_user].content, np < n ? m[n - 1].content : NULL);
        free(m);
        return 0;
    }
    if (ins) {
        const char *in = str_item(j, "input");
        char *u = NULL;
        if (in && in[0] && asprintf(&u, "%s\n\n%s", ins, in) < 0) AG_ASSERT(0, "asprintf");
        chat_msg msg = {"user", u ? u : ins};
        add(s, &msg, 1, msg.content, str_item(j, "output"));
        free(u);
        return 0;
    }
    return err_set("%s:%d: expected a chat record (messages) or an alpaca record (instruction, output)", path, line);
}

int samples_load(sample_set *s, const cfg_train *cfg) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < cfg->train.n_sample_prompts; i++) {
        chat_msg msg = {"user", cfg->train.sample_prompts[i]};
        add(s, &msg, 1, msg.content, NULL);
    }
    const char *path = cfg->train.sample_file;
    if (!path) return 0;
    char *text = file_read_all(path, NULL);
    if (!text) return err_prefix("train.sample_prompts");
    size_t L = strlen(path);
    int jsonl = L > 6 && !strcmp(path + L - 6, ".jsonl"), rc = 0, line = 0;
    char *save = NULL;
    for (char *ln = strtok_r(text, "\n", &save); ln && rc == 0; ln = strtok_r(NULL, "\n", &save)) {
        line++;   // strtok_r skips empty lines: count them from the text instead
        size_t len = strlen(ln);
        if (len && ln[len - 1] == '\r') ln[--len] = 0;
        size_t tl = len;
        chat_trim_view(ln, &tl);
        if (tl == 0) continue;
        if (!jsonl) {
            chat_msg msg = {"user", ln};
            add(s, &msg, 1, ln, NULL);
            continue;
        }
        cJSON *j = cJSON_Parse(ln);
        if (!cJSON_IsObject(j)) rc = err_set("%s:%d: expected a JSON object", path, line);
        else rc = add_record(s, j, path, line);
        cJSON_Delete(j);
    }
    free(text);
    if (rc == 0 && s->n == 0) rc = err_set("%s: train.sample_prompts: no prompts in the file", path);
    return rc;
}

void samples_free(sample_set *s) {
    for (int i = 0; i < s->n; i++) free(s->shown[i]), free(s->rendered[i]), free(s->expected[i]);
    free(s->shown), free(s->rendered), free(s->expected);
    memset(s, 0, sizeof *s);
}

// One-line display of a completion (newlines as \n), at most `max` bytes.
static void show(FILE *f, const char *t, int max) {
    for (int i = 0; t[i] && i < max; i++) {
        if (t[i] == '\n') fputs("\\n", f);
        else fputc(t[i], f);
    }
    if ((int)strlen(t) > max) fputs("...", f);
}

int samples_run(const sample_set *s, int64_t step, const llama_model *m, const llama_lora *lora,
                const tok_tokenizer *tok, int max_new_tokens, FILE *metrics, double *exact) {
    gen_opts o;
    gen_opts_default(&o);
    o.temperature = 0;
    o.max_new_tokens = max_new_tokens;
    int32_t stop[16], *out = xmalloc((size_t)max_new_tokens * sizeof(int32_t));
    int nstop = gen_stop_ids(m, stop, 16), nexact = 0, rc = 0;
    cJSON *arr = cJSON_CreateArray();
    tok_ids ids = {0};
    for (int i = 0; i < s->n && rc == 0; i++) {
        ids.n = 0;
        gen_stats st;
        if (tok_encode(tok, s->rendered[i], strlen(s->rendered[i]), 1, &ids) != 0 ||
            gen_generate(m, lora, NULL, ids.ids, (int64_t)ids.n, NULL, &o, stop, nstop, NULL, out, &st) != 0) {
            rc = err_prefix("train.sample_prompts[%d]", i);
            break;
        }
        char *raw = tok_decode(tok, out, (size_t)st.new_tokens), *text = chat_trim(raw);
        free(raw);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "prompt", s->shown[i]);
        cJSON_AddStringToObject(e, "output", text);
        if (s->expected[i]) {
            int ok = !strcmp(text, s->expected[i]);
            nexact += ok;
            cJSON_AddStringToObject(e, "expected", s->expected[i]);
            cJSON_AddBoolToObject(e, "exact", ok);
        }
        cJSON_AddItemToArray(arr, e);
        free(text);
    }
    tok_ids_free(&ids);
    free(out);
    if (rc != 0) {
        cJSON_Delete(arr);
        return -1;
    }
    double share = s->n_expected ? (double)nexact / s->n_expected : -1;
    if (exact) *exact = share;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddItemToObject(j, "samples", arr);
    if (s->n_expected) cJSON_AddNumberToObject(j, "sample_exact", share);
    char *line = cJSON_PrintUnformatted(j);
    fprintf(metrics, "%s\n", line);
    fflush(metrics);
    // stderr: the share and the first few completions
    fprintf(stderr, "samples at step %lld (greedy, %d prompts)", (long long)step, s->n);
    if (s->n_expected) fprintf(stderr, ": %d/%d exactly right (%.1f%%)", nexact, s->n_expected, 100 * share);
    fputc('\n', stderr);
    for (int i = 0; i < s->n && i < 5; i++) {
        cJSON *e = cJSON_GetArrayItem(arr, i);
        fputs("  ", stderr);
        show(stderr, s->shown[i], 60);
        fputs(" -> ", stderr);
        show(stderr, cJSON_GetObjectItem(e, "output")->valuestring, 60);
        if (s->expected[i]) fprintf(stderr, "   [%s]", cJSON_IsTrue(cJSON_GetObjectItem(e, "exact")) ? "right" : "wrong");
        fputc('\n', stderr);
    }
    cJSON_free(line);
    cJSON_Delete(j);
    return 0;
}
