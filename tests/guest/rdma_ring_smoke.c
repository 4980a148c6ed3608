/*
 * rdma_ring_smoke: the first RDMA program of twinlun. Two processes (--server on one node,
 * --client on the other) connect with rdma_cm; the client moves --bytes of pseudo-random data
 * into the server's registered ring with one-sided RDMA WRITE + WRITE_WITH_IMM records
 * (twl_rdma); the server verifies each record's CRC32C and the CRC32C of the whole stream
 * against the END record. Both count their completions. With --linger both then keep
 * heartbeating until the peer dies (reported within 5 s: a failed work completion or the
 * heartbeat timeout) and exit with status 3. With --silent it sends nothing at all after
 * connecting (a stranger that never says hello) and only lingers.
 *
 * Exit status: 0 ok, 1 usage or setup error, 2 data verification failed, 3 peer dead or gone,
 * 4 no connection or overall timeout.
 */
#include "rdma.h"
#include "twl_common.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE   1
#define EXIT_VERIFY  2
#define EXIT_DEAD    3
#define EXIT_CONNECT 4

#define NSLOTS 64
#define NEV    32

struct opts {
    bool server;
    const char *addr;
    const char *port;
    uint64_t bytes;
    uint32_t record;
    uint32_t ring;
    int linger_s; /* 0: no linger; otherwise keep heartbeating this long waiting for death */
    bool silent;  /* no transfer: connect, then linger */
    const char *marker;
    int hb_ms, dead_ms, connect_ms, timeout_s;
};

static const char *role;

static void marker(const struct opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void marker(const struct opts *o, const char *fmt, ...)
{
    if (!o->marker)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", o->marker);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    rename(tmp, o->marker);
}

static double secs_since(uint64_t t0)
{
    return (double)(twl_now_ns() - t0) / 1e9;
}

static uint64_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        break;
    default:
        break;
    }
    return v;
}

static void fill(uint8_t *p, uint32_t len, uint64_t *state)
{
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
}

static const char *dead_str(const struct twl_rdma_event *ev)
{
    return ev->reason == TWL_RDMA_DEAD_WC_ERROR ? "work-completion-error" : "heartbeat-timeout";
}

/* After the transfer: heartbeat until the peer dies (EXIT_DEAD) or linger_s passes (0). */
static int linger(struct twl_rdma_conn *c, const struct opts *o)
{
    struct twl_rdma_event ev[NEV];
    uint64_t until = twl_now_ns() + (uint64_t)o->linger_s * 1000000000ull;
    printf("%s: lingering up to %d s, heartbeating until the peer dies\n", role, o->linger_s);
    fflush(stdout);
    while (twl_now_ns() < until) {
        int n = twl_rdma_poll(c, ev, NEV, 100);
        if (n < 0)
            return EXIT_USAGE;
        for (int i = 0; i < n; i++) {
            if (ev[i].type == TWL_RDMA_EV_PEER_DEAD) {
                printf("%s: peer dead (%s%s%s), last heartbeat %llu ms before detection\n", role,
                       dead_str(&ev[i]), ev[i].reason == TWL_RDMA_DEAD_WC_ERROR ? ": " : "",
                       ev[i].reason == TWL_RDMA_DEAD_WC_ERROR ? "wc error" : "",
                       (unsigned long long)ev[i].silent_ms);
                marker(o, "dead %s %llu\n", dead_str(&ev[i]), (unsigned long long)ev[i].silent_ms);
                return EXIT_DEAD;
            }
            if (ev[i].type == TWL_RDMA_EV_DISCONNECTED) {
                printf("%s: peer disconnected\n", role);
                marker(o, "dead disconnected 0\n");
                return EXIT_DEAD;
            }
            if (ev[i].type == TWL_RDMA_EV_REC)
                twl_rdma_rx_release(c);
        }
    }
    printf("%s: linger over, peer still alive\n", role);
    return 0;
}

