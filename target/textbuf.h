/*
 * A text reply built in a caller's buffer (the admin socket's answers, the metrics page): what
 * does not fit is cut, the text always stays NUL-terminated, and nothing is allocated.
 */
#ifndef TGT_TEXTBUF_H
#define TGT_TEXTBUF_H

#include <stddef.h>

struct textbuf {
    char *p;
    size_t len;  /* of p */
    size_t used; /* bytes written, at most len - 1 */
};

void textbuf_put(struct textbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string: quotes and backslashes escaped, control characters as \uXXXX. */
void textbuf_json_str(struct textbuf *t, const char *s);

#endif
