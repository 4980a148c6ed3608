/*
 * Hello: the first message each node sends on the control channel, and the check that
 * decides whether the two nodes may pair.
 *
 * Wire format (big-endian):
 *
 *   offset  size  field
 *        0     4  magic "TWLH" (0x54574c48)
 *        4     2  protocol version (TWL_RDMA_PROTO_VERSION)
 *        6     2  zero
 *        8     4  message length: 384 + 128 * LUN count
 *       12     4  CRC32C of the whole message except these four bytes
 *       16     8  generation id of the sender's data
 *       24     2  LUN count, 0 .. 256
 *       26     6  zero
 *       32    64  node name of the sender
 *       96    64  partner name the sender's config expects
 *      160   224  target IQN
 *      384 128*n  LUN table; each entry:
 *                   0   4  LUN id (unique in the table)
 *                   4   4  block size, a power of two, 512 .. 65536
 *                   8   8  size in bytes, a non-zero multiple of the block size
 *                  16  64  owner node name ("" = no owner)
 *                  80  32  the sender's copy's generations: current, bitmap, history 0, 1
 *                 112   8  dirty regions in the sender's log
 *                 120   4  flags: 1 the sender writes this LUN now (its primary),
 *                                 2 the sender's admin discarded the partner's copy
 *                 124   4  zero
 *
 * Strings are NUL-padded to their field: at least one NUL, and only NULs after the first.
 * Names and the IQN are not empty.
 *
 * Bytes 0..15 keep their meaning in every protocol version, so a node can tell a partner
 * that speaks another version (and say which) from a damaged message. Everything after them
 * may change with the version: there is no negotiation, both nodes run the same one.
 */
#include "proto.h"
#include "proto_internal.h"

#include "twl_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HELLO_MAGIC    0x54574c48u /* "TWLH" */
#define PREFIX_LEN     16u
#define OFF_CRC        12u
#define OFF_NODE       32u
#define OFF_PARTNER    (OFF_NODE + TWL_RDMA_NAME_MAX)
#define OFF_IQN        (OFF_PARTNER + TWL_RDMA_NAME_MAX)
#define LUN_OFF_OWNER  16u
#define LUN_OFF_GENS   80u
#define LUN_OFF_DIRTY  112u
#define LUN_OFF_FLAGS  120u
#define LUN_FLAGS_ALL  (TWL_RDMA_HELLO_PRIMARY | TWL_RDMA_HELLO_PEER_DISCARDED)
#define MIN_BLOCK_SIZE 512u
#define MAX_BLOCK_SIZE 65536u

_Static_assert(OFF_IQN + TWL_RDMA_IQN_MAX == TWL_RDMA_HELLO_FIXED_LEN, "hello layout");
_Static_assert(LUN_OFF_OWNER + TWL_RDMA_NAME_MAX == LUN_OFF_GENS, "LUN entry layout");
_Static_assert(LUN_OFF_FLAGS + 8 == TWL_RDMA_HELLO_LUN_LEN, "LUN entry layout");

void twl_rdma_hello_init(struct twl_rdma_hello *h)
{
    memset(h, 0, sizeof(*h));
    h->version = TWL_RDMA_PROTO_VERSION;
}

size_t twl_rdma_hello_len(const struct twl_rdma_hello *h)
{
    return TWL_RDMA_HELLO_FIXED_LEN + (size_t)h->lun_count * TWL_RDMA_HELLO_LUN_LEN;
}

static uint32_t hello_crc(const uint8_t *m, size_t len)
{
    uint32_t crc = twl_crc32c_update(0, m, OFF_CRC);
    return twl_crc32c_update(crc, m + OFF_CRC + 4, len - OFF_CRC - 4);
}

static bool str_fits(const char *s, size_t field)
{
    return strnlen(s, field) < field;
}

/* Names end up quoted in the sentences check() gives and the log shows: a control character
 * from the partner (a newline, an escape sequence) would forge or garble log lines. Configs
 * never hold one. */
