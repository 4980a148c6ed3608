/*
 * iSCSI PDU codec (RFC 7143 section 11): the Basic Header Segment layout, header checks,
 * digests, and the key=value text format of Login and Text PDUs.
 *
 * Wire layout of every PDU:
 *   BHS (48 bytes) | AHS (TotalAHSLength * 4 bytes) | HeaderDigest (4, if negotiated)
 *   | data segment (DataSegmentLength bytes, padded to 4) | DataDigest (4, if negotiated)
 */
#ifndef TGT_PDU_H
#define TGT_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twl_common.h"

#define ISCSI_BHS_LEN       48
#define ISCSI_DIGEST_LEN    4
#define ISCSI_RSVD_TAG      0xffffffffu
#define ISCSI_LOGIN_MAX_DSL 8192u  /* MaxRecvDataSegmentLength before it is negotiated */
#define ISCSI_TEXT_MAX      65536u /* accumulated text of one Login/Text exchange */

/* Initiator opcodes */
#define ISCSI_OP_NOP_OUT    0x00
#define ISCSI_OP_SCSI_CMD   0x01
#define ISCSI_OP_TMF_REQ    0x02
#define ISCSI_OP_LOGIN_REQ  0x03
#define ISCSI_OP_TEXT_REQ   0x04
#define ISCSI_OP_DATA_OUT   0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK      0x10
/* Target opcodes */
#define ISCSI_OP_NOP_IN     0x20
#define ISCSI_OP_SCSI_RSP   0x21
#define ISCSI_OP_TMF_RSP    0x22
#define ISCSI_OP_LOGIN_RSP  0x23
#define ISCSI_OP_TEXT_RSP   0x24
#define ISCSI_OP_DATA_IN    0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T        0x31
#define ISCSI_OP_ASYNC      0x32
#define ISCSI_OP_REJECT     0x3f

#define ISCSI_FLAG_FINAL     0x80
#define ISCSI_FLAG_IMMEDIATE 0x40 /* in byte 0 */

/* SCSI Command flags (byte 1) */
#define ISCSI_CMD_READ  0x40
#define ISCSI_CMD_WRITE 0x20
/* Data-In flags (byte 1) */
#define ISCSI_DATAIN_ACK       0x40
#define ISCSI_DATAIN_OVERFLOW  0x04
#define ISCSI_DATAIN_UNDERFLOW 0x02
#define ISCSI_DATAIN_STATUS    0x01
/* SCSI Response flags (byte 1) */
#define ISCSI_RSP_OVERFLOW  0x04
#define ISCSI_RSP_UNDERFLOW 0x02

/* Reject reasons (RFC 7143 11.17.1) */
#define ISCSI_REJECT_DATA_DIGEST       0x02
#define ISCSI_REJECT_SNACK             0x03
#define ISCSI_REJECT_PROTOCOL_ERROR    0x04
#define ISCSI_REJECT_CMD_NOT_SUPPORTED 0x05
#define ISCSI_REJECT_IMM_CMD_REJECT    0x06
#define ISCSI_REJECT_TASK_IN_PROGRESS  0x07
#define ISCSI_REJECT_INVALID_PDU_FIELD 0x09
#define ISCSI_REJECT_LONG_OP           0x0a
#define ISCSI_REJECT_WAITING_LOGOUT    0x0c

/* Task management functions and responses (RFC 7143 11.5, 11.6) */
#define ISCSI_TMF_ABORT_TASK        1
#define ISCSI_TMF_ABORT_TASK_SET    2
#define ISCSI_TMF_CLEAR_ACA         3
#define ISCSI_TMF_CLEAR_TASK_SET    4
#define ISCSI_TMF_LUN_RESET         5
#define ISCSI_TMF_TARGET_WARM_RESET 6
#define ISCSI_TMF_TARGET_COLD_RESET 7
#define ISCSI_TMF_TASK_REASSIGN     8
#define ISCSI_TMF_RSP_COMPLETE      0
#define ISCSI_TMF_RSP_NO_TASK       1
#define ISCSI_TMF_RSP_NO_LUN        2
#define ISCSI_TMF_RSP_NOT_SUPPORTED 5
#define ISCSI_TMF_RSP_REJECTED      255

static inline uint8_t pdu_opcode(const uint8_t *bhs)
{
    return bhs[0] & 0x3f;
}
static inline bool pdu_immediate(const uint8_t *bhs)
{
    return (bhs[0] & ISCSI_FLAG_IMMEDIATE) != 0;
}
static inline uint32_t pdu_ahs_len(const uint8_t *bhs)
{
    return (uint32_t)bhs[4] * 4;
}
static inline uint32_t pdu_data_len(const uint8_t *bhs)
{
    return twl_get_be24(bhs + 5);
}
static inline void pdu_set_data_len(uint8_t *bhs, uint32_t len)
{
    twl_put_be24(bhs + 5, len);
}
static inline uint32_t pdu_itt(const uint8_t *bhs)
{
    return twl_get_be32(bhs + 16);
}
static inline uint32_t pdu_pad(uint32_t len)
{
    return (4 - (len & 3)) & 3;
}
/* The LUN number of an 8-byte LUN field (peripheral or flat addressing, single level). */
static inline uint32_t pdu_lun(const uint8_t *bhs)
{
    return ((uint32_t)(bhs[8] & 0x3f) << 8) | bhs[9];
}
static inline void pdu_set_lun(uint8_t *bhs, uint32_t lun)
{
    bhs[8] = lun < 256 ? 0 : (uint8_t)(0x40 | ((lun >> 8) & 0x3f));
    bhs[9] = (uint8_t)lun;
}

/* Is this an opcode an initiator may send? */
bool pdu_is_initiator_opcode(uint8_t opcode);

/* Header digest over BHS and AHS, as it goes on the wire (little-endian CRC32C bytes). */
void pdu_digest_put(uint8_t out[ISCSI_DIGEST_LEN], uint32_t crc);
bool pdu_digest_matches(const uint8_t in[ISCSI_DIGEST_LEN], uint32_t crc);
/* Data digest of a segment: CRC32C over the data and its padding to a multiple of 4. */
uint32_t pdu_data_digest(const uint8_t *data, uint32_t len);

/* ---- text keys (RFC 7143 section 6) ---- */

#define ISCSI_KEY_MAX 63

struct pdu_kv {
    const char *key;
    const char *value;
};

/* Splits text "k=v\0k=v\0..." in place (the buffer is modified). Returns the number of pairs,
 * or -EINVAL for a pair without '=', an empty or over-long key, or a missing final NUL.
 * Trailing padding NULs are accepted. */
int pdu_text_parse(char *text, size_t len, struct pdu_kv *kvs, size_t max);

/* Growable text output. */
struct pdu_text {
    char *buf;
    size_t len;
    size_t cap;
};
int pdu_text_add(struct pdu_text *t, const char *key, const char *value);
int pdu_text_addf(struct pdu_text *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pdu_text_free(struct pdu_text *t);

#endif
