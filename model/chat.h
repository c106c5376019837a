// chat.h — the Llama 3 chat rendering (tokenizer_config.json's chat_template, as transformers
// renders it with Jinja): "<|begin_of_text|>" then per message
// "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>" with CONTENT trimmed like
// Jinja's `| trim` (Python str.strip(): the characters for which str.isspace() is true), and
// optionally the assistant header "<|start_header_id|>assistant<|end_header_id|>\n\n".
//
// Encoding the rendered string at once (special tokens recognized) gives the same ids as
// encoding its parts one after another (BOS, header, content, "<|eot_id|>"): special tokens
// always end a pre-tokenizer piece, and the "\n\n" after a header is a piece of its own because
// trimmed content never starts with whitespace. chat_render_spans gives those parts' offsets.
#ifndef LORAC_CHAT_H
#define LORAC_CHAT_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_BOS "<|begin_of_text|>"
#define CHAT_SH "<|start_header_id|>"
#define CHAT_EH "<|end_header_id|>"
#define CHAT_EOT "<|eot_id|>"

typedef struct chat_msg {
    const char *role;      // "system" | "user" | "assistant" | "ipython" | ... (used as given)
    const char *content;   // UTF-8, NUL-terminated; trimmed when rendered
} chat_msg;

// Byte offsets of one rendered message in the rendered string:
// [start, content_start) is its header (with "\n\n"), [content_start, content_end) the trimmed
// content, [content_end, end) the "<|eot_id|>".
typedef struct chat_span {
    size_t start, content_start, content_end, end;
} chat_span;

// 1 when the code point is whitespace for Python's str.isspace() / str.strip().
int chat_is_space(uint32_t cp);
// The trimmed part of s[0..*len): returns its start and sets *len to its length (no copy).
// Invalid UTF-8 is never whitespace.
const char *chat_trim_view(const char *s, size_t *len);
// malloc'd trimmed copy of the NUL-terminated s.
char *chat_trim(const char *s);

// malloc'd rendering of n messages (n may be 0: just "<|begin_of_text|>"), plus the assistant
// header when add_generation_prompt.
char *chat_render(const chat_msg *msgs, int n, int add_generation_prompt);
// The same, also filling spans[0..n) (when not NULL) and *out_len (when not NULL).
char *chat_render_spans(const chat_msg *msgs, int n, int add_generation_prompt, chat_span *spans,
                        size_t *out_len);

#endif
