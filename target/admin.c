/* The admin socket (admin.h): a thread that answers twinlunctl. */
#include "admin.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "iostat.h"
#include "metrics.h"
#include "replica.h"
#include "server_internal.h"
#include "textbuf.h"
#include "twl_common.h"

#define APART       "admin"
#define REQUEST_MAX 1024
#define REPLY_MAX   (1024 * 1024) /* room for a thousand sessions */
#define WORDS_MAX   8

struct admin {
    struct tgt_server *srv;
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_t thread;
    atomic_bool stop;
};

static void put_bar(struct textbuf *o, double fraction)
{
    int filled = (int)(fraction * 20 + 0.5);
    textbuf_put(o, "[");
    for (int i = 0; i < 20; i++)
        textbuf_put(o, "%c", i < filled ? '#' : '.');
    textbuf_put(o, "]");
}

static const char *alua_name(int state)
{
    switch (state) {
    case SCSI_ALUA_ACTIVE_OPTIMIZED:
        return "active/optimized";
    case SCSI_ALUA_ACTIVE_NON_OPTIMIZED:
        return "active/non-optimized";
    case SCSI_ALUA_STANDBY:
        return "standby";
    case SCSI_ALUA_UNAVAILABLE:
        return "unavailable";
    case SCSI_ALUA_TRANSITIONING:
        return "transitioning";
    default:
        return "unknown";
    }
}

/* Defined by the sanitizers' runtimes only. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* The process's resident memory, and the bytes malloc has handed out and not had back (exact,
 * unlike the resident size, which keeps freed pages: what a leak check compares). */
static void memory_use(uint64_t *rss, uint64_t *heap)
{
    *rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size, resident;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) == 2)
            *rss = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    /* under a sanitizer, malloc is the sanitizer's, and mallinfo2 answers 0 */
    if (__sanitizer_get_current_allocated_bytes) {
        *heap = __sanitizer_get_current_allocated_bytes();
        return;
    }
    struct mallinfo2 mi = mallinfo2();
    *heap = mi.uordblks + mi.hblkhd;
}

