#include "backing.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "twl_common.h"

#define PART "backing"

int backing_open(const struct tgt_lun_config *cfg, struct backing *b)
{
    memset(b, 0, sizeof(*b));
    b->fd = -1;
    snprintf(b->path, sizeof(b->path), "%s", cfg->path);
    b->block_size = cfg->block_size;
    b->direct = cfg->direct;
    int flags = O_RDWR | O_CLOEXEC | (cfg->direct ? O_DIRECT : 0);
    int fd = open(cfg->path, flags);
    if (fd < 0 && errno == ENOENT && cfg->create) {
        fd = open(cfg->path, flags | O_CREAT | O_EXCL, 0600);
        b->created = fd >= 0;
    }
    if (fd < 0) {
        int err = -errno;
        TWL_ERROR(PART, "LUN %u: cannot open %s: %s", cfg->id, cfg->path, strerror(-err));
        return err;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        goto fail_errno;
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
            goto fail_errno;
        b->block_device = true;
        b->size = cfg->size_bytes ? cfg->size_bytes : bytes;
        if (b->size > bytes) {
            TWL_ERROR(PART, "LUN %u: %s holds %llu bytes, config asks for %llu", cfg->id, cfg->path,
                      (unsigned long long)bytes, (unsigned long long)b->size);
            close(fd);
            return -ENOSPC;
        }
    } else if (S_ISREG(st.st_mode)) {
        uint64_t want = cfg->size_bytes ? cfg->size_bytes : (uint64_t)st.st_size;
        if ((uint64_t)st.st_size > want) {
            TWL_ERROR(PART,
                      "LUN %u: %s is %llu bytes, larger than the configured %llu; refusing "
                      "to hide data (fix size in the config)",
                      cfg->id, cfg->path, (unsigned long long)st.st_size, (unsigned long long)want);
            close(fd);
            return -EFBIG;
        }
        if ((uint64_t)st.st_size < want && ftruncate(fd, (off_t)want) < 0)
            goto fail_errno;
        /* A thick LUN gets all its space now, so a full filesystem fails here and not in
         * the middle of an initiator's write. */
        if (!cfg->thin && fallocate(fd, 0, 0, (off_t)want) < 0)
            goto fail_errno;
        b->size = want;
        /* A file in memory never waits for a device, and io_uring would hand each of its
         * writes to a worker thread: two thread switches for one memory copy. */
        struct statfs sf;
        if (!cfg->direct && fstatfs(fd, &sf) == 0 &&
            (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC))
            b->in_memory = true;
    } else {
        TWL_ERROR(PART, "LUN %u: %s is neither a regular file nor a block device", cfg->id,
                  cfg->path);
        close(fd);
        return -EINVAL;
    }
    b->thin = cfg->thin;
    if (b->size == 0 || b->size % b->block_size != 0) {
        TWL_ERROR(PART, "LUN %u: %s size %llu is not a positive multiple of the block size %u",
                  cfg->id, cfg->path, (unsigned long long)b->size, b->block_size);
        close(fd);
        return -EINVAL;
    }
    b->fd = fd;
    return 0;
fail_errno : {
    int err = -errno;
    TWL_ERROR(PART, "LUN %u: %s: %s", cfg->id, cfg->path, strerror(-err));
    close(fd);
    return err;
}
}

void backing_close(struct backing *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
}

int backing_sync(struct backing *b)
{
    if (b->fd >= 0 && fdatasync(b->fd) < 0) {
        int err = -errno;
        TWL_ERROR(PART, "fdatasync %s: %s", b->path, strerror(-err));
        return err;
    }
    return 0;
}

/* O_DIRECT takes only buffers aligned to the device (its logical block; 4096 covers every
 * device). The synchronous forms are handed buffers at any address: a replicated change's data
 * sits right after its header in the ring, 64-byte aligned. Those go through a bounce buffer. */
#define DIRECT_ALIGN 4096u
#define BOUNCE_MAX   (1u << 20)

static bool needs_bounce(const struct backing *b, const void *buf)
{
    return b->direct && (uintptr_t)buf % DIRECT_ALIGN != 0;
}

static int read_raw(struct backing *b, uint8_t *buf, size_t len, uint64_t offset);
static int write_raw(struct backing *b, const uint8_t *buf, size_t len, uint64_t offset, bool fua);

/* Through an aligned buffer, at most BOUNCE_MAX bytes at a time: writes from `from` when it is
 * not NULL, else reads into `into`. */