static bool printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* What a hello must satisfy to be sent or accepted; rc is what breaking a rule returns. */
static int validate(const struct twl_rdma_hello *h, int rc, char *err, size_t errlen)
{
    if (!str_fits(h->node, TWL_RDMA_NAME_MAX) || h->node[0] == '\0')
        return twl_rdma_proto_fail(rc, err, errlen, "node name is empty or longer than %u bytes",
                                   TWL_RDMA_NAME_MAX - 1);
    /* before any message quotes it */
    if (!printable(h->node))
        return twl_rdma_proto_fail(rc, err, errlen, "node name holds control characters");
    if (!str_fits(h->partner, TWL_RDMA_NAME_MAX) || h->partner[0] == '\0')
        return twl_rdma_proto_fail(rc, err, errlen,
                                   "node \"%s\": partner name is empty or longer than %u bytes",
                                   h->node, TWL_RDMA_NAME_MAX - 1);
    if (!str_fits(h->iqn, TWL_RDMA_IQN_MAX) || h->iqn[0] == '\0')
        return twl_rdma_proto_fail(rc, err, errlen,
                                   "node \"%s\": target name is empty or longer than %u bytes",
                                   h->node, TWL_RDMA_IQN_MAX - 1);
    if (!printable(h->partner) || !printable(h->iqn))
        return twl_rdma_proto_fail(rc, err, errlen,
                                   "node \"%s\": partner or target name holds control characters",
                                   h->node);
    if (h->lun_count > TWL_RDMA_HELLO_MAX_LUNS)
        return twl_rdma_proto_fail(rc, err, errlen, "node \"%s\" lists %u LUNs; at most %u",
                                   h->node, h->lun_count, TWL_RDMA_HELLO_MAX_LUNS);
    for (uint32_t i = 0; i < h->lun_count; i++) {
        const struct twl_rdma_hello_lun *l = &h->luns[i];
        if (l->block_size < MIN_BLOCK_SIZE || l->block_size > MAX_BLOCK_SIZE ||
            (l->block_size & (l->block_size - 1)) != 0)
            return twl_rdma_proto_fail(
                rc, err, errlen,
                "node \"%s\": LUN %u block size %u is not a power of two in 512..65536", h->node,
                l->id, l->block_size);
        if (l->size == 0 || l->size % l->block_size != 0)
            return twl_rdma_proto_fail(
                rc, err, errlen,
                "node \"%s\": LUN %u size %llu is not a non-zero multiple of its block "
                "size %u",
                h->node, l->id, (unsigned long long)l->size, l->block_size);
        if (!str_fits(l->owner, TWL_RDMA_NAME_MAX))
            return twl_rdma_proto_fail(rc, err, errlen,
                                       "node \"%s\": LUN %u owner name is longer than %u bytes",
                                       h->node, l->id, TWL_RDMA_NAME_MAX - 1);
        if (!printable(l->owner))
            return twl_rdma_proto_fail(rc, err, errlen,
                                       "node \"%s\": LUN %u owner name holds control characters",
                                       h->node, l->id);
        for (uint32_t j = 0; j < i; j++)
            if (h->luns[j].id == l->id)
                return twl_rdma_proto_fail(rc, err, errlen, "node \"%s\" lists LUN %u twice",
                                           h->node, l->id);
    }
    return 0;
}

/* Copies s into its field, NUL-padded (validate made sure it fits). */
static void put_str(uint8_t *p, const char *s, size_t field)
{
    size_t n = strnlen(s, field);
    memset(p, 0, field);
    memcpy(p, s, n);
}

