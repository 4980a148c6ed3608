#include "login.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define MAX_KEYS 128

void login_set_peer(struct login_ctx *lc, const struct sockaddr *sa, socklen_t len)
{
    memset(&lc->peer, 0, sizeof(lc->peer));
    if (len <= sizeof(lc->peer))
        memcpy(&lc->peer, sa, len);
}

/* peer's address as family and bytes; an IPv4-mapped IPv6 address counts as IPv4. */
static bool peer_bytes(const struct sockaddr_storage *peer, int *family, const uint8_t **addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (peer->ss_family == AF_INET) {
        *family = AF_INET;
        *addr = (const uint8_t *)&((const struct sockaddr_in *)peer)->sin_addr;
        return true;
    }
    if (peer->ss_family == AF_INET6) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in6 *)peer)->sin6_addr;
        bool v4 = memcmp(a, mapped, sizeof(mapped)) == 0;
        *family = v4 ? AF_INET : AF_INET6;
        *addr = v4 ? a + 12 : a;
        return true;
    }
    return false;
}

static bool net_contains(const struct tgt_net *n, int family, const uint8_t *addr)
{
    if (n->family != family)
        return false;
    unsigned whole = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, addr, whole) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return rest == 0 || (n->addr[whole] & mask) == (addr[whole] & mask);
}

bool login_target_allows(const struct tgt_target_config *t, const char *initiator,
                         const struct sockaddr_storage *peer)
{
    const struct tgt_allow *a = &t->allow;
    if (a->initiator_count) {
        size_t i = 0;
        while (i < a->initiator_count && strcasecmp(a->initiators[i], initiator) != 0)
            i++;
        if (i == a->initiator_count)
            return false;
    }
    if (a->net_count) {
        int family;
        const uint8_t *addr;
        if (peer == NULL || !peer_bytes(peer, &family, &addr))
            return false;
        size_t i = 0;
        while (i < a->net_count && !net_contains(&a->nets[i], family, addr))
            i++;
        if (i == a->net_count)
            return false;
    }
    return true;
}

void login_init(struct login_ctx *lc, const struct tgt_config *cfg, uint16_t portal_group_tag)
{
    memset(lc, 0, sizeof(*lc));
    lc->cfg = cfg;
    lc->portal_group_tag = portal_group_tag;
    lc->stage = LOGIN_STAGE_SECURITY;
    /* RFC 7143 defaults, until negotiated otherwise. */
    lc->params.max_recv_dsl = cfg->iscsi.max_recv_data_segment_length;
    lc->params.max_xmit_dsl = 8192;
    lc->params.max_burst = 262144;
    lc->params.first_burst = 65536;
    lc->params.initial_r2t = true;
    lc->params.immediate_data = true;
    lc->params.max_outstanding_r2t = 1;
    lc->params.time2wait = 2;
    lc->params.time2retain = 20;
    lc->params.max_connections = 1;
}

void login_free(struct login_ctx *lc)
{
    free(lc->partial);
    lc->partial = NULL;
    lc->partial_len = 0;
}

