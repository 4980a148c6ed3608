/*
 * The login phase fed a sequence of Login Request PDUs carved from the input:
 *
 *   byte 0      configuration: bit 0 the target requires CHAP (bit 1: mutual too), bit 2
 *               discovery requires CHAP, bit 3 digests offered, bit 4 a second target
 *   then        [2-byte big-endian length N][N bytes: BHS (first 48, zero padded) + data]...
 *
 * A request whose text holds "CHAP_R=@" gets the right answer to the target's challenge
 * substituted, so the stages after a CHAP exchange are reached too. Beyond "no crash, no leak,
 * no read past the input" every response must hold up: its text parses, a refusal neither
 * transits nor completes, a completed login has authenticated (with the right CHAP answer when
 * CHAP is required) and agrees with what its answers said (the negotiated values in lc->params
 * are the ones the response text announced), and a mutual CHAP answer is the right MD5.
 * pdu_text_parse also sees each raw data segment.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "login.h"
#include "pdu.h"

#define MAX_PDUS 16
#define MAX_KVS  256

#define CFG_CHAP           0x01
#define CFG_MUTUAL         0x02
#define CFG_DISCOVERY_CHAP 0x04
#define CFG_DIGESTS        0x08
#define CFG_TWO_TARGETS    0x10

static const char *const config_fmt = "iscsi = {\n"
                                      "  max_recv_data_segment_length = 65536;\n"
                                      "  max_burst_length = 262144;\n"
                                      "  first_burst_length = 65536;\n"
                                      "  max_outstanding_r2t = 4;\n"
                                      "  header_digest = %s;\n"
                                      "  data_digest = %s;\n"
                                      "  default_time2wait = 3;\n"
                                      "  default_time2retain = 15;\n"
                                      "  %s\n"
                                      "};\n"
                                      "targets = (\n"
                                      "  { iqn = \"iqn.2026-11.io.twinlun:fuzz\"; alias = \"fz\";\n"
                                      "    %s\n"
                                      "    luns = ({ id = 0; path = \"/nonexistent/l0\"; });\n"
                                      "  }%s\n"
                                      ");\n";

#define SECRET        "initiator-secret-42"
#define MUTUAL_SECRET "target-secret-4242"
#define CHAP_USER     "iqn.1994-05.com.redhat:client1"
#define DISC_SECRET   "disc-secret-0123"
#define TARGET_AUTH   "auth = { username = \"" CHAP_USER "\"; secret = \"" SECRET "\"; };"
#define TARGET_AUTH_MU                                                                             \
    "auth = { username = \"" CHAP_USER "\"; secret = \"" SECRET "\"; mutual_username = "           \
    "\"twinlun-fz\"; mutual_secret = \"" MUTUAL_SECRET "\"; };"
#define DISC_AUTH "discovery_auth = { username = \"disc\"; secret = \"" DISC_SECRET "\"; };"
#define SECOND_TARGET                                                                              \
    ",\n  { iqn = \"iqn.2026-11.io.twinlun:other\";\n"                                             \
    "    luns = ({ id = 0; path = \"/nonexistent/l1\"; }); }"

static struct tgt_config configs[32];
static bool loaded[32];

static const struct tgt_config *config_for(uint8_t sel)
{
    sel &= 0x1f;
    if (sel & CFG_MUTUAL)
        sel |= CFG_CHAP;
    if (!loaded[sel]) {
        char text[2048], err[256];
        const char *digests = sel & CFG_DIGESTS ? "true" : "false";
        snprintf(text, sizeof(text), config_fmt, digests, digests,
                 sel & CFG_DISCOVERY_CHAP ? DISC_AUTH : "",
                 sel & CFG_MUTUAL ? TARGET_AUTH_MU
                 : sel & CFG_CHAP ? TARGET_AUTH
                                  : "",
                 sel & CFG_TWO_TARGETS ? SECOND_TARGET : "");
        if (tgt_config_load_string(text, "fuzz.conf", &configs[sel], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_login: the harness config does not load: %s\n", err);
            abort();
        }
        loaded[sel] = true;
    }
    return &configs[sel];
}

/* Splits a copy of text (len bytes) into pairs; the count, or a negative errno. */
static int parse_copy(const char *text, size_t len, char **copy, struct pdu_kv *kvs)
{
    *copy = malloc(len + 1);
    if (*copy == NULL)
        abort();
    if (len)
        memcpy(*copy, text, len);
    (*copy)[len] = '\0';
    return len ? pdu_text_parse(*copy, len, kvs, MAX_KVS) : 0;
}

static const char *last_value(const struct pdu_kv *kvs, int count, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < count; i++)
        if (strcmp(kvs[i].key, key) == 0)
            v = kvs[i].value;
    return v;
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_login: invariant broken: %s\n", what);
        abort();
    }
}