static int status(struct tgt_server *srv, bool json, struct textbuf *o)
{
    const struct tgt_config *cfg = srv->cfg;
    static struct replica_status st; /* one admin thread */
    memset(&st, 0, sizeof(st));
    if (srv->pair)
        replica_status(srv->pair, &st);
    const struct tgt_target *t = &srv->targets[0];
    if (json) {
        textbuf_put(o, "{\"node\":");
        textbuf_json_str(o, cfg->node_name);
        textbuf_put(o, ",\"target\":");
        textbuf_json_str(o, t->cfg->iqn);
        textbuf_put(o, ",\"portal\":\"%s:%u\"", cfg->listen_host, srv->port);
        if (srv->metrics)
            textbuf_put(o, ",\"metrics\":\"http://%s:%u/metrics\"", cfg->metrics_host,
                        metrics_port(srv->metrics));
        else
            textbuf_put(o, ",\"metrics\":null");
        textbuf_put(o, ",\"sessions\":%u", server_session_count(srv));
        uint64_t rss, heap;
        memory_use(&rss, &heap);
        textbuf_put(o, ",\"memory\":{\"rss_bytes\":%" PRIu64 ",\"heap_in_use_bytes\":%" PRIu64 "}",
                    rss, heap);
        if (srv->pair) {
            textbuf_put(o, ",\"pair\":{\"partner\":");
            textbuf_json_str(o, st.partner);
            textbuf_put(o,
                        ",\"connected\":%s,\"degraded\":%s,\"replicated_records\":%" PRIu64
                        ",\"replicated_bytes\":%" PRIu64 ",\"unreplicated_changes\":%" PRIu64
                        ",\"rate_bytes_s\":%.0f,\"capacity_bytes_s\":%.0f,\"refusal\":",
                        st.connected ? "true" : "false", st.degraded ? "true" : "false",
                        st.replicated_records, st.replicated_bytes, st.unreplicated_changes,
                        st.rate_bytes_s, st.capacity_bytes_s);
            textbuf_json_str(o, st.refusal);
            const struct throttle_stats *th = &st.throttle;
            textbuf_put(o,
                        ",\"ring_bytes\":%" PRIu64 ",\"ring_size\":%" PRIu64
                        ",\"ring_full\":%" PRIu64
                        ",\"throttle\":{\"enabled\":%s,\"throttling\":%s,\"rate_bytes_s\":%.0f,"
                        "\"tokens\":%.0f,\"queued\":%u,\"queued_bytes\":%" PRIu64
                        ",\"resync_queued\":%u,\"admitted\":%" PRIu64 ",\"admitted_bytes\":%" PRIu64
                        ",\"waited\":%" PRIu64 ",\"resync_admitted_bytes\":%" PRIu64
                        ",\"wait_p50_us\":%" PRIu64 ",\"wait_p99_us\":%" PRIu64
                        ",\"wait_max_us\":%" PRIu64 ",\"ring_peak_bytes\":%" PRIu64
                        ",\"window_budget_bytes\":%" PRIu64 ",\"sessions_waiting\":%u,"
                        "\"episodes\":%" PRIu64 "}}",
                        st.ring_bytes, st.ring_size, st.ring_full, th->enabled ? "true" : "false",
                        th->throttling ? "true" : "false", th->rate_bytes_s, th->tokens,
                        th->queued[THROTTLE_CLIENT], th->queued_bytes[THROTTLE_CLIENT],
                        th->queued[THROTTLE_RESYNC], th->admitted[THROTTLE_CLIENT],
                        th->admitted_bytes[THROTTLE_CLIENT], th->waited[THROTTLE_CLIENT],
                        th->admitted_bytes[THROTTLE_RESYNC], th->wait_p50_us, th->wait_p99_us,
                        th->wait_max_us, th->ring_peak_bytes, th->window_budget,
                        th->sessions_waiting, th->episodes);
        } else {
            textbuf_put(o, ",\"pair\":null");
        }
        textbuf_put(o, ",\"luns\":[");
        for (size_t i = 0; i < t->lun_count; i++) {
            const struct tgt_lun *l = &t->luns[i];
            const struct replica_lun_status *ls = i < st.lun_count ? &st.luns[i] : NULL;
            struct iostat_snapshot io;
            iostat_snapshot(&l->stats, twl_now_ns(), &io);
            textbuf_put(o, "%s{\"id\":%u,\"path\":", i ? "," : "", l->info.id);
            textbuf_json_str(o, l->store.path);
            textbuf_put(o,
                        ",\"bytes\":%" PRIu64 ",\"block_size\":%u,\"alua\":\"%s\""
                        ",\"read_rate_bytes_s\":%" PRIu64 ",\"write_rate_bytes_s\":%" PRIu64,
                        l->info.block_count * l->info.block_size, l->info.block_size,
                        alua_name(server_alua_state(srv, l)), io.op[IOSTAT_READ].rate_bytes_s,
                        io.op[IOSTAT_WRITE].rate_bytes_s);
            if (ls) {
                uint64_t left = ls->dirty_bytes;
                double eta =
                    ls->resync_rate_bytes_s ? (double)left / (double)ls->resync_rate_bytes_s : 0;
                textbuf_put(o,
                            ",\"role\":\"%s\",\"sync\":\"%s\",\"dirty_bytes\":%" PRIu64
                            ",\"resync_done_bytes\":%" PRIu64 ",\"resync_left_bytes\":%" PRIu64
                            ",\"resync_rate_bytes_s\":%" PRIu64 ",\"resync_eta_s\":%.0f,"
                            "\"generation\":\"%016" PRIx64 "\"",
                            ls->primary ? "primary" : "secondary", ls->sync, ls->dirty_bytes,
                            ls->resync_done_bytes, left, ls->resync_rate_bytes_s, eta,
                            ls->generation);
            } else {
                textbuf_put(o, ",\"role\":\"single\",\"sync\":null");
            }
            textbuf_put(o, "}");
        }
        textbuf_put(o, "]}\n");
        return 0;
    }
    textbuf_put(o, "node %s, target %s, portal %s:%u, %u session%s\n", cfg->node_name, t->cfg->iqn,
                cfg->listen_host, srv->port, server_session_count(srv),
                server_session_count(srv) == 1 ? "" : "s");
    if (srv->metrics)
        textbuf_put(o, "metrics: http://%s:%u/metrics\n", cfg->metrics_host,
                    metrics_port(srv->metrics));
    if (srv->pair) {
        textbuf_put(o,
                    "pair: %s %s%s; replicated %" PRIu64 " records (%.1f MB), %" PRIu64
                    " changes without replica; rate %.1f MB/s\n",
                    st.partner, st.connected ? "connected" : "NOT connected",
                    st.degraded ? ", DEGRADED" : "", st.replicated_records,
                    st.replicated_bytes / 1e6, st.unreplicated_changes, st.rate_bytes_s / 1e6);
        if (st.refusal[0])
            textbuf_put(o, "refused: %s\n", st.refusal);
        const struct throttle_stats *th = &st.throttle;
        textbuf_put(o, "ring: %.1f of %.1f MiB in flight (peak %.1f), full %" PRIu64 " times\n",
                    st.ring_bytes / 1048576.0, st.ring_size / 1048576.0,
                    th->ring_peak_bytes / 1048576.0, st.ring_full);
        if (!th->enabled)
            textbuf_put(o, "throttle: disabled\n");
        else if (th->rate_bytes_s > 0 || th->throttling)
            textbuf_put(
                o,
                "throttle: %s at %.1f MB/s; %u writes (%.1f MiB) waiting, %u resync copies; "
                "wait p50 %" PRIu64 " us, p99 %" PRIu64 " us\n",
                th->throttling ? "pacing" : "ready", th->rate_bytes_s / 1e6,
                th->queued[THROTTLE_CLIENT], th->queued_bytes[THROTTLE_CLIENT] / 1048576.0,
                th->queued[THROTTLE_RESYNC], th->wait_p50_us, th->wait_p99_us);
        else
            textbuf_put(o,
                        "throttle: not limiting (replication keeps up); wait p99 %" PRIu64 " us\n",
                        th->wait_p99_us);
    } else {
        textbuf_put(o, "pair: none (a single node)\n");
    }
    textbuf_put(o, "%-4s %-10s %-15s %9s  %-17s %15s  %s\n", "LUN", "role", "sync", "dirty MiB",
                "ALUA", "read/write MB/s", "resync");
    for (size_t i = 0; i < t->lun_count; i++) {
        const struct tgt_lun *l = &t->luns[i];
        const struct replica_lun_status *ls = i < st.lun_count ? &st.luns[i] : NULL;
        struct iostat_snapshot io;
        iostat_snapshot(&l->stats, twl_now_ns(), &io);
        char dirty[32] = "-", rates[48];
        if (ls)
            snprintf(dirty, sizeof(dirty), "%.1f", ls->dirty_bytes / 1048576.0);
        snprintf(rates, sizeof(rates), "%.1f/%.1f", io.op[IOSTAT_READ].rate_bytes_s / 1e6,
                 io.op[IOSTAT_WRITE].rate_bytes_s / 1e6);
        textbuf_put(o, "%-4u %-10s %-15s %9s  %-17s %15s  ", l->info.id,
                    ls ? (ls->primary ? "primary" : "secondary") : "single", ls ? ls->sync : "-",
                    dirty, alua_name(server_alua_state(srv, l)), rates);
        if (ls == NULL) {
            textbuf_put(o, "-\n");
            continue;
        }
        uint64_t done = ls->resync_done_bytes, left = ls->dirty_bytes;
        if (strcmp(ls->sync, "resyncing") == 0 || strcmp(ls->sync, "resync-pending") == 0 ||
            strcmp(ls->sync, "resync-paused") == 0) {
            double total = (double)(done + left);
            put_bar(o, total > 0 ? (double)done / total : 0);
            textbuf_put(o, " %.1f/%.1f MiB, %.1f MB/s", done / 1048576.0, total / 1048576.0,
                        ls->resync_rate_bytes_s / 1e6);
            if (ls->resync_rate_bytes_s)
                textbuf_put(o, ", ETA %.0f s", (double)left / (double)ls->resync_rate_bytes_s);
        } else {
            textbuf_put(o, "-");
        }
        textbuf_put(o, "\n");
    }
    return 0;
}