int twl_rdma_hello_encode(const struct twl_rdma_hello *h, uint8_t *out, size_t out_len)
{
    int rc = validate(h, -EINVAL, NULL, 0);
    if (rc)
        return rc;
    size_t len = twl_rdma_hello_len(h);
    if (out_len < len)
        return -ENOSPC;
    memset(out, 0, TWL_RDMA_HELLO_FIXED_LEN);
    twl_put_be32(out, HELLO_MAGIC);
    twl_put_be16(out + 4, (uint16_t)h->version);
    twl_put_be32(out + 8, (uint32_t)len);
    twl_put_be64(out + 16, h->generation);
    twl_put_be16(out + 24, (uint16_t)h->lun_count);
    put_str(out + OFF_NODE, h->node, TWL_RDMA_NAME_MAX);
    put_str(out + OFF_PARTNER, h->partner, TWL_RDMA_NAME_MAX);
    put_str(out + OFF_IQN, h->iqn, TWL_RDMA_IQN_MAX);
    for (uint32_t i = 0; i < h->lun_count; i++) {
        const struct twl_rdma_hello_lun *l = &h->luns[i];
        uint8_t *e = out + TWL_RDMA_HELLO_FIXED_LEN + i * TWL_RDMA_HELLO_LUN_LEN;
        twl_put_be32(e, l->id);
        twl_put_be32(e + 4, l->block_size);
        twl_put_be64(e + 8, l->size);
        put_str(e + LUN_OFF_OWNER, l->owner, TWL_RDMA_NAME_MAX);
        for (int g = 0; g < 4; g++)
            twl_put_be64(e + LUN_OFF_GENS + 8 * g, l->gens[g]);
        twl_put_be64(e + LUN_OFF_DIRTY, l->dirty_regions);
        twl_put_be32(e + LUN_OFF_FLAGS, l->flags);
        twl_put_be32(e + LUN_OFF_FLAGS + 4, 0);
    }
    twl_put_be32(out + OFF_CRC, hello_crc(out, len));
    return (int)len;
}

/* Reads a NUL-padded string field; false when it has no NUL or junk after the first one. */
static bool get_str(char *dst, const uint8_t *p, size_t field)
{
    size_t n = strnlen((const char *)p, field);
    if (n == field)
        return false;
    for (size_t i = n; i < field; i++)
        if (p[i] != 0)
            return false;
    memcpy(dst, p, n + 1);
    return true;
}

