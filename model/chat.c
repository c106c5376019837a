// chat.c — the Llama 3 chat rendering and Python-style trimming (see chat.h).
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

// --- trimming (Python str.strip)

int chat_is_space(uint32_t cp) {
    if (cp <= 0x20) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes one well-formed UTF-8 character at s[0..n); returns its length, 0 when ill-formed.
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned b = s[0];
    size_t need;
    uint32_t v, min;
    if (b < 0x80) { *cp = b; return 1; }
    if (b >= 0xC2 && b <= 0xDF) { need = 1; v = b & 0x1F; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { need = 2; v = b & 0x0F; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { need = 3; v = b & 0x07; min = 0x10000; }
    else return 0;
    if (n < need + 1) return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[k] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return need + 1;
}

const char *chat_trim_view(const char *s, size_t *len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t a = 0, b = *len;
    uint32_t cp;
    while (a < b) {
        size_t l = utf8_char(p + a, b - a, &cp);
        if (!l || !chat_is_space(cp)) break;
        a += l;
    }
    while (b > a) {
        // the last character: its lead byte is at most 3 bytes back
        size_t l = 0;
        for (size_t k = 1; k <= 4 && k <= b - a; k++) {
            if ((p[b - k] & 0xC0) == 0x80) continue;
            if (utf8_char(p + b - k, k, &cp) == k) l = k;
            break;
        }
        if (!l || !chat_is_space(cp)) break;
        b -= l;
    }
    *len = b - a;
    return s + a;
}

char *chat_trim(const char *s) {
    size_t n = strlen(s);
    const char *p = chat_trim_view(s, &n);
    char *o = xmalloc(n + 1);
    memcpy(o, p, n);
    o[n] = 0;
    return o;
}

// --- rendering

char *chat_render_spans(const chat_msg *msgs, int n, int add_generation_prompt, chat_span *spans,
                        size_t *out_len) {
    strbuf b = {0};
    sb_puts(&b, CHAT_BOS);
    for (int i = 0; i < n; i++) {
        size_t start = b.n;
        sb_puts(&b, CHAT_SH);
        sb_puts(&b, msgs[i].role ? msgs[i].role : "");
        sb_puts(&b, CHAT_EH "\n\n");
        size_t cs = b.n, len = msgs[i].content ? strlen(msgs[i].content) : 0;
        const char *c = len ? chat_trim_view(msgs[i].content, &len) : "";
        sb_put(&b, c, len);
        size_t ce = b.n;
        sb_puts(&b, CHAT_EOT);
        if (spans) spans[i] = (chat_span){start, cs, ce, b.n};
    }
    if (add_generation_prompt) sb_puts(&b, CHAT_SH "assistant" CHAT_EH "\n\n");
    if (out_len) *out_len = b.n;
    return b.s;
}

char *chat_render(const chat_msg *msgs, int n, int add_generation_prompt) {
    return chat_render_spans(msgs, n, add_generation_prompt, NULL, NULL);
}
