/*
 * The handshake: the partner's hello, decoded and checked against this node's own (node
 * "alpha", partner "beta", three LUNs). The first byte says whether the harness repairs the
 * length and CRC fields first (bit 0): without the repair the fuzzer rarely gets past the
 * integrity checks, with it the rules behind them are reached. Checked beyond "no crash":
 * - decode answers 0, -EBADMSG or -EPROTO, a refusal with its reason;
 * - a hello that decodes re-encodes to the same bytes, which decode to an equal hello;
 * - check() answers 0 with an empty message or -EPROTO with one line, the same verdict both
 *   ways round (both nodes run it), and a hello never pairs with itself.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "twl_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_hello: %s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define GIB (1024ull * 1024 * 1024)

static struct twl_rdma_hello mine, theirs, again;
static uint8_t out[TWL_RDMA_HELLO_MAX_LEN];

static void add_lun(struct twl_rdma_hello *h, uint32_t id, uint64_t size, uint32_t bs,
                    const char *owner)
{
    struct twl_rdma_hello_lun *l = &h->luns[h->lun_count++];
    l->id = id;
    l->size = size;
    l->block_size = bs;
    snprintf(l->owner, sizeof(l->owner), "%s", owner);
    for (int g = 0; g < 4; g++)
        l->gens[g] = 0x0102030405060708ull * (id + 1) + (uint64_t)g;
    l->dirty_regions = id;
    l->flags = id % 2 ? TWL_RDMA_HELLO_PRIMARY : 0;
}

/* This node, as the tests make it. */
static void make_mine(void)
{
    twl_rdma_hello_init(&mine);
    snprintf(mine.node, sizeof(mine.node), "alpha");
    snprintf(mine.partner, sizeof(mine.partner), "beta");
    snprintf(mine.iqn, sizeof(mine.iqn), "iqn.2024-01.org.example:twin");
    mine.generation = 0x1111;
    add_lun(&mine, 0, 1 * GIB, 512, "alpha");
    add_lun(&mine, 1, 2 * GIB, 4096, "beta");
    add_lun(&mine, 5, 64 * 1024 * 1024, 512, "alpha");
}

/* A verdict of check(): 0 and "", or -EPROTO and one line. */
static int checked(const struct twl_rdma_hello *a, const struct twl_rdma_hello *b)
{
    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = twl_rdma_hello_check(a, b, err, sizeof(err));
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == 0) {
        CHECK(err[0] == '\0');
    } else {
        CHECK(rc == -EPROTO);
        CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
    }
    /* without a message buffer the verdict is the same */
    CHECK(twl_rdma_hello_check(a, b, NULL, 0) == rc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mine.version == 0)
        make_mine();
    if (size == 0)
        return 0;
    bool fix = data[0] & 1;
    size_t len = size - 1;
    uint8_t *in = malloc(len ? len : 1); /* exactly len bytes: ASan sees a read past them */
    CHECK(in != NULL);
    if (len)
        memcpy(in, data + 1, len);
    if (fix && len >= 16) {
        twl_put_be32(in + 8, (uint32_t)len);
        uint32_t crc = twl_crc32c_update(0, in, 12);
        twl_put_be32(in + 12, twl_crc32c_update(crc, in + 16, len - 16));
    }

    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = twl_rdma_hello_decode(len ? in : NULL, len, &theirs, err, sizeof(err));
    if (rc != 0) {
        CHECK(rc == -EBADMSG || rc == -EPROTO);
        CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        /* another version: check() words it, and refuses */
        if (rc == -EPROTO && theirs.version != TWL_RDMA_PROTO_VERSION && theirs.version != 0)
            CHECK(checked(&mine, &theirs) == -EPROTO);
        free(in);
        return 0;
    }
    CHECK(theirs.version == TWL_RDMA_PROTO_VERSION);
    CHECK(theirs.lun_count <= TWL_RDMA_HELLO_MAX_LUNS);
    CHECK(twl_rdma_hello_len(&theirs) == len);

    /* round trip: the same bytes, then an equal hello */
    int n = twl_rdma_hello_encode(&theirs, out, sizeof(out));
    CHECK(n >= 0 && (size_t)n == len);
    CHECK(memcmp(out, in, len) == 0);
    CHECK(twl_rdma_hello_encode(&theirs, out, len - 1) == -ENOSPC);
    CHECK(twl_rdma_hello_decode(out, len, &again, NULL, 0) == 0);
    CHECK(memcmp(&theirs, &again, sizeof(again)) == 0);
    for (uint32_t i = 0; i < theirs.lun_count; i++)
        CHECK(twl_rdma_hello_find_lun(&theirs, theirs.luns[i].id) == &theirs.luns[i]);

    /* both nodes run the check, each from its side: they agree */
    int a = checked(&mine, &theirs);
    int b = checked(&theirs, &mine);
    CHECK((a == 0) == (b == 0));
    CHECK(checked(&theirs, &theirs) == -EPROTO); /* a node connected to itself */
    free(in);
    return 0;
}