int login_chap_md5(uint8_t id, const char *secret, const uint8_t *challenge, size_t challenge_len,
                   uint8_t out[16])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return -ENOMEM;
    unsigned int outlen = 0;
    int ok = EVP_DigestInit_ex(md, EVP_md5(), NULL) && EVP_DigestUpdate(md, &id, 1) &&
             EVP_DigestUpdate(md, secret, strlen(secret)) &&
             EVP_DigestUpdate(md, challenge, challenge_len) && EVP_DigestFinal_ex(md, out, &outlen);
    EVP_MD_CTX_free(md);
    return ok && outlen == 16 ? 0 : -EIO;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int login_decode_binary(const char *value, uint8_t *out, size_t max)
{
    if (value[0] == '0' && (value[1] == 'x' || value[1] == 'X')) {
        const char *h = value + 2;
        size_t hl = strlen(h);
        if (hl == 0)
            return -EINVAL;
        size_t n = (hl + 1) / 2;
        if (n > max)
            return -EINVAL;
        size_t i = 0, o = 0;
        if (hl & 1) { /* odd digit count: leading nibble stands alone */
            int v = hex_nibble(h[0]);
            if (v < 0)
                return -EINVAL;
            out[o++] = (uint8_t)v;
            i = 1;
        }
        for (; i < hl; i += 2) {
            int a = hex_nibble(h[i]), b = hex_nibble(h[i + 1]);
            if (a < 0 || b < 0)
                return -EINVAL;
            out[o++] = (uint8_t)(a << 4 | b);
        }
        return (int)o;
    }
    if (value[0] == '0' && (value[1] == 'b' || value[1] == 'B')) {
        const char *b = value + 2;
        size_t bl = strlen(b);
        if (bl == 0 || bl % 4 != 0 || bl / 4 * 3 > max + 2)
            return -EINVAL;
        uint8_t *tmp = malloc(bl / 4 * 3 + 1);
        if (tmp == NULL)
            return -ENOMEM;
        int n = EVP_DecodeBlock(tmp, (const unsigned char *)b, (int)bl);
        if (n < 0) {
            free(tmp);
            return -EINVAL;
        }
        /* EVP_DecodeBlock counts padding bytes as data. */
        if (bl >= 1 && b[bl - 1] == '=')
            n--;
        if (bl >= 2 && b[bl - 2] == '=')
            n--;
        if ((size_t)n > max) {
            free(tmp);
            return -EINVAL;
        }
        memcpy(out, tmp, (size_t)n);
        free(tmp);
        return n;
    }
    return -EINVAL;
}

static void encode_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '0';
    out[1] = 'x';
    for (size_t i = 0; i < len; i++) {
        out[2 + 2 * i] = digits[in[i] >> 4];
        out[3 + 2 * i] = digits[in[i] & 15];
    }
    out[2 + 2 * len] = '\0';
}

static int parse_number(const char *v, uint64_t *out)
{
    if (*v == '\0')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (errno || *end != '\0' || v[0] == '-')
        return -EINVAL;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "Yes") == 0)
        *out = true;
    else if (strcmp(v, "No") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

/* Is name a member of the comma-separated list? */
static bool list_has(const char *list, const char *name)
{
    size_t nl = strlen(name);
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == nl && memcmp(p, name, l) == 0)
            return true;
        if (!comma)
            break;
        p = comma + 1;
    }
    return false;
}

/* First entry of the initiator's list that we accept (lists are in the initiator's order of
 * preference, RFC 7143 6.2.1). */
static const char *choose_digest(const char *list, bool we_allow_crc)
{
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == 6 && memcmp(p, "CRC32C", 6) == 0 && we_allow_crc)
            return "CRC32C";
        if (l == 4 && memcmp(p, "None", 4) == 0)
            return "None";
        if (!comma)
            break;
        p = comma + 1;
    }
    return NULL;
}

static void fail(struct login_response *rsp, uint16_t status, const char *reason)
{
    rsp->status = status;
    rsp->reason = reason;
    rsp->transit = false;
    rsp->complete = false;
}

