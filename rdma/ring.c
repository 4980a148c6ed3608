/* Ring placement and the wire formats of records and connection info. */
#include "rdma.h"

#include "twl_common.h"

#include <errno.h>
#include <string.h>

#define REC_MAGIC   0x54574c72u /* "TWLr" */
#define INFO_MAGIC  0x54574c49u /* "TWLI" */
#define INFO_VER    3u          /* 3: the nonce */
#define DRING_MAGIC 0x54574c44u /* "TWLD" */
#define DRING_VER   1u
#define DRING_SLOT  64u

uint64_t twl_rdma_rec_len(uint32_t payload_len)
{
    uint64_t n = (uint64_t)TWL_RDMA_REC_HDR_LEN + payload_len;
    return (n + TWL_RDMA_REC_ALIGN - 1) & ~(uint64_t)(TWL_RDMA_REC_ALIGN - 1);
}

uint64_t twl_rdma_ring_place(uint64_t ring_size, uint64_t pos, uint64_t rec_len)
{
    uint64_t off = pos & (ring_size - 1);
    if (off + rec_len > ring_size)
        return pos - off + ring_size;
    return pos;
}

bool twl_rdma_ring_fits(uint64_t ring_size, uint64_t consumed, uint64_t start, uint64_t rec_len)
{
    return start >= consumed && start + rec_len - consumed <= ring_size;
}

/* Header layout: magic 0, flags 4, seq 8, len 16, payload_crc 20, zero 24..59, hdr_crc 60. */
void twl_rdma_rec_hdr_encode(uint8_t out[TWL_RDMA_REC_HDR_LEN], const struct twl_rdma_rec_hdr *h)
{
    memset(out, 0, TWL_RDMA_REC_HDR_LEN);
    twl_put_be32(out, REC_MAGIC);
    twl_put_be32(out + 4, h->flags);
    twl_put_be64(out + 8, h->seq);
    twl_put_be32(out + 16, h->len);
    twl_put_be32(out + 20, h->payload_crc);
    twl_put_be32(out + 60, twl_crc32c(out, 60));
}

int twl_rdma_rec_hdr_decode(const uint8_t in[TWL_RDMA_REC_HDR_LEN], struct twl_rdma_rec_hdr *h)
{
    if (twl_get_be32(in) != REC_MAGIC || twl_get_be32(in + 60) != twl_crc32c(in, 60))
        return -EBADMSG;
    h->flags = twl_get_be32(in + 4);
    h->seq = twl_get_be64(in + 8);
    h->len = twl_get_be32(in + 16);
    h->payload_crc = twl_get_be32(in + 20);
    return 0;
}

/* Info layout: magic 0, version 4 (16 bits), flags 6 (16 bits), ring_addr 8, ring_rkey 16,
 * ring_size 20, ctrl_addr 24, ctrl_rkey 32, recv_depth 36, nonce 40..55. */
void twl_rdma_info_encode(uint8_t out[TWL_RDMA_INFO_LEN], const struct twl_rdma_info *info)
{
    memset(out, 0, TWL_RDMA_INFO_LEN);
    twl_put_be32(out, INFO_MAGIC);
    twl_put_be16(out + 4, INFO_VER);
    twl_put_be16(out + 6, (uint16_t)info->flags);
    twl_put_be64(out + 8, info->ring_addr);
    twl_put_be32(out + 16, info->ring_rkey);
    twl_put_be32(out + 20, info->ring_size);
    twl_put_be64(out + 24, info->ctrl_addr);
    twl_put_be32(out + 32, info->ctrl_rkey);
    twl_put_be32(out + 36, info->recv_depth);
    memcpy(out + 40, info->nonce, TWL_RDMA_NONCE_LEN);
}

int twl_rdma_info_decode(const uint8_t *in, size_t len, struct twl_rdma_info *info)
{
    if (in == NULL || len < TWL_RDMA_INFO_LEN || twl_get_be32(in) != INFO_MAGIC ||
        twl_get_be16(in + 4) != INFO_VER)
        return -EPROTO;
    info->flags = twl_get_be16(in + 6);
    info->ring_addr = twl_get_be64(in + 8);
    info->ring_rkey = twl_get_be32(in + 16);
    info->ring_size = twl_get_be32(in + 20);
    info->ctrl_addr = twl_get_be64(in + 24);
    info->ctrl_rkey = twl_get_be32(in + 32);
    info->recv_depth = twl_get_be32(in + 36);
    memcpy(info->nonce, in + 40, TWL_RDMA_NONCE_LEN);
    if (info->ring_size < 2 * TWL_RDMA_REC_ALIGN ||
        (info->ring_size & (info->ring_size - 1)) != 0 || info->recv_depth == 0)
        return -EPROTO;
    return 0;
}

