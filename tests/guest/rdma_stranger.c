/*
 * rdma_stranger: a host that does not know the pair's secret, for the guest tests. It connects
 * to a node's backplane address like a partner would, sends a hello whose MAC is not
 * authenticated, and right behind it a well-formed change record writing one block of
 * "STRANGER" bytes to LUN --lun at --lba, then waits until the node hangs up.
 *
 * The node must refuse the hello and never apply the change: not at once, not when it settles
 * its durable ring after the connection, not when it replays the ring at its next start.
 *
 * Exit status: 3 the node dropped the connection (expected), 0 it did not within --linger
 * seconds, 1 usage or setup error, 4 no connection.
 */
#include "proto.h"
#include "rdma.h"
#include "twl_common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_HELLO  0x2u /* backplane.c's record flag for the handshake */
#define BLOCK_SIZE 512u

static int send_retry(struct twl_rdma_conn *c, struct twl_rdma_buf *buf, const void *p,
                      uint32_t len, uint32_t flags)
{
    struct twl_rdma_event ev[16];
    for (int tries = 0; tries < 100; tries++) {
        int64_t rc = twl_rdma_send(c, buf, p, len, flags);
        if (rc >= 0)
            return 0;
        if (rc != -EAGAIN)
            return (int)rc;
        if (twl_rdma_poll(c, ev, 16, 10) < 0)
            return -ENOTCONN;
    }
    return -EAGAIN;
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *port = "7471";
    uint32_t lun = 0;
    uint64_t lba = 0;
    int linger_s = 30, ch;
    static const struct option lo[] = {
        {"addr", required_argument, NULL, 'a'},   {"port", required_argument, NULL, 'p'},
        {"lun", required_argument, NULL, 'u'},    {"lba", required_argument, NULL, 'l'},
        {"linger", required_argument, NULL, 'L'}, {NULL, 0, NULL, 0}};
    while ((ch = getopt_long(argc, argv, "a:p:u:l:L:", lo, NULL)) != -1) {
        switch (ch) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = optarg;
            break;
        case 'u':
            lun = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'l':
            lba = strtoull(optarg, NULL, 0);
            break;
        case 'L':
            linger_s = atoi(optarg);
            break;
        default:
            addr = NULL;
            optind = argc;
            break;
        }
    }
    if (addr == NULL) {
        fprintf(stderr, "usage: rdma_stranger --addr ADDR [--port PORT] [--lun N] [--lba L] "
                        "[--linger SEC]\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct twl_rdma_opts ro = {.addr = addr,
                               .port = port,
                               .ring_size = 1u << 20,
                               .connect_timeout_ms = 20000,
                               .heartbeat_ms = 200,
                               .dead_ms = 2000,
                               .retry_count = 6};
    struct twl_rdma_conn *c;
    int rc = twl_rdma_conn_open(&c, &ro);
    if (rc) {
        fprintf(stderr, "stranger: no connection: %s\n", strerror(-rc));
        return 4;
    }
    size_t cap = 64u << 10;
    uint8_t *mem = aligned_alloc(4096, cap);
    struct twl_rdma_buf *buf = mem ? twl_rdma_buf_reg(c, mem, cap) : NULL;
    if (buf == NULL) {
        twl_rdma_conn_close(c);
        return 1;
    }
    /* the hello: any bytes, ending in a MAC that is not keyed with the pair's secret */
    uint8_t *hello = mem;
    uint32_t hello_len = 512;
    memset(hello, 0x5a, hello_len);
    /* the change, as an owner would send it */
    static struct twl_rdma_change chg;
    chg.seq = 1;
    chg.kind = TWL_RDMA_CHANGE_DATA;
    chg.lun = lun;
    chg.lba = lba;
    chg.blocks = 1;
    chg.block_size = BLOCK_SIZE;
    chg.data_len = BLOCK_SIZE;
    uint8_t data[BLOCK_SIZE];
    for (uint32_t i = 0; i < BLOCK_SIZE; i++)
        data[i] = (uint8_t) "STRANGER"[i % 8];
    uint8_t *rec = mem + 4096;
    uint32_t rec_len = (uint32_t)twl_rdma_change_header_len(&chg) + BLOCK_SIZE;
    rc = twl_rdma_change_encode(&chg, data, rec, cap - 4096);
    if (rc == 0)
        rc = send_retry(c, buf, hello, hello_len, REC_HELLO);
    if (rc == 0)
        rc = send_retry(c, buf, rec, rec_len, 0);
    if (rc) {
        fprintf(stderr, "stranger: sending: %s\n", strerror(-rc));
        twl_rdma_conn_close(c);
        return 1;
    }
    printf("stranger: sent a hello and a change of LUN %u LBA %llu\n", lun,
           (unsigned long long)lba);

    int status = 0;
    uint64_t until = twl_now_ns() + (uint64_t)linger_s * 1000000000ull;
    struct twl_rdma_event ev[16];
    while (status == 0 && twl_now_ns() < until) {
        int n = twl_rdma_poll(c, ev, 16, 100);
        if (n < 0)
            status = 3;
        for (int i = 0; i < n; i++) {
            if (ev[i].type == TWL_RDMA_EV_PEER_DEAD || ev[i].type == TWL_RDMA_EV_DISCONNECTED)
                status = 3;
            else if (ev[i].type == TWL_RDMA_EV_REC)
                twl_rdma_rx_release(c); /* the node's own hello */
        }
    }
    printf("stranger: %s\n", status == 3 ? "the node hung up" : "still connected");
    twl_rdma_conn_close(c);
    free(mem);
    return status;
}
