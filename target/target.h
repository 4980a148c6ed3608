/*
 * twinlun target: the iSCSI target server of one node.
 *
 * Promises:
 * - serves every target and LUN of a loaded configuration on its portal, with several network
 *   threads (each with its own epoll loop and io_uring) and no global lock on the I/O path;
 * - a command that changes blocks (WRITE, WRITE AND VERIFY, COMPARE AND WRITE, ORWRITE, WRITE
 *   SAME, UNMAP) completes GOOD only after the local change is done and, when a replicator is
 *   set, after the replicator reported the replica done (DESIGN.md section 4);
 * - tgt_server_stop() is async-signal-safe; tgt_server_run() then drains: initiators are asked
 *   to log out, in-flight I/O completes, stores are synced, and it returns.
 */
#ifndef TWL_TARGET_H
#define TWL_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct tgt_server;

/* What a replicated change does to the blocks. */
enum tgt_write_kind {
    TGT_WRITE_DATA = 0, /* data holds blocks * block_size bytes for [lba, lba + blocks) */
    TGT_WRITE_SAME,     /* data holds one block written to each of [lba, lba + blocks); NULL
                           means a block of zeros (the blocks stay allocated) */
    TGT_WRITE_UNMAP,    /* the extents are deallocated and read back as zeros; data unused */
    TGT_WRITE_META,     /* data holds data_len bytes: the LU's metadata image (reservations,
                           mode parameters) that replaces the partner's */
};

struct tgt_extent {
    uint64_t lba;
    uint32_t blocks;
};

/* A change whose data is complete, offered to replication. Everything it points to stays
 * valid until done. Plain writes (and ORWRITE's and COMPARE AND WRITE's result) are
 * TGT_WRITE_DATA, as are the chunks of an EXTENDED COPY; WRITE SAME is TGT_WRITE_SAME, or
 * TGT_WRITE_UNMAP with UNMAP; UNMAP is TGT_WRITE_UNMAP. Writes to overlapping blocks are offered in
 * the order they reach the local store (the LU's range lock is held until done). */
struct tgt_write {
    const char *target_name;
    uint32_t lun;
    enum tgt_write_kind kind;
    uint64_t lba;
    uint32_t blocks;
    uint32_t block_size;
    const uint8_t *data;
    bool fua;
    const struct tgt_extent *extents; /* TGT_WRITE_UNMAP */
    size_t extent_count;
    uint32_t data_len; /* TGT_WRITE_META */
};

typedef void (*tgt_write_done_fn)(void *cookie, int err);

/* The seam for the replication step. replicate() is called on a network thread (on a worker
 * thread for the chunks of an EXTENDED COPY, which waits for each) and starts the replica in
 * parallel with the local write, or after it for commands that must read first; it calls
 * done(cookie, err) exactly once, from any thread (the completion is handed back to the command's
 * network thread), err being the replica's own outcome (the command chooses its status from it).
 * Returning non-zero means it did not start (done is then not called) and the command fails. */
struct tgt_replicator {
    void *ctx;
    int (*replicate)(void *ctx, const struct tgt_write *w, tgt_write_done_fn done, void *cookie);
    /* Optional. track: before a command may change blocks [lba, lba + blocks) of a LUN, here
     * or on the partner (a crash from then on must show them as possibly different); 0 or a
     * negative errno (the command then fails, nothing written). untrack, exactly once per
     * successful track: the change is over; same = the copies hold the same blocks (replicated,
     * or nothing changed). Either may block briefly (a persist). */
    int (*track)(void *ctx, uint32_t lun, uint64_t lba, uint64_t blocks);
    void (*untrack)(void *ctx, uint32_t lun, uint64_t lba, uint64_t blocks, bool same);
    /* The status table (DESIGN.md section 5): true when a write whose replica failed still
     * completes GOOD (policy available; the regions are marked by untrack). */
    bool replica_failure_ok;
    /* Optional: write admission (throttle.h). A change waits here for its bytes' tokens
     * before it takes its blocks, and the sessions' CmdSN windows follow its budget. */
    struct throttle *throttle;
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
