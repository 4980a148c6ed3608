/* Handover records and the in-sync rule of a handover (handover.h). */
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
