/*
 * The configuration loader fed arbitrary text: it must answer every input with a config or one
 * "NAME:LINE: ..." message, never crash, leak or read out of bounds, and a config it accepts
 * must free cleanly.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "FILE:LINE: ..." (FILE is fuzz.conf, or a file an @include named). */
static bool names_a_line(const char *err)
{
    for (const char *p = strchr(err, ':'); p; p = strchr(p + 1, ':')) {
        size_t digits = strspn(p + 1, "0123456789");
        if (digits && p[1 + digits] == ':')
            return p > err;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    static struct tgt_config cfg;
    char err[1024];
    err[0] = '\0';
    int rc = tgt_config_load_string(text, "fuzz.conf", &cfg, err, sizeof(err));
    if (rc == 0)
        tgt_config_free(&cfg);
    else if (!names_a_line(err))
        abort(); /* every refusal names where */
    free(text);
    return 0;
}
