/*
 * SCSI reservations of one logical unit (see pr.h for the promises and the choices made).
 */
#include "pr.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scsi.h"
#include "twl_common.h"

#define PART "pr"

/* PERSISTENT RESERVE OUT basic parameter list (SPC-4 6.16.3) */
#define PARAM_BASIC_LEN   24
#define PARAM_SPEC_I_PT   0x08
#define PARAM_ALL_TG_PT   0x04
#define PARAM_APTPL       0x01
#define PARAM_FLAGS_BYTE  20
#define PARAM_TPID_OFFSET 28
/* REGISTER AND MOVE parameter list (SPC-4 6.16.4) */
#define MOVE_FLAGS_BYTE  17
#define MOVE_UNREG       0x02
#define MOVE_APTPL       0x01
#define MOVE_TPID_OFFSET 24

#define TPID_PROTO_ISCSI 0x5
#define TPID_FORMAT_NAME 0x0
#define TPID_FORMAT_PORT 0x1
#define TPID_ISID_SEP    ",i,0x"

static bool names_equal(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

static bool type_valid(uint8_t type)
{
    switch (type) {
    case PR_TYPE_WRITE_EXCLUSIVE:
    case PR_TYPE_EXCLUSIVE_ACCESS:
    case PR_TYPE_WRITE_EXCLUSIVE_RO:
    case PR_TYPE_EXCLUSIVE_ACCESS_RO:
    case PR_TYPE_WRITE_EXCLUSIVE_AR:
    case PR_TYPE_EXCLUSIVE_ACCESS_AR:
        return true;
    default:
        return false;
    }
}

static bool type_all_registrants(uint8_t type)
{
    return type == PR_TYPE_WRITE_EXCLUSIVE_AR || type == PR_TYPE_EXCLUSIVE_ACCESS_AR;
}

static bool type_registrants_only(uint8_t type)
{
    return type == PR_TYPE_WRITE_EXCLUSIVE_RO || type == PR_TYPE_EXCLUSIVE_ACCESS_RO;
}

static bool type_write_exclusive(uint8_t type)
{
    return type == PR_TYPE_WRITE_EXCLUSIVE || type == PR_TYPE_WRITE_EXCLUSIVE_RO ||
           type == PR_TYPE_WRITE_EXCLUSIVE_AR;
}

void pr_state_init(struct pr_state *s)
{
    memset(s, 0, sizeof(*s));
}

static void result_init(struct pr_result *r)
{
    r->status = SCSI_STATUS_GOOD;
    r->sense_key = SCSI_SENSE_NO_SENSE;
    r->asc_ascq = SCSI_ASC_NONE;
    r->sense_field = -1;
    r->sense_bit = -1;
    r->sense_in_param = false;
    r->data_len = 0;
    r->changed = false;
    r->persist = false;
    r->ua_count = 0;
    r->abort_preempted = false;
}

static void fail_conflict(struct pr_result *r)
{
    r->status = SCSI_STATUS_RESERVATION_CONFLICT;
}

static void fail_sense(struct pr_result *r, uint16_t asc_ascq, int field, int bit, bool in_param)
{
    r->status = SCSI_STATUS_CHECK_CONDITION;
    r->sense_key = SCSI_SENSE_ILLEGAL_REQUEST;
    r->asc_ascq = asc_ascq;
    r->sense_field = (int16_t)field;
    r->sense_bit = (int8_t)bit;
    r->sense_in_param = in_param;
}

static void fail_cdb(struct pr_result *r, int field, int bit)
{
    fail_sense(r, SCSI_ASC_INVALID_FIELD_IN_CDB, field, bit, false);
}

static void fail_param(struct pr_result *r, int field, int bit)
{
    fail_sense(r, SCSI_ASC_INVALID_FIELD_IN_PARAM, field, bit, true);
}

/* ---- registrants ---- */

static bool reg_covers(const struct pr_registrant *g, const struct pr_nexus *n)
{
    if (!names_equal(g->initiator_name, n->initiator_name))
        return false;
    if (g->isid_set && memcmp(g->isid, n->isid, sizeof(g->isid)) != 0)
        return false;
    return g->all_tg_pt || g->rel_port == n->rel_port;
}

/* Whether two registrations share at least one I_T nexus. */
static bool regs_overlap(const struct pr_registrant *a, const struct pr_registrant *b)
{
    if (!names_equal(a->initiator_name, b->initiator_name))
        return false;
    if (a->isid_set && b->isid_set && memcmp(a->isid, b->isid, sizeof(a->isid)) != 0)
        return false;
    return a->all_tg_pt || b->all_tg_pt || a->rel_port == b->rel_port;
}

static bool regs_same_nexuses(const struct pr_registrant *a, const struct pr_registrant *b)
{
    if (!names_equal(a->initiator_name, b->initiator_name) || a->isid_set != b->isid_set ||
        a->all_tg_pt != b->all_tg_pt)
        return false;
    if (a->isid_set && memcmp(a->isid, b->isid, sizeof(a->isid)) != 0)
        return false;
    return a->all_tg_pt || a->rel_port == b->rel_port;
}

static int find_reg(const struct pr_state *s, const struct pr_nexus *n)
{
    for (unsigned i = 0; i < s->count; i++)
        if (reg_covers(&s->reg[i], n))
            return (int)i;
    return -1;
}

static bool is_holder(const struct pr_state *s, int idx)
{
    if (!s->reserved || idx < 0)
        return false;
    return type_all_registrants(s->type) || s->holder == (uint16_t)idx;
}

/* Removes reg[idx], keeping the order and the holder index; the caller has dealt with the
 * reservation if reg[idx] held it. */
static void remove_reg(struct pr_state *s, unsigned idx)
{
    memmove(&s->reg[idx], &s->reg[idx + 1], (s->count - idx - 1) * sizeof(s->reg[0]));
    s->count--;
    memset(&s->reg[s->count], 0, sizeof(s->reg[0]));
    if (s->reserved && !type_all_registrants(s->type) && s->holder > idx)
        s->holder--;
}

static void nexus_to_reg(struct pr_registrant *g, const struct pr_nexus *n, uint64_t key,
                         bool all_tg_pt)
{
    memset(g, 0, sizeof(*g));
    g->key = key;
    snprintf(g->initiator_name, sizeof(g->initiator_name), "%s", n->initiator_name);
    memcpy(g->isid, n->isid, sizeof(g->isid));
    g->isid_set = true;
    g->all_tg_pt = all_tg_pt;
    g->rel_port = n->rel_port;
}

/* ---- unit attentions ---- */

/* Queues a unit attention for the nexuses of g, leaving out the sender when given. */
static void add_ua(struct pr_result *r, const struct pr_registrant *g, uint16_t asc_ascq,
                   const struct pr_nexus *sender)
{
    bool except = false;
    if (sender && reg_covers(g, sender)) {
        /* a registration of the sender alone gets nothing */
        if (g->isid_set && !g->all_tg_pt)
            return;
        except = true;
    }
    if (r->ua_count >= PR_MAX_REGISTRANTS)
        return;
    struct pr_ua *ua = &r->ua[r->ua_count++];
    memset(ua, 0, sizeof(*ua));
    memcpy(ua->initiator_name, g->initiator_name, sizeof(ua->initiator_name));
    memcpy(ua->isid, g->isid, sizeof(ua->isid));
    ua->isid_set = g->isid_set;
    ua->all_ports = g->all_tg_pt;
    ua->rel_port = g->rel_port;
    if (except) {
        ua->except = true;
        memcpy(ua->except_isid, sender->isid, sizeof(ua->except_isid));
        ua->except_port = sender->rel_port;
    }
    ua->asc_ascq = asc_ascq;
}

bool pr_ua_matches(const struct pr_ua *ua, const struct pr_nexus *n)
{
    if (!names_equal(ua->initiator_name, n->initiator_name))
        return false;
    if (ua->isid_set && memcmp(ua->isid, n->isid, sizeof(ua->isid)) != 0)
        return false;
    if (!ua->all_ports && ua->rel_port != n->rel_port)
        return false;
    if (ua->except && memcmp(ua->except_isid, n->isid, sizeof(ua->except_isid)) == 0 &&
        ua->except_port == n->rel_port)
        return false;
    return true;
}

/* ---- access control ---- */

enum cmd_class {
    CLASS_ALWAYS, /* allowed through every reservation */
    CLASS_READ,   /* allowed through Write Exclusive types, not Exclusive Access ones */
    CLASS_OTHER,  /* allowed only for holders (and registrants of RO/AR types) */
};

static enum cmd_class classify(const uint8_t *cdb)
{
    switch (cdb[0]) {
    case 0x00: /* TEST UNIT READY */
    case 0x03: /* REQUEST SENSE */
    case 0x12: /* INQUIRY */
    case 0x25: /* READ CAPACITY (10) */
    case 0x4d: /* LOG SENSE */
    case 0x86: /* ACCESS CONTROL IN */
    case 0x87: /* ACCESS CONTROL OUT */
    case 0xa0: /* REPORT LUNS */
    case PR_OPCODE_PR_IN:
    case PR_OPCODE_PR_OUT:
        return CLASS_ALWAYS;
    case 0x1e: /* PREVENT ALLOW MEDIUM REMOVAL: only allowing removal is harmless */
        return (cdb[4] & 0x03) == 0 ? CLASS_ALWAYS : CLASS_OTHER;
    case 0x1b: /* START STOP UNIT: starting without a power condition change is harmless */
        return ((cdb[4] & 0x01) && (cdb[4] >> 4) == 0) ? CLASS_ALWAYS : CLASS_OTHER;
    case 0x9e: /* SERVICE ACTION IN (16) */
        switch (cdb[1] & 0x1f) {
        case 0x10: /* READ CAPACITY (16) */
            return CLASS_ALWAYS;
        case 0x11: /* READ LONG (16) */
        case 0x12: /* GET LBA STATUS */
            return CLASS_READ;
        default:
            return CLASS_OTHER;
        }
    case 0xa3: /* MAINTENANCE IN */
        switch (cdb[1] & 0x1f) {
        case 0x05: /* REPORT IDENTIFYING INFORMATION */
        case 0x0a: /* REPORT TARGET PORT GROUPS */
        case 0x0b: /* REPORT ALIASES */
        case 0x0e: /* REPORT PRIORITY */
        case 0x0f: /* REPORT TIMESTAMP */
            return CLASS_ALWAYS;
        case 0x0c: /* REPORT SUPPORTED OPERATION CODES */
        case 0x0d: /* REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS */
        case 0x10: /* MANAGEMENT PROTOCOL IN */
            return CLASS_READ;
        default:
            return CLASS_OTHER;
        }
    case 0x08: /* READ (6) */
    case 0x28: /* READ (10) */
    case 0xa8: /* READ (12) */
    case 0x88: /* READ (16) */
    case 0x2f: /* VERIFY (10) */
    case 0xaf: /* VERIFY (12) */
    case 0x8f: /* VERIFY (16) */
    case 0x34: /* PRE-FETCH (10) */
    case 0x90: /* PRE-FETCH (16) */
    case 0x3e: /* READ LONG (10) */
    case 0x1a: /* MODE SENSE (6) */
    case 0x5a: /* MODE SENSE (10) */
    case 0x1c: /* RECEIVE DIAGNOSTIC RESULTS */
    case 0x37: /* READ DEFECT DATA (10) */
    case 0xb7: /* READ DEFECT DATA (12) */
    case 0x3c: /* READ BUFFER */
    case 0x84: /* RECEIVE COPY RESULTS */
    case 0x8c: /* READ ATTRIBUTE */
    case 0xa2: /* SECURITY PROTOCOL IN */
        return CLASS_READ;
    case 0x7f: { /* variable length: READ (32), VERIFY (32) */
        uint16_t sa = twl_get_be16(&cdb[8]);
        return (sa == 0x0009 || sa == 0x000a) ? CLASS_READ : CLASS_OTHER;
    }
    default:
        return CLASS_OTHER;
    }
}

static bool is_r6_holder(const struct pr_state *s, const struct pr_nexus *n)
{
    return s->r6_reserved && names_equal(s->r6_name, n->initiator_name) &&
           memcmp(s->r6_isid, n->isid, sizeof(s->r6_isid)) == 0 && s->r6_port == n->rel_port;
}

static bool is_spc2_reservation_cmd(uint8_t op)
{
    return op == PR_OPCODE_RESERVE6 || op == PR_OPCODE_RELEASE6 || op == PR_OPCODE_RESERVE10 ||
           op == PR_OPCODE_RELEASE10;
}

bool pr_conflicts(const struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb)
{
    uint8_t op = cdb[0];

    if (s->r6_reserved) {
        if (op == PR_OPCODE_PR_IN || op == PR_OPCODE_PR_OUT)
            return true;
        if (is_r6_holder(s, n))
            return false;
        switch (op) {
        case 0x03: /* REQUEST SENSE */
        case 0x12: /* INQUIRY */
        case 0xa0: /* REPORT LUNS */
        case PR_OPCODE_RELEASE6:
        case PR_OPCODE_RELEASE10:
            return false;
        case 0xa3: /* MAINTENANCE IN: multipath asks for port states on every path */
            return (cdb[1] & 0x1f) != 0x0a;
        default:
            return true;
        }
    }
    if (is_spc2_reservation_cmd(op))
        return s->count > 0;
    if (!s->reserved)
        return false;

    int idx = find_reg(s, n);
    if (is_holder(s, idx))
        return false;
    if (idx >= 0 && type_registrants_only(s->type))
        return false;
    switch (classify(cdb)) {
    case CLASS_ALWAYS:
        return false;
    case CLASS_READ:
        return !type_write_exclusive(s->type);
    default:
        return true;
    }
}

/* ---- TransportIDs (SPC-4 7.6.4.6, iSCSI) ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses one iSCSI TransportID at p (avail bytes) into g (name, isid, isid_set). Returns its
 * length, or -1 when malformed or not iSCSI. */
static int parse_tpid(const uint8_t *p, size_t avail, struct pr_registrant *g)
{
    if (avail < 4)
        return -1;
    uint8_t format = p[0] >> 6;
    if ((p[0] & 0x0f) != TPID_PROTO_ISCSI ||
        (format != TPID_FORMAT_NAME && format != TPID_FORMAT_PORT))
        return -1;
    size_t len = 4 + (size_t)twl_get_be16(&p[2]);
    if (len > avail || len < 8)
        return -1;
    const char *text = (const char *)&p[4];
    size_t text_max = len - 4;
    size_t text_len = strnlen(text, text_max);
    if (text_len == text_max || text_len == 0)
        return -1; /* no NUL, or empty */

    memset(g, 0, sizeof(*g));
    if (format == TPID_FORMAT_NAME) {
        if (text_len >= PR_NAME_MAX)
            return -1;
        memcpy(g->initiator_name, text, text_len);
        g->isid_set = false;
        return (int)len;
    }
    /* "<name>,i,0x<12 hex digits>": the separator is searched from the end because names may
     * contain commas in theory */
    const size_t sep_len = sizeof(TPID_ISID_SEP) - 1;
    if (text_len < sep_len + 12 + 1)
        return -1;
    size_t name_len = text_len - 12 - sep_len;
    if (strncasecmp(text + name_len, TPID_ISID_SEP, sep_len) != 0 || name_len >= PR_NAME_MAX)
        return -1;
    for (unsigned i = 0; i < 6; i++) {
        int hi = hex_digit(text[name_len + sep_len + 2 * i]);
        int lo = hex_digit(text[name_len + sep_len + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        g->isid[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(g->initiator_name, text, name_len);
    g->isid_set = true;
    return (int)len;
}

/* Length of the TransportID describing g: 4 header bytes and the NUL-terminated text padded to a
 * multiple of 4, at least 24 bytes in all (SPC-4 7.6.4.6). */
static size_t tpid_len(const struct pr_registrant *g)
{
    size_t text = strlen(g->initiator_name) + 1;
    if (g->isid_set)
        text += sizeof(TPID_ISID_SEP) - 1 + 12;
    size_t len = 4 + ((text + 3) & ~(size_t)3);
    return len < 24 ? 24 : len;
}

/* ---- bounded output for PERSISTENT RESERVE IN ---- */

struct out {
    uint8_t *buf;
    size_t limit; /* bytes that may be written */
    size_t off;   /* bytes of the full response so far */
};

static void out_bytes(struct out *o, const void *src, size_t len)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < len; i++, o->off++)
        if (o->off < o->limit)
            o->buf[o->off] = p[i];
}

static void out_u8(struct out *o, uint8_t v)
{
    out_bytes(o, &v, 1);
}

static void out_be16(struct out *o, uint16_t v)
{
    uint8_t b[2];
    twl_put_be16(b, v);
    out_bytes(o, b, sizeof(b));
}

static void out_be32(struct out *o, uint32_t v)
{
    uint8_t b[4];
    twl_put_be32(b, v);
    out_bytes(o, b, sizeof(b));
}

static void out_be64(struct out *o, uint64_t v)
{
    uint8_t b[8];
    twl_put_be64(b, v);
    out_bytes(o, b, sizeof(b));
}

static void out_zero(struct out *o, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out_u8(o, 0);
}

static void out_tpid(struct out *o, const struct pr_registrant *g)
{
    size_t len = tpid_len(g);
    size_t start = o->off;
    out_u8(o,
           (uint8_t)((g->isid_set ? TPID_FORMAT_PORT : TPID_FORMAT_NAME) << 6 | TPID_PROTO_ISCSI));
    out_u8(o, 0);
    out_be16(o, (uint16_t)(len - 4));
    out_bytes(o, g->initiator_name, strlen(g->initiator_name));
    if (g->isid_set) {
        char isid[sizeof(TPID_ISID_SEP) + 12];
        snprintf(isid, sizeof(isid), TPID_ISID_SEP "%02x%02x%02x%02x%02x%02x", g->isid[0],
                 g->isid[1], g->isid[2], g->isid[3], g->isid[4], g->isid[5]);
        out_bytes(o, isid, strlen(isid));
    }
    out_zero(o, len - (o->off - start));
}

static void read_keys(const struct pr_state *s, struct out *o)
{
    out_be32(o, s->generation);
    out_be32(o, 8u * s->count);
    for (unsigned i = 0; i < s->count; i++)
        out_be64(o, s->reg[i].key);
}

static void read_reservation(const struct pr_state *s, struct out *o)
{
    out_be32(o, s->generation);
    if (!s->reserved) {
        out_be32(o, 0);
        return;
    }
    out_be32(o, 16);
    out_be64(o, type_all_registrants(s->type) ? 0 : s->reg[s->holder].key);
    out_zero(o, 4); /* obsolete scope-specific address */
    out_u8(o, 0);
    out_u8(o, (uint8_t)(s->scope << 4 | s->type));
    out_zero(o, 2); /* obsolete extent length */
}

static void report_capabilities(const struct pr_state *s, struct out *o)
{
    out_be16(o, 8);
    out_u8(o, 0x08 | 0x04 | 0x01); /* SIP_C, ATP_C, PTPL_C; CRH = 0 */
    /* TMV, ALLOW COMMANDS 100b, PTPL_A */
    out_u8(o, (uint8_t)(0x80 | 0x40 | (s->aptpl ? 0x01 : 0x00)));
    out_u8(o, 0x80 | 0x40 | 0x20 | 0x08 | 0x02); /* WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX */
    out_u8(o, 0x01);                             /* EX_AC_AR */
    out_zero(o, 2);
}

static void read_full_status(const struct pr_state *s, struct out *o)
{
    uint32_t add_len = 0;
    for (unsigned i = 0; i < s->count; i++)
        add_len += (uint32_t)(24 + tpid_len(&s->reg[i]));
    out_be32(o, s->generation);
    out_be32(o, add_len);
    for (unsigned i = 0; i < s->count; i++) {
        const struct pr_registrant *g = &s->reg[i];
        bool holder = is_holder(s, (int)i);
        out_be64(o, g->key);
        out_zero(o, 4);
        out_u8(o, (uint8_t)((g->all_tg_pt ? 0x02 : 0x00) | (holder ? 0x01 : 0x00)));
        out_u8(o, holder ? (uint8_t)(s->scope << 4 | s->type) : 0);
        out_zero(o, 4);
        /* undefined by SPC-4 when ALL_TG_PT is set */
        out_be16(o, g->all_tg_pt ? 0 : g->rel_port);
        out_be32(o, (uint32_t)tpid_len(g));
        out_tpid(o, g);
    }
}

void pr_in(const struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb, uint8_t *buf,
           size_t buflen, struct pr_result *r)
{
    (void)n;
    result_init(r);
    if (s->r6_reserved) {
        fail_conflict(r);
        return;
    }
    uint16_t alloc = twl_get_be16(&cdb[7]);
    struct out o = {.buf = buf, .limit = alloc < buflen ? alloc : buflen, .off = 0};
    switch (cdb[1] & 0x1f) {
    case PR_IN_READ_KEYS:
        read_keys(s, &o);
        break;
    case PR_IN_READ_RESERVATION:
        read_reservation(s, &o);
        break;
    case PR_IN_REPORT_CAPABILITIES:
        report_capabilities(s, &o);
        break;
    case PR_IN_READ_FULL_STATUS:
        read_full_status(s, &o);
        break;
    default:
        fail_cdb(r, 1, 4);
        return;
    }
    r->data_len = (uint32_t)(o.off < o.limit ? o.off : o.limit);
}

/* ---- PERSISTENT RESERVE OUT ---- */

/* Marks a successful state change; persist when APTPL is on now or was on before. */
static void changed(struct pr_result *r, const struct pr_state *s, bool aptpl_before)
{
    r->changed = true;
    r->persist = s->aptpl || aptpl_before;
}

static void drop_reservation(struct pr_state *s)
{
    s->reserved = false;
    s->type = 0;
    s->scope = 0;
    s->holder = 0;
}

/* Establishes a reservation; the all-registrants types have no single holder, so holder stays 0
 * for them (one canonical in-memory form, equal to what decoding produces). */
static void set_reservation(struct pr_state *s, uint8_t type, uint8_t scope, unsigned holder)
{
    s->reserved = true;
    s->type = type;
    s->scope = scope;
    s->holder = type_all_registrants(type) ? 0 : (uint16_t)holder;
}

/* Releases the reservation, with RESERVATIONS RELEASED for the remaining registrants of the
 * registrants-only and all-registrants types (the sender left out). */
static void release_reservation(struct pr_state *s, struct pr_result *r,
                                const struct pr_nexus *sender)
{
    bool notify = type_registrants_only(s->type) || type_all_registrants(s->type);
    drop_reservation(s);
    if (notify)
        for (unsigned i = 0; i < s->count; i++)
            add_ua(r, &s->reg[i], PR_ASC_RESERVATIONS_RELEASED, sender);
}

/* Unregisters reg[idx] on behalf of sender (SPC-4 5.13.11.3). */
static void unregister(struct pr_state *s, unsigned idx, struct pr_result *r,
                       const struct pr_nexus *sender)
{
    bool was_holder = s->reserved && !type_all_registrants(s->type) && s->holder == idx;
    remove_reg(s, idx);
    if (!s->reserved)
        return;
    if (type_all_registrants(s->type)) {
        /* the last registrant takes an all-registrants reservation with it; nobody is left to
         * tell */
        if (s->count == 0)
            release_reservation(s, r, sender);
    } else if (was_holder) {
        /* only the registrants-only types announce it (SPC-4 5.13.11.3) */
        if (type_registrants_only(s->type))
            release_reservation(s, r, sender);
        else
            drop_reservation(s);
    }
}

static void do_register(struct pr_state *s, const struct pr_nexus *n, bool ignore_key,
                        const uint8_t *param, uint32_t list_len, struct pr_result *r)
{
    uint64_t rk = twl_get_be64(&param[0]);
    uint64_t sark = twl_get_be64(&param[8]);
    uint8_t flags = param[PARAM_FLAGS_BYTE];
    bool spec_i_pt = flags & PARAM_SPEC_I_PT;
    bool all_tg_pt = flags & PARAM_ALL_TG_PT;
    bool aptpl = flags & PARAM_APTPL;
    bool aptpl_before = s->aptpl;
    int idx = find_reg(s, n);

    if (idx >= 0) {
        if (!ignore_key && rk != s->reg[idx].key) {
            fail_conflict(r);
            return;
        }
        /* SPEC_I_PT only adds registrations for an unregistered I_T nexus */
        if (spec_i_pt) {
            fail_param(r, PARAM_FLAGS_BYTE, 3);
            return;
        }
        if (sark == 0)
            unregister(s, (unsigned)idx, r, n);
        else
            s->reg[idx].key = sark;
        s->aptpl = aptpl;
        s->generation++;
        changed(r, s, aptpl_before);
        return;
    }

    if (!ignore_key && rk != 0) {
        fail_conflict(r);
        return;
    }

    /* The new registrations: the sender first, then one per TransportID. Built aside so that a
     * failure leaves the state untouched. */
    struct pr_registrant add[PR_MAX_REGISTRANTS];
    unsigned add_count = 1;
    nexus_to_reg(&add[0], n, sark, all_tg_pt);
    for (unsigned i = 0; i < s->count; i++) {
        if (regs_overlap(&s->reg[i], &add[0])) {
            /* ALL_TG_PT would cover a nexus registered through another port */
            fail_param(r, PARAM_FLAGS_BYTE, 2);
            return;
        }
    }

    if (spec_i_pt) {
        if (list_len < PARAM_TPID_OFFSET) {
            fail_sense(r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, -1, false);
            return;
        }
        uint32_t tpid_total = twl_get_be32(&param[PARAM_BASIC_LEN]);
        if ((uint64_t)tpid_total + PARAM_TPID_OFFSET != list_len) {
            fail_param(r, PARAM_BASIC_LEN, -1);
            return;
        }
        size_t off = PARAM_TPID_OFFSET;
        while (off < list_len) {
            struct pr_registrant g;
            int len = parse_tpid(&param[off], list_len - off, &g);
            if (len < 0) {
                fail_param(r, (int)off, -1);
                return;
            }
            g.key = sark;
            g.all_tg_pt = all_tg_pt;
            g.rel_port = n->rel_port;
            bool duplicate = false;
            for (unsigned i = 0; i < add_count && !duplicate; i++)
                duplicate = regs_same_nexuses(&add[i], &g);
            if (!duplicate) {
                for (unsigned i = 0; i < add_count; i++) {
                    if (regs_overlap(&add[i], &g)) {
                        fail_param(r, (int)off, -1);
                        return;
                    }
                }
                /* a TransportID naming an already registered I_T nexus */
                for (unsigned i = 0; i < s->count; i++) {
                    if (regs_overlap(&s->reg[i], &g)) {
                        fail_param(r, (int)off, -1);
                        return;
                    }
                }
                if (s->count + add_count >= PR_MAX_REGISTRANTS) {
                    fail_sense(r, PR_ASC_INSUFFICIENT_REG_RESOURCES, -1, -1, false);
                    return;
                }
                add[add_count++] = g;
            }
            off += (size_t)len;
        }
    }

    /* an unregistered I_T nexus unregistering: nothing to do (SPC-4 5.13.7) */
    if (sark == 0)
        return;
    if (s->count + add_count > PR_MAX_REGISTRANTS) {
        fail_sense(r, PR_ASC_INSUFFICIENT_REG_RESOURCES, -1, -1, false);
        return;
    }
    for (unsigned i = 0; i < add_count; i++)
        s->reg[s->count++] = add[i];
    s->aptpl = aptpl;
    s->generation++;
    changed(r, s, aptpl_before);
}

static bool check_scope_type(struct pr_result *r, uint8_t scope, uint8_t type)
{
    if (scope != PR_SCOPE_LU) {
        fail_cdb(r, 2, 7);
        return false;
    }
    if (!type_valid(type)) {
        fail_cdb(r, 2, 3);
        return false;
    }
    return true;
}

/* The registration of the sender when its reservation key matches; otherwise the command ends
 * in RESERVATION CONFLICT and -1 is returned. */
static int registered_sender(const struct pr_state *s, const struct pr_nexus *n, uint64_t rk,
                             struct pr_result *r)
{
    int idx = find_reg(s, n);
    if (idx < 0 || s->reg[idx].key != rk) {
        fail_conflict(r);
        return -1;
    }
    return idx;
}

static void do_reserve(struct pr_state *s, const struct pr_nexus *n, uint8_t scope, uint8_t type,
                       uint64_t rk, struct pr_result *r)
{
    if (!check_scope_type(r, scope, type))
        return;
    int idx = registered_sender(s, n, rk, r);
    if (idx < 0)
        return;
    if (s->reserved) {
        /* the holder asking again for the same reservation is a no-op; anything else conflicts */
        if (!is_holder(s, idx) || s->type != type || s->scope != scope)
            fail_conflict(r);
        return;
    }
    set_reservation(s, type, scope, (unsigned)idx);
    changed(r, s, s->aptpl);
}

static void do_release(struct pr_state *s, const struct pr_nexus *n, uint8_t scope, uint8_t type,
                       uint64_t rk, struct pr_result *r)
{
    if (!check_scope_type(r, scope, type))
        return;
    int idx = registered_sender(s, n, rk, r);
    if (idx < 0)
        return;
    /* no reservation, or a registrant that does not hold it: GOOD, nothing happens */
    if (!s->reserved || !is_holder(s, idx))
        return;
    if (s->type != type || s->scope != scope) {
        fail_sense(r, PR_ASC_INVALID_RELEASE, -1, -1, false);
        return;
    }
    release_reservation(s, r, n);
    changed(r, s, s->aptpl);
}

static void do_clear(struct pr_state *s, const struct pr_nexus *n, uint64_t rk, struct pr_result *r)
{
    if (registered_sender(s, n, rk, r) < 0)
        return;
    for (unsigned i = 0; i < s->count; i++)
        add_ua(r, &s->reg[i], PR_ASC_RESERVATIONS_PREEMPTED, n);
    bool aptpl = s->aptpl;
    uint32_t generation = s->generation;
    pr_state_init(s);
    s->aptpl = aptpl;
    s->generation = generation + 1;
    changed(r, s, aptpl);
}

static void do_preempt(struct pr_state *s, const struct pr_nexus *n, uint8_t scope, uint8_t type,
                       const uint8_t *param, bool abort, struct pr_result *r)
{
    uint64_t rk = twl_get_be64(&param[0]);
    uint64_t sark = twl_get_be64(&param[8]);
    int idx = registered_sender(s, n, rk, r);
    if (idx < 0)
        return;
    bool all_reg = s->reserved && type_all_registrants(s->type);
    if (sark == 0 && !all_reg) {
        fail_param(r, 8, -1);
        return;
    }
    bool preempt_holder = s->reserved && (all_reg ? sark == 0 : s->reg[s->holder].key == sark);

    if (preempt_holder) {
        if (!check_scope_type(r, scope, type))
            return;
        uint8_t old_type = s->type, old_scope = s->scope;
        /* remove the preempted registrations, the sender's excepted (SPC-4 5.13.11.4.3) */
        unsigned i = 0;
        unsigned sender = (unsigned)idx;
        while (i < s->count) {
            if (i != sender && (sark == 0 || s->reg[i].key == sark)) {
                add_ua(r, &s->reg[i], PR_ASC_REGISTRATIONS_PREEMPTED, n);
                remove_reg(s, i);
                if (i < sender)
                    sender--;
            } else {
                i++;
            }
        }
        set_reservation(s, type, scope, sender);
        if (old_type != type || old_scope != scope)
            for (i = 0; i < s->count; i++)
                add_ua(r, &s->reg[i], PR_ASC_RESERVATIONS_RELEASED, n);
    } else {
        /* remove registrations only; the reservation, if any, stays (SPC-4 5.13.11.4.4) */
        bool found = false;
        for (unsigned i = 0; i < s->count; i++)
            found = found || s->reg[i].key == sark;
        if (!found) {
            fail_conflict(r);
            return;
        }
        unsigned i = 0;
        while (i < s->count) {
            /* an all-registrants holder never preempts itself away */
            bool keep = s->reg[i].key != sark || (all_reg && i == (unsigned)idx);
            if (keep) {
                i++;
                continue;
            }
            add_ua(r, &s->reg[i], PR_ASC_REGISTRATIONS_PREEMPTED, n);
            if (all_reg && i < (unsigned)idx)
                idx--;
            remove_reg(s, i);
        }
    }
    s->generation++;
    r->abort_preempted = abort;
    changed(r, s, s->aptpl);
}

static void do_register_and_move(struct pr_state *s, const struct pr_nexus *n, const uint8_t *param,
                                 uint32_t list_len, struct pr_result *r)
{
    uint64_t rk = twl_get_be64(&param[0]);
    uint64_t sark = twl_get_be64(&param[8]);
    uint8_t flags = param[MOVE_FLAGS_BYTE];
    uint16_t rtpi = twl_get_be16(&param[18]);
    uint32_t tpid_total = twl_get_be32(&param[20]);
    bool aptpl_before = s->aptpl;

    int idx = registered_sender(s, n, rk, r);
    if (idx < 0)
        return;
    /* only the holder of a reservation that has one holder can move it (SPC-4 5.13.8) */
    if (!s->reserved || type_all_registrants(s->type) || s->holder != (uint16_t)idx) {
        fail_conflict(r);
        return;
    }
    if (sark == 0) {
        fail_param(r, 8, -1);
        return;
    }
    if (rtpi == 0 || rtpi > PR_REL_PORT_MAX) {
        fail_param(r, 18, -1);
        return;
    }
    if ((uint64_t)tpid_total + MOVE_TPID_OFFSET != list_len) {
        fail_param(r, 20, -1);
        return;
    }
    struct pr_registrant dest;
    int len = parse_tpid(&param[MOVE_TPID_OFFSET], tpid_total, &dest);
    /* an iSCSI I_T nexus needs the ISID: name-only TransportIDs name no initiator port */
    if (len < 0 || !dest.isid_set) {
        fail_param(r, MOVE_TPID_OFFSET, -1);
        return;
    }
    if (names_equal(dest.initiator_name, n->initiator_name) &&
        memcmp(dest.isid, n->isid, sizeof(dest.isid)) == 0) {
        fail_param(r, MOVE_TPID_OFFSET, -1);
        return;
    }
    dest.key = sark;
    dest.rel_port = rtpi;
    dest.all_tg_pt = false;

    struct pr_nexus dest_nexus = {.initiator_name = dest.initiator_name, .rel_port = rtpi};
    memcpy(dest_nexus.isid, dest.isid, sizeof(dest.isid));
    int dest_idx = find_reg(s, &dest_nexus);
    if (dest_idx < 0) {
        /* one I_T nexus that no registration covers overlaps none either */
        if (s->count >= PR_MAX_REGISTRANTS) {
            fail_sense(r, PR_ASC_INSUFFICIENT_REG_RESOURCES, -1, -1, false);
            return;
        }
        dest_idx = s->count;
        s->reg[s->count++] = dest;
    } else {
        s->reg[dest_idx].key = sark;
    }
    s->holder = (uint16_t)dest_idx;
    if (flags & MOVE_UNREG)
        remove_reg(s, (unsigned)idx);
    s->aptpl = flags & MOVE_APTPL;
    s->generation++;
    changed(r, s, aptpl_before);
}

void pr_out(struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb, const uint8_t *param,
            size_t param_len, struct pr_result *r)
{
    result_init(r);
    if (s->r6_reserved) {
        fail_conflict(r);
        return;
    }
    uint8_t sa = cdb[1] & 0x1f;
    uint8_t scope = cdb[2] >> 4;
    uint8_t type = cdb[2] & 0x0f;
    uint32_t list_len = twl_get_be32(&cdb[5]);

    if (sa > PR_OUT_REGISTER_AND_MOVE) {
        fail_cdb(r, 1, 4);
        return;
    }
    if (list_len < PARAM_BASIC_LEN || param == NULL || param_len < list_len) {
        fail_sense(r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, -1, false);
        return;
    }
    if (sa != PR_OUT_REGISTER_AND_MOVE) {
        bool spec_i_pt = param[PARAM_FLAGS_BYTE] & PARAM_SPEC_I_PT;
        if (spec_i_pt && sa != PR_OUT_REGISTER && sa != PR_OUT_REGISTER_AND_IGNORE) {
            fail_param(r, PARAM_FLAGS_BYTE, 3);
            return;
        }
        if (!spec_i_pt && list_len != PARAM_BASIC_LEN) {
            fail_sense(r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, -1, false);
            return;
        }
    }
    uint64_t rk = twl_get_be64(&param[0]);

    switch (sa) {
    case PR_OUT_REGISTER:
        do_register(s, n, false, param, list_len, r);
        break;
    case PR_OUT_REGISTER_AND_IGNORE:
        do_register(s, n, true, param, list_len, r);
        break;
    case PR_OUT_RESERVE:
        do_reserve(s, n, scope, type, rk, r);
        break;
    case PR_OUT_RELEASE:
        do_release(s, n, scope, type, rk, r);
        break;
    case PR_OUT_CLEAR:
        do_clear(s, n, rk, r);
        break;
    case PR_OUT_PREEMPT:
    case PR_OUT_PREEMPT_AND_ABORT:
        do_preempt(s, n, scope, type, param, sa == PR_OUT_PREEMPT_AND_ABORT, r);
        break;
    default:
        do_register_and_move(s, n, param, list_len, r);
        break;
    }
}

/* ---- SPC-2 RESERVE(6) / RELEASE(6) ---- */

/* RESERVE(6)/RELEASE(6) byte 1: bit 4 third-party, bit 0 extent (SPC-2 7.21, 7.17). */
static bool check_r6_cdb(const uint8_t *cdb, struct pr_result *r)
{
    if (cdb[1] & 0x10) {
        fail_cdb(r, 1, 4);
        return false;
    }
    if (cdb[1] & 0x01) {
        fail_cdb(r, 1, 0);
        return false;
    }
    return true;
}

void pr_reserve6(struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb,
                 struct pr_result *r)
{
    result_init(r);
    if (!check_r6_cdb(cdb, r))
        return;
    if (s->count > 0 || (s->r6_reserved && !is_r6_holder(s, n))) {
        fail_conflict(r);
        return;
    }
    if (s->r6_reserved)
        return;
    s->r6_reserved = true;
    snprintf(s->r6_name, sizeof(s->r6_name), "%s", n->initiator_name);
    memcpy(s->r6_isid, n->isid, sizeof(s->r6_isid));
    s->r6_port = n->rel_port;
    r->changed = true;
}

static void r6_clear(struct pr_state *s)
{
    s->r6_reserved = false;
    memset(s->r6_name, 0, sizeof(s->r6_name));
    memset(s->r6_isid, 0, sizeof(s->r6_isid));
    s->r6_port = 0;
}

void pr_release6(struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb,
                 struct pr_result *r)
{
    result_init(r);
    if (!check_r6_cdb(cdb, r))
        return;
    if (s->count > 0) {
        fail_conflict(r);
        return;
    }
    if (!is_r6_holder(s, n))
        return;
    r6_clear(s);
    r->changed = true;
}

bool pr_nexus_lost(struct pr_state *s, const struct pr_nexus *n)
{
    if (!is_r6_holder(s, n))
        return false;
    r6_clear(s);
    return true;
}

bool pr_reset(struct pr_state *s)
{
    if (!s->r6_reserved)
        return false;
    r6_clear(s);
    return true;
}

/* ---- serialisation ----
 *
 * The image of a struct pr_state, all integers big-endian:
 *
 *   offset  size  field
 *        0     4  magic "TWPR"
 *        4     2  format version, 1
 *        6     2  reserved, 0
 *        8     4  image length in bytes, CRC included
 *       12     4  PRgeneration
 *       16     1  flags: bit 0 APTPL, bit 1 persistent reservation present,
 *                 bit 2 RESERVE(6) reservation present; other bits 0
 *       17     1  reservation type (0 when none)
 *       18     1  reservation scope
 *       19     1  reserved, 0
 *       20     2  holder: index of the holding registrant (0 for none or all-registrants types)
 *       22     2  registrant count N (at most 64)
 *       24     2  RESERVE(6) holder's relative target port
 *       26     6  RESERVE(6) holder's ISID
 *       32     2  RESERVE(6) holder's name length L (0..223)
 *       34     L  RESERVE(6) holder's name, no NUL
 *   then N registrants, each:
 *        0     8  reservation key (not 0)
 *        8     1  flags: bit 0 ISID set, bit 1 ALL_TG_PT; other bits 0
 *        9     1  reserved, 0
 *       10     2  relative target port
 *       12     6  ISID
 *       18     2  name length M (1..223)
 *       20     M  iSCSI name, no NUL
 *   then     4  CRC32C (twl_crc32c) of every byte before it.
 *
 * Decoding checks everything: magic, version, the length against the buffer, the CRC, every
 * count and length, that names hold no NUL, that a reservation has a valid type, scope 0 and a
 * valid holder, and that no byte is left over.
 */
#define IMAGE_MAGIC      0x54575052u /* "TWPR" */
#define IMAGE_VERSION    1
#define IMAGE_HEADER_LEN 34
#define IMAGE_REG_LEN    20
#define IMAGE_CRC_LEN    4

#define IMG_APTPL    0x01
#define IMG_RESERVED 0x02
#define IMG_R6       0x04

#define IMG_REG_ISID 0x01
#define IMG_REG_ATP  0x02

size_t pr_state_encode(const struct pr_state *s, uint8_t *buf, size_t cap)
{
    size_t r6_len = s->r6_reserved ? strnlen(s->r6_name, PR_NAME_MAX - 1) : 0;
    size_t need = IMAGE_HEADER_LEN + r6_len + IMAGE_CRC_LEN;
    for (unsigned i = 0; i < s->count; i++)
        need += IMAGE_REG_LEN + strnlen(s->reg[i].initiator_name, PR_NAME_MAX - 1);
    if (cap < need)
        return need;

    memset(buf, 0, need);
    twl_put_be32(&buf[0], IMAGE_MAGIC);
    twl_put_be16(&buf[4], IMAGE_VERSION);
    twl_put_be32(&buf[8], (uint32_t)need);
    twl_put_be32(&buf[12], s->generation);
    buf[16] = (uint8_t)((s->aptpl ? IMG_APTPL : 0) | (s->reserved ? IMG_RESERVED : 0) |
                        (s->r6_reserved ? IMG_R6 : 0));
    if (s->reserved) {
        buf[17] = s->type;
        buf[18] = s->scope;
        twl_put_be16(&buf[20], s->holder);
    }
    twl_put_be16(&buf[22], s->count);
    if (s->r6_reserved) {
        twl_put_be16(&buf[24], s->r6_port);
        memcpy(&buf[26], s->r6_isid, 6);
    }
    twl_put_be16(&buf[32], (uint16_t)r6_len);
    memcpy(&buf[34], s->r6_name, r6_len);
    size_t off = IMAGE_HEADER_LEN + r6_len;
    for (unsigned i = 0; i < s->count; i++) {
        const struct pr_registrant *g = &s->reg[i];
        size_t name_len = strnlen(g->initiator_name, PR_NAME_MAX - 1);
        twl_put_be64(&buf[off], g->key);
        buf[off + 8] =
            (uint8_t)((g->isid_set ? IMG_REG_ISID : 0) | (g->all_tg_pt ? IMG_REG_ATP : 0));
        twl_put_be16(&buf[off + 10], g->rel_port);
        memcpy(&buf[off + 12], g->isid, 6);
        twl_put_be16(&buf[off + 18], (uint16_t)name_len);
        memcpy(&buf[off + 20], g->initiator_name, name_len);
        off += IMAGE_REG_LEN + name_len;
    }
    twl_put_be32(&buf[off], twl_crc32c(buf, off));
    return need;
}

/* Copies a length-prefixed name into dst (PR_NAME_MAX bytes); false when it does not fit or holds
 * a NUL. */
static bool decode_name(char *dst, const uint8_t *src, size_t len)
{
    if (len >= PR_NAME_MAX || memchr(src, 0, len) != NULL)
        return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

int pr_state_decode(struct pr_state *s, const uint8_t *buf, size_t len)
{
    if (len < IMAGE_HEADER_LEN + IMAGE_CRC_LEN)
        return -EINVAL;
    if (twl_get_be32(&buf[0]) != IMAGE_MAGIC || twl_get_be16(&buf[4]) != IMAGE_VERSION ||
        twl_get_be16(&buf[6]) != 0 || twl_get_be32(&buf[8]) != len)
        return -EINVAL;
    size_t body = len - IMAGE_CRC_LEN;
    if (twl_crc32c(buf, body) != twl_get_be32(&buf[body]))
        return -EINVAL;

    struct pr_state t;
    pr_state_init(&t);
    uint8_t flags = buf[16];
    if (flags & ~(IMG_APTPL | IMG_RESERVED | IMG_R6))
        return -EINVAL;
    t.generation = twl_get_be32(&buf[12]);
    t.aptpl = flags & IMG_APTPL;
    t.reserved = flags & IMG_RESERVED;
    t.type = buf[17];
    t.scope = buf[18];
    t.holder = twl_get_be16(&buf[20]);
    uint16_t count = twl_get_be16(&buf[22]);
    if (count > PR_MAX_REGISTRANTS)
        return -EINVAL;
    t.r6_reserved = flags & IMG_R6;
    t.r6_port = twl_get_be16(&buf[24]);
    memcpy(t.r6_isid, &buf[26], 6);
    size_t r6_len = twl_get_be16(&buf[32]);
    if (IMAGE_HEADER_LEN + r6_len > body || !decode_name(t.r6_name, &buf[34], r6_len) ||
        t.r6_reserved != (r6_len > 0))
        return -EINVAL;

    size_t off = IMAGE_HEADER_LEN + r6_len;
    for (unsigned i = 0; i < count; i++) {
        if (off + IMAGE_REG_LEN > body)
            return -EINVAL;
        struct pr_registrant *g = &t.reg[i];
        uint8_t gflags = buf[off + 8];
        size_t name_len = twl_get_be16(&buf[off + 18]);
        if ((gflags & ~(IMG_REG_ISID | IMG_REG_ATP)) || name_len == 0 ||
            off + IMAGE_REG_LEN + name_len > body)
            return -EINVAL;
        g->key = twl_get_be64(&buf[off]);
        g->isid_set = gflags & IMG_REG_ISID;
        g->all_tg_pt = gflags & IMG_REG_ATP;
        g->rel_port = twl_get_be16(&buf[off + 10]);
        memcpy(g->isid, &buf[off + 12], 6);
        if (g->key == 0 || !decode_name(g->initiator_name, &buf[off + 20], name_len))
            return -EINVAL;
        off += IMAGE_REG_LEN + name_len;
    }
    if (off != body)
        return -EINVAL;
    t.count = count;
    if (t.reserved) {
        if (!type_valid(t.type) || t.scope != PR_SCOPE_LU || t.count == 0)
            return -EINVAL;
        if (type_all_registrants(t.type) ? t.holder != 0 : t.holder >= t.count)
            return -EINVAL;
    } else if (t.type != 0 || t.scope != 0 || t.holder != 0) {
        return -EINVAL;
    }
    *s = t;
    return 0;
}

/* ---- APTPL files ---- */

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int pr_state_save(const struct pr_state *s, const char *path)
{
    /* what survives a power loss: everything but RESERVE(6) with APTPL, nothing without */
    struct pr_state image;
    pr_state_init(&image);
    if (s->aptpl) {
        image = *s;
        r6_clear(&image);
    }
    static_assert(PR_STATE_IMAGE_MAX <= 65536, "image buffer lives on the stack");
    uint8_t buf[PR_STATE_IMAGE_MAX];
    size_t len = pr_state_encode(&image, buf, sizeof(buf));

    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        TWL_ERROR(PART, "%s: cannot create a temporary file: %s", path, strerror(-rc));
        return rc;
    }
    int rc = write_all(fd, buf, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        TWL_ERROR(PART, "%s: cannot save reservations: %s", path, strerror(-rc));
        unlink(tmp);
        return rc;
    }
    rc = fsync_dir_of(path);
    if (rc < 0)
        TWL_ERROR(PART, "%s: cannot sync its directory: %s", path, strerror(-rc));
    return rc;
}

int pr_state_load(struct pr_state *s, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        if (rc != -ENOENT)
            TWL_ERROR(PART, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    static_assert(PR_STATE_IMAGE_MAX <= 65536, "image buffer lives on the stack");
    uint8_t buf[PR_STATE_IMAGE_MAX + 1];
    size_t len = 0;
    int rc = 0;
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (rc < 0) {
        TWL_ERROR(PART, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    /* a file longer than any image is corrupt too */
    if (len > PR_STATE_IMAGE_MAX || pr_state_decode(s, buf, len) < 0) {
        TWL_ERROR(PART, "%s: corrupt persistent reservation state (%zu bytes), ignored", path, len);
        return -EINVAL;
    }
    return 0;
}