void twl_rdma_dring_write(uint8_t *hdr, const struct twl_rdma_dring_state *st)
{
    uint8_t *out = hdr + twl_rdma_dring_slot(st);
    memset(out, 0, DRING_SLOT);
    twl_put_be32(out, DRING_MAGIC);
    twl_put_be32(out + 4, DRING_VER);
    twl_put_be64(out + 8, st->ring_size);
    twl_put_be64(out + 16, st->epoch);
    twl_put_be64(out + 24, st->pos);
    twl_put_be64(out + 32, st->seq);
    twl_put_be32(out + 60, twl_crc32c(out, 60));
}

size_t twl_rdma_dring_slot(const struct twl_rdma_dring_state *st)
{
    return (st->epoch % 2) * DRING_SLOT;
}

static bool dring_slot_read(const uint8_t *in, struct twl_rdma_dring_state *st)
{
    if (twl_get_be32(in) != DRING_MAGIC || twl_get_be32(in + 4) != DRING_VER ||
        twl_get_be32(in + 60) != twl_crc32c(in, 60))
        return false;
    st->ring_size = twl_get_be64(in + 8);
    st->epoch = twl_get_be64(in + 16);
    st->pos = twl_get_be64(in + 24);
    st->seq = twl_get_be64(in + 32);
    return st->ring_size >= 2 * TWL_RDMA_REC_ALIGN && (st->ring_size & (st->ring_size - 1)) == 0;
}

int twl_rdma_dring_read(const uint8_t *hdr, struct twl_rdma_dring_state *st)
{
    struct twl_rdma_dring_state a, b;
    bool va = dring_slot_read(hdr, &a), vb = dring_slot_read(hdr + DRING_SLOT, &b);
    if (!va && !vb)
        return -ENOENT;
    /* serial number order: the write after epoch 2^64 - 1 (0) is the newer one */
    *st = va && (!vb || (int64_t)(a.epoch - b.epoch) > 0) ? a : b;
    return 0;
}

/* The record of sequence seq starting at ring position start, if it is intact there. */
static bool replay_at(const uint8_t *ring, uint64_t rs, uint64_t pos, uint64_t start, uint64_t seq,
                      struct twl_rdma_rec_hdr *h)
{
    uint64_t off = start & (rs - 1);
    if (off + TWL_RDMA_REC_HDR_LEN > rs || twl_rdma_rec_hdr_decode(ring + off, h) != 0 ||
        h->seq != seq)
        return false;
    uint64_t rec_len = twl_rdma_rec_len(h->len);
    /* the sender put it exactly where placement puts a record of this length */
    return rec_len <= rs && twl_rdma_ring_place(rs, pos, rec_len) == start &&
           (h->flags & TWL_RDMA_REC_CRC) &&
           twl_crc32c(ring + off + TWL_RDMA_REC_HDR_LEN, h->len) == h->payload_crc;
}

int64_t twl_rdma_ring_replay(const uint8_t *ring, uint64_t ring_size, uint64_t *pos, uint64_t *seq,
                             twl_rdma_replay_fn fn, void *ctx)
{
    int64_t n = 0;
    for (;;) {
        struct twl_rdma_rec_hdr h;
        uint64_t start = *pos;
        /* where it is: at pos, or at the ring's start when it did not fit before the end */
        if (!replay_at(ring, ring_size, *pos, start, *seq, &h)) {
            start = (*pos | (ring_size - 1)) + 1;
            if ((*pos & (ring_size - 1)) == 0 || !replay_at(ring, ring_size, *pos, start, *seq, &h))
                return n;
        }
        h.flags &= ~TWL_RDMA_REC_CRC;
        int rc = fn(ctx, &h, ring + (start & (ring_size - 1)) + TWL_RDMA_REC_HDR_LEN);
        if (rc < 0)
            return rc;
        *pos = start + twl_rdma_rec_len(h.len);
        (*seq)++;
        n++;
    }
}
