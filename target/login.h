/*
 * iSCSI login (RFC 7143 sections 6 and 12-13): stage transitions, security negotiation with
 * CHAP (MD5, one-way and mutual), and negotiation of the operational keys. Pure logic: it takes
 * a Login Request's header and text, and produces the response's status, stage flags and text.
 * The caller owns sockets, session tables and TSIH assignment.
 */
#ifndef TGT_LOGIN_H
#define TGT_LOGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "pdu.h"

#define LOGIN_STAGE_SECURITY    0
#define LOGIN_STAGE_OPERATIONAL 1
#define LOGIN_STAGE_FULL        3

/* Login status (class << 8 | detail), RFC 7143 11.13.5 */
#define LOGIN_STATUS_SUCCESS              0x0000
#define LOGIN_STATUS_INITIATOR_ERROR      0x0200
#define LOGIN_STATUS_AUTH_FAILED          0x0201
#define LOGIN_STATUS_AUTHORIZATION_FAILED 0x0202
#define LOGIN_STATUS_NOT_FOUND            0x0203
#define LOGIN_STATUS_UNSUPPORTED_VERSION  0x0205
#define LOGIN_STATUS_TOO_MANY_CONNECTIONS 0x0206
#define LOGIN_STATUS_MISSING_PARAMETER    0x0207
#define LOGIN_STATUS_SESSION_TYPE         0x0209
#define LOGIN_STATUS_NO_SESSION           0x020a
#define LOGIN_STATUS_INVALID_DURING_LOGIN 0x020b
#define LOGIN_STATUS_TARGET_ERROR         0x0300
#define LOGIN_STATUS_OUT_OF_RESOURCES     0x0302

#define LOGIN_CHAP_CHALLENGE_LEN 16

/* What a session and its connection run with once login is done. */
struct login_params {
    bool header_digest;
    bool data_digest;
    uint32_t max_recv_dsl; /* what this target accepts in one PDU (declared by us) */
    uint32_t max_xmit_dsl; /* the initiator's MaxRecvDataSegmentLength */
    uint32_t max_burst;
    uint32_t first_burst;
    bool initial_r2t;
    bool immediate_data;
    uint32_t max_outstanding_r2t;
    uint32_t time2wait;
    uint32_t time2retain;
    uint32_t max_connections;
};

enum login_session_type {
    LOGIN_SESSION_NORMAL = 0,
    LOGIN_SESSION_DISCOVERY = 1,
};

enum login_auth_state {
    LOGIN_AUTH_START = 0,
    LOGIN_AUTH_CHAP_WAIT_ALGORITHM,
    LOGIN_AUTH_CHAP_WAIT_RESPONSE,
    LOGIN_AUTH_DONE,
};

struct login_ctx {
    const struct tgt_config *cfg;
    uint16_t portal_group_tag;
    /* learned from the initiator */
    bool first_seen;
    enum login_session_type type;
    char initiator_name[TGT_NAME_MAX];
    char initiator_alias[TGT_NAME_MAX];
    uint8_t isid[6];
    uint16_t tsih;
    uint16_t cid;
    uint32_t itt;
    const struct tgt_target_config *target; /* NULL for discovery */
    struct sockaddr_storage peer;           /* the initiator's address (AF_UNSPEC: unknown) */
    /* progress */
    int stage;
    enum login_auth_state auth;
    const struct tgt_chap_config *chap; /* the auth that applies, NULL when none */
    uint8_t chap_id;
    uint8_t chap_challenge[LOGIN_CHAP_CHALLENGE_LEN];
    bool declared_mrdsl;
    bool sent_tpgt;
    struct login_params params;
    /* text of a request split over several PDUs (C bit) */
    char *partial;
    size_t partial_len;
};

struct login_response {
    uint16_t status; /* LOGIN_STATUS_* */
    bool transit;
    uint8_t csg;
    uint8_t nsg;
    bool complete; /* transit into full feature phase: the caller assigns TSIH and starts */
    struct pdu_text text;
    const char *reason; /* for the log when status is not success */
};

void login_init(struct login_ctx *lc, const struct tgt_config *cfg, uint16_t portal_group_tag);
void login_free(struct login_ctx *lc);
/* The initiator's address, for the targets' allow-lists (unknown until set: address lists
 * then refuse). */
void login_set_peer(struct login_ctx *lc, const struct sockaddr *sa, socklen_t len);
/* Whether target t's allow-list lets initiator (name) at peer log in, and see t in
 * SendTargets. */
bool login_target_allows(const struct tgt_target_config *t, const char *initiator,
                         const struct sockaddr_storage *peer);

/* Processes one Login Request (bhs is its 48-byte header, data its data segment). Fills rsp;
 * the caller sends it (and frees rsp->text). Returns 0, or a negative errno for internal
 * failures (rsp then carries a target error status). */
int login_process(struct login_ctx *lc, const uint8_t *bhs, const uint8_t *data, uint32_t len,
                  struct login_response *rsp);

/* CHAP MD5 response: MD5(id || secret || challenge) (RFC 1994). */
int login_chap_md5(uint8_t id, const char *secret, const uint8_t *challenge, size_t challenge_len,
                   uint8_t out[16]);

/* Decodes a CHAP binary value given as "0x<hex>" or "0b<base64>". Returns length or -EINVAL. */
int login_decode_binary(const char *value, uint8_t *out, size_t max);

#endif