static int reply_msg(struct textbuf *o, bool json, int rc, const char *msg)
{
    if (json) {
        textbuf_put(o, "{\"ok\":%s,\"message\":", rc == 0 ? "true" : "false");
        textbuf_json_str(o, msg);
        textbuf_put(o, "}\n");
    } else {
        textbuf_put(o, "%s\n", msg);
    }
    return rc == 0 ? 0 : 1;
}

/* Every session: who, from where, and what was negotiated. The fields read here are set before
 * the session is registered and do not change while it is (sessions_lock). */
static int sessions(struct tgt_server *srv, bool json, struct textbuf *o)
{
    uint64_t now = twl_now_ns();
    unsigned n = 0;
    if (json)
        textbuf_put(o, "{\"sessions\":[");
    else
        textbuf_put(o, "%-5s %-14s %-22s %-8s %s\n", "TSIH", "ISID", "peer", "age",
                    "initiator / target");
    pthread_mutex_lock(&srv->sessions_lock);
    for (struct conn *c = srv->sessions; c; c = c->sess_next, n++) {
        char isid[13];
        for (int i = 0; i < 6; i++)
            snprintf(isid + 2 * i, 3, "%02x", c->isid[i]);
        const struct login_params *lp = &c->params;
        double age = (double)(now - c->connected_ns) / 1e9;
        if (!json) {
            textbuf_put(o, "%-5u %-14s %-22s %7.0fs %s\n", c->tsih, isid, c->peer, age,
                        c->initiator);
            textbuf_put(
                o,
                "      target %s; digests header %s data %s; MaxRecvDSL %u/%u, MaxBurst %u, "
                "FirstBurst %u, InitialR2T %s, ImmediateData %s, MaxOutstandingR2T %u\n",
                c->target->cfg->iqn, lp->header_digest ? "CRC32C" : "None",
                lp->data_digest ? "CRC32C" : "None", lp->max_recv_dsl, lp->max_xmit_dsl,
                lp->max_burst, lp->first_burst, lp->initial_r2t ? "Yes" : "No",
                lp->immediate_data ? "Yes" : "No", lp->max_outstanding_r2t);
            continue;
        }
        textbuf_put(o, "%s{\"initiator\":", n ? "," : "");
        textbuf_json_str(o, c->initiator);
        textbuf_put(o, ",\"isid\":\"%s\",\"tsih\":%u,\"target\":", isid, c->tsih);
        textbuf_json_str(o, c->target->cfg->iqn);
        textbuf_put(o, ",\"peer\":");
        textbuf_json_str(o, c->peer);
        textbuf_put(o, ",\"portal\":\"%s:%u\",\"age_s\":%.1f", srv->cfg->listen_host, srv->port,
                    age);
        textbuf_put(o,
                    ",\"params\":{\"HeaderDigest\":\"%s\",\"DataDigest\":\"%s\","
                    "\"MaxRecvDataSegmentLength\":%u,\"InitiatorMaxRecvDataSegmentLength\":%u,"
                    "\"MaxBurstLength\":%u,\"FirstBurstLength\":%u,\"InitialR2T\":%s,"
                    "\"ImmediateData\":%s,\"MaxOutstandingR2T\":%u,\"DefaultTime2Wait\":%u,"
                    "\"DefaultTime2Retain\":%u,\"MaxConnections\":%u}}",
                    lp->header_digest ? "CRC32C" : "None", lp->data_digest ? "CRC32C" : "None",
                    lp->max_recv_dsl, lp->max_xmit_dsl, lp->max_burst, lp->first_burst,
                    lp->initial_r2t ? "true" : "false", lp->immediate_data ? "true" : "false",
                    lp->max_outstanding_r2t, lp->time2wait, lp->time2retain, lp->max_connections);
    }
    pthread_mutex_unlock(&srv->sessions_lock);
    if (json)
        textbuf_put(o, "]}\n");
    else if (n == 0)
        textbuf_put(o, "no sessions\n");
    return 0;
}