static int run_client(struct twl_rdma_conn *c, const struct opts *o)
{
    struct twl_rdma_event ev[NEV];
    size_t slab_len = (size_t)NSLOTS * o->record;
    uint8_t *slab = aligned_alloc(4096, (slab_len + 4095) & ~(size_t)4095);
    if (!slab) {
        fprintf(stderr, "%s: out of memory\n", role);
        return EXIT_USAGE;
    }
    struct twl_rdma_buf *buf = twl_rdma_buf_reg(c, slab, slab_len);
    if (!buf) {
        free(slab);
        return EXIT_USAGE;
    }
    uint64_t state = 0x9E3779B97F4A7C15ull, sent = 0, seq = 0, done = 0;
    uint64_t deadline = twl_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    uint32_t crc = 0, pending_len = 0;
    bool pending = false, end_sent = false;
    int rc = 0;
    uint64_t t0 = twl_now_ns();

    for (;;) {
        /* Queue records while slots and the peer's ring allow. */
        while (!end_sent && seq - done < NSLOTS) {
            uint8_t *p = slab + (seq % NSLOTS) * o->record;
            uint32_t flags = 0;
            if (!pending) {
                if (sent < o->bytes) {
                    uint64_t left = o->bytes - sent;
                    pending_len = left < o->record ? (uint32_t)left : o->record;
                    fill(p, pending_len, &state);
                    crc = twl_crc32c_update(crc, p, pending_len);
                } else {
                    twl_put_be32(p, crc);
                    twl_put_be64(p + 4, o->bytes);
                    pending_len = 12;
                }
                pending = true;
            }
            if (sent >= o->bytes)
                flags = TWL_RDMA_REC_END;
            int64_t s = twl_rdma_send(c, buf, p, pending_len, flags);
            if (s == -EAGAIN)
                break;
            if (s < 0) {
                fprintf(stderr, "%s: send: %s\n", role, strerror((int)-s));
                rc = EXIT_DEAD;
                goto out;
            }
            pending = false;
            seq++;
            if (flags & TWL_RDMA_REC_END)
                end_sent = true;
            else
                sent += pending_len;
        }
        if (end_sent && done == seq && twl_rdma_tx_idle(c))
            break;
        if (twl_now_ns() > deadline) {
            fprintf(stderr, "%s: transfer not done within %d s (%llu of %llu bytes)\n", role,
                    o->timeout_s, (unsigned long long)sent, (unsigned long long)o->bytes);
            rc = EXIT_CONNECT;
            goto out;
        }
        int n = twl_rdma_poll(c, ev, NEV, 100);
        if (n < 0) {
            rc = EXIT_USAGE;
            goto out;
        }
        for (int i = 0; i < n; i++) {
            switch (ev[i].type) {
            case TWL_RDMA_EV_TX_DONE:
                done++;
                break;
            case TWL_RDMA_EV_CONSUMED:
                break;
            case TWL_RDMA_EV_REC:
                twl_rdma_rx_release(c);
                break;
            case TWL_RDMA_EV_PEER_DEAD:
                printf("%s: peer dead during the transfer (%s)\n", role, dead_str(&ev[i]));
                rc = EXIT_DEAD;
                goto out;
            case TWL_RDMA_EV_DISCONNECTED:
                printf("%s: peer disconnected during the transfer\n", role);
                rc = EXIT_DEAD;
                goto out;
            }
        }
    }
    double t = secs_since(t0);
    struct twl_rdma_stats st;
    twl_rdma_get_stats(c, &st);
    printf("%s: sent %llu bytes in %llu records in %.2f s (%.1f MB/s), %llu send completions, "
           "crc32c %08x\n",
           role, (unsigned long long)o->bytes, (unsigned long long)st.tx_records, t,
           (double)o->bytes / 1e6 / t, (unsigned long long)st.tx_completions, crc);
    fflush(stdout);
    marker(o, "done\n");
    if (o->linger_s)
        rc = linger(c, o);
out:
    /* buf is deregistered by twl_rdma_conn_close, before the memory goes. */
    return rc;
}