static int bounce_io(struct backing *b, uint8_t *into, const uint8_t *from, size_t len,
                     uint64_t offset, bool fua)
{
    size_t chunk = len < BOUNCE_MAX ? len : BOUNCE_MAX;
    uint8_t *bounce =
        aligned_alloc(DIRECT_ALIGN, (chunk + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1));
    if (bounce == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t done = 0; done < len && rc == 0; done += chunk) {
        size_t n = len - done < chunk ? len - done : chunk;
        if (from) {
            memcpy(bounce, from + done, n);
            rc = write_raw(b, bounce, n, offset + done, fua);
        } else if ((rc = read_raw(b, bounce, n, offset + done)) == 0) {
            memcpy(into + done, bounce, n);
        }
    }
    free(bounce);
    return rc;
}

int backing_read_at(struct backing *b, uint8_t *buf, size_t len, uint64_t offset)
{
    return needs_bounce(b, buf) ? bounce_io(b, buf, NULL, len, offset, false)
                                : read_raw(b, buf, len, offset);
}

int backing_write_at(struct backing *b, const uint8_t *buf, size_t len, uint64_t offset, bool fua)
{
    return needs_bounce(b, buf) ? bounce_io(b, NULL, buf, len, offset, fua)
                                : write_raw(b, buf, len, offset, fua);
}

static int read_raw(struct backing *b, uint8_t *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(b->fd, buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* end of file inside the LUN: the store shrank under us */
        done += (size_t)n;
    }
    return 0;
}

static int write_raw(struct backing *b, const uint8_t *buf, size_t len, uint64_t offset, bool fua)
{
    size_t done = 0;
    while (done < len) {
        struct iovec iov = {(void *)(buf + done), len - done};
        ssize_t n = pwritev2(b->fd, &iov, 1, (off_t)(offset + done), fua ? RWF_DSYNC : 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return 0;
}

/* Writes zeros the slow way, for stores whose fallocate cannot. */
static int write_zeros(struct backing *b, uint64_t offset, uint64_t len)
{
    enum { CHUNK = 1 << 20 };
    uint8_t *zeros = aligned_alloc(4096, CHUNK);
    if (zeros == NULL)
        return -ENOMEM;
    memset(zeros, 0, CHUNK);
    int rc = 0;
    while (len > 0 && rc == 0) {
        size_t n = len < CHUNK ? (size_t)len : CHUNK;
        rc = backing_write_at(b, zeros, n, offset, false);
        offset += n;
        len -= n;
    }
    free(zeros);
    return rc;
}

int backing_deallocate(struct backing *b, uint64_t offset, uint64_t len)
{
    if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) ==
        0)
        return 0;
    if (errno != EOPNOTSUPP)
        return -errno;
    return write_zeros(b, offset, len);
}

int backing_zero(struct backing *b, uint64_t offset, uint64_t len)
{
    /* Real zeros, not FALLOC_FL_ZERO_RANGE: filesystems keep a zeroed range as unwritten
     * extents, which SEEK_DATA reports as holes, so GET LBA STATUS would call blocks WRITE SAME
     * just mapped (or anchored) deallocated. */
    return write_zeros(b, offset, len);
}

int backing_extent(struct backing *b, uint64_t offset, uint64_t limit, uint64_t *len, bool *mapped)
{
    *mapped = true;
    *len = limit;
    if (b->block_device)
        return 0;
    off_t data = lseek(b->fd, (off_t)offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* only a hole up to the end of the file */
            *mapped = false;
            return 0;
        }
        return errno == EINVAL ? 0 : -errno;
    }
    if ((uint64_t)data > offset) {
        *mapped = false;
        uint64_t n = (uint64_t)data - offset;
        *len = n < limit ? n : limit;
        return 0;
    }
    off_t hole = lseek(b->fd, (off_t)offset, SEEK_HOLE);
    if (hole < 0)
        return -errno;
    uint64_t n = (uint64_t)hole - offset;
    *len = n < limit ? n : limit;
    return 0;
}

int backing_ring_init(struct backing_ring *r, unsigned depth)
{
    memset(r, 0, sizeof(*r));
    int rc = io_uring_queue_init(depth, &r->ring, 0);
    if (rc < 0) {
        TWL_ERROR(PART, "io_uring_queue_init(%u): %s", depth, strerror(-rc));
        return rc;
    }
    r->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->event_fd < 0) {
        rc = -errno;
        goto fail_ring;
    }
    rc = io_uring_register_eventfd(&r->ring, r->event_fd);
    if (rc < 0)
        goto fail_eventfd;
    return 0;
fail_eventfd:
    close(r->event_fd);
fail_ring:
    io_uring_queue_exit(&r->ring);
    TWL_ERROR(PART, "io_uring eventfd setup: %s", strerror(-rc));
    return rc;
}

void backing_ring_exit(struct backing_ring *r)
{
    io_uring_queue_exit(&r->ring);
    close(r->event_fd);
}

