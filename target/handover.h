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
/*
 * Forwarded commands: on a node that stands by for a LU, a command that changes the LU's
 * reservations or mode parameters (PERSISTENT RESERVE OUT, MODE SELECT) is carried out by the
 * node that serves it, so that one node decides every change; that node's metadata image
 * (lu.h) comes back as for any change, before the answer.
 * Command (all big-endian):
 *   0   magic "TWLP"
 *   4   LUN id
 *   8   token: echoed by the answer
 *   16  relative target port the command came in on
 *   18  ISID (6 bytes)
 *   24  CDB (16 bytes, zero-padded)
 *   40  parameter list length p (at most FORWARD_PARAM_MAX)
 *   44  initiator name length n (1..FORWARD_NAME_MAX)
 *   46  n bytes of initiator name, no NUL; then p bytes of parameter list
 * Answer:
 *   0   magic "TWLA"
 *   4   LUN id
 *   8   token
 *   16  error: 0, or a negative errno when the command was not carried out (the node does not
 *       serve the LUN, out of memory, the image did not reach the partner)
 *   20  SCSI status
 *   21  sense length s (at most FORWARD_SENSE_MAX)
 *   22  s bytes of sense data
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

#define FORWARD_MAGIC     0x54574c50u /* "TWLP" */
#define FORWARD_HDR_LEN   46u
#define FORWARD_NAME_MAX  223u        /* an iSCSI name's longest */
#define FORWARD_PARAM_MAX 65536u      /* PR OUT and MODE SELECT parameter lists */
#define ANSWER_MAGIC      0x54574c41u /* "TWLA" */
#define ANSWER_HDR_LEN    22u
#define FORWARD_SENSE_MAX 32u
#define ANSWER_MAX_LEN    (ANSWER_HDR_LEN + FORWARD_SENSE_MAX)

struct forward_cmd {
    uint32_t lun;
    uint64_t token;
    uint16_t rel_port;
    uint8_t isid[6];
    uint8_t cdb[16];
    char initiator[FORWARD_NAME_MAX + 1];
    uint32_t param_len;
    const uint8_t *param; /* decode: points into the record */
};

/* The command's header (without the parameter list, which follows it) into buf (at least
 * FORWARD_HDR_LEN + FORWARD_NAME_MAX bytes). Returns its length, or -EINVAL when the name or
 * the parameter list is too long or the name empty. */
int forward_encode(const struct forward_cmd *f, uint8_t *buf);
int forward_decode(const uint8_t *buf, uint32_t len, struct forward_cmd *f);

struct forward_answer {
    uint32_t lun;
    uint64_t token;
    int32_t err;
    uint8_t status;
    uint8_t sense_len;
    uint8_t sense[FORWARD_SENSE_MAX];
};

uint32_t answer_encode(const struct forward_answer *a, uint8_t *buf);
int answer_decode(const uint8_t *buf, uint32_t len, struct forward_answer *a);

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
