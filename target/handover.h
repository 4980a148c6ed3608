/*
 * Handover records: how the two nodes of a pair move the serving of a LUN between them
 * (twinlunctl takeover and giveback, DESIGN.md section 7) over the backplane. They travel in
 * the sender's inflight ring on the partner, so a "give" is applied after every change the old
 * owner made before it.
 *
 * Format (all big-endian):
 *   0   magic "TWLH"
 *   4   LUN id
 *   8   kind: 1 ask     the sender asks to serve the LUN (takeover); the receiver, if it serves
 *                       the LUN, hands it over (a give) or answers refused
 *             2 give    the receiver serves the LUN from this record on; the sender no longer
 *                       does (it drained its writes and the copies were in sync before it)
 *             3 refused the ask with this token is refused, for the reason that follows
 *   12  flags: bit 0 force (ask): wait for the copies to converge instead of refusing
 *   16  token: an ask's number, echoed by the give or refusal that answers it (0: none)
 *   24  length n of the reason (at most HANDOVER_REASON_MAX; 0 except in refused)
 *   28  n bytes of reason, UTF-8, no NUL
 */
#ifndef TGT_HANDOVER_H
#define TGT_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HANDOVER_MAGIC      0x54574c48u /* "TWLH" */
#define HANDOVER_HDR_LEN    28u
#define HANDOVER_REASON_MAX 255u
#define HANDOVER_MAX_LEN    (HANDOVER_HDR_LEN + HANDOVER_REASON_MAX)
#define HANDOVER_FORCE      1u

enum handover_kind { HANDOVER_ASK = 1, HANDOVER_GIVE = 2, HANDOVER_REFUSED = 3 };

struct handover_record {
    uint32_t lun;
    enum handover_kind kind;
    uint32_t flags;
    uint64_t token;
    char reason[HANDOVER_REASON_MAX + 1]; /* NUL-terminated here */
};

/* Writes the record into buf (at least HANDOVER_MAX_LEN bytes); a longer reason is cut.
 * Returns its length. */
uint32_t handover_encode(const struct handover_record *h, uint8_t *buf);
/* -EBADMSG when buf is not a well-formed record (unknown kind or flags, lengths that
 * disagree, a NUL in the reason). */
int handover_decode(const uint8_t *buf, uint32_t len, struct handover_record *h);

/* What the serving node knows of one LUN's copies when asked to hand it over. */
struct handover_copies {
    bool connected;       /* the partner is connected */
    bool paired;          /* the last handshake paired this LUN */
    bool degraded;        /* the last change had no replica */
    bool resyncing;       /* a resync pass is copying */
    bool resync_paused;   /* by the admin */
    bool peer_listed;     /* the partner listed its dirty regions on this connection */
    bool need_gens;       /* the partner's copy has not taken this one's generations yet */
    uint64_t dirty_bytes; /* regions of this copy the partner's lacks */
};

/* Why the partner's copy cannot serve the LUN yet (written into why): -ENOTCONN when the
 * partner is away (a handover needs it: an unplanned move is a promotion), -EAGAIN when the
 * copies differ or may differ (a forced handover waits until they do not). 0 when they are
 * the same. */
int handover_blocker(const struct handover_copies *s, char *why, size_t why_len);

#endif
