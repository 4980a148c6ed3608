/* Handover records, forwarded commands and the in-sync rule of a handover (handover.h). */
#include "handover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "twl_common.h"

uint32_t handover_encode(const struct handover_record *h, uint8_t *buf)
{
    size_t n = strnlen(h->reason, HANDOVER_REASON_MAX);
    twl_put_be32(buf, HANDOVER_MAGIC);
    twl_put_be32(buf + 4, h->lun);
    twl_put_be32(buf + 8, (uint32_t)h->kind);
    twl_put_be32(buf + 12, h->flags);
    twl_put_be64(buf + 16, h->token);
    twl_put_be32(buf + 24, (uint32_t)n);
    memcpy(buf + HANDOVER_HDR_LEN, h->reason, n);
    return HANDOVER_HDR_LEN + (uint32_t)n;
}

int handover_decode(const uint8_t *buf, uint32_t len, struct handover_record *h)
{
    memset(h, 0, sizeof(*h));
    if (len < HANDOVER_HDR_LEN || twl_get_be32(buf) != HANDOVER_MAGIC)
        return -EBADMSG;
    uint32_t kind = twl_get_be32(buf + 8), n = twl_get_be32(buf + 24);
    h->lun = twl_get_be32(buf + 4);
    h->flags = twl_get_be32(buf + 12);
    h->token = twl_get_be64(buf + 16);
    if (kind < HANDOVER_ASK || kind > HANDOVER_REFUSED || (h->flags & ~HANDOVER_FORCE) ||
        n > HANDOVER_REASON_MAX || len != HANDOVER_HDR_LEN + n ||
        memchr(buf + HANDOVER_HDR_LEN, '\0', n) != NULL)
        return -EBADMSG;
    h->kind = (enum handover_kind)kind;
    memcpy(h->reason, buf + HANDOVER_HDR_LEN, n);
    h->reason[n] = '\0';
    return 0;
}

int handover_blocker(const struct handover_copies *s, char *why, size_t why_len)
{
    if (!s->connected) {
        snprintf(why, why_len, "the partner is not connected");
        return -ENOTCONN;
    }
    if (!s->paired) {
        snprintf(why, why_len, "the last handshake did not pair it (see status)");
        return -EAGAIN;
    }
    if (s->dirty_bytes) {
        snprintf(why, why_len, "%s: %.1f MiB of the partner's copy %s",
                 s->resyncing       ? "resyncing"
                 : s->resync_paused ? "resync paused"
                                    : "resync pending",
                 s->dirty_bytes / 1048576.0, s->resyncing ? "left to copy" : "differ");
        return -EAGAIN;
    }
    if (s->degraded) {
        snprintf(why, why_len, "degraded: the last change had no replica");
        return -EAGAIN;
    }
    if (s->need_gens || s->resyncing) {
        snprintf(why, why_len, "resyncing: the partner's copy has not been confirmed equal yet");
        return -EAGAIN;
    }
    if (!s->peer_listed) {
        snprintf(why, why_len, "the partner has not listed the regions its copy lacks yet");
        return -EAGAIN;
    }
    return 0;
}

int forward_encode(const struct forward_cmd *f, uint8_t *buf)
{
    size_t n = strnlen(f->initiator, FORWARD_NAME_MAX + 1);
    if (n == 0 || n > FORWARD_NAME_MAX || f->param_len > FORWARD_PARAM_MAX)
        return -EINVAL;
    twl_put_be32(buf, FORWARD_MAGIC);
    twl_put_be32(buf + 4, f->lun);
    twl_put_be64(buf + 8, f->token);
    twl_put_be16(buf + 16, f->rel_port);
    memcpy(buf + 18, f->isid, 6);
    memcpy(buf + 24, f->cdb, 16);
    twl_put_be32(buf + 40, f->param_len);
    twl_put_be16(buf + 44, (uint16_t)n);
    memcpy(buf + FORWARD_HDR_LEN, f->initiator, n);
    return (int)(FORWARD_HDR_LEN + n);
}

int forward_decode(const uint8_t *buf, uint32_t len, struct forward_cmd *f)
{
    memset(f, 0, sizeof(*f));
    if (len < FORWARD_HDR_LEN || twl_get_be32(buf) != FORWARD_MAGIC)
        return -EBADMSG;
    uint32_t p = twl_get_be32(buf + 40), n = twl_get_be16(buf + 44);
    if (n == 0 || n > FORWARD_NAME_MAX || p > FORWARD_PARAM_MAX ||
        (uint64_t)len != FORWARD_HDR_LEN + n + (uint64_t)p ||
        memchr(buf + FORWARD_HDR_LEN, '\0', n) != NULL)
        return -EBADMSG;
    f->lun = twl_get_be32(buf + 4);
    f->token = twl_get_be64(buf + 8);
    f->rel_port = twl_get_be16(buf + 16);
    memcpy(f->isid, buf + 18, 6);
    memcpy(f->cdb, buf + 24, 16);
    memcpy(f->initiator, buf + FORWARD_HDR_LEN, n);
    f->initiator[n] = '\0';
    f->param_len = p;
    f->param = buf + FORWARD_HDR_LEN + n;
    return 0;
}

uint32_t answer_encode(const struct forward_answer *a, uint8_t *buf)
{
    uint8_t s = a->sense_len < FORWARD_SENSE_MAX ? a->sense_len : FORWARD_SENSE_MAX;
    twl_put_be32(buf, ANSWER_MAGIC);
    twl_put_be32(buf + 4, a->lun);
    twl_put_be64(buf + 8, a->token);
    twl_put_be32(buf + 16, (uint32_t)a->err);
    buf[20] = a->status;
    buf[21] = s;
    memcpy(buf + ANSWER_HDR_LEN, a->sense, s);
    return ANSWER_HDR_LEN + s;
}

int answer_decode(const uint8_t *buf, uint32_t len, struct forward_answer *a)
{
    memset(a, 0, sizeof(*a));
    if (len < ANSWER_HDR_LEN || twl_get_be32(buf) != ANSWER_MAGIC || buf[21] > FORWARD_SENSE_MAX ||
        len != ANSWER_HDR_LEN + (uint32_t)buf[21])
        return -EBADMSG;
    a->lun = twl_get_be32(buf + 4);
    a->token = twl_get_be64(buf + 8);
    a->err = (int32_t)twl_get_be32(buf + 16);
    if (a->err > 0 || a->err < -4095)
        return -EBADMSG;
    a->status = buf[20];
    a->sense_len = buf[21];
    memcpy(a->sense, buf + ANSWER_HDR_LEN, a->sense_len);
    return 0;
}