/* Every LUN: what it is, who serves it, its ALUA state here and its I/O so far. */
static int luns(struct tgt_server *srv, bool json, struct textbuf *o)
{
    static struct replica_status st; /* one admin thread */
    memset(&st, 0, sizeof(st));
    if (srv->pair)
        replica_status(srv->pair, &st);
    if (json)
        textbuf_put(o, "{\"luns\":[");
    else
        textbuf_put(o, "%-4s %-9s %-10s %-17s %-14s %10s %10s %10s %10s %6s\n", "LUN", "size",
                    "role", "ALUA", "sync", "reads", "read MB", "writes", "write MB", "errors");
    unsigned n = 0;
    for (size_t ti = 0; ti < srv->target_count; ti++) {
        const struct tgt_target *t = &srv->targets[ti];
        for (size_t i = 0; i < t->lun_count; i++, n++) {
            struct tgt_lun *l = &t->luns[i];
            const struct replica_lun_status *ls = NULL;
            for (size_t k = 0; ti == 0 && k < st.lun_count; k++)
                if (st.luns[k].id == l->info.id)
                    ls = &st.luns[k];
            const char *alua = alua_name(server_alua_state(srv, l));
            const char *role = ls ? (ls->primary ? "primary" : "secondary") : "single";
            const char *owner = l->cfg->owner[0] ? l->cfg->owner : srv->cfg->node_name;
            struct iostat_snapshot io;
            iostat_snapshot(&l->stats, twl_now_ns(), &io);
            uint64_t bytes = l->info.block_count * l->info.block_size;
            if (!json) {
                textbuf_put(o,
                            "%-4u %7.1fG %-10s %-17s %-14s %10" PRIu64 " %10.1f %10" PRIu64
                            " %10.1f %6" PRIu64 "\n",
                            l->info.id, bytes / 1073741824.0, role, alua, ls ? ls->sync : "-",
                            io.op[IOSTAT_READ].commands, io.op[IOSTAT_READ].bytes / 1e6,
                            io.op[IOSTAT_WRITE].commands, io.op[IOSTAT_WRITE].bytes / 1e6,
                            io.errors);
                textbuf_put(o, "     %s (%s), owner %s, serial %s%s\n", l->store.path, t->cfg->iqn,
                            owner, l->info.serial, l->cfg->read_only ? ", read-only" : "");
                continue;
            }
            textbuf_put(o, "%s{\"id\":%u,\"target\":", n ? "," : "", l->info.id);
            textbuf_json_str(o, t->cfg->iqn);
            textbuf_put(o, ",\"path\":");
            textbuf_json_str(o, l->store.path);
            textbuf_put(o, ",\"bytes\":%" PRIu64 ",\"block_size\":%u,\"serial\":", bytes,
                        l->info.block_size);
            textbuf_json_str(o, l->info.serial);
            textbuf_put(o, ",\"owner\":");
            textbuf_json_str(o, owner);
            textbuf_put(
                o, ",\"read_only\":%s,\"thin\":%s,\"role\":\"%s\",\"alua\":\"%s\",\"sync\":",
                l->cfg->read_only ? "true" : "false", l->cfg->thin ? "true" : "false", role, alua);
            if (ls)
                textbuf_put(o, "\"%s\",\"dirty_bytes\":%" PRIu64, ls->sync, ls->dirty_bytes);
            else
                textbuf_put(o, "null,\"dirty_bytes\":0");
            textbuf_put(o, ",\"errors\":%" PRIu64, io.errors);
            for (int op = 0; op < IOSTAT_OPS; op++) {
                const struct iostat_counts *c = &io.op[op];
                textbuf_put(o,
                            ",\"%s\":{\"commands\":%" PRIu64 ",\"bytes\":%" PRIu64
                            ",\"rate_bytes_s\":%" PRIu64 ",\"latency_mean_us\":%.0f,"
                            "\"latency_p50_us\":%.0f,\"latency_p99_us\":%.0f}",
                            iostat_op_names[op], c->commands, c->bytes, c->rate_bytes_s,
                            c->commands ? (double)c->latency_ns_sum / 1e3 / (double)c->commands
                                        : 0.0,
                            iostat_quantile_us(c, 0.5), iostat_quantile_us(c, 0.99));
            }
            textbuf_put(o, "}");
        }
    }
    if (json)
        textbuf_put(o, "]}\n");
    return 0;
}