static void check_number(const struct pdu_kv *kvs, int count, const char *key, uint32_t have)
{
    const char *v = last_value(kvs, count, key);
    if (v != NULL && strcmp(v, "Reject") != 0 && strcmp(v, "Irrelevant") != 0) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        check(*end == '\0', key);
        if (n != have)
            fprintf(stderr, "fuzz_login: %s answered %lu, negotiated %u\n", key, n, have);
        check(n == have, key);
    }
}

static void check_bool(const struct pdu_kv *kvs, int count, const char *key, bool have,
                       const char *yes)
{
    const char *v = last_value(kvs, count, key);
    if (v != NULL && strcmp(v, "Reject") != 0 && strcmp(v, "Irrelevant") != 0)
        check((strcmp(v, yes) == 0) == have, key);
}

/* The response announced what lc->params now holds. */
static void check_answers(const struct login_ctx *lc, const struct pdu_kv *kvs, int count)
{
    const struct login_params *p = &lc->params;
    check_number(kvs, count, "DefaultTime2Wait", p->time2wait);
    check_number(kvs, count, "DefaultTime2Retain", p->time2retain);
    check_number(kvs, count, "MaxBurstLength", p->max_burst);
    check_number(kvs, count, "MaxOutstandingR2T", p->max_outstanding_r2t);
    check_number(kvs, count, "MaxConnections", p->max_connections);
    check_number(kvs, count, "MaxRecvDataSegmentLength", p->max_recv_dsl);
    check_bool(kvs, count, "InitialR2T", p->initial_r2t, "Yes");
    check_bool(kvs, count, "ImmediateData", p->immediate_data, "Yes");
    check_bool(kvs, count, "HeaderDigest", p->header_digest, "CRC32C");
    check_bool(kvs, count, "DataDigest", p->data_digest, "CRC32C");
    const char *fb = last_value(kvs, count, "FirstBurstLength");
    if (fb != NULL && strcmp(fb, "Reject") != 0 && strcmp(fb, "Irrelevant") != 0)
        check(p->first_burst <= strtoul(fb, NULL, 10), "FirstBurstLength");
}

/* Rewrites "CHAP_R=@" in text into the right answer to the target's challenge. Returns the new
 * text (malloc'ed, *len updated) or NULL when there is nothing to substitute. */
static char *substitute_chap(const struct login_ctx *lc, const char *text, size_t *len)
{
    static const char marker[] = "CHAP_R=@";
    size_t ml = sizeof(marker) - 1;
    if (lc->auth != LOGIN_AUTH_CHAP_WAIT_RESPONSE || lc->chap == NULL)
        return NULL;
    for (size_t i = 0; i + ml <= *len; i++) {
        if ((i != 0 && text[i - 1] != '\0') || memcmp(text + i, marker, ml) != 0 ||
            (i + ml < *len && text[i + ml] != '\0'))
            continue;
        uint8_t md[16];
        if (login_chap_md5(lc->chap_id, lc->chap->secret, lc->chap_challenge,
                           sizeof(lc->chap_challenge), md) != 0)
            abort();
        char answer[2 + 32 + 1];
        snprintf(answer, 3, "0x");
        for (int k = 0; k < 16; k++)
            snprintf(answer + 2 + 2 * k, 3, "%02x", md[k]);
        size_t al = strlen(answer);
        size_t nl = *len - 1 + al; /* "@" out, the answer in */
        char *out = malloc(nl);
        if (out == NULL)
            abort();
        memcpy(out, text, i + ml - 1);
        memcpy(out + i + ml - 1, answer, al);
        memcpy(out + i + ml - 1 + al, text + i + ml, *len - i - ml);
        *len = nl;
        return out;
    }
    return NULL;
}

