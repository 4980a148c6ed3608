/*
 * The metrics endpoint: the node's figures in Prometheus' text format (version 0.0.4) over
 * HTTP/1.x on metrics.listen, for a scraper on the same host or a trusted network. One thread
 * answers one request at a time: "GET /metrics" gets 200 and the figures, any other path 404,
 * any other method 405, a request not read within 2 s or larger than 4 KiB is dropped with 400.
 * Every answer closes the connection.
 *
 * Figures (labels in braces; counters end in _total):
 *   twinlun_lun_commands_total{lun,op}     op: read, write, other
 *   twinlun_lun_bytes_total{lun,op}        Data-In sent for reads, Data-Out taken for writes
 *   twinlun_lun_errors_total{lun}          commands that did not end GOOD
 *   twinlun_lun_latency_seconds{lun,op}    histogram: header in to status out
 *   twinlun_lun_dirty_bytes{lun}           regions the copies may differ in (pair only)
 *   twinlun_lun_resync_left_bytes{lun}, twinlun_lun_resync_rate_bytes{lun}
 *   twinlun_lun_primary{lun}               1 when this node serves the LUN
 *   twinlun_sessions
 *   twinlun_pair_connected, twinlun_pair_degraded
 *   twinlun_replication_bytes_total, twinlun_replication_records_total,
 *   twinlun_replication_rate_bytes, twinlun_replication_lag_bytes (in the partner's ring or
 *   queued for it), twinlun_replication_unreplicated_total
 *   twinlun_throttle_pacing, twinlun_throttle_rate_bytes, twinlun_throttle_waits_total,
 *   twinlun_throttle_queued, twinlun_throttle_wait_p99_seconds
 */
#ifndef TGT_METRICS_H
#define TGT_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct tgt_server;
struct metrics;

/* Listens on cfg->metrics_host:metrics_port (0: any free port, logged). 0 or -errno (logged):
 * the daemon serves on without it. */
int metrics_start(struct tgt_server *srv, struct metrics **out);
void metrics_stop(struct metrics *m);
/* The port it listens on. */
uint16_t metrics_port(const struct metrics *m);

/* Writes the figures into buf (NUL-terminated, cut at len); returns the length written.
 * Exposed for the unit tests. */
size_t metrics_render(struct tgt_server *srv, char *buf, size_t len);

#endif