static int reply_msg(struct textbuf *o, bool json, int rc, const char *msg);

/* log; log level L; log debug LIST */
static int log_request(char **words, int n, bool json, struct textbuf *o)
{
    char msg[512];
    if (n == 1) {
        char dbg[256];
        twl_log_get_debug(dbg, sizeof(dbg));
        static const char *const names[] = {"error", "warn", "info", "debug"};
        const char *level = names[twl_log_get_level()];
        if (json) {
            textbuf_put(o, "{\"level\":\"%s\",\"debug\":", level);
            textbuf_json_str(o, dbg);
            textbuf_put(o, ",\"parts\":[");
            for (int i = 0; twl_log_parts[i]; i++)
                textbuf_put(o, "%s\"%s\"", i ? "," : "", twl_log_parts[i]);
            textbuf_put(o, "]}\n");
        } else {
            textbuf_put(o, "level %s; debug lines of: %s\nparts:", level, dbg[0] ? dbg : "none");
            for (int i = 0; twl_log_parts[i]; i++)
                textbuf_put(o, " %s", twl_log_parts[i]);
            textbuf_put(o, "\n");
        }
        return 0;
    }
    if (n == 3 && strcmp(words[1], "level") == 0) {
        enum twl_log_level level;
        if (twl_log_parse_level(words[2], &level) != 0) {
            textbuf_put(o, "log level: '%s' is not a level; expected error, warn, info or debug\n",
                        words[2]);
            return 2;
        }
        twl_log_set_level(level);
        snprintf(msg, sizeof(msg), "log level %s", words[2]);
        /* said at warn so that it shows at any level */
        TWL_WARN(APART, "%s", msg);
        return reply_msg(o, json, 0, msg);
    }
    if (n == 3 && strcmp(words[1], "debug") == 0) {
        char why[512];
        if (twl_log_set_debug(words[2], why, sizeof(why)) != 0) {
            textbuf_put(o, "log debug: %s\n", why);
            return 2;
        }
        char dbg[256];
        twl_log_get_debug(dbg, sizeof(dbg));
        snprintf(msg, sizeof(msg), "debug lines of: %s", dbg[0] ? dbg : "none");
        TWL_WARN(APART, "%s", msg);
        return reply_msg(o, json, 0, msg);
    }
    textbuf_put(
        o, "usage: log | log level error|warn|info|debug | log debug PART[,PART...]|all|none\n");
    return 2;
}

