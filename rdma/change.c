/*
 * Change records: the payload of one ring record describes one replicated change.
 *
 * Wire format (big-endian), a fixed 64-byte header, the extents, then the data:
 *
 *   offset  size  field
 *        0     4  magic "TWLC" (0x54574c43)
 *        4     2  version (TWL_RDMA_PROTO_VERSION)
 *        6     2  header length: 64 + 16 * extent count (where the data starts)
 *        8     8  seq: the change's replication sequence number
 *       16     8  generation: the owner's data generation when the change was made
 *       24     8  lba (0 for UNMAP)
 *       32     4  lun
 *       36     4  blocks (0 for UNMAP)
 *       40     4  block size: a power of two, 512 .. 65536
 *       44     4  data length: DATA blocks * block size, SAME block size or 0 (zeros), UNMAP 0
 *       48     2  extent count: UNMAP 1 .. 256, others 0
 *       50     1  kind: 1 DATA, 2 SAME, 3 UNMAP
 *       51     1  flags: bit 0 FUA; the others are 0
 *       52     8  zero
 *       60     4  header CRC32C of bytes [0, 60) and [60 + 4, header length)
 *       64  16*n  extents: lba (8), blocks (4, >= 1), zero (4)
 *   header length  data length bytes of data
 *
 * The payload is exactly header + data: the ring record's length says where it ends. The
 * data has no CRC of its own: the ring record header's payload CRC covers the whole payload
 * (header and data) and the connection checks it before the record is handed on. The header
 * has its own CRC anyway because it outlives the ring: the partner keeps it in its inflight
 * bookkeeping and resync reads it back, where no payload CRC travels with it.
 *
 * Reserved bytes and flags must be zero, so a later version that uses them is never read as
 * this one by mistake.
 */
#include "proto.h"
#include "proto_internal.h"

#include "twl_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CHANGE_MAGIC   0x54574c43u /* "TWLC" */
#define OFF_CRC        60u
#define FLAG_FUA       0x1u
#define MIN_BLOCK_SIZE 512u
#define MAX_BLOCK_SIZE 65536u

static const char *kind_name(enum twl_rdma_change_kind k)
{
    switch (k) {
    case TWL_RDMA_CHANGE_DATA:
        return "DATA";
    case TWL_RDMA_CHANGE_SAME:
        return "SAME";
    case TWL_RDMA_CHANGE_UNMAP:
        return "UNMAP";
    }
    return "?";
}

/* A range [lba, lba + blocks) is addressable when its end fits in 64 bits. */
static bool range_ok(uint64_t lba, uint32_t blocks)
{
    return lba <= UINT64_MAX - blocks;
}

/* The rules both sides hold a change to; rc is what breaking one returns. */
static int check(const struct twl_rdma_change *c, int rc, char *err, size_t errlen)
{
    const char *kn = kind_name(c->kind);
    if (c->kind != TWL_RDMA_CHANGE_DATA && c->kind != TWL_RDMA_CHANGE_SAME &&
        c->kind != TWL_RDMA_CHANGE_UNMAP)
        return twl_rdma_proto_fail(rc, err, errlen, "unknown change kind %d", (int)c->kind);
    if (c->block_size < MIN_BLOCK_SIZE || c->block_size > MAX_BLOCK_SIZE ||
        (c->block_size & (c->block_size - 1)) != 0)
        return twl_rdma_proto_fail(rc, err, errlen,
                                   "%s block size %u is not a power of two in 512..65536", kn,
                                   c->block_size);
    if (c->kind == TWL_RDMA_CHANGE_UNMAP) {
        if (c->extent_count == 0 || c->extent_count > TWL_RDMA_CHANGE_MAX_EXTENTS)
            return twl_rdma_proto_fail(rc, err, errlen, "UNMAP with %u extents; expected 1..%u",
                                       c->extent_count, TWL_RDMA_CHANGE_MAX_EXTENTS);
        if (c->lba != 0 || c->blocks != 0)
            return twl_rdma_proto_fail(
                rc, err, errlen,
                "UNMAP with lba %llu and %u blocks; expected 0 (the extents say which)",
                (unsigned long long)c->lba, c->blocks);
        if (c->data_len != 0)
            return twl_rdma_proto_fail(
                rc, err, errlen, "UNMAP carries %u bytes of data; expected none", c->data_len);
        for (uint32_t i = 0; i < c->extent_count; i++) {
            const struct twl_rdma_extent *e = &c->extents[i];
            if (e->blocks == 0)
                return twl_rdma_proto_fail(rc, err, errlen, "UNMAP extent %u has 0 blocks", i);
            if (!range_ok(e->lba, e->blocks))
                return twl_rdma_proto_fail(rc, err, errlen,
                                           "UNMAP extent %u (lba %llu, %u blocks) ends past 2^64",
                                           i, (unsigned long long)e->lba, e->blocks);
        }
        return 0;
    }
    if (c->extent_count != 0)
        return twl_rdma_proto_fail(rc, err, errlen, "%s with %u extents; only UNMAP has extents",
                                   kn, c->extent_count);
    if (c->blocks == 0)
        return twl_rdma_proto_fail(rc, err, errlen, "%s of 0 blocks", kn);
    if (!range_ok(c->lba, c->blocks))
        return twl_rdma_proto_fail(rc, err, errlen, "%s at lba %llu of %u blocks ends past 2^64",
                                   kn, (unsigned long long)c->lba, c->blocks);
    if (c->kind == TWL_RDMA_CHANGE_DATA) {
        uint64_t want = (uint64_t)c->blocks * c->block_size;
        if (c->data_len != want)
            return twl_rdma_proto_fail(
                rc, err, errlen,
                "DATA of %u blocks of %u bytes carries %u bytes of data; expected %llu", c->blocks,
                c->block_size, c->data_len, (unsigned long long)want);
    } else if (c->data_len != c->block_size && c->data_len != 0) {
        return twl_rdma_proto_fail(
            rc, err, errlen,
            "SAME carries %u bytes of data; expected one block (%u) or none (zeros)", c->data_len,
            c->block_size);
    }
    return 0;
}