int twl_rdma_hello_decode(const uint8_t *in, size_t len, struct twl_rdma_hello *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (in == NULL || len < PREFIX_LEN)
        return twl_rdma_proto_fail(-EBADMSG, err, errlen,
                                   "partner's hello is truncated (%zu bytes)",
                                   in == NULL ? (size_t)0 : len);
    if (twl_get_be32(in) != HELLO_MAGIC)
        return twl_rdma_proto_fail(
            -EBADMSG, err, errlen,
            "partner's hello has magic 0x%08x: the peer is not a twinlun node", twl_get_be32(in));
    if (twl_get_be32(in + 8) != len)
        return twl_rdma_proto_fail(-EBADMSG, err, errlen,
                                   "partner's hello says %u bytes but %zu arrived",
                                   twl_get_be32(in + 8), len);
    uint32_t crc = hello_crc(in, len);
    if (twl_get_be32(in + OFF_CRC) != crc)
        return twl_rdma_proto_fail(-EBADMSG, err, errlen,
                                   "partner's hello is damaged (CRC 0x%08x, computed 0x%08x)",
                                   twl_get_be32(in + OFF_CRC), crc);
    out->version = twl_get_be16(in + 4);
    if (out->version != TWL_RDMA_PROTO_VERSION)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "partner runs protocol %u, this node %u: install the same twinlun release on "
            "both nodes",
            out->version, TWL_RDMA_PROTO_VERSION);

    if (len < TWL_RDMA_HELLO_FIXED_LEN)
        return twl_rdma_proto_fail(-EPROTO, err, errlen,
                                   "partner's hello has %zu bytes; at least %u expected", len,
                                   TWL_RDMA_HELLO_FIXED_LEN);
    out->generation = twl_get_be64(in + 16);
    out->lun_count = twl_get_be16(in + 24);
    if (twl_get_be16(in + 6) != 0 || twl_get_be16(in + 26) != 0 || twl_get_be32(in + 28) != 0)
        return twl_rdma_proto_fail(-EPROTO, err, errlen, "partner's hello has reserved bytes set");
    if (out->lun_count > TWL_RDMA_HELLO_MAX_LUNS)
        return twl_rdma_proto_fail(-EPROTO, err, errlen,
                                   "partner's hello lists %u LUNs; at most %u", out->lun_count,
                                   TWL_RDMA_HELLO_MAX_LUNS);
    if (len != twl_rdma_hello_len(out))
        return twl_rdma_proto_fail(-EPROTO, err, errlen,
                                   "partner's hello has %zu bytes for %u LUNs; expected %zu", len,
                                   out->lun_count, twl_rdma_hello_len(out));
    if (!get_str(out->node, in + OFF_NODE, TWL_RDMA_NAME_MAX) ||
        !get_str(out->partner, in + OFF_PARTNER, TWL_RDMA_NAME_MAX) ||
        !get_str(out->iqn, in + OFF_IQN, TWL_RDMA_IQN_MAX))
        return twl_rdma_proto_fail(-EPROTO, err, errlen, "partner's hello has a malformed name");
    for (uint32_t i = 0; i < out->lun_count; i++) {
        struct twl_rdma_hello_lun *l = &out->luns[i];
        const uint8_t *e = in + TWL_RDMA_HELLO_FIXED_LEN + i * TWL_RDMA_HELLO_LUN_LEN;
        l->id = twl_get_be32(e);
        l->block_size = twl_get_be32(e + 4);
        l->size = twl_get_be64(e + 8);
        if (!get_str(l->owner, e + LUN_OFF_OWNER, TWL_RDMA_NAME_MAX))
            return twl_rdma_proto_fail(-EPROTO, err, errlen,
                                       "partner's hello has a malformed owner for LUN %u", l->id);
        for (int g = 0; g < 4; g++)
            l->gens[g] = twl_get_be64(e + LUN_OFF_GENS + 8 * g);
        l->dirty_regions = twl_get_be64(e + LUN_OFF_DIRTY);
        l->flags = twl_get_be32(e + LUN_OFF_FLAGS);
        if ((l->flags & ~LUN_FLAGS_ALL) != 0 || twl_get_be32(e + LUN_OFF_FLAGS + 4) != 0)
            return twl_rdma_proto_fail(-EPROTO, err, errlen,
                                       "partner's hello has unknown flags 0x%x for LUN %u",
                                       l->flags, l->id);
    }
    return validate(out, -EPROTO, err, errlen);
}

const struct twl_rdma_hello_lun *twl_rdma_hello_find_lun(const struct twl_rdma_hello *h,
                                                         uint32_t id)
{
    for (uint32_t i = 0; i < h->lun_count; i++)
        if (h->luns[i].id == id)
            return &h->luns[i];
    return NULL;
}

/* An owner as a sentence names it: quoted, or "no node". */
static void owner_desc(char *buf, size_t len, const char *owner)
{
    if (owner[0] == '\0')
        snprintf(buf, len, "no node");
    else
        snprintf(buf, len, "\"%s\"", owner);
}

