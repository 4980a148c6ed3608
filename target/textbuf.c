/* Text replies in a fixed buffer (textbuf.h). */
#include "textbuf.h"

#include <stdarg.h>
#include <stdio.h>

void textbuf_put(struct textbuf *t, const char *fmt, ...)
{
    if (t->used + 1 >= t->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->used, t->len - t->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->used = t->used + (size_t)n < t->len ? t->used + (size_t)n : t->len - 1;
}

void textbuf_json_str(struct textbuf *t, const char *s)
{
    textbuf_put(t, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            textbuf_put(t, "\\%c", ch);
        else if (ch < 0x20)
            textbuf_put(t, "\\u%04x", ch);
        else
            textbuf_put(t, "%c", ch);
    }
    textbuf_put(t, "\"");
}