/* Keys RFC 7143 declares irrelevant in a discovery session. */
static bool irrelevant_for_discovery(const char *key)
{
    static const char *const keys[] = {
        "MaxConnections",   "InitialR2T",        "ImmediateData",  "MaxBurstLength",
        "FirstBurstLength", "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder",
        "DefaultTime2Wait", "DefaultTime2Retain"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* Negotiates one operational key; appends our answer. Returns 0, or a login status on a value
 * the protocol forbids. */
static int negotiate_operational(struct login_ctx *lc, const char *key, const char *value,
                                 struct login_response *rsp)
{
    const struct tgt_iscsi_params *ours = &lc->cfg->iscsi;
    struct login_params *p = &lc->params;
    uint64_t n = 0;
    bool b = false;

    if (lc->type == LOGIN_SESSION_DISCOVERY && irrelevant_for_discovery(key))
        return pdu_text_add(&rsp->text, key, "Irrelevant");

    if (strcmp(key, "HeaderDigest") == 0 || strcmp(key, "DataDigest") == 0) {
        bool header = key[0] == 'H';
        const char *pick = choose_digest(value, header ? ours->header_digest : ours->data_digest);
        if (pick == NULL)
            return pdu_text_add(&rsp->text, key, "Reject");
        if (header)
            p->header_digest = strcmp(pick, "CRC32C") == 0;
        else
            p->data_digest = strcmp(pick, "CRC32C") == 0;
        return pdu_text_add(&rsp->text, key, pick);
    }
    if (strcmp(key, "MaxRecvDataSegmentLength") == 0) {
        /* Declarative: what the initiator can receive, i.e. what we may send per PDU. */
        if (parse_number(value, &n) || n < 512 || n > 16777215)
            return LOGIN_STATUS_INITIATOR_ERROR;
        p->max_xmit_dsl = (uint32_t)n;
        if (!lc->declared_mrdsl) {
            lc->declared_mrdsl = true;
            return pdu_text_addf(&rsp->text, key, "%u", p->max_recv_dsl);
        }
        return 0;
    }
    if (strcmp(key, "MaxBurstLength") == 0 || strcmp(key, "FirstBurstLength") == 0) {
        if (parse_number(value, &n) || n < 512 || n > 16777215)
            return pdu_text_add(&rsp->text, key, "Reject");
        bool first = key[0] == 'F';
        uint32_t v =
            min_u32((uint32_t)n, first ? ours->first_burst_length : ours->max_burst_length);
        if (first)
            p->first_burst = v;
        else
            p->max_burst = v;
        return pdu_text_addf(&rsp->text, key, "%u", v);
    }
    if (strcmp(key, "InitialR2T") == 0) {
        if (parse_bool(value, &b))
            return pdu_text_add(&rsp->text, key, "Reject");
        p->initial_r2t = b || ours->initial_r2t; /* OR */
        return pdu_text_add(&rsp->text, key, p->initial_r2t ? "Yes" : "No");
    }
    if (strcmp(key, "ImmediateData") == 0) {
        if (parse_bool(value, &b))
            return pdu_text_add(&rsp->text, key, "Reject");
        p->immediate_data = b && ours->immediate_data; /* AND */
        return pdu_text_add(&rsp->text, key, p->immediate_data ? "Yes" : "No");
    }
    if (strcmp(key, "DataPDUInOrder") == 0 || strcmp(key, "DataSequenceInOrder") == 0) {
        if (parse_bool(value, &b))
            return pdu_text_add(&rsp->text, key, "Reject");
        /* OR with our Yes: this target needs data in order. */
        return pdu_text_add(&rsp->text, key, "Yes");
    }
    if (strcmp(key, "MaxOutstandingR2T") == 0) {
        if (parse_number(value, &n) || n < 1 || n > 65535)
            return pdu_text_add(&rsp->text, key, "Reject");
        p->max_outstanding_r2t = min_u32((uint32_t)n, ours->max_outstanding_r2t);
        return pdu_text_addf(&rsp->text, key, "%u", p->max_outstanding_r2t);
    }
    if (strcmp(key, "MaxConnections") == 0) {
        if (parse_number(value, &n) || n < 1 || n > 65535)
            return pdu_text_add(&rsp->text, key, "Reject");
        p->max_connections = 1; /* one connection per session; several sessions per nexus set */
        return pdu_text_add(&rsp->text, key, "1");
    }
    if (strcmp(key, "ErrorRecoveryLevel") == 0) {
        if (parse_number(value, &n) || n > 2)
            return pdu_text_add(&rsp->text, key, "Reject");
        return pdu_text_add(&rsp->text, key, "0");
    }
    if (strcmp(key, "DefaultTime2Wait") == 0 || strcmp(key, "DefaultTime2Retain") == 0) {
        if (parse_number(value, &n) || n > 3600)
            return pdu_text_add(&rsp->text, key, "Reject");
        bool wait = strcmp(key, "DefaultTime2Wait") == 0;
        uint32_t v;
        if (wait) {
            v = (uint32_t)n > ours->default_time2wait ? (uint32_t)n : ours->default_time2wait;
            p->time2wait = v;
        } else {
            v = min_u32((uint32_t)n, ours->default_time2retain);
            p->time2retain = v;
        }
        return pdu_text_addf(&rsp->text, key, "%u", v);
    }
    if (strcmp(key, "IFMarker") == 0 || strcmp(key, "OFMarker") == 0)
        return pdu_text_add(&rsp->text, key, "No");
    if (strcmp(key, "IFMarkInt") == 0 || strcmp(key, "OFMarkInt") == 0)
        return pdu_text_add(&rsp->text, key, "Irrelevant");
    if (strcmp(key, "iSCSIProtocolLevel") == 0) {
        if (parse_number(value, &n))
            return pdu_text_add(&rsp->text, key, "Reject");
        return pdu_text_addf(&rsp->text, key, "%u", n >= 1 ? 1u : 0u);
    }
    return pdu_text_add(&rsp->text, key, "NotUnderstood");
}

static const struct tgt_target_config *find_target(const struct tgt_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->target_count; i++)
        if (strcasecmp(cfg->targets[i].iqn, name) == 0)
            return &cfg->targets[i];
    return NULL;
}

/* The declarative keys of the first request. Returns a status or 0. */
static int take_first_request(struct login_ctx *lc, struct pdu_kv *kvs, int count,
                              struct login_response *rsp)
{
    const char *initiator = NULL, *target = NULL, *type = "Normal";
    for (int i = 0; i < count; i++) {
        if (strcmp(kvs[i].key, "InitiatorName") == 0)
            initiator = kvs[i].value;
        else if (strcmp(kvs[i].key, "TargetName") == 0)
            target = kvs[i].value;
        else if (strcmp(kvs[i].key, "SessionType") == 0)
            type = kvs[i].value;
    }
    if (initiator == NULL || initiator[0] == '\0' || strlen(initiator) >= TGT_NAME_MAX) {
        fail(rsp, LOGIN_STATUS_MISSING_PARAMETER, "InitiatorName missing or too long");
        return -1;
    }
    snprintf(lc->initiator_name, sizeof(lc->initiator_name), "%s", initiator);
    if (strcmp(type, "Discovery") == 0) {
        lc->type = LOGIN_SESSION_DISCOVERY;
        lc->chap = lc->cfg->discovery_chap.required ? &lc->cfg->discovery_chap : NULL;
    } else if (strcmp(type, "Normal") == 0) {
        lc->type = LOGIN_SESSION_NORMAL;
        if (target == NULL) {
            fail(rsp, LOGIN_STATUS_MISSING_PARAMETER, "TargetName missing in a normal session");
            return -1;
        }
        lc->target = find_target(lc->cfg, target);
        if (lc->target == NULL) {
            fail(rsp, LOGIN_STATUS_NOT_FOUND, "unknown target name");
            return -1;
        }
        if (!login_target_allows(lc->target, lc->initiator_name, &lc->peer)) {
            fail(rsp, LOGIN_STATUS_AUTHORIZATION_FAILED,
                 "the target's allow-list does not name this initiator or its address");
            return -1;
        }
        lc->chap = lc->target->chap.required ? &lc->target->chap : NULL;
    } else {
        fail(rsp, LOGIN_STATUS_SESSION_TYPE, "unknown SessionType");
        return -1;
    }
    return 0;
}

static int chap_send_challenge(struct login_ctx *lc, const char *algorithms,
                               struct login_response *rsp)
{
    if (!list_has(algorithms, "5")) {
        fail(rsp, LOGIN_STATUS_AUTH_FAILED, "initiator offers no CHAP algorithm we support (MD5)");
        return -1;
    }
    if (getrandom(&lc->chap_id, 1, 0) != 1 ||
        getrandom(lc->chap_challenge, sizeof(lc->chap_challenge), 0) !=
            (ssize_t)sizeof(lc->chap_challenge)) {
        fail(rsp, LOGIN_STATUS_TARGET_ERROR, "no random bytes for the CHAP challenge");
        return -1;
    }
    char hex[2 + 2 * LOGIN_CHAP_CHALLENGE_LEN + 1];
    encode_hex(lc->chap_challenge, sizeof(lc->chap_challenge), hex);
    if (pdu_text_add(&rsp->text, "CHAP_A", "5") ||
        pdu_text_addf(&rsp->text, "CHAP_I", "%u", lc->chap_id) ||
        pdu_text_add(&rsp->text, "CHAP_C", hex))
        return -ENOMEM;
    lc->auth = LOGIN_AUTH_CHAP_WAIT_RESPONSE;
    return 0;
}

/* Checks the initiator's CHAP_N/CHAP_R and answers a mutual challenge. */
static int chap_verify(struct login_ctx *lc, const char *name, const char *response,
                       const char *mutual_id, const char *mutual_challenge,
                       struct login_response *rsp)
{
    if (name == NULL || response == NULL) {
        fail(rsp, LOGIN_STATUS_AUTH_FAILED, "CHAP_N or CHAP_R missing");
        return -1;
    }
    uint8_t got[64], want[16];
    int gl = login_decode_binary(response, got, sizeof(got));
    if (strcmp(name, lc->chap->username) != 0 || gl != 16 ||
        login_chap_md5(lc->chap_id, lc->chap->secret, lc->chap_challenge,
                       sizeof(lc->chap_challenge), want) != 0 ||
        memcmp(got, want, 16) != 0) {
        fail(rsp, LOGIN_STATUS_AUTH_FAILED, "CHAP name or response does not match");
        return -1;
    }
    if ((mutual_id == NULL) != (mutual_challenge == NULL)) {
        fail(rsp, LOGIN_STATUS_AUTH_FAILED, "mutual CHAP needs both CHAP_I and CHAP_C");
        return -1;
    }
    if (mutual_id != NULL) {
        if (!lc->chap->mutual) {
            fail(rsp, LOGIN_STATUS_AUTH_FAILED, "initiator asks for mutual CHAP, none configured");
            return -1;
        }
        uint64_t id;
        uint8_t challenge[1024];
        int cl = login_decode_binary(mutual_challenge, challenge, sizeof(challenge));
        if (parse_number(mutual_id, &id) || id > 255 || cl <= 0) {
            fail(rsp, LOGIN_STATUS_AUTH_FAILED, "malformed mutual CHAP_I or CHAP_C");
            return -1;
        }
        /* A reflected challenge would let an attacker learn our answer to our own question
         * (RFC 7143 12.1.3). */
        if (cl == LOGIN_CHAP_CHALLENGE_LEN &&
            memcmp(challenge, lc->chap_challenge, (size_t)cl) == 0) {
            fail(rsp, LOGIN_STATUS_AUTH_FAILED, "initiator reflected the target's CHAP challenge");
            return -1;
        }
        uint8_t answer[16];
        char hex[2 + 32 + 1];
        if (login_chap_md5((uint8_t)id, lc->chap->mutual_secret, challenge, (size_t)cl, answer)) {
            fail(rsp, LOGIN_STATUS_TARGET_ERROR, "MD5 unavailable");
            return -1;
        }
        encode_hex(answer, sizeof(answer), hex);
        if (pdu_text_add(&rsp->text, "CHAP_N", lc->chap->mutual_username) ||
            pdu_text_add(&rsp->text, "CHAP_R", hex))
            return -ENOMEM;
    }
    lc->auth = LOGIN_AUTH_DONE;
    return 0;
}

static bool is_security_key(const char *key)
{
    return strcmp(key, "AuthMethod") == 0 || strncmp(key, "CHAP_", 5) == 0;
}

static bool is_declarative_initial(const char *key)
{
    return strcmp(key, "InitiatorName") == 0 || strcmp(key, "TargetName") == 0 ||
           strcmp(key, "SessionType") == 0 || strcmp(key, "InitiatorAlias") == 0;
}

/* Security stage keys of one request. Returns 0 to go on, -1 after fail(). */
static int process_security(struct login_ctx *lc, struct pdu_kv *kvs, int count,
                            struct login_response *rsp)
{
    const char *auth_method = NULL, *chap_a = NULL, *chap_n = NULL, *chap_r = NULL;
    const char *chap_i = NULL, *chap_c = NULL;
    for (int i = 0; i < count; i++) {
        const char *k = kvs[i].key;
        if (strcmp(k, "AuthMethod") == 0)
            auth_method = kvs[i].value;
        else if (strcmp(k, "CHAP_A") == 0)
            chap_a = kvs[i].value;
        else if (strcmp(k, "CHAP_N") == 0)
            chap_n = kvs[i].value;
        else if (strcmp(k, "CHAP_R") == 0)
            chap_r = kvs[i].value;
        else if (strcmp(k, "CHAP_I") == 0)
            chap_i = kvs[i].value;
        else if (strcmp(k, "CHAP_C") == 0)
            chap_c = kvs[i].value;
    }
    switch (lc->auth) {
    case LOGIN_AUTH_START:
        if (auth_method == NULL) {
            if (lc->chap != NULL) {
                fail(rsp, LOGIN_STATUS_AUTH_FAILED,
                     "CHAP required, initiator offered no AuthMethod");
                return -1;
            }
            lc->auth = LOGIN_AUTH_DONE;
            return 0;
        }
        if (lc->chap != NULL) {
            if (!list_has(auth_method, "CHAP")) {
                fail(rsp, LOGIN_STATUS_AUTH_FAILED, "CHAP required, initiator does not offer it");
                return -1;
            }
            lc->auth = LOGIN_AUTH_CHAP_WAIT_ALGORITHM;
            if (pdu_text_add(&rsp->text, "AuthMethod", "CHAP"))
                return -ENOMEM;
            if (chap_a != NULL)
                return chap_send_challenge(lc, chap_a, rsp);
            return 0;
        }
        if (!list_has(auth_method, "None")) {
            fail(rsp, LOGIN_STATUS_AUTH_FAILED, "no authentication configured, initiator insists");
            return -1;
        }
        lc->auth = LOGIN_AUTH_DONE;
        return pdu_text_add(&rsp->text, "AuthMethod", "None");
    case LOGIN_AUTH_CHAP_WAIT_ALGORITHM:
        if (chap_a == NULL) {
            fail(rsp, LOGIN_STATUS_AUTH_FAILED, "CHAP_A expected");
            return -1;
        }
        return chap_send_challenge(lc, chap_a, rsp);
    case LOGIN_AUTH_CHAP_WAIT_RESPONSE:
        return chap_verify(lc, chap_n, chap_r, chap_i, chap_c, rsp);
    case LOGIN_AUTH_DONE:
        if (auth_method != NULL || chap_r != NULL) {
            fail(rsp, LOGIN_STATUS_INITIATOR_ERROR, "security keys after authentication");
            return -1;
        }
        return 0;
    }
    return 0;
}

static int gather_text(struct login_ctx *lc, const uint8_t *data, uint32_t len)
{
    if (lc->partial_len + len > ISCSI_TEXT_MAX)
        return -E2BIG;
    char *nb = realloc(lc->partial, lc->partial_len + len + 1);
    if (nb == NULL)
        return -ENOMEM;
    lc->partial = nb;
    if (len)
        memcpy(lc->partial + lc->partial_len, data, len);
    lc->partial_len += len;
    lc->partial[lc->partial_len] = '\0';
    return 0;
}

int login_process(struct login_ctx *lc, const uint8_t *bhs, const uint8_t *data, uint32_t len,
                  struct login_response *rsp)
{
    memset(rsp, 0, sizeof(*rsp));
    bool transit = (bhs[1] & 0x80) != 0;
    bool cont = (bhs[1] & 0x40) != 0;
    int csg = (bhs[1] >> 2) & 3;
    int nsg = bhs[1] & 3;
    rsp->csg = (uint8_t)csg;
    rsp->nsg = (uint8_t)nsg;

    if (!lc->first_seen) {
        if (bhs[3] > 0) { /* VersionMin: only version 0 exists */
            fail(rsp, LOGIN_STATUS_UNSUPPORTED_VERSION, "VersionMin above 0");
            return 0;
        }
        memcpy(lc->isid, bhs + 8, 6);
        lc->tsih = twl_get_be16(bhs + 14);
        lc->cid = twl_get_be16(bhs + 20);
        lc->stage = csg;
    }
    lc->itt = twl_get_be32(bhs + 16);
    if (csg != lc->stage || csg == 2 || csg == LOGIN_STAGE_FULL ||
        (transit && (nsg <= csg || nsg == 2)) || (transit && cont)) {
        fail(rsp, LOGIN_STATUS_INITIATOR_ERROR, "invalid login stage transition");
        return 0;
    }
    int rc = gather_text(lc, data, len);
    if (rc) {
        fail(rsp, LOGIN_STATUS_INITIATOR_ERROR, "login text too long");
        return 0;
    }
    if (cont) /* more text follows: acknowledge with an empty response */
        return 0;

    struct pdu_kv kvs[MAX_KEYS];
    int count = lc->partial_len ? pdu_text_parse(lc->partial, lc->partial_len, kvs, MAX_KEYS) : 0;
    if (count < 0) {
        fail(rsp, LOGIN_STATUS_INITIATOR_ERROR, "malformed login text");
        goto out;
    }
    if (!lc->first_seen) {
        lc->first_seen = true;
        if (take_first_request(lc, kvs, count, rsp))
            goto out;
    }
    if (csg == LOGIN_STAGE_SECURITY) {
        rc = process_security(lc, kvs, count, rsp);
        if (rc < 0 && rsp->status == 0)
            fail(rsp, LOGIN_STATUS_TARGET_ERROR, "out of memory");
        if (rsp->status != 0)
            goto out;
    } else if (lc->auth != LOGIN_AUTH_DONE) {
        if (lc->chap != NULL) {
            fail(rsp, LOGIN_STATUS_AUTH_FAILED, "authentication required, security stage skipped");
            goto out;
        }
        lc->auth = LOGIN_AUTH_DONE;
    }
    for (int i = 0; i < count; i++) {
        const char *k = kvs[i].key;
        if (is_declarative_initial(k)) {
            if (strcmp(k, "InitiatorAlias") == 0)
                snprintf(lc->initiator_alias, sizeof(lc->initiator_alias), "%s", kvs[i].value);
            continue;
        }
        if (is_security_key(k)) {
            if (csg != LOGIN_STAGE_SECURITY) {
                fail(rsp, LOGIN_STATUS_INITIATOR_ERROR, "security key outside security stage");
                goto out;
            }
            continue;
        }
        if (strcmp(k, "TargetAlias") == 0 || strcmp(k, "TargetAddress") == 0 ||
            strcmp(k, "TargetPortalGroupTag") == 0) {
            fail(rsp, LOGIN_STATUS_INITIATOR_ERROR, "initiator sent a target-declared key");
            goto out;
        }
        rc = negotiate_operational(lc, k, kvs[i].value, rsp);
        if (rc > 0) {
            fail(rsp, (uint16_t)rc, "invalid operational key value");
            goto out;
        }
        if (rc < 0) {
            fail(rsp, LOGIN_STATUS_TARGET_ERROR, "out of memory");
            goto out;
        }
    }
    if (lc->type == LOGIN_SESSION_NORMAL && !lc->sent_tpgt) {
        lc->sent_tpgt = true;
        if (pdu_text_addf(&rsp->text, "TargetPortalGroupTag", "%u", lc->portal_group_tag) ||
            (lc->target->alias[0] && pdu_text_add(&rsp->text, "TargetAlias", lc->target->alias))) {
            fail(rsp, LOGIN_STATUS_TARGET_ERROR, "out of memory");
            goto out;
        }
    }
    /* Transit only where we agree: not before authentication is done. */
    if (transit && (csg != LOGIN_STAGE_SECURITY || lc->auth == LOGIN_AUTH_DONE)) {
        if (nsg == LOGIN_STAGE_FULL && !lc->declared_mrdsl) {
            lc->declared_mrdsl = true;
            if (pdu_text_addf(&rsp->text, "MaxRecvDataSegmentLength", "%u",
                              lc->params.max_recv_dsl)) {
                fail(rsp, LOGIN_STATUS_TARGET_ERROR, "out of memory");
                goto out;
            }
        }
        rsp->transit = true;
        lc->stage = nsg;
        rsp->complete = nsg == LOGIN_STAGE_FULL;
        if (lc->params.first_burst > lc->params.max_burst)
            lc->params.first_burst = lc->params.max_burst;
    } else {
        rsp->nsg = 0;
    }
out:
    free(lc->partial);
    lc->partial = NULL;
    lc->partial_len = 0;
    return 0;
}