/* A mutual CHAP answer must be MD5(CHAP_I || mutual secret || CHAP_C) of the request. */
static void check_mutual(const struct login_ctx *lc, const struct pdu_kv *req, int req_count,
                         const struct pdu_kv *rsp, int rsp_count)
{
    const char *r = last_value(rsp, rsp_count, "CHAP_R");
    if (r == NULL)
        return;
    check(lc->chap != NULL && lc->chap->mutual, "CHAP_R sent without mutual CHAP configured");
    const char *id = last_value(req, req_count, "CHAP_I");
    const char *c = last_value(req, req_count, "CHAP_C");
    check(id != NULL && c != NULL, "CHAP_R sent without CHAP_I and CHAP_C");
    uint8_t challenge[1024], md[16], got[16];
    int cl = login_decode_binary(c, challenge, sizeof(challenge));
    check(cl > 0, "CHAP_R sent for an undecodable challenge");
    if (login_chap_md5((uint8_t)strtoul(id, NULL, 0), lc->chap->mutual_secret, challenge,
                       (size_t)cl, md) != 0)
        abort();
    check(login_decode_binary(r, got, sizeof(got)) == 16 && memcmp(got, md, 16) == 0,
          "mutual CHAP_R is not the MD5 of the initiator's challenge");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct tgt_config *cfg = config_for(data[0]);
    size_t pos = 1;
    struct login_ctx lc;
    login_init(&lc, cfg, 1);
    bool chap_answered = false;  /* a correct CHAP_R went in */
    bool sub_in_pending = false; /* the request being assembled (C bit) carries one */
    char *pending = NULL;        /* the request text so far (C bit), as the harness sees it */
    size_t pending_len = 0;

    for (int n = 0; n < MAX_PDUS && size - pos >= 2; n++) {
        size_t rec = (size_t)data[pos] << 8 | data[pos + 1];
        pos += 2;
        if (rec > size - pos)
            rec = size - pos;
        uint8_t bhs[ISCSI_BHS_LEN] = {0};
        memcpy(bhs, data + pos, rec < ISCSI_BHS_LEN ? rec : ISCSI_BHS_LEN);
        size_t dlen = rec > ISCSI_BHS_LEN ? rec - ISCSI_BHS_LEN : 0;
        const char *seg = (const char *)data + pos + (rec - dlen);
        pos += rec;

        /* The raw data segment through the parser, in a buffer of exactly its size. */
        char *raw = malloc(dlen ? dlen : 1);
        struct pdu_kv kvs[MAX_KVS];
        if (raw == NULL)
            abort();
        memcpy(raw, seg, dlen);
        int rc = pdu_text_parse(raw, dlen, kvs, MAX_KVS);
        for (int i = 0; i < rc; i++)
            check(kvs[i].key[0] != '\0' && strlen(kvs[i].key) <= ISCSI_KEY_MAX, "parsed key");
        free(raw);

        size_t len = dlen;
        char *sub = substitute_chap(&lc, seg, &len);
        if (sub != NULL) {
            seg = sub;
            sub_in_pending = true;
        }
        /* exactly len bytes, so a read past the data segment is caught */
        uint8_t *pdu_data = malloc(len ? len : 1);
        if (pdu_data == NULL)
            abort();
        memcpy(pdu_data, seg, len);
        char *np = realloc(pending, pending_len + len + 1);
        if (np == NULL)
            abort();
        pending = np;
        memcpy(pending + pending_len, seg, len);
        pending_len += len;
        bool cont = (bhs[1] & 0x40) != 0;

        struct login_response rsp;
        rc = login_process(&lc, bhs, pdu_data, (uint32_t)len, &rsp);
        free(pdu_data);
        check(rc == 0 || rsp.status != 0, "internal failure without a status");

        char *rsp_copy, *req_copy;
        struct pdu_kv rkv[MAX_KVS], qkv[MAX_KVS];
        int rcount = parse_copy(rsp.text.buf, rsp.text.len, &rsp_copy, rkv);
        check(rcount >= 0, "response text does not parse");
        if (rsp.status != 0) {
            check(!rsp.transit && !rsp.complete, "a refusal transits");
        } else if (!cont || rsp.transit) {
            int qcount = parse_copy(pending, pending_len, &req_copy, qkv);
            if (qcount >= 0)
                check_mutual(&lc, qkv, qcount, rkv, rcount);
            free(req_copy);
            check_answers(&lc, rkv, rcount);
            /* the answer may have come in an earlier fragment of this request */
            if (sub_in_pending && lc.auth == LOGIN_AUTH_DONE)
                chap_answered = true;
        }
        if (!cont || rsp.status != 0) {
            pending_len = 0;
            sub_in_pending = false;
        }
        free(sub);
        free(rsp_copy);
        if (rsp.complete) {
            check(rsp.status == 0 && rsp.transit && rsp.nsg == LOGIN_STAGE_FULL, "complete");
            check(lc.auth == LOGIN_AUTH_DONE, "completed without authentication");
            check(lc.chap == NULL || chap_answered, "CHAP required, completed without it");
            check(lc.type == LOGIN_SESSION_DISCOVERY || lc.target != NULL, "no target");
            check(lc.params.max_xmit_dsl >= 512 && lc.params.max_xmit_dsl <= 16777215,
                  "MaxRecvDataSegmentLength out of range");
            check(lc.params.first_burst <= lc.params.max_burst, "FirstBurstLength > MaxBurst");
            check(lc.params.max_burst <= cfg->iscsi.max_burst_length, "MaxBurstLength above ours");
            check(lc.initiator_name[0] != '\0', "no initiator name");
        }
        bool stop = rsp.status != 0 || rsp.complete;
        pdu_text_free(&rsp.text);
        if (stop) /* the server closes the connection, or leaves the login phase */
            break;
    }
    free(pending);
    login_free(&lc);
    return 0;
}