static int run_server(struct twl_rdma_conn *c, const struct opts *o)
{
    struct twl_rdma_event ev[NEV];
    uint64_t deadline = twl_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    uint64_t bytes = 0, t0 = 0;
    uint32_t crc = 0;
    bool ended = false;
    int rc = 0;

    while (!ended) {
        if (twl_now_ns() > deadline) {
            fprintf(stderr, "%s: no END record within %d s (%llu bytes so far)\n", role,
                    o->timeout_s, (unsigned long long)bytes);
            return EXIT_CONNECT;
        }
        int n = twl_rdma_poll(c, ev, NEV, 100);
        if (n < 0)
            return n == -EBADMSG || n == -EPROTO ? EXIT_VERIFY : EXIT_USAGE;
        for (int i = 0; i < n; i++) {
            switch (ev[i].type) {
            case TWL_RDMA_EV_CONSUMED:
                break;
            case TWL_RDMA_EV_REC:
                if (!t0)
                    t0 = twl_now_ns();
                if (ev[i].flags & TWL_RDMA_REC_END) {
                    const uint8_t *p = ev[i].data;
                    uint32_t want_crc = ev[i].len >= 12 ? twl_get_be32(p) : 0;
                    uint64_t want_bytes = ev[i].len >= 12 ? twl_get_be64(p + 4) : 0;
                    ended = true;
                    if (want_crc != crc || want_bytes != bytes) {
                        printf("%s: VERIFY FAILED: got %llu bytes crc32c %08x, sender says %llu "
                               "bytes crc32c %08x\n",
                               role, (unsigned long long)bytes, crc, (unsigned long long)want_bytes,
                               want_crc);
                        rc = EXIT_VERIFY;
                    }
                } else {
                    crc = twl_crc32c_update(crc, ev[i].data, ev[i].len);
                    bytes += ev[i].len;
                }
                break;
            case TWL_RDMA_EV_PEER_DEAD:
                printf("%s: peer dead during the transfer (%s)\n", role, dead_str(&ev[i]));
                return EXIT_DEAD;
            case TWL_RDMA_EV_DISCONNECTED:
                printf("%s: peer disconnected during the transfer\n", role);
                return EXIT_DEAD;
            case TWL_RDMA_EV_TX_DONE:
                break;
            }
        }
        /* Every record of this batch is processed: give the ring space back. */
        twl_rdma_rx_release(c);
    }
    if (rc)
        return rc;
    double t = secs_since(t0);
    struct twl_rdma_stats st;
    twl_rdma_get_stats(c, &st);
    printf("%s: received %llu bytes in %llu records in %.2f s, %llu receive completions, "
           "crc32c %08x verified\n",
           role, (unsigned long long)bytes, (unsigned long long)st.rx_records, t,
           (unsigned long long)st.rx_completions, crc);
    fflush(stdout);
    marker(o, "done\n");
    if (o->linger_s)
        return linger(c, o);
    /* Wait for the client's disconnect so it can see our last consumed position. */
    uint64_t until = twl_now_ns() + 10000000000ull;
    while (twl_now_ns() < until) {
        int n = twl_rdma_poll(c, ev, NEV, 100);
        if (n < 0)
            break;
        for (int i = 0; i < n; i++)
            if (ev[i].type == TWL_RDMA_EV_DISCONNECTED || ev[i].type == TWL_RDMA_EV_PEER_DEAD)
                return 0;
    }
    printf("%s: the client did not disconnect within 10 s\n", role);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: rdma_ring_smoke --server|--client --addr ADDR [--port PORT] [--bytes N[kMG]]\n"
            "       [--record N] [--ring N] [--linger SEC] [--marker FILE] [--hb-ms MS]\n"
            "       [--dead-ms MS] [--connect-ms MS] [--timeout SEC] [--silent] [--verbose]\n"
            "exit: 0 ok, 1 usage/setup, 2 verification failed, 3 peer dead, 4 no connection\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.port = "7471",
                     .bytes = 64ull << 20,
                     .record = 64u << 10,
                     .ring = 4u << 20,
                     .hb_ms = 200,
                     .dead_ms = 2000,
                     .connect_ms = 60000,
                     .timeout_s = 240};
    static const struct option lo[] = {
        {"server", no_argument, NULL, 's'},        {"client", no_argument, NULL, 'c'},
        {"addr", required_argument, NULL, 'a'},    {"port", required_argument, NULL, 'p'},
        {"bytes", required_argument, NULL, 'b'},   {"record", required_argument, NULL, 'r'},
        {"ring", required_argument, NULL, 'R'},    {"linger", required_argument, NULL, 'l'},
        {"marker", required_argument, NULL, 'm'},  {"hb-ms", required_argument, NULL, 'H'},
        {"dead-ms", required_argument, NULL, 'D'}, {"connect-ms", required_argument, NULL, 'C'},
        {"timeout", required_argument, NULL, 't'}, {"verbose", no_argument, NULL, 'v'},
        {"silent", no_argument, NULL, 'S'},        {NULL, 0, NULL, 0}};
    int role_set = 0, ch;

    while ((ch = getopt_long(argc, argv, "sca:p:b:r:R:l:m:H:D:C:t:vS", lo, NULL)) != -1) {
        switch (ch) {
        case 's':
            o.server = true;
            role_set++;
            break;
        case 'c':
            o.server = false;
            role_set++;
            break;
        case 'a':
            o.addr = optarg;
            break;
        case 'p':
            o.port = optarg;
            break;
        case 'b':
            o.bytes = parse_size(optarg);
            break;
        case 'r':
            o.record = (uint32_t)parse_size(optarg);
            break;
        case 'R':
            o.ring = (uint32_t)parse_size(optarg);
            break;
        case 'l':
            o.linger_s = atoi(optarg);
            break;
        case 'm':
            o.marker = optarg;
            break;
        case 'H':
            o.hb_ms = atoi(optarg);
            break;
        case 'D':
            o.dead_ms = atoi(optarg);
            break;
        case 'C':
            o.connect_ms = atoi(optarg);
            break;
        case 't':
            o.timeout_s = atoi(optarg);
            break;
        case 'v':
            twl_log_set_level(TWL_LOG_DEBUG);
            break;
        case 'S':
            o.silent = true;
            break;
        default:
            usage();
            return EXIT_USAGE;
        }
    }
    if (role_set != 1 || !o.addr || o.record < 16 || o.record % 8 || (o.silent && !o.linger_s)) {
        usage();
        return EXIT_USAGE;
    }
    role = o.server ? "server" : "client";
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct twl_rdma_opts ro = {.addr = o.addr,
                               .port = o.port,
                               .listen = o.server,
                               .ring_size = o.ring,
                               .connect_timeout_ms = o.connect_ms,
                               .heartbeat_ms = o.hb_ms,
                               .dead_ms = o.dead_ms,
                               .retry_count = 6};
    struct twl_rdma_conn *c;
    uint64_t t0 = twl_now_ns();
    int rc = twl_rdma_conn_open(&c, &ro);
    if (rc) {
        fprintf(stderr, "%s: no connection: %s\n", role, strerror(-rc));
        return rc == -EINVAL ? EXIT_USAGE : EXIT_CONNECT;
    }
    printf("%s: connected in %.2f s\n", role, secs_since(t0));
    if (o.silent)
        rc = linger(c, &o);
    else
        rc = o.server ? run_server(c, &o) : run_client(c, &o);
    twl_rdma_conn_close(c);
    printf("%s: exit %d\n", role, rc);
    return rc;
}