static bool prep(struct backing_ring *r, struct backing_io *io)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL)
        return false;
    switch (io->op) {
    case BACKING_READ:
        io_uring_prep_read(sqe, io->store->fd, io->buf + io->done_bytes, io->len - io->done_bytes,
                           io->offset + io->done_bytes);
        break;
    case BACKING_WRITE:
        io_uring_prep_write(sqe, io->store->fd, io->buf + io->done_bytes, io->len - io->done_bytes,
                            io->offset + io->done_bytes);
        if (io->fua)
            sqe->rw_flags = RWF_DSYNC; /* FUA: durable before completion */
        break;
    case BACKING_FLUSH:
        io_uring_prep_fsync(sqe, io->store->fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, io);
    r->inflight++;
    r->unsubmitted++;
    return true;
}

static int do_inline(struct backing_io *io)
{
    int fd = io->store->fd;
    if (io->op == BACKING_FLUSH)
        return fdatasync(fd) < 0 ? -errno : 0;
    while (io->done_bytes < io->len) {
        struct iovec iov = {io->buf + io->done_bytes, io->len - io->done_bytes};
        off_t off = (off_t)(io->offset + io->done_bytes);
        ssize_t n = io->op == BACKING_READ ? preadv2(fd, &iov, 1, off, 0)
                                           : pwritev2(fd, &iov, 1, off, io->fua ? RWF_DSYNC : 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* end of file inside the LUN: the store shrank under us */
        io->done_bytes += (uint32_t)n;
    }
    return 0;
}

void backing_ring_queue(struct backing_ring *r, struct backing_io *io)
{
    io->next = NULL;
    if (io->store->in_memory) {
        /* Completions are delivered from backing_ring_submit(), never from inside the
         * caller's own call, so callers need not be reentrant. */
        io->result = do_inline(io);
        if (r->inline_tail)
            r->inline_tail->next = io;
        else
            r->inline_head = io;
        r->inline_tail = io;
        return;
    }
    if (r->wait_head == NULL && prep(r, io))
        return;
    if (r->wait_tail)
        r->wait_tail->next = io;
    else
        r->wait_head = io;
    r->wait_tail = io;
}

static void submit_queued(struct backing_ring *r)
{
    while (r->wait_head) {
        if (!prep(r, r->wait_head)) {
            if (r->unsubmitted == 0)
                break;
            io_uring_submit(&r->ring);
            r->unsubmitted = 0;
            continue;
        }
        r->wait_head = r->wait_head->next;
        if (r->wait_head == NULL)
            r->wait_tail = NULL;
    }
    if (r->unsubmitted) {
        io_uring_submit(&r->ring);
        r->unsubmitted = 0;
    }
}

static void deliver_inline(struct backing_ring *r)
{
    while (r->inline_head) {
        struct backing_io *io = r->inline_head;
        r->inline_head = io->next;
        if (r->inline_head == NULL)
            r->inline_tail = NULL;
        io->complete(io, io->result);
    }
}

static void reap_cqes(struct backing_ring *r)
{
    struct io_uring_cqe *cqes[64];
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&r->ring, cqes, 64);
        if (n == 0)
            break;
        for (unsigned i = 0; i < n; i++) {
            struct backing_io *io = io_uring_cqe_get_data(cqes[i]);
            int res = cqes[i]->res;
            io_uring_cqe_seen(&r->ring, cqes[i]);
            r->inflight--;
            if (res > 0 && io->op != BACKING_FLUSH) {
                io->done_bytes += (uint32_t)res;
                if (io->done_bytes < io->len) { /* short transfer: carry on from there */
                    backing_ring_queue(r, io);
                    continue;
                }
                res = 0;
            } else if (res == 0 && io->op != BACKING_FLUSH && io->len > 0) {
                res = -EIO; /* end of file inside the LUN: the store shrank under us */
            }
            io->complete(io, res < 0 ? res : 0);
        }
    }
}

void backing_ring_submit(struct backing_ring *r)
{
    /* completions may queue more I/O: go round until nothing is left to do this turn */
    for (int round = 0; round < 8; round++) {
        deliver_inline(r);
        submit_queued(r);
        if (r->inflight)
            reap_cqes(r); /* the kernel often completes page-cache reads during submission */
        if (r->inline_head == NULL && r->wait_head == NULL && r->unsubmitted == 0)
            break;
    }
}

void backing_ring_reap(struct backing_ring *r)
{
    uint64_t ignored;
    if (read(r->event_fd, &ignored, sizeof(ignored)) < 0 && errno != EAGAIN)
        TWL_WARN(PART, "eventfd read: %s", strerror(errno));
    reap_cqes(r);
}
