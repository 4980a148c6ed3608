/* The admin socket (admin.h): a thread that answers twinlunctl. */
#include "admin.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "replica.h"
#include "server_internal.h"
#include "twl_common.h"

#define APART       "admin"
#define REQUEST_MAX 1024
#define REPLY_MAX   (64 * 1024)
#define WORDS_MAX   8

struct admin {
    struct tgt_server *srv;
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_t thread;
    atomic_bool stop;
};

/* An output buffer that never overflows: what does not fit is cut. */
struct out {
    char *p;
    size_t len, used;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    if (o->used + 1 >= o->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->used, o->len - o->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->used = o->used + (size_t)n < o->len ? o->used + (size_t)n : o->len - 1;
}

/* A JSON string (names and messages here are printable; quotes and controls are escaped). */
static void put_json_str(struct out *o, const char *s)
{
    put(o, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            put(o, "\\%c", ch);
        else if (ch < 0x20)
            put(o, "\\u%04x", ch);
        else
            put(o, "%c", ch);
    }
    put(o, "\"");
}

static void put_bar(struct out *o, double fraction)
{
    int filled = (int)(fraction * 20 + 0.5);
    put(o, "[");
    for (int i = 0; i < 20; i++)
        put(o, "%c", i < filled ? '#' : '.');
    put(o, "]");
}

static int status(struct tgt_server *srv, bool json, struct out *o)
{
    const struct tgt_config *cfg = srv->cfg;
    static struct replica_status st; /* one admin thread */
    memset(&st, 0, sizeof(st));
    if (srv->pair)
        replica_status(srv->pair, &st);
    const struct tgt_target *t = &srv->targets[0];
    if (json) {
        put(o, "{\"node\":");
        put_json_str(o, cfg->node_name);
        put(o, ",\"target\":");
        put_json_str(o, t->cfg->iqn);
        put(o, ",\"portal\":\"%s:%u\"", cfg->listen_host, srv->port);
        if (srv->pair) {
            put(o, ",\"pair\":{\"partner\":");
            put_json_str(o, st.partner);
            put(o,
                ",\"connected\":%s,\"degraded\":%s,\"replicated_records\":%" PRIu64
                ",\"replicated_bytes\":%" PRIu64 ",\"unreplicated_changes\":%" PRIu64
                ",\"rate_bytes_s\":%.0f,\"capacity_bytes_s\":%.0f,\"refusal\":",
                st.connected ? "true" : "false", st.degraded ? "true" : "false",
                st.replicated_records, st.replicated_bytes, st.unreplicated_changes,
                st.rate_bytes_s, st.capacity_bytes_s);
            put_json_str(o, st.refusal);
            const struct throttle_stats *th = &st.throttle;
            put(o,
                ",\"ring_bytes\":%" PRIu64 ",\"ring_size\":%" PRIu64 ",\"ring_full\":%" PRIu64
                ",\"throttle\":{\"enabled\":%s,\"throttling\":%s,\"rate_bytes_s\":%.0f,"
                "\"tokens\":%.0f,\"queued\":%u,\"queued_bytes\":%" PRIu64
                ",\"resync_queued\":%u,\"admitted\":%" PRIu64 ",\"admitted_bytes\":%" PRIu64
                ",\"waited\":%" PRIu64 ",\"resync_admitted_bytes\":%" PRIu64
                ",\"wait_p50_us\":%" PRIu64 ",\"wait_p99_us\":%" PRIu64 ",\"wait_max_us\":%" PRIu64
                ",\"ring_peak_bytes\":%" PRIu64 ",\"window_budget_bytes\":%" PRIu64
                ",\"sessions_waiting\":%u,"
                "\"episodes\":%" PRIu64 "}}",
                st.ring_bytes, st.ring_size, st.ring_full, th->enabled ? "true" : "false",
                th->throttling ? "true" : "false", th->rate_bytes_s, th->tokens,
                th->queued[THROTTLE_CLIENT], th->queued_bytes[THROTTLE_CLIENT],
                th->queued[THROTTLE_RESYNC], th->admitted[THROTTLE_CLIENT],
                th->admitted_bytes[THROTTLE_CLIENT], th->waited[THROTTLE_CLIENT],
                th->admitted_bytes[THROTTLE_RESYNC], th->wait_p50_us, th->wait_p99_us,
                th->wait_max_us, th->ring_peak_bytes, th->window_budget, th->sessions_waiting,
                th->episodes);
        } else {
            put(o, ",\"pair\":null");
        }
        put(o, ",\"luns\":[");
        for (size_t i = 0; i < t->lun_count; i++) {
            const struct tgt_lun *l = &t->luns[i];
            const struct replica_lun_status *ls = i < st.lun_count ? &st.luns[i] : NULL;
            put(o, "%s{\"id\":%u,\"path\":", i ? "," : "", l->info.id);
            put_json_str(o, l->store.path);
            put(o, ",\"bytes\":%" PRIu64 ",\"block_size\":%u",
                l->info.block_count * l->info.block_size, l->info.block_size);
            if (ls) {
                uint64_t left = ls->dirty_bytes;
                double eta =
                    ls->resync_rate_bytes_s ? (double)left / (double)ls->resync_rate_bytes_s : 0;
                put(o,
                    ",\"role\":\"%s\",\"sync\":\"%s\",\"dirty_bytes\":%" PRIu64
                    ",\"resync_done_bytes\":%" PRIu64 ",\"resync_left_bytes\":%" PRIu64
                    ",\"resync_rate_bytes_s\":%" PRIu64 ",\"resync_eta_s\":%.0f,"
                    "\"generation\":\"%016" PRIx64 "\"",
                    ls->primary ? "primary" : "secondary", ls->sync, ls->dirty_bytes,
                    ls->resync_done_bytes, left, ls->resync_rate_bytes_s, eta, ls->generation);
            } else {
                put(o, ",\"role\":\"single\",\"sync\":null");
            }
            put(o, "}");
        }
        put(o, "]}\n");
        return 0;
    }
    put(o, "node %s, target %s, portal %s:%u\n", cfg->node_name, t->cfg->iqn, cfg->listen_host,
        srv->port);
    if (srv->pair) {
        put(o,
            "pair: %s %s%s; replicated %" PRIu64 " records (%.1f MB), %" PRIu64
            " changes without replica; rate %.1f MB/s\n",
            st.partner, st.connected ? "connected" : "NOT connected",
            st.degraded ? ", DEGRADED" : "", st.replicated_records, st.replicated_bytes / 1e6,
            st.unreplicated_changes, st.rate_bytes_s / 1e6);
        if (st.refusal[0])
            put(o, "refused: %s\n", st.refusal);
        const struct throttle_stats *th = &st.throttle;
        put(o, "ring: %.1f of %.1f MiB in flight (peak %.1f), full %" PRIu64 " times\n",
            st.ring_bytes / 1048576.0, st.ring_size / 1048576.0, th->ring_peak_bytes / 1048576.0,
            st.ring_full);
        if (!th->enabled)
            put(o, "throttle: disabled\n");
        else if (th->rate_bytes_s > 0 || th->throttling)
            put(o,
                "throttle: %s at %.1f MB/s; %u writes (%.1f MiB) waiting, %u resync copies; "
                "wait p50 %" PRIu64 " us, p99 %" PRIu64 " us\n",
                th->throttling ? "pacing" : "ready", th->rate_bytes_s / 1e6,
                th->queued[THROTTLE_CLIENT], th->queued_bytes[THROTTLE_CLIENT] / 1048576.0,
                th->queued[THROTTLE_RESYNC], th->wait_p50_us, th->wait_p99_us);
        else
            put(o, "throttle: not limiting (replication keeps up); wait p99 %" PRIu64 " us\n",
                th->wait_p99_us);
    } else {
        put(o, "pair: none (a single node)\n");
    }
    put(o, "%-4s %-10s %-15s %12s  %s\n", "LUN", "role", "sync", "dirty MiB", "resync");
    for (size_t i = 0; i < t->lun_count; i++) {
        const struct tgt_lun *l = &t->luns[i];
        const struct replica_lun_status *ls = i < st.lun_count ? &st.luns[i] : NULL;
        if (ls == NULL) {
            put(o, "%-4u %-10s %-15s %12s  %s\n", l->info.id, "single", "-", "-", "-");
            continue;
        }
        put(o, "%-4u %-10s %-15s %12.1f  ", l->info.id, ls->primary ? "primary" : "secondary",
            ls->sync, ls->dirty_bytes / 1048576.0);
        uint64_t done = ls->resync_done_bytes, left = ls->dirty_bytes;
        if (strcmp(ls->sync, "resyncing") == 0 || strcmp(ls->sync, "resync-pending") == 0) {
            double total = (double)(done + left);
            put_bar(o, total > 0 ? (double)done / total : 0);
            put(o, " %.1f/%.1f MiB, %.1f MB/s", done / 1048576.0, total / 1048576.0,
                ls->resync_rate_bytes_s / 1e6);
            if (ls->resync_rate_bytes_s)
                put(o, ", ETA %.0f s", (double)left / (double)ls->resync_rate_bytes_s);
        } else {
            put(o, "-");
        }
        put(o, "\n");
    }
    return 0;
}

static int reply_msg(struct out *o, bool json, int rc, const char *msg)
{
    if (json) {
        put(o, "{\"ok\":%s,\"message\":", rc == 0 ? "true" : "false");
        put_json_str(o, msg);
        put(o, "}\n");
    } else {
        put(o, "%s\n", msg);
    }
    return rc == 0 ? 0 : 1;
}

int admin_handle(struct tgt_server *srv, const char *line, char *outbuf, size_t out_len)
{
    struct out o = {.p = outbuf, .len = out_len};
    outbuf[0] = '\0';
    char buf[REQUEST_MAX], *words[WORDS_MAX], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", line);
    int n = 0;
    for (char *w = strtok_r(buf, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == WORDS_MAX) {
            put(&o, "too many words in the request\n");
            return 2;
        }
        words[n++] = w;
    }
    bool json = n > 0 && strcmp(words[n - 1], "--json") == 0;
    if (json)
        n--;
    char msg[512];
    if (n == 0) {
        put(&o, "empty request\n");
        return 2;
    }
    if (strcmp(words[0], "status") == 0 && n == 1)
        return status(srv, json, &o);
    if (strcmp(words[0], "promote") == 0 && n <= 2) {
        long id = -1;
        if (n == 2) {
            char *end;
            id = strtol(words[1], &end, 10);
            if (*end || id < 0 || id > 65535) {
                put(&o, "promote: '%s' is not a LUN number\n", words[1]);
                return 2;
            }
        }
        int rc = -EINVAL;
        if (srv->pair == NULL)
            snprintf(msg, sizeof(msg), "no pair: this node serves every LUN already");
        else
            rc = replica_promote(srv->pair, id, msg, sizeof(msg));
        /* every change an admin asks for is in the log, refused or not */
        TWL_WARN(APART, "promote %s: %s", n == 2 ? words[1] : "all", msg);
        return reply_msg(&o, json, rc, msg);
    }
    if (strcmp(words[0], "resolve") == 0 && n == 3 && strcmp(words[1], "--discard") == 0) {
        int rc = -EINVAL;
        if (srv->pair == NULL)
            snprintf(msg, sizeof(msg), "no pair: nothing to resolve");
        else
            rc = replica_resolve_discard(srv->pair, words[2], msg, sizeof(msg));
        TWL_WARN(APART, "resolve --discard %s: %s", words[2], msg);
        return reply_msg(&o, json, rc, msg);
    }
    put(&o, "unknown request '%s'; expected status, promote [LUN] or resolve --discard NODE\n",
        line);
    return 2;
}

static void serve_one(struct admin *a, int fd)
{
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char line[REQUEST_MAX];
    size_t got = 0;
    while (got < sizeof(line) - 1) {
        ssize_t n = read(fd, line + got, sizeof(line) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(line, '\n', got))
            break;
    }
    line[got] = '\0';
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    char *reply = malloc(REPLY_MAX);
    if (reply == NULL)
        return;
    int code = admin_handle(a->srv, line, reply, REPLY_MAX);
    char head[16];
    int hl = snprintf(head, sizeof(head), "%d\n", code);
    if (write(fd, head, (size_t)hl) == hl) {
        size_t len = strlen(reply), off = 0;
        while (off < len) {
            ssize_t n = write(fd, reply + off, len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    }
    free(reply);
}

static void *admin_main(void *arg)
{
    struct admin *a = arg;
    while (!atomic_load(&a->stop)) {
        struct pollfd pfd = {.fd = a->fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        int fd = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve_one(a, fd);
        close(fd);
    }
    return NULL;
}

int admin_start(struct tgt_server *srv, struct admin **out)
{
    *out = NULL;
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->srv = srv;
    int n =
        srv->cfg->admin_socket[0]
            ? snprintf(a->path, sizeof(a->path), "%s", srv->cfg->admin_socket)
            : snprintf(a->path, sizeof(a->path), "%s/%s", srv->cfg->state_dir, ADMIN_SOCKET_NAME);
    if (n < 0 || (size_t)n >= sizeof(a->path)) {
        TWL_ERROR(APART, "%s/%s: path too long for a Unix socket: set node.admin_socket",
                  srv->cfg->state_dir, ADMIN_SOCKET_NAME);
        free(a);
        return -ENAMETOOLONG;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, a->path, (size_t)n + 1);
    int rc;
    a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (a->fd < 0) {
        rc = -errno;
        goto err_free;
    }
    unlink(a->path);          /* a stale socket of an earlier run */
    mode_t old = umask(0177); /* created 0600: the admin socket is root-only */
    int brc = bind(a->fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (brc < 0 || listen(a->fd, 8) < 0) {
        rc = -errno;
        goto err_close;
    }
    if (pthread_create(&a->thread, NULL, admin_main, a) != 0) {
        rc = -EAGAIN;
        goto err_unlink;
    }
    TWL_INFO(APART, "admin socket %s", a->path);
    *out = a;
    return 0;
err_unlink:
    unlink(a->path);
err_close:
    close(a->fd);
err_free:
    TWL_ERROR(APART,
              "admin socket %s: %s; twinlunctl cannot reach this node (set "
              "node.admin_socket to a local file system)",
              a->path, strerror(-rc));
    free(a);
    return rc;
}

void admin_stop(struct admin *a)
{
    if (a == NULL)
        return;
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    close(a->fd);
    unlink(a->path);
    free(a);
}
