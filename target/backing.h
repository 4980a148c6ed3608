/*
 * Backing store of a LUN: a regular file (created sparse = thin) or a block device, driven
 * asynchronously through one io_uring per network thread. Completions are delivered on the
 * thread that owns the ring, through an eventfd the thread polls.
 */
#ifndef TGT_BACKING_H
#define TGT_BACKING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct backing {
    int fd;
    uint64_t size;
    uint32_t block_size;
    bool direct;
    bool block_device;
    bool thin;      /* a sparse regular file */
    bool in_memory; /* tmpfs/ramfs without O_DIRECT: I/O is a memory copy, done inline */
    bool created;   /* this open created the file: it reads as zeros */
    char path[PATH_MAX];
};

/* Opens (and, when cfg->create, creates or extends sparsely) the LUN's store. An existing file
 * smaller than the configured size is extended; a larger one is refused (data would be hidden).
 * Returns 0 or -errno, logged with the path. */
int backing_open(const struct tgt_lun_config *cfg, struct backing *b);
void backing_close(struct backing *b);
/* Makes everything written durable (used at shutdown). */
int backing_sync(struct backing *b);

/* Synchronous forms, for the worker threads that carry out multi-step commands. All return 0
 * or -errno (not logged: the caller reports with the command's context). */
int backing_read_at(struct backing *b, uint8_t *buf, size_t len, uint64_t offset);
int backing_write_at(struct backing *b, const uint8_t *buf, size_t len, uint64_t offset, bool fua);
/* Deallocates [offset, offset+len): reads return zeros afterwards, space is given back. */
int backing_deallocate(struct backing *b, uint64_t offset, uint64_t len);
/* Zeroes [offset, offset+len) and keeps it allocated (written, so it reads as mapped). */
int backing_zero(struct backing *b, uint64_t offset, uint64_t len);
/* From offset, how far the store's allocation state stays the same (at most limit bytes), and
 * what it is. Block devices and filesystems without SEEK_HOLE report everything mapped. */
int backing_extent(struct backing *b, uint64_t offset, uint64_t limit, uint64_t *len, bool *mapped);

enum backing_op { BACKING_READ, BACKING_WRITE, BACKING_FLUSH };

struct backing_io {
    enum backing_op op;
    struct backing *store;
    uint8_t *buf;
    uint32_t len;
    uint64_t offset;
    bool fua;
    uint32_t done_bytes;
    int result; /* of an inline I/O, until delivered */
    /* called on the ring's thread with 0 or -errno */
    void (*complete)(struct backing_io *io, int result);
    struct backing_io *next; /* waiting for a free submission slot */
};

struct backing_ring {
    struct io_uring ring;
    int event_fd;
    unsigned inflight;
    unsigned unsubmitted;
    struct backing_io *wait_head;
    struct backing_io *wait_tail;
    struct backing_io *inline_head; /* done inline, completion not yet delivered */
    struct backing_io *inline_tail;
    int inline_result_pending;
};

int backing_ring_init(struct backing_ring *r, unsigned depth);
void backing_ring_exit(struct backing_ring *r);
/* Queues io; it is sent to the kernel at the next backing_ring_submit(). */
void backing_ring_queue(struct backing_ring *r, struct backing_io *io);
/* Sends queued requests and delivers completions already there (inline ones, and those the
 * kernel finished during submission); call once per event-loop turn so requests are batched. */
void backing_ring_submit(struct backing_ring *r);
/* Reaps completions (after the eventfd fired), calling each io's complete(). I/O they queue
 * (a short transfer's remainder) goes out at the next backing_ring_submit(). */
void backing_ring_reap(struct backing_ring *r);

#endif