size_t twl_rdma_change_header_len(const struct twl_rdma_change *c)
{
    return TWL_RDMA_CHANGE_FIXED_LEN + (size_t)c->extent_count * TWL_RDMA_CHANGE_EXTENT_LEN;
}

int twl_rdma_change_check(const struct twl_rdma_change *c, char *err, size_t errlen)
{
    return check(c, -EINVAL, err, errlen);
}

/* The header CRC skips its own four bytes. */
static uint32_t header_crc(const uint8_t *h, size_t hdr_len)
{
    uint32_t crc = twl_crc32c_update(0, h, OFF_CRC);
    return twl_crc32c_update(crc, h + OFF_CRC + 4, hdr_len - OFF_CRC - 4);
}

int twl_rdma_change_encode(const struct twl_rdma_change *c, const uint8_t *data, uint8_t *out,
                           size_t out_len)
{
    int rc = check(c, -EINVAL, NULL, 0);
    if (rc)
        return rc;
    size_t hl = twl_rdma_change_header_len(c);
    if (out_len < hl || (data != NULL && out_len - hl < c->data_len))
        return -ENOSPC;
    memset(out, 0, hl);
    twl_put_be32(out, CHANGE_MAGIC);
    twl_put_be16(out + 4, TWL_RDMA_PROTO_VERSION);
    twl_put_be16(out + 6, (uint16_t)hl);
    twl_put_be64(out + 8, c->seq);
    twl_put_be64(out + 16, c->generation);
    twl_put_be64(out + 24, c->lba);
    twl_put_be32(out + 32, c->lun);
    twl_put_be32(out + 36, c->blocks);
    twl_put_be32(out + 40, c->block_size);
    twl_put_be32(out + 44, c->data_len);
    twl_put_be16(out + 48, (uint16_t)c->extent_count);
    out[50] = (uint8_t)c->kind;
    out[51] = c->fua ? FLAG_FUA : 0;
    for (uint32_t i = 0; i < c->extent_count; i++) {
        uint8_t *e = out + TWL_RDMA_CHANGE_FIXED_LEN + i * TWL_RDMA_CHANGE_EXTENT_LEN;
        twl_put_be64(e, c->extents[i].lba);
        twl_put_be32(e + 8, c->extents[i].blocks);
    }
    twl_put_be32(out + OFF_CRC, header_crc(out, hl));
    if (data != NULL && c->data_len > 0)
        memcpy(out + hl, data, c->data_len);
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

int twl_rdma_change_decode(const uint8_t *rec, size_t len, struct twl_rdma_change *out,
                           const uint8_t **data)
{
    char *err = out->err;
    size_t el = sizeof(out->err);
    err[0] = '\0';
    *data = NULL;
    /* Integrity first: until the CRC matches, no field is worth interpreting. */
    if (rec == NULL || len < TWL_RDMA_CHANGE_FIXED_LEN)
        return twl_rdma_proto_fail(-EBADMSG, err, el,
                                   "truncated: %zu bytes, a change header has at least %u",
                                   rec == NULL ? (size_t)0 : len, TWL_RDMA_CHANGE_FIXED_LEN);
    if (twl_get_be32(rec) != CHANGE_MAGIC)
        return twl_rdma_proto_fail(-EBADMSG, err, el, "not a change record (magic 0x%08x)",
                                   twl_get_be32(rec));
    size_t hl = twl_get_be16(rec + 6);
    if (hl < TWL_RDMA_CHANGE_FIXED_LEN || hl > len)
        return twl_rdma_proto_fail(
            -EBADMSG, err, el, "truncated: header length %zu in a record of %zu bytes", hl, len);
    uint32_t crc = header_crc(rec, hl);
    if (twl_get_be32(rec + OFF_CRC) != crc)
        return twl_rdma_proto_fail(-EBADMSG, err, el, "header CRC 0x%08x, computed 0x%08x",
                                   twl_get_be32(rec + OFF_CRC), crc);

    uint16_t ver = twl_get_be16(rec + 4);
    if (ver != TWL_RDMA_PROTO_VERSION)
        return twl_rdma_proto_fail(-EPROTO, err, el,
                                   "change record version %u; this build reads %u", ver,
                                   TWL_RDMA_PROTO_VERSION);
    out->seq = twl_get_be64(rec + 8);
    out->generation = twl_get_be64(rec + 16);
    out->lba = twl_get_be64(rec + 24);
    out->lun = twl_get_be32(rec + 32);
    out->blocks = twl_get_be32(rec + 36);
    out->block_size = twl_get_be32(rec + 40);
    out->data_len = twl_get_be32(rec + 44);
    out->extent_count = twl_get_be16(rec + 48);
    out->kind = (enum twl_rdma_change_kind)rec[50];
    out->fua = (rec[51] & FLAG_FUA) != 0;
    if ((rec[51] & ~FLAG_FUA) != 0)
        return twl_rdma_proto_fail(-EPROTO, err, el, "unknown flags 0x%02x", rec[51]);
    if (!all_zero(rec + 52, 8))
        return twl_rdma_proto_fail(-EPROTO, err, el, "reserved header bytes 52..59 are not zero");
    if (out->extent_count > TWL_RDMA_CHANGE_MAX_EXTENTS)
        return twl_rdma_proto_fail(-EPROTO, err, el, "%u extents; at most %u", out->extent_count,
                                   TWL_RDMA_CHANGE_MAX_EXTENTS);
    size_t want_hl = twl_rdma_change_header_len(out);
    if (hl != want_hl)
        return twl_rdma_proto_fail(-EPROTO, err, el,
                                   "header length %zu with %u extents; expected %zu", hl,
                                   out->extent_count, want_hl);
    for (uint32_t i = 0; i < out->extent_count; i++) {
        const uint8_t *e = rec + TWL_RDMA_CHANGE_FIXED_LEN + i * TWL_RDMA_CHANGE_EXTENT_LEN;
        out->extents[i].lba = twl_get_be64(e);
        out->extents[i].blocks = twl_get_be32(e + 8);
        if (twl_get_be32(e + 12) != 0)
            return twl_rdma_proto_fail(-EPROTO, err, el, "reserved bytes of extent %u are not zero",
                                       i);
    }
    int rc = check(out, -EPROTO, err, el);
    if (rc)
        return rc;
    /* Only now is data_len known to be sane; a record that ends elsewhere was cut or padded. */
    if (len - hl != out->data_len)
        return twl_rdma_proto_fail(-EBADMSG, err, el,
                                   "record of %zu bytes; header (%zu) and data (%u) make %llu", len,
                                   hl, out->data_len, (unsigned long long)hl + out->data_len);
    *data = out->data_len > 0 ? rec + hl : NULL;
    return 0;
}

const char *twl_rdma_change_strerror(const struct twl_rdma_change *c)
{
    return c->err;
}

int twl_rdma_proto_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

bool twl_rdma_change_within(const struct twl_rdma_change *c, uint64_t blocks)
{
    if (c->kind != TWL_RDMA_CHANGE_UNMAP)
        return c->lba < blocks && c->blocks <= blocks - c->lba;
    for (uint32_t i = 0; i < c->extent_count; i++)
        if (c->extents[i].lba >= blocks || c->extents[i].blocks > blocks - c->extents[i].lba)
            return false;
    return true;
}
