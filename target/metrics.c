/* The metrics endpoint (metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iostat.h"
#include "replica.h"
#include "server_internal.h"
#include "textbuf.h"
#include "twl_common.h"

#define MPART       "metrics"
#define REQUEST_MAX 4096
#define BODY_MAX    (4u << 20)

struct metrics {
    struct tgt_server *srv;
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    char *body; /* the thread's */
};

static void family(struct textbuf *t, const char *name, const char *type, const char *help)
{
    textbuf_put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void lun_figures(struct textbuf *t, struct tgt_server *srv)
{
    static const struct {
        const char *name, *help;
    } counters[] = {
        {"twinlun_lun_commands_total", "SCSI commands completed, by kind"},
        {"twinlun_lun_bytes_total", "bytes moved (Data-In for reads, Data-Out for writes)"},
    };
    /* one snapshot per LUN for every family, so the families agree with each other */
    size_t count = 0;
    for (size_t ti = 0; ti < srv->target_count; ti++)
        count += srv->targets[ti].lun_count;
    struct iostat_snapshot *snaps = calloc(count ? count : 1, sizeof(*snaps));
    struct tgt_lun **luns = calloc(count ? count : 1, sizeof(*luns));
    if (snaps == NULL || luns == NULL) {
        free(snaps);
        free(luns);
        return;
    }
    size_t k = 0;
    for (size_t ti = 0; ti < srv->target_count; ti++)
        for (size_t i = 0; i < srv->targets[ti].lun_count; i++, k++) {
            luns[k] = &srv->targets[ti].luns[i];
            iostat_snapshot(&luns[k]->stats, twl_now_ns(), &snaps[k]);
        }
    for (int f = 0; f < 2; f++) {
        family(t, counters[f].name, "counter", counters[f].help);
        for (k = 0; k < count; k++)
            for (int op = 0; op < IOSTAT_OPS; op++)
                textbuf_put(t, "%s{lun=\"%u\",op=\"%s\"} %" PRIu64 "\n", counters[f].name,
                            luns[k]->info.id, iostat_op_names[op],
                            f == 0 ? snaps[k].op[op].commands : snaps[k].op[op].bytes);
    }
    family(t, "twinlun_lun_errors_total", "counter", "SCSI commands that did not end GOOD");
    for (k = 0; k < count; k++)
        textbuf_put(t, "twinlun_lun_errors_total{lun=\"%u\"} %" PRIu64 "\n", luns[k]->info.id,
                    snaps[k].errors);
    family(t, "twinlun_lun_latency_seconds", "histogram",
           "time from a command's header to its status");
    for (k = 0; k < count; k++)
        for (int op = 0; op < IOSTAT_OPS; op++) {
            const struct iostat_counts *c = &snaps[k].op[op];
            uint64_t cumulative = 0;
            for (int b = 0; b < IOSTAT_BUCKETS; b++) {
                cumulative += c->buckets[b];
                if (b < IOSTAT_BUCKETS - 1)
                    textbuf_put(
                        t,
                        "twinlun_lun_latency_seconds_bucket{lun=\"%u\",op=\"%s\",le=\"%g\"} "
                        "%" PRIu64 "\n",
                        luns[k]->info.id, iostat_op_names[op], iostat_bucket_bounds_us[b] / 1e6,
                        cumulative);
                else
                    textbuf_put(
                        t,
                        "twinlun_lun_latency_seconds_bucket{lun=\"%u\",op=\"%s\",le=\"+Inf\"} "
                        "%" PRIu64 "\n",
                        luns[k]->info.id, iostat_op_names[op], cumulative);
            }
            textbuf_put(t, "twinlun_lun_latency_seconds_sum{lun=\"%u\",op=\"%s\"} %.9f\n",
                        luns[k]->info.id, iostat_op_names[op], (double)c->latency_ns_sum / 1e9);
            textbuf_put(t, "twinlun_lun_latency_seconds_count{lun=\"%u\",op=\"%s\"} %" PRIu64 "\n",
                        luns[k]->info.id, iostat_op_names[op], c->commands);
        }
    free(snaps);
    free(luns);
}

static void pair_figures(struct textbuf *t, struct tgt_server *srv)
{
    static struct replica_status st; /* one metrics thread */
    replica_status(srv->pair, &st);
    static const struct {
        const char *name, *help;
    } per_lun[] = {
        {"twinlun_lun_primary", "1 when this node serves the LUN and replicates it"},
        {"twinlun_lun_dirty_bytes", "bytes of regions in which the copies may differ"},
        {"twinlun_lun_resync_left_bytes", "bytes the resync has still to copy"},
        {"twinlun_lun_resync_rate_bytes", "bytes per second of the current or last resync"},
    };
    for (int f = 0; f < 4; f++) {
        family(t, per_lun[f].name, "gauge", per_lun[f].help);
        for (size_t i = 0; i < st.lun_count; i++) {
            const struct replica_lun_status *l = &st.luns[i];
            uint64_t v = f == 0   ? l->primary
                         : f == 1 ? l->dirty_bytes
                         : f == 2 ? (strcmp(l->sync, "in-sync") ? l->dirty_bytes : 0)
                                  : l->resync_rate_bytes_s;
            textbuf_put(t, "%s{lun=\"%u\"} %" PRIu64 "\n", per_lun[f].name, l->id, v);
        }
    }
    family(t, "twinlun_pair_connected", "gauge", "1 while the backplane to the partner is up");
    textbuf_put(t, "twinlun_pair_connected %d\n", st.connected);
    family(t, "twinlun_pair_degraded", "gauge", "1 while writes go without replica");
    textbuf_put(t, "twinlun_pair_degraded %d\n", st.degraded);
    family(t, "twinlun_replication_records_total", "counter", "records the partner acknowledged");
    textbuf_put(t, "twinlun_replication_records_total %" PRIu64 "\n", st.replicated_records);
    family(t, "twinlun_replication_bytes_total", "counter", "bytes the partner acknowledged");
    textbuf_put(t, "twinlun_replication_bytes_total %" PRIu64 "\n", st.replicated_bytes);
    family(t, "twinlun_replication_unreplicated_total", "counter",
           "changes that completed without a replica");
    textbuf_put(t, "twinlun_replication_unreplicated_total %" PRIu64 "\n", st.unreplicated_changes);
    family(t, "twinlun_replication_rate_bytes", "gauge", "replication rate, bytes per second");
    textbuf_put(t, "twinlun_replication_rate_bytes %.0f\n", st.rate_bytes_s);
    family(t, "twinlun_replication_lag_bytes", "gauge",
           "bytes sent or queued for the partner and not yet acknowledged");
    textbuf_put(t, "twinlun_replication_lag_bytes %" PRIu64 "\n", st.ring_bytes);
    const struct throttle_stats *th = &st.throttle;
    family(t, "twinlun_throttle_pacing", "gauge", "1 while client writes are paced");
    textbuf_put(t, "twinlun_throttle_pacing %d\n", th->throttling);
    family(t, "twinlun_throttle_rate_bytes", "gauge", "the pace granted, bytes per second");
    textbuf_put(t, "twinlun_throttle_rate_bytes %.0f\n", th->rate_bytes_s);
    family(t, "twinlun_throttle_waits_total", "counter", "client writes that had to wait");
    textbuf_put(t, "twinlun_throttle_waits_total %" PRIu64 "\n", th->waited[THROTTLE_CLIENT]);
    family(t, "twinlun_throttle_queued", "gauge", "client writes waiting now");
    textbuf_put(t, "twinlun_throttle_queued %u\n", th->queued[THROTTLE_CLIENT]);
    family(t, "twinlun_throttle_wait_p99_seconds", "gauge",
           "99th percentile wait of the last 4096 admissions");
    textbuf_put(t, "twinlun_throttle_wait_p99_seconds %.6f\n", th->wait_p99_us / 1e6);
}

size_t metrics_render(struct tgt_server *srv, char *buf, size_t len)
{
    struct textbuf t = {.p = buf, .len = len};
    buf[0] = '\0';
    lun_figures(&t, srv);
    unsigned sessions = server_session_count(srv);
    family(&t, "twinlun_sessions", "gauge", "iSCSI sessions in full feature phase");
    textbuf_put(&t, "twinlun_sessions %u\n", sessions);
    if (srv->pair)
        pair_figures(&t, srv);
    return t.used;
}

static void send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void answer(int fd, const char *status, const char *type, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

static void serve_one(struct metrics *m, int fd)
{
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[REQUEST_MAX + 1];
    size_t got = 0;
    while (got < REQUEST_MAX) {
        ssize_t n = recv(fd, req + got, REQUEST_MAX - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[got] = '\0';
    static const char text[] = "text/plain; charset=utf-8";
    char method[16], path[256];
    if ((!strstr(req, "\r\n\r\n") && !strstr(req, "\n\n")) ||
        sscanf(req, "%15s %255s HTTP/1.", method, path) != 2) {
        static const char bad[] = "bad request\n";
        answer(fd, "400 Bad Request", text, bad, sizeof(bad) - 1);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char body[] = "only GET\n";
        answer(fd, "405 Method Not Allowed", text, body, sizeof(body) - 1);
        return;
    }
    path[strcspn(path, "?")] = '\0';
    if (strcmp(path, "/metrics") != 0) {
        static const char body[] = "not found; the figures are at /metrics\n";
        answer(fd, "404 Not Found", text, body, sizeof(body) - 1);
        return;
    }
    size_t len = metrics_render(m->srv, m->body, BODY_MAX);
    answer(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", m->body,
           strcmp(method, "HEAD") == 0 ? 0 : len);
}

static void *metrics_main(void *arg)
{
    struct metrics *m = arg;
    while (!atomic_load(&m->stop)) {
        struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve_one(m, fd);
        close(fd);
    }
    return NULL;
}

int metrics_start(struct tgt_server *srv, struct metrics **out)
{
    const struct tgt_config *cfg = srv->cfg;
    *out = NULL;
    if (!cfg->metrics_enabled)
        return 0;
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->srv = srv;
    m->fd = -1;
    int rc;
    m->body = malloc(BODY_MAX);
    if (m->body == NULL) {
        rc = -ENOMEM;
        goto err_free;
    }
    char why[128];
    rc =
        server_listen(cfg->metrics_host, cfg->metrics_port, 16, &m->fd, &m->port, why, sizeof(why));
    if (rc) {
        TWL_ERROR(MPART, "metrics.listen %s:%u: %s; no metrics endpoint", cfg->metrics_host,
                  cfg->metrics_port, why);
        goto err_body;
    }
    if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
        rc = -EAGAIN;
        TWL_ERROR(MPART, "metrics: no thread; no metrics endpoint");
        goto err_close;
    }
    TWL_INFO(MPART, "metrics at http://%s:%u/metrics", cfg->metrics_host, m->port);
    *out = m;
    return 0;
err_close:
    close(m->fd);
err_body:
    free(m->body);
err_free:
    free(m);
    return rc;
}

void metrics_stop(struct metrics *m)
{
    if (m == NULL)
        return;
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);
    close(m->fd);
    free(m->body);
    free(m);
}

uint16_t metrics_port(const struct metrics *m)
{
    return m->port;
}
