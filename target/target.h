/*
 * twinlun target: the iSCSI target server of one node.
 *
 * Promises:
 * - serves every target and LUN of a loaded configuration on its portal, with several network
 *   threads (each with its own epoll loop and io_uring) and no global lock on the I/O path;
 * - a WRITE completes GOOD only after the local write is done and, when a replicator is set,
 *   after the replicator reported the replica done (DESIGN.md section 4);
 * - tgt_server_stop() is async-signal-safe; tgt_server_run() then drains: initiators are asked
 *   to log out, in-flight I/O completes, stores are synced, and it returns.
 */
#ifndef TWL_TARGET_H
#define TWL_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct tgt_server;

/* A write whose data is complete, offered to replication. data stays valid until done. */
struct tgt_write {
    const char *target_name;
    uint32_t lun;
    uint64_t lba;
    uint32_t blocks;
    uint32_t block_size;
    const uint8_t *data;
    bool fua;
};

typedef void (*tgt_write_done_fn)(void *cookie, int err);

/* The seam for the replication step. replicate() is called on a network thread and starts the
 * replica in parallel with the local write; it calls done(cookie, err) exactly once, from any
 * thread (the completion is handed back to the command's network thread). Returning non-zero
 * means it did not start (done is then not called) and the command fails. */
struct tgt_replicator {
    void *ctx;
    int (*replicate)(void *ctx, const struct tgt_write *w, tgt_write_done_fn done, void *cookie);
};

/* Opens the LUNs and binds the portal. cfg must outlive the server. Returns 0 or -errno,
 * logged. */
int tgt_server_create(const struct tgt_config *cfg, struct tgt_server **out);
/* Optional; set before tgt_server_run(). */
void tgt_server_set_replicator(struct tgt_server *srv, const struct tgt_replicator *rep);
/* Runs the network threads until tgt_server_stop(); returns 0 after a clean drain. */
int tgt_server_run(struct tgt_server *srv);
/* Async-signal-safe. */
void tgt_server_stop(struct tgt_server *srv);
void tgt_server_destroy(struct tgt_server *srv);
/* ALUA asymmetric access state of this node's target port group (SPC-4 5.15.2): 0 active/
 * optimized (the start), 1 active/non-optimized, 2 standby, 3 unavailable, 15 transitioning.
 * Every I_T nexus of every LU gets ASYMMETRIC ACCESS STATE CHANGED. Returns 0 or -EINVAL. Safe
 * from any thread. */
int tgt_server_set_alua_state(struct tgt_server *srv, int state);

/* The port actually bound (useful with port 0 in tests). */
uint16_t tgt_server_port(const struct tgt_server *srv);

#endif