/* Ownership as both configs state it: they must name the same owner, one of the two nodes. */
static int check_owner(const struct twl_rdma_hello *mine, const struct twl_rdma_hello *theirs,
                       const struct twl_rdma_hello_lun *ml, const struct twl_rdma_hello_lun *tl,
                       char *err, size_t errlen)
{
    const char *me = mine->node, *peer = theirs->node;
    const char *mo = ml->owner, *to = tl->owner;
    uint32_t id = ml->id;
    if (strcmp(mo, me) == 0 && strcmp(to, peer) == 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "both nodes own LUN %u (each config names its own node as owner): make one "
            "of \"%s\" and \"%s\" the owner in both configs",
            id, me, peer);
    if (strcmp(mo, peer) == 0 && strcmp(to, me) == 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "no node owns LUN %u (this node's config gives it to \"%s\", \"%s\"'s to "
            "\"%s\"): name the same owner in both configs",
            id, mo, peer, to);
    if (strcmp(mo, to) != 0) {
        char mdesc[TWL_RDMA_NAME_MAX + 2], tdesc[TWL_RDMA_NAME_MAX + 2];
        owner_desc(mdesc, sizeof(mdesc), mo);
        owner_desc(tdesc, sizeof(tdesc), to);
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "this node's config gives LUN %u to %s but partner \"%s\"'s gives it to %s: "
            "name the same owner in both configs",
            id, mdesc, peer, tdesc);
    }
    if (mo[0] == '\0')
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "no node owns LUN %u: name \"%s\" or \"%s\" as its owner in both configs", id, me,
            peer);
    if (strcmp(mo, me) != 0 && strcmp(mo, peer) != 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "LUN %u is owned by \"%s\", which is neither node (\"%s\", \"%s\"): name one "
            "of them as its owner in both configs",
            id, mo, me, peer);
    return 0;
}

int twl_rdma_hello_check(const struct twl_rdma_hello *mine, const struct twl_rdma_hello *theirs,
                         char *err, size_t errlen)
{
    if (mine->version != theirs->version)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "partner runs protocol %u, this node %u: install the same twinlun release on "
            "both nodes",
            theirs->version, mine->version);
    if (strcmp(mine->node, theirs->node) == 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "the partner is also named \"%s\": either this node connected to itself "
            "(check the partner address) or both configs use the same node name",
            mine->node);
    if (strcmp(theirs->node, mine->partner) != 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "connected to node \"%s\" but this node's config names its partner \"%s\": "
            "fix the partner name or address",
            theirs->node, mine->partner);
    if (strcmp(theirs->partner, mine->node) != 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "partner \"%s\" expects a partner named \"%s\", not \"%s\" (this node): fix "
            "the partner name in \"%s\"'s config",
            theirs->node, theirs->partner, mine->node, theirs->node);
    /* iSCSI names compare without regard to case (RFC 3722 maps them to lower case). */
    if (strcasecmp(mine->iqn, theirs->iqn) != 0)
        return twl_rdma_proto_fail(
            -EPROTO, err, errlen,
            "partner \"%s\" presents target \"%s\", this node \"%s\": both must present "
            "the same target name",
            theirs->node, theirs->iqn, mine->iqn);
    for (uint32_t i = 0; i < mine->lun_count; i++) {
        const struct twl_rdma_hello_lun *ml = &mine->luns[i];
        const struct twl_rdma_hello_lun *tl = twl_rdma_hello_find_lun(theirs, ml->id);
        if (tl == NULL)
            return twl_rdma_proto_fail(
                -EPROTO, err, errlen,
                "LUN %u is configured on this node but not on partner \"%s\": add it "
                "there or remove it here",
                ml->id, theirs->node);
        if (ml->size != tl->size)
            return twl_rdma_proto_fail(
                -EPROTO, err, errlen,
                "LUN %u is %llu bytes on this node but %llu bytes on partner \"%s\": "
                "give it the same size on both",
                ml->id, (unsigned long long)ml->size, (unsigned long long)tl->size, theirs->node);
        if (ml->block_size != tl->block_size)
            return twl_rdma_proto_fail(
                -EPROTO, err, errlen,
                "LUN %u has %u-byte blocks on this node but %u-byte blocks on partner "
                "\"%s\": give it the same block size on both",
                ml->id, ml->block_size, tl->block_size, theirs->node);
        int rc = check_owner(mine, theirs, ml, tl, err, errlen);
        if (rc)
            return rc;
    }
    for (uint32_t i = 0; i < theirs->lun_count; i++)
        if (twl_rdma_hello_find_lun(mine, theirs->luns[i].id) == NULL)
            return twl_rdma_proto_fail(
                -EPROTO, err, errlen,
                "LUN %u is configured on partner \"%s\" but not on this node: add it "
                "here or remove it there",
                theirs->luns[i].id, theirs->node);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    return 0;
}