/* A LUN number word, or -1 for "all" when absent. -2 (said in o) when it is not one. */
static long lun_word(struct textbuf *o, const char *cmd, char **words, int n, int at)
{
    if (n <= at)
        return -1;
    char *end;
    long id = strtol(words[at], &end, 10);
    if (*end || end == words[at] || id < 0 || id > 65535) {
        textbuf_put(o, "%s: '%s' is not a LUN number\n", cmd, words[at]);
        return -2;
    }
    return id;
}

#define USAGE                                                                                      \
    "expected status, sessions, luns, promote [LUN], takeover [LUN] [--force], "                   \
    "giveback [LUN|all] [--force], resolve --discard NODE, resync start|pause|resume [LUN] or "    \
    "log [level L | debug PARTS]"

/* takeover [LUN] [--force] / giveback [LUN|all] [--force] */
static int move_request(struct tgt_server *srv, char **words, int n, bool json, struct textbuf *o)
{
    const char *cmd = words[0];
    bool takeover = strcmp(cmd, "takeover") == 0, force = false, all = false;
    if (n > 1 && strcmp(words[n - 1], "--force") == 0) {
        force = true;
        n--;
    }
    if (n > 2) {
        textbuf_put(o, "%s: expected [LUN%s] [--force]\n", cmd, takeover ? "" : "|all");
        return 2;
    }
    if (!takeover && n == 2 && strcmp(words[1], "all") == 0) {
        all = true;
        n--;
    }
    long id = lun_word(o, cmd, words, n, 1);
    if (id == -2)
        return 2;
    char msg[1024];
    int rc = -EINVAL;
    if (srv->pair == NULL)
        snprintf(msg, sizeof(msg), "no pair: there is no partner to move LUNs to or from");
    else if (takeover)
        rc = replica_takeover(srv->pair, id, force, msg, sizeof(msg));
    else
        rc = replica_giveback(srv->pair, id, all, force, msg, sizeof(msg));
    TWL_WARN(APART, "%s %s%s: %s", cmd,
             n == 2 ? words[1]
             : all  ? "all"
                    : "default",
             force ? " --force" : "", msg);
    return reply_msg(o, json, rc, msg);
}

