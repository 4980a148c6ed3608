#include "pdu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool pdu_is_initiator_opcode(uint8_t opcode)
{
    switch (opcode) {
    case ISCSI_OP_NOP_OUT:
    case ISCSI_OP_SCSI_CMD:
    case ISCSI_OP_TMF_REQ:
    case ISCSI_OP_LOGIN_REQ:
    case ISCSI_OP_TEXT_REQ:
    case ISCSI_OP_DATA_OUT:
    case ISCSI_OP_LOGOUT_REQ:
    case ISCSI_OP_SNACK:
        return true;
    default:
        return false;
    }
}

/* RFC 7143 appendix B.4: the digest goes on the wire least significant byte first. */
void pdu_digest_put(uint8_t out[ISCSI_DIGEST_LEN], uint32_t crc)
{
    twl_put_le32(out, crc);
}

bool pdu_digest_matches(const uint8_t in[ISCSI_DIGEST_LEN], uint32_t crc)
{
    return twl_get_le32(in) == crc;
}

uint32_t pdu_data_digest(const uint8_t *data, uint32_t len)
{
    static const uint8_t zeros[3];
    return twl_crc32c_update(twl_crc32c(data, len), zeros, pdu_pad(len));
}

int pdu_text_parse(char *text, size_t len, struct pdu_kv *kvs, size_t max)
{
    /* Padding may follow the last pair; drop trailing NULs beyond the final terminator. */
    while (len >= 2 && text[len - 1] == '\0' && text[len - 2] == '\0')
        len--;
    if (len == 0)
        return 0;
    if (text[len - 1] != '\0')
        return -EINVAL;
    size_t count = 0;
    size_t pos = 0;
    while (pos < len) {
        char *pair = text + pos;
        size_t plen = strlen(pair);
        char *eq = memchr(pair, '=', plen);
        if (eq == NULL || eq == pair || (size_t)(eq - pair) > ISCSI_KEY_MAX)
            return -EINVAL;
        if (count == max)
            return -E2BIG;
        *eq = '\0';
        kvs[count].key = pair;
        kvs[count].value = eq + 1;
        count++;
        pos += plen + 1;
    }
    return (int)count;
}

static int text_reserve(struct pdu_text *t, size_t more)
{
    if (t->len + more <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 512;
    while (cap < t->len + more)
        cap *= 2;
    char *nb = realloc(t->buf, cap);
    if (nb == NULL)
        return -ENOMEM;
    t->buf = nb;
    t->cap = cap;
    return 0;
}

int pdu_text_add(struct pdu_text *t, const char *key, const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    int rc = text_reserve(t, kl + vl + 2);
    if (rc)
        return rc;
    memcpy(t->buf + t->len, key, kl);
    t->buf[t->len + kl] = '=';
    memcpy(t->buf + t->len + kl + 1, value, vl);
    t->buf[t->len + kl + 1 + vl] = '\0';
    t->len += kl + vl + 2;
    return 0;
}

int pdu_text_addf(struct pdu_text *t, const char *key, const char *fmt, ...)
{
    char value[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(value))
        return -E2BIG;
    return pdu_text_add(t, key, value);
}

void pdu_text_free(struct pdu_text *t)
{
    free(t->buf);
    memset(t, 0, sizeof(*t));
}