int admin_handle(struct tgt_server *srv, const char *line, char *outbuf, size_t out_len)
{
    struct textbuf o = {.p = outbuf, .len = out_len};
    outbuf[0] = '\0';
    char buf[REQUEST_MAX], *words[WORDS_MAX], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", line);
    int n = 0;
    for (char *w = strtok_r(buf, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == WORDS_MAX) {
            textbuf_put(&o, "too many words in the request\n");
            return 2;
        }
        words[n++] = w;
    }
    bool json = n > 0 && strcmp(words[n - 1], "--json") == 0;
    if (json)
        n--;
    char msg[512];
    if (n == 0) {
        textbuf_put(&o, "empty request; " USAGE "\n");
        return 2;
    }
    const char *cmd = words[0];
    if (strcmp(cmd, "status") == 0 && n == 1)
        return status(srv, json, &o);
    if (strcmp(cmd, "sessions") == 0 && n == 1)
        return sessions(srv, json, &o);
    if (strcmp(cmd, "luns") == 0 && n == 1)
        return luns(srv, json, &o);
    if (strcmp(cmd, "log") == 0)
        return log_request(words, n, json, &o);
    if (strcmp(cmd, "promote") == 0 && n <= 2) {
        long id = lun_word(&o, "promote", words, n, 1);
        if (id == -2)
            return 2;
        int rc = -EINVAL;
        if (srv->pair == NULL)
            snprintf(msg, sizeof(msg), "no pair: this node serves every LUN already");
        else
            rc = replica_promote(srv->pair, id, msg, sizeof(msg));
        /* every change an admin asks for is in the log, refused or not */
        TWL_WARN(APART, "promote %s: %s", n == 2 ? words[1] : "all", msg);
        return reply_msg(&o, json, rc, msg);
    }
    if (strcmp(cmd, "takeover") == 0 || strcmp(cmd, "giveback") == 0)
        return move_request(srv, words, n, json, &o);
    if (strcmp(cmd, "resolve") == 0 && n == 3 && strcmp(words[1], "--discard") == 0) {
        int rc = -EINVAL;
        if (srv->pair == NULL)
            snprintf(msg, sizeof(msg), "no pair: nothing to resolve");
        else
            rc = replica_resolve_discard(srv->pair, words[2], msg, sizeof(msg));
        TWL_WARN(APART, "resolve --discard %s: %s", words[2], msg);
        return reply_msg(&o, json, rc, msg);
    }
    if (strcmp(cmd, "resync") == 0 && (n == 2 || n == 3)) {
        static const char *const verbs[] = {"start", "pause", "resume"};
        int v = 0;
        while (v < 3 && strcmp(words[1], verbs[v]) != 0)
            v++;
        long id = v < 3 ? lun_word(&o, "resync", words, n, 2) : -2;
        if (v == 3)
            textbuf_put(&o, "resync: '%s' is not start, pause or resume\n", words[1]);
        if (id == -2)
            return 2;
        int rc = -EINVAL;
        if (srv->pair == NULL)
            snprintf(msg, sizeof(msg), "no pair: nothing to resync");
        else
            rc =
                replica_resync_control(srv->pair, id, (enum replica_resync_cmd)v, msg, sizeof(msg));
        TWL_WARN(APART, "resync %s %s: %s", verbs[v], n == 3 ? words[2] : "all", msg);
        return reply_msg(&o, json, rc, msg);
    }
    textbuf_put(&o, "unknown request '%s'; " USAGE "\n", line);
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
