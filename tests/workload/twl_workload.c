/*
 * twl-workload: a write workload with a journal, and a verifier for it.
 *
 *   twl-workload run --url URL --journal FILE [options]
 *   twl-workload verify --journal FILE (--url URL | --file PATH [--block-size N])
 *
 * `run` keeps QD commands in flight through libiscsi's async API: WRITE(16) of random sizes at
 * random LBAs (a share of them deliberately overlapping a command still in flight), WRITE
 * SAME(16) and UNMAP. Every block written carries a stamp (below), and every command is
 * journaled before it is sent, so `verify` can later tell, for every block the run touched,
 * which contents are acceptable, whatever happened to the target meanwhile (a crash, a kill, a
 * failover), even when the run itself was killed. `twl-workload --help` lists the options.
 *
 * STAMPED BLOCKS
 *
 * All integers are little endian.
 *
 *   bytes  0..7   the LBA the block was written for
 *   bytes  8..15  the op id of the command that wrote it (1, 2, 3... in issue order)
 *   bytes 16..23  the run id (random, fresh for every run, so blocks of another run differ)
 *   bytes 24..31  a 64-bit hash of every other byte of the block (block_hash() below)
 *   bytes 32..    a pseudo-random pattern seeded from (LBA, op id, run id)
 *
 * A WRITE SAME sends one block stamped with its first LBA, so every block of its range holds
 * those same bytes. UNMAP leaves zeros (the target reports LBPRZ). A torn block fails its hash,
 * a block written at the wrong place has the wrong LBA, a lost or reordered write shows an op id
 * that is not acceptable there, and a block from another run a foreign run id.
 *
 * JOURNAL FORMAT (version 1)
 *
 * A 64-byte header then records, all integers little endian:
 *
 *   header   0  8  magic "TWLWKJ01"
 *            8  4  version, 1
 *           12  4  block size in bytes
 *           16  8  run id
 *           24  8  PRNG seed (to repeat the choices; timing still varies)
 *           32  8  first LBA of the range the run may touch
 *           40  8  number of LBAs in that range
 *           48  4  flags: bit 0 = the range held zeros before the run (--prior-zero)
 *           52  4  zero
 *           56  8  creation time, seconds since the epoch
 *
 *   ISSUE    0  1  'I'
 *   16+16n   1  1  kind: 'W' WRITE(16), 'S' WRITE SAME(16), 'U' UNMAP
 *   bytes    2  1  n, the number of extents (1, or 2 for some UNMAPs)
 *            3  5  zero
 *            8  8  op id
 *           16     n times: LBA (8), number of blocks (8)
 *
 *   COMPLETE 0  1  'C'
 *   24 bytes 1  1  result: 'G' GOOD; 'F' the target ended it with another status (CHECK
 *                  CONDITION, RESERVATION CONFLICT): not acknowledged, but finished;
 *                  'L' lost: transport error, timeout or cancellation, so the command may
 *                  still be running in the target
 *            2  1  SCSI status ('F' only)
 *            3  1  sense key ('F' only)
 *            4  2  ASC << 8 | ASCQ ('F' only)
 *            6  2  zero
 *            8  8  op id
 *           16  8  seen: the highest op id issued when the completion arrived; for 'L' all
 *                  ones, as the target may not be finished with the command
 *
 *   END      0  1  'E'
 *   16 bytes 1  7  zero
 *            8  8  number of ops issued
 *
 * Op ids are 1, 2, 3... in the order of ISSUE records. An ISSUE record is written (write(2)),
 * before its command can reach the target, so a run killed at any moment leaves a journal that
 * knows every command the target may have seen; COMPLETE records follow at the next loop turn.
 * The journal is fdatasync'ed every second and at the end. A reader stops at a truncated last
 * record (a killed writer); an op without a COMPLETE record may or may not have happened. A
 * missing END record means the run did not finish.
 *
 * ACCEPTABLE CONTENTS
 *
 * Op A definitely precedes op B when A completed (G or F) before B was issued: B.id > A.seen.
 * For one block, an op touching it (A) is an acceptable final content unless an acknowledged
 * ('G') op touching the same block definitely follows A: that op overwrote whatever A left.
 * Ops that failed or were lost are kept as candidates (they may or may not have reached the
 * medium) until such an acknowledged op follows them. The block's content from before the run
 * is acceptable only while no acknowledged op touched the block; it is zeros with --prior-zero,
 * otherwise anything that does not carry this run's id. The verifier computes these sets by
 * replaying the journal in op-id order, keeping a short candidate list per touched block in a
 * hash map of 512-block chunks.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define PROG          "twl-workload"
#define INITIATOR_IQN "iqn.2026-11.io.twinlun:workload"

#define JOURNAL_MAGIC   "TWLWKJ01"
#define JOURNAL_VERSION 1
#define HEADER_BYTES    64
#define ISSUE_BYTES(n)  (16u + 16u * (n))
#define COMPLETE_BYTES  24u
#define END_BYTES       16u
#define FLAG_PRIOR_ZERO 1u
#define SEEN_NEVER      UINT64_MAX
#define MAX_EXTENTS     2
#define STAMP_HDR       32u
#define MAX_WS_BLOCKS   256u
#define MAX_BAD_LINES   20
#define MAX_FAIL_LINES  50

enum kind { K_WRITE = 'W', K_WSAME = 'S', K_UNMAP = 'U' };
enum result { R_NONE = 0, R_GOOD = 'G', R_FAILED = 'F', R_LOST = 'L' };

struct extent {
    uint64_t lba;
    uint64_t blocks;
};

/* ---------------------------------------------------------------- small helpers */

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: every input bit flips about half the output bits */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return mix64(*state);
}

/* Uniform in [0, n); the modulo bias is below 2^-40 for the ranges used here. */
static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return n ? rng_next(state) % n : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* libiscsi's error text on one line (some messages end in a newline), in a static buffer. */
static const char *iscsi_err(struct iscsi_context *iscsi)
{
    static char out[256];
    size_t len = sizeof(out);
    snprintf(out, len, "%s", iscsi_get_error(iscsi));
    size_t n = strlen(out);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20)
            out[i] = ' ';
    while (n > 0 && out[n - 1] == ' ')
        out[--n] = '\0';
    return out;
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case K_WRITE:
        return "WRITE(16)";
    case K_WSAME:
        return "WRITE SAME(16)";
    case K_UNMAP:
        return "UNMAP";
    }
    return "?";
}

static int kind_index(int kind)
{
    return kind == K_WRITE ? 0 : kind == K_WSAME ? 1 : 2;
}

/* ---------------------------------------------------------------- stamps */

static uint64_t hash_step(uint64_t h, uint64_t w)
{
    h ^= w;
    h = (h << 29) | (h >> 35);
    return h * 0xbf58476d1ce4e5b9ull;
}

/* The hash in bytes 24..31: every other 8-byte word of the block, in order. */
static uint64_t block_hash(const uint8_t *b, uint32_t bs)
{
    uint64_t h = 0x74776c2d776b6c64ull;
    for (uint32_t off = 0; off < bs; off += 8)
        if (off != 24)
            h = hash_step(h, get_le(b + off, 8));
    return mix64(h ^ bs);
}

static void stamp_block(uint8_t *b, uint32_t bs, uint64_t lba, uint64_t op, uint64_t run_id)
{
    put_le(b, lba, 8);
    put_le(b + 8, op, 8);
    put_le(b + 16, run_id, 8);
    uint64_t h = 0x74776c2d776b6c64ull;
    h = hash_step(h, lba);
    h = hash_step(h, op);
    h = hash_step(h, run_id);
    /* xorshift64*: cheap enough to stamp a 1 MiB write in well under a millisecond */
    uint64_t s = mix64(lba ^ mix64(op ^ mix64(run_id))) | 1;
    for (uint32_t off = STAMP_HDR; off < bs; off += 8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t w = s * 0x2545f4914f6cdd1dull;
        put_le(b + off, w, 8);
        h = hash_step(h, w);
    }
    put_le(b + 24, mix64(h ^ bs), 8);
}

/* ---------------------------------------------------------------- journal writer */

struct journal_writer {
    const char *path;
    int fd;
    uint8_t *buf;
    size_t len, cap;
    double last_sync;
    bool failed;
};

static int jw_reserve(struct journal_writer *j, size_t n)
{
    if (j->len + n <= j->cap)
        return 0;
    size_t cap = j->cap ? j->cap : 4096;
    while (cap < j->len + n)
        cap *= 2;
    uint8_t *p = realloc(j->buf, cap);
    if (p == NULL)
        return -ENOMEM;
    j->buf = p;
    j->cap = cap;
    return 0;
}

/* Appends n zeroed bytes to the buffer and returns them for the caller to fill. */
static uint8_t *jw_record(struct journal_writer *j, size_t n)
{
    if (jw_reserve(j, n) != 0) {
        j->failed = true;
        return NULL;
    }
    uint8_t *p = j->buf + j->len;
    memset(p, 0, n);
    j->len += n;
    return p;
}

static int jw_flush(struct journal_writer *j)
{
    size_t off = 0;
    while (off < j->len) {
        ssize_t n = write(j->fd, j->buf + off, j->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            fprintf(stderr, PROG ": journal %s: write: %s\n", j->path, strerror(err));
            j->failed = true;
            return -err;
        }
        off += (size_t)n;
    }
    j->len = 0;
    return 0;
}

static int jw_sync(struct journal_writer *j)
{
    int rc = jw_flush(j);
    if (rc < 0)
        return rc;
    if (fdatasync(j->fd) != 0) {
        int err = errno;
        fprintf(stderr, PROG ": journal %s: fdatasync: %s\n", j->path, strerror(err));
        j->failed = true;
        return -err;
    }
    j->last_sync = now_s();
    return 0;
}

/* ---------------------------------------------------------------- iSCSI session */

static struct iscsi_context *connect_lun(const char *url_text, int *lun)
{
    struct iscsi_context *iscsi = iscsi_create_context(INITIATOR_IQN);
    if (iscsi == NULL) {
        fprintf(stderr, PROG ": cannot create an iSCSI context\n");
        return NULL;
    }
    struct iscsi_url *url = iscsi_parse_full_url(iscsi, url_text);
    if (url == NULL) {
        fprintf(stderr, PROG ": bad URL %s: %s\n", url_text, iscsi_err(iscsi));
        iscsi_destroy_context(iscsi);
        return NULL;
    }
    iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_targetname(iscsi, url->target);
    iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
    if (url->user[0] && iscsi_set_initiator_username_pwd(iscsi, url->user, url->passwd) != 0) {
        fprintf(stderr, PROG ": CHAP setup: %s\n", iscsi_err(iscsi));
        goto fail;
    }
    if (url->target_user[0] &&
        iscsi_set_target_username_pwd(iscsi, url->target_user, url->target_passwd) != 0) {
        fprintf(stderr, PROG ": mutual CHAP setup: %s\n", iscsi_err(iscsi));
        goto fail;
    }
    /* A silent reconnect would resend in-flight writes behind the journal's back and hide the
     * very faults the tests inject: a dropped connection ends the run. */
    iscsi_set_noautoreconnect(iscsi, 1);
    if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
        fprintf(stderr, PROG ": login to %s %s LUN %d failed: %s\n", url->portal, url->target,
                url->lun, iscsi_err(iscsi));
        goto fail;
    }
    *lun = url->lun;
    iscsi_destroy_url(url);
    return iscsi;
fail:
    iscsi_destroy_url(url);
    iscsi_destroy_context(iscsi);
    return NULL;
}

struct lun_info {
    uint32_t block_size;
    uint64_t blocks;
    bool lbpme, lbprz;
    uint32_t max_xfer_blocks;  /* 0: no limit reported */
    uint64_t max_ws_blocks;    /* 0: no limit reported */
    uint32_t max_unmap_blocks; /* 0: UNMAP not supported */
    uint32_t max_unmap_desc;
};

static int probe_lun(struct iscsi_context *iscsi, int lun, struct lun_info *li)
{
    memset(li, 0, sizeof(*li));
    struct scsi_task *task = iscsi_readcapacity16_sync(iscsi, lun);
    if (task == NULL || task->status != SCSI_STATUS_GOOD) {
        fprintf(stderr, PROG ": READ CAPACITY(16) failed: %s\n", iscsi_err(iscsi));
        if (task)
            scsi_free_scsi_task(task);
        return -EIO;
    }
    struct scsi_readcapacity16 *rc16 = scsi_datain_unmarshall(task);
    if (rc16 == NULL) {
        fprintf(stderr, PROG ": cannot decode READ CAPACITY(16) data\n");
        scsi_free_scsi_task(task);
        return -EPROTO;
    }
    li->block_size = rc16->block_length;
    li->blocks = rc16->returned_lba + 1;
    li->lbpme = rc16->lbpme;
    li->lbprz = rc16->lbprz;
    scsi_free_scsi_task(task);
    if (li->block_size < 64 || li->block_size > 65536 || li->block_size % 8) {
        fprintf(stderr, PROG ": unusable block length %u\n", li->block_size);
        return -EINVAL;
    }

    /* Block limits are optional: without them the defaults stay within any sane target. */
    li->max_unmap_blocks = UINT32_MAX;
    li->max_unmap_desc = MAX_EXTENTS;
    task = iscsi_inquiry_sync(iscsi, lun, 1, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS, 255);
    if (task != NULL && task->status == SCSI_STATUS_GOOD) {
        struct scsi_inquiry_block_limits *bl = scsi_datain_unmarshall(task);
        if (bl != NULL) {
            li->max_xfer_blocks = bl->max_xfer_len;
            li->max_ws_blocks = bl->max_ws_len;
            li->max_unmap_blocks = bl->max_unmap;
            li->max_unmap_desc = bl->max_unmap_bdc;
        }
    }
    if (task)
        scsi_free_scsi_task(task);
    return 0;
}

/* ---------------------------------------------------------------- run */

struct run_opts {
    const char *url, *journal;
    uint64_t ops;
    double seconds;
    uint32_t qd;
    uint64_t min_bytes, max_bytes;
    uint32_t unmap_pct, ws_pct, overlap_pct;
    uint64_t lba_start, lba_count;
    bool have_lba_count, have_seed;
    uint64_t seed;
    int timeout;
    bool allow_failures, prior_zero;
    const char *progress; /* every PROGRESS_S: elapsed seconds and bytes acknowledged */
};

struct run;

struct op {
    struct run *run;
    uint64_t id;
    int kind;
    unsigned next;
    struct extent ext[MAX_EXTENTS];
    uint8_t *buf; /* data-out, alive until the command completes */
    size_t buf_len;
    struct scsi_task *task;
    uint32_t slot; /* index in run.inflight */
};

struct kind_stats {
    uint64_t issued, acked, failed;
};

struct run {
    struct run_opts o;
    struct iscsi_context *iscsi;
    int lun;
    struct lun_info li;
    uint32_t bs;
    uint64_t min_blocks, max_blocks, max_ws, max_unmap;
    uint64_t rng, run_id, last_id;
    struct op **inflight;
    uint32_t n_inflight;
    struct journal_writer j;
    struct kind_stats st[3];
    uint64_t write_bytes, ws_bytes, overlaps, completed;
    uint32_t fail_lines;
    double t_start, t_end, deadline;
    bool conn_lost;
    FILE *progress;
    double next_progress;
};

#define PROGRESS_S 0.25

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static bool may_issue(struct run *r)
{
    if (stop_signal || r->conn_lost || r->j.failed)
        return false;
    if (r->o.ops && r->last_id >= r->o.ops)
        return false;
    if (r->o.seconds > 0 && now_s() >= r->deadline)
        return false;
    return true;
}

/* A size in blocks, log-uniform between min and max so small and large commands both occur
 * often (a uniform draw would make nearly all of them large). */
static uint64_t pick_blocks(struct run *r, uint64_t min, uint64_t max)
{
    if (max <= min)
        return min;
    int lo = 63 - __builtin_clzll(min), hi = 63 - __builtin_clzll(max);
    int k = lo + (int)rng_below(&r->rng, (uint64_t)(hi - lo + 1));
    uint64_t a = (uint64_t)1 << k, b = (a << 1) - 1;
    if (a < min)
        a = min;
    if (b > max)
        b = max;
    return a + rng_below(&r->rng, b - a + 1);
}

/* The first LBA for `blocks` blocks: random in the range, or (overlap) covering a block of a
 * command still in flight so the target sees concurrent writes to the same blocks. */
static uint64_t pick_lba(struct run *r, uint64_t blocks, bool overlap)
{
    uint64_t lo = r->o.lba_start, hi = r->o.lba_start + r->o.lba_count - blocks;
    if (overlap && r->n_inflight > 0) {
        const struct op *o = r->inflight[rng_below(&r->rng, r->n_inflight)];
        const struct extent *e = &o->ext[rng_below(&r->rng, o->next)];
        uint64_t t = e->lba + rng_below(&r->rng, e->blocks);
        uint64_t back = rng_below(&r->rng, blocks);
        uint64_t lba = t >= lo + back ? t - back : lo;
        r->overlaps++;
        /* clamping keeps t inside: lba <= t and lba + blocks > t on either side */
        return lba > hi ? hi : lba;
    }
    return lo + rng_below(&r->rng, hi - lo + 1);
}

static void free_op(struct op *op)
{
    free(op->buf);
    free(op);
}

static struct op *make_op(struct run *r)
{
    struct op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->run = r;
    op->id = ++r->last_id;
    uint64_t dice = rng_below(&r->rng, 100);
    bool overlap = rng_below(&r->rng, 100) < r->o.overlap_pct;
    if (dice < r->o.unmap_pct)
        op->kind = K_UNMAP;
    else if (dice < r->o.unmap_pct + r->o.ws_pct)
        op->kind = K_WSAME;
    else
        op->kind = K_WRITE;

    if (op->kind == K_WRITE) {
        uint64_t n = pick_blocks(r, r->min_blocks, r->max_blocks);
        op->next = 1;
        op->ext[0].blocks = n;
        op->ext[0].lba = pick_lba(r, n, overlap);
        op->buf_len = n * r->bs;
        op->buf = malloc(op->buf_len);
        if (op->buf == NULL)
            goto oom;
        for (uint64_t i = 0; i < n; i++)
            stamp_block(op->buf + i * r->bs, r->bs, op->ext[0].lba + i, op->id, r->run_id);
    } else if (op->kind == K_WSAME) {
        uint64_t n = 1 + rng_below(&r->rng, r->max_ws);
        op->next = 1;
        op->ext[0].blocks = n;
        op->ext[0].lba = pick_lba(r, n, overlap);
        op->buf_len = r->bs;
        op->buf = malloc(op->buf_len);
        if (op->buf == NULL)
            goto oom;
        stamp_block(op->buf, r->bs, op->ext[0].lba, op->id, r->run_id);
    } else {
        op->next = r->li.max_unmap_desc >= 2 && r->max_unmap >= 2 && rng_below(&r->rng, 2) ? 2 : 1;
        uint64_t cap = r->max_unmap / op->next;
        for (unsigned i = 0; i < op->next; i++) {
            uint64_t n = pick_blocks(r, 1, cap < r->max_blocks ? cap : r->max_blocks);
            op->ext[i].blocks = n;
            op->ext[i].lba = pick_lba(r, n, overlap && i == 0);
        }
        /* The parameter list is built here rather than by iscsi_unmap_task(): older libiscsi
         * releases copy the first descriptor into every slot, which would make the journal
         * claim an unmap that never happened. */
        op->buf_len = 8 + 16 * op->next;
        op->buf = calloc(1, op->buf_len);
        if (op->buf == NULL)
            goto oom;
        put_be(op->buf, op->buf_len - 2, 2);
        put_be(op->buf + 2, 16 * op->next, 2);
        for (unsigned i = 0; i < op->next; i++) {
            put_be(op->buf + 8 + 16 * i, op->ext[i].lba, 8);
            put_be(op->buf + 16 + 16 * i, op->ext[i].blocks, 4);
        }
    }
    return op;
oom:
    free_op(op);
    return NULL;
}

static void journal_issue(struct run *r, const struct op *op)
{
    uint8_t *p = jw_record(&r->j, ISSUE_BYTES(op->next));
    if (p == NULL)
        return;
    p[0] = 'I';
    p[1] = (uint8_t)op->kind;
    p[2] = (uint8_t)op->next;
    put_le(p + 8, op->id, 8);
    for (unsigned i = 0; i < op->next; i++) {
        put_le(p + 16 + 16 * i, op->ext[i].lba, 8);
        put_le(p + 24 + 16 * i, op->ext[i].blocks, 8);
    }
}

static void journal_complete(struct run *r, const struct op *op, int result, int status, int key,
                             int ascq)
{
    uint8_t *p = jw_record(&r->j, COMPLETE_BYTES);
    if (p == NULL)
        return;
    p[0] = 'C';
    p[1] = (uint8_t)result;
    p[2] = (uint8_t)status;
    p[3] = (uint8_t)key;
    put_le(p + 4, (uint64_t)ascq, 2);
    put_le(p + 8, op->id, 8);
    put_le(p + 16, result == R_LOST ? SEEN_NEVER : r->last_id, 8);
}

static void inflight_remove(struct run *r, struct op *op)
{
    struct op *last = r->inflight[--r->n_inflight];
    r->inflight[op->slot] = last;
    last->slot = op->slot;
}

static void print_failure(struct run *r, const struct op *op, const char *why)
{
    if (++r->fail_lines > MAX_FAIL_LINES) {
        if (r->fail_lines == MAX_FAIL_LINES + 1)
            fprintf(stderr, PROG ": further failed ops are counted, not listed\n");
        return;
    }
    char where[96];
    if (op->next == 2)
        snprintf(where, sizeof(where), "LBA %" PRIu64 "+%" PRIu64 " and %" PRIu64 "+%" PRIu64,
                 op->ext[0].lba, op->ext[0].blocks, op->ext[1].lba, op->ext[1].blocks);
    else
        snprintf(where, sizeof(where), "LBA %" PRIu64 "+%" PRIu64, op->ext[0].lba,
                 op->ext[0].blocks);
    fprintf(stderr, PROG ": op %" PRIu64 " %s %s not acknowledged: %s\n", op->id,
            kind_name(op->kind), where, why);
}

static void op_done(struct iscsi_context *iscsi, int status, void *command_data, void *private)
{
    struct op *op = private;
    struct run *r = op->run;
    struct scsi_task *task = command_data ? command_data : op->task;
    struct kind_stats *st = &r->st[kind_index(op->kind)];
    char why[256];
    int result, key = 0, ascq = 0;

    if (status == SCSI_STATUS_GOOD) {
        result = R_GOOD;
        r->completed++;
        r->t_end = now_s();
        st->acked++;
        if (op->kind == K_WRITE)
            r->write_bytes += op->ext[0].blocks * r->bs;
        else if (op->kind == K_WSAME)
            r->ws_bytes += op->ext[0].blocks * r->bs;
    } else if (status == SCSI_STATUS_CHECK_CONDITION ||
               status == SCSI_STATUS_RESERVATION_CONFLICT) {
        /* the target answered: it is done with the command, whatever it did */
        result = R_FAILED;
        st->failed++;
        r->completed++;
        r->t_end = now_s();
        if (status == SCSI_STATUS_CHECK_CONDITION && task) {
            key = task->sense.key;
            ascq = task->sense.ascq;
            snprintf(why, sizeof(why), "CHECK CONDITION, sense key 0x%x (%s) ASC/ASCQ 0x%04x (%s)",
                     key, scsi_sense_key_str(key), ascq, scsi_sense_ascq_str(ascq));
        } else {
            snprintf(why, sizeof(why), "RESERVATION CONFLICT");
        }
        print_failure(r, op, why);
    } else {
        result = R_LOST;
        st->failed++;
        /* libiscsi cancels commands when the connection is gone: issue no more */
        if (status == SCSI_STATUS_CANCELLED)
            r->conn_lost = true;
        snprintf(why, sizeof(why), "%s (status 0x%x): %s; it may still reach the medium",
                 status == SCSI_STATUS_CANCELLED ? "cancelled"
                 : status == SCSI_STATUS_TIMEOUT ? "timed out"
                                                 : "transport error",
                 (unsigned)status, iscsi_err(iscsi));
        print_failure(r, op, why);
    }
    journal_complete(r, op, result, result == R_FAILED ? status & 0xff : 0, key, ascq);
    inflight_remove(r, op);
    if (task)
        scsi_free_scsi_task(task);
    free_op(op);
}

static int submit(struct run *r, struct op *op)
{
    const struct extent *e = &op->ext[0];
    struct scsi_task *task = NULL;
    switch (op->kind) {
    case K_WRITE:
        task = iscsi_write16_task(r->iscsi, r->lun, e->lba, op->buf, (uint32_t)op->buf_len, r->bs,
                                  0, 0, 0, 0, 0, op_done, op);
        break;
    case K_WSAME:
        task = iscsi_writesame16_task(r->iscsi, r->lun, e->lba, op->buf, r->bs, (uint32_t)e->blocks,
                                      0, 0, 0, 0, op_done, op);
        break;
    default: {
        uint8_t cdb[10] = {SCSI_OPCODE_UNMAP};
        put_be(cdb + 7, op->buf_len, 2);
        task = scsi_create_task(sizeof(cdb), cdb, SCSI_XFER_WRITE, (int)op->buf_len);
        if (task == NULL)
            break;
        struct iscsi_data d = {.size = op->buf_len, .data = op->buf};
        if (iscsi_scsi_command_async(r->iscsi, r->lun, task, op_done, &d, op) != 0) {
            scsi_free_scsi_task(task);
            task = NULL;
        }
        break;
    }
    }
    if (task == NULL)
        return -EIO;
    op->task = task;
    return 0;
}

/* Starts commands until QD are in flight: they are journaled (and the journal written) first,
 * then handed to libiscsi. */
static int refill(struct run *r)
{
    uint32_t first = r->n_inflight;
    while (r->n_inflight < r->o.qd && may_issue(r)) {
        struct op *op = make_op(r);
        if (op == NULL) {
            fprintf(stderr, PROG ": out of memory building op %" PRIu64 "\n", r->last_id);
            return -ENOMEM;
        }
        journal_issue(r, op);
        op->slot = r->n_inflight;
        r->inflight[r->n_inflight++] = op;
        r->st[kind_index(op->kind)].issued++;
    }
    if (r->n_inflight == first)
        return 0;
    int rc = r->j.failed ? -EIO : jw_flush(&r->j);
    for (uint32_t i = first; i < r->n_inflight;) {
        struct op *op = r->inflight[i];
        if (rc == 0 && submit(r, op) == 0) {
            i++;
            continue;
        }
        /* never sent, but the journal may hold its ISSUE record: record it as lost */
        if (rc == 0)
            fprintf(stderr, PROG ": op %" PRIu64 " %s LBA %" PRIu64 ": cannot queue: %s\n", op->id,
                    kind_name(op->kind), op->ext[0].lba, iscsi_err(r->iscsi));
        r->st[kind_index(op->kind)].failed++;
        journal_complete(r, op, R_LOST, 0, 0, 0);
        inflight_remove(r, op);
        free_op(op);
        if (rc == 0)
            rc = -EIO;
    }
    return rc;
}

static int run_loop(struct run *r)
{
    int rc = 0;
    r->t_start = r->t_end = now_s();
    r->deadline = r->t_start + r->o.seconds;
    r->next_progress = r->t_start;
    for (;;) {
        if (rc == 0 && refill(r) < 0)
            rc = -EIO;
        if (r->n_inflight == 0 && (rc < 0 || !may_issue(r)))
            break;
        if (rc < 0 && r->n_inflight > 0 && r->j.failed)
            break;
        if (r->j.len && jw_flush(&r->j) < 0)
            rc = -EIO;
        if (now_s() - r->j.last_sync >= 1.0 && !r->j.failed)
            jw_sync(&r->j);
        if (r->progress && now_s() >= r->next_progress) {
            /* a time series of throughput: the wall clock (to line it up with other logs),
             * seconds since the start, bytes acknowledged (WRITE and WRITE SAME) and commands
             * completed so far */
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            fprintf(r->progress, "%.3f %.3f %" PRIu64 " %" PRIu64 "\n",
                    (double)wall.tv_sec + wall.tv_nsec / 1e9, now_s() - r->t_start,
                    r->write_bytes + r->ws_bytes, r->completed);
            fflush(r->progress);
            r->next_progress += PROGRESS_S;
        }
        struct pollfd pfd = {.fd = iscsi_get_fd(r->iscsi), .events = iscsi_which_events(r->iscsi)};
        int n = poll(&pfd, 1, 100);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
            return -errno;
        }
        /* revents 0 still lets libiscsi run its timeouts */
        if (iscsi_service(r->iscsi, n > 0 ? pfd.revents : 0) < 0 || r->conn_lost ||
            !iscsi_is_logged_in(r->iscsi)) {
            fprintf(stderr,
                    PROG ": connection lost with %u commands in flight (last op %" PRIu64 "): %s\n",
                    r->n_inflight, r->last_id, iscsi_err(r->iscsi));
            r->conn_lost = true;
            break;
        }
    }
    return rc;
}

static void print_run_summary(const struct run *r)
{
    double el = r->t_end - r->t_start;
    if (el <= 0)
        el = 1e-9;
    printf(PROG ": summary: write issued=%" PRIu64 " acked=%" PRIu64 " failed=%" PRIu64
                "; writesame issued=%" PRIu64 " acked=%" PRIu64 " failed=%" PRIu64
                "; unmap issued=%" PRIu64 " acked=%" PRIu64 " failed=%" PRIu64
                "; overlapping=%" PRIu64 "; bytes written=%" PRIu64 " (WRITE %.1f MiB, WRITE SAME "
                "%.1f MiB); %.2f s, %.0f IOPS, %.1f MiB/s; run id 0x%016" PRIx64 ", seed %" PRIu64
                "\n",
           r->st[0].issued, r->st[0].acked, r->st[0].failed, r->st[1].issued, r->st[1].acked,
           r->st[1].failed, r->st[2].issued, r->st[2].acked, r->st[2].failed, r->overlaps,
           r->write_bytes + r->ws_bytes, r->write_bytes / 1048576.0, r->ws_bytes / 1048576.0, el,
           (double)r->completed / el, (r->write_bytes + r->ws_bytes) / 1048576.0 / el, r->run_id,
           r->o.seed);
}

static int write_header(struct run *r)
{
    uint8_t *h = jw_record(&r->j, HEADER_BYTES);
    if (h == NULL)
        return -ENOMEM;
    memcpy(h, JOURNAL_MAGIC, 8);
    put_le(h + 8, JOURNAL_VERSION, 4);
    put_le(h + 12, r->bs, 4);
    put_le(h + 16, r->run_id, 8);
    put_le(h + 24, r->o.seed, 8);
    put_le(h + 32, r->o.lba_start, 8);
    put_le(h + 40, r->o.lba_count, 8);
    put_le(h + 48, r->o.prior_zero ? FLAG_PRIOR_ZERO : 0, 4);
    put_le(h + 56, (uint64_t)time(NULL), 8);
    return jw_sync(&r->j);
}

static int setup_run(struct run *r)
{
    struct run_opts *o = &r->o;
    r->iscsi = connect_lun(o->url, &r->lun);
    if (r->iscsi == NULL)
        return -ENOTCONN;
    if (probe_lun(r->iscsi, r->lun, &r->li) < 0)
        return -EIO;
    r->bs = r->li.block_size;
    if (!o->have_lba_count) {
        if (o->lba_start >= r->li.blocks) {
            fprintf(stderr,
                    PROG ": --lba-start %" PRIu64 " is beyond the LUN's %" PRIu64 " blocks\n",
                    o->lba_start, r->li.blocks);
            return -EINVAL;
        }
        o->lba_count = r->li.blocks - o->lba_start;
    }
    if (o->lba_count == 0 || o->lba_start + o->lba_count > r->li.blocks ||
        o->lba_start + o->lba_count < o->lba_start) {
        fprintf(stderr,
                PROG ": LBA range %" PRIu64 "+%" PRIu64 " is not inside the LUN's %" PRIu64
                     " blocks\n",
                o->lba_start, o->lba_count, r->li.blocks);
        return -EINVAL;
    }
    r->min_blocks = (o->min_bytes + r->bs - 1) / r->bs;
    r->max_blocks = o->max_bytes / r->bs;
    if (r->min_blocks == 0)
        r->min_blocks = 1;
    if (r->li.max_xfer_blocks && r->max_blocks > r->li.max_xfer_blocks)
        r->max_blocks = r->li.max_xfer_blocks;
    if (r->max_blocks > o->lba_count)
        r->max_blocks = o->lba_count;
    if (r->max_blocks > UINT32_MAX / r->bs)
        r->max_blocks = UINT32_MAX / r->bs;
    if (r->min_blocks > r->max_blocks) {
        fprintf(stderr,
                PROG ": --min %" PRIu64 " is above the largest usable write (%" PRIu64
                     " blocks of %u bytes)\n",
                o->min_bytes, r->max_blocks, r->bs);
        return -EINVAL;
    }
    r->max_ws = MAX_WS_BLOCKS;
    if (r->li.max_ws_blocks && r->max_ws > r->li.max_ws_blocks)
        r->max_ws = r->li.max_ws_blocks;
    if (r->max_ws > o->lba_count)
        r->max_ws = o->lba_count;
    r->max_unmap = r->li.max_unmap_blocks;
    if (o->unmap_pct && (!r->li.lbpme || !r->li.lbprz || r->li.max_unmap_blocks == 0 ||
                         r->li.max_unmap_desc == 0)) {
        /* without LBPRZ an unmapped block may read as anything: nothing left to verify */
        fprintf(stderr, PROG ": the LUN does not report LBPME+LBPRZ and UNMAP limits: no UNMAP\n");
        o->unmap_pct = 0;
    }
    if (!o->have_seed) {
        if (getrandom(&o->seed, sizeof(o->seed), 0) != sizeof(o->seed))
            o->seed = mix64((uint64_t)time(NULL) ^ (uint64_t)getpid());
    }
    r->rng = o->seed;
    /* fresh for every run, even with the same seed, so a stale block of an earlier run with
     * the same choices can never pass for this run's */
    if (getrandom(&r->run_id, sizeof(r->run_id), 0) != sizeof(r->run_id))
        r->run_id = mix64((uint64_t)(now_s() * 1e9)) ^ mix64((uint64_t)getpid());
    r->inflight = calloc(o->qd, sizeof(*r->inflight));
    if (r->inflight == NULL)
        return -ENOMEM;
    if (o->timeout > 0)
        iscsi_set_timeout(r->iscsi, o->timeout);

    r->j.path = o->journal;
    r->j.fd = open(o->journal, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r->j.fd < 0) {
        int err = errno;
        fprintf(stderr, PROG ": journal %s: %s\n", o->journal, strerror(err));
        return -err;
    }
    return write_header(r);
}

static int cmd_run(struct run_opts *o)
{
    struct run r = {.o = *o, .j = {.fd = -1}};
    int rc = setup_run(&r);
    if (rc < 0)
        goto out;
    if (o->progress && (r.progress = fopen(o->progress, "w")) == NULL) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", o->progress, strerror(errno));
        rc = -errno;
        goto out;
    }

    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = run_loop(&r);
    if (r.conn_lost) {
        /* the context's destruction cancels the rest: op_done records them as lost */
        iscsi_destroy_context(r.iscsi);
        r.iscsi = NULL;
    }
    if (stop_signal)
        fprintf(stderr, PROG ": stopped by signal %d after op %" PRIu64 "\n", (int)stop_signal,
                r.last_id);
    uint8_t *e = jw_record(&r.j, END_BYTES);
    if (e != NULL) {
        e[0] = 'E';
        put_le(e + 8, r.last_id, 8);
    }
    if (jw_sync(&r.j) < 0 && rc == 0)
        rc = -EIO;
    print_run_summary(&r);
    if (rc == 0 && (r.conn_lost || r.st[0].failed + r.st[1].failed + r.st[2].failed > 0))
        rc = o->allow_failures ? 0 : -EIO;
out:
    if (r.iscsi != NULL) {
        if (!r.conn_lost && r.n_inflight == 0)
            iscsi_logout_sync(r.iscsi);
        iscsi_destroy_context(r.iscsi);
    }
    if (r.j.fd >= 0 && close(r.j.fd) != 0 && rc == 0)
        rc = -errno;
    if (r.progress)
        fclose(r.progress);
    free(r.j.buf);
    free(r.inflight);
    return rc < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- journal reader */

struct journal_header {
    uint32_t block_size;
    uint64_t run_id, seed, lba_start, lba_count;
    uint32_t flags;
};

struct record {
    int type;
    int kind, result, status, key, ascq;
    unsigned next;
    uint64_t id, seen, count;
    struct extent ext[MAX_EXTENTS];
};

struct journal_reader {
    const char *path;
    FILE *f;
    struct journal_header h;
    uint64_t offset;
    bool truncated;
};

static int jr_read(struct journal_reader *jr, uint8_t *p, size_t n)
{
    size_t got = fread(p, 1, n, jr->f);
    jr->offset += got;
    if (got == n)
        return 1;
    if (ferror(jr->f)) {
        int err = errno;
        fprintf(stderr, PROG ": journal %s: read: %s\n", jr->path, strerror(err));
        return -err;
    }
    if (got > 0)
        jr->truncated = true;
    return 0;
}

static int jr_open(struct journal_reader *jr, const char *path)
{
    memset(jr, 0, sizeof(*jr));
    jr->path = path;
    jr->f = fopen(path, "rb");
    if (jr->f == NULL) {
        int err = errno;
        fprintf(stderr, PROG ": journal %s: %s\n", path, strerror(err));
        return -err;
    }
    uint8_t h[HEADER_BYTES];
    int rc = jr_read(jr, h, sizeof(h));
    if (rc <= 0 || memcmp(h, JOURNAL_MAGIC, 8) != 0 || get_le(h + 8, 4) != JOURNAL_VERSION) {
        if (rc >= 0)
            fprintf(stderr, PROG ": journal %s: not a version %d twl-workload journal\n", path,
                    JOURNAL_VERSION);
        fclose(jr->f);
        jr->f = NULL;
        return rc < 0 ? rc : -EBADMSG;
    }
    jr->h.block_size = (uint32_t)get_le(h + 12, 4);
    jr->h.run_id = get_le(h + 16, 8);
    jr->h.seed = get_le(h + 24, 8);
    jr->h.lba_start = get_le(h + 32, 8);
    jr->h.lba_count = get_le(h + 40, 8);
    jr->h.flags = (uint32_t)get_le(h + 48, 4);
    if (jr->h.block_size < 64 || jr->h.block_size % 8 || jr->h.block_size > 65536) {
        fprintf(stderr, PROG ": journal %s: bad block size %u\n", path, jr->h.block_size);
        fclose(jr->f);
        jr->f = NULL;
        return -EBADMSG;
    }
    return 0;
}

static int jr_rewind(struct journal_reader *jr)
{
    if (fseek(jr->f, HEADER_BYTES, SEEK_SET) != 0)
        return -errno;
    jr->offset = HEADER_BYTES;
    jr->truncated = false;
    return 0;
}

static int jr_bad(const struct journal_reader *jr, uint64_t at, const char *what)
{
    fprintf(stderr, PROG ": journal %s: corrupt record at byte %" PRIu64 ": %s\n", jr->path, at,
            what);
    return -EBADMSG;
}

/* 1: a record; 0: the end (a truncated last record included); negative: an error. */
static int jr_next(struct journal_reader *jr, struct record *rec)
{
    uint8_t p[ISSUE_BYTES(MAX_EXTENTS)];
    uint64_t at = jr->offset;
    int rc = jr_read(jr, p, 8);
    if (rc <= 0)
        return rc;
    memset(rec, 0, sizeof(*rec));
    rec->type = p[0];
    switch (p[0]) {
    case 'I':
        rec->kind = p[1];
        rec->next = p[2];
        if ((rec->kind != K_WRITE && rec->kind != K_WSAME && rec->kind != K_UNMAP) ||
            rec->next < 1 || rec->next > MAX_EXTENTS)
            return jr_bad(jr, at, "ISSUE with a bad kind or extent count");
        rc = jr_read(jr, p + 8, ISSUE_BYTES(rec->next) - 8);
        if (rc <= 0)
            return rc;
        rec->id = get_le(p + 8, 8);
        for (unsigned i = 0; i < rec->next; i++) {
            rec->ext[i].lba = get_le(p + 16 + 16 * i, 8);
            rec->ext[i].blocks = get_le(p + 24 + 16 * i, 8);
            const struct extent *e = &rec->ext[i];
            if (e->blocks == 0 || e->lba < jr->h.lba_start ||
                e->lba + e->blocks > jr->h.lba_start + jr->h.lba_count ||
                e->lba + e->blocks < e->lba)
                return jr_bad(jr, at, "ISSUE extent outside the journal's LBA range");
        }
        return 1;
    case 'C':
        rc = jr_read(jr, p + 8, COMPLETE_BYTES - 8);
        if (rc <= 0)
            return rc;
        rec->result = p[1];
        rec->status = p[2];
        rec->key = p[3];
        rec->ascq = (int)get_le(p + 4, 2);
        rec->id = get_le(p + 8, 8);
        rec->seen = get_le(p + 16, 8);
        if (rec->result != R_GOOD && rec->result != R_FAILED && rec->result != R_LOST)
            return jr_bad(jr, at, "COMPLETE with a bad result");
        return 1;
    case 'E':
        rc = jr_read(jr, p + 8, END_BYTES - 8);
        if (rc <= 0)
            return rc;
        rec->count = get_le(p + 8, 8);
        return 1;
    }
    return jr_bad(jr, at, "unknown record type");
}

/* ---------------------------------------------------------------- acceptable contents */

/* What the verifier knows of one op. */
struct vop {
    uint64_t first_lba;
    uint64_t seen;
    uint8_t kind, result;
};

/* The candidate op ids of one block, ascending; id 0 is "the content from before the run". */
struct cands {
    uint32_t n, cap;
    union {
        uint64_t inl[2];
        uint64_t *ext;
    } u;
};

#define CHUNK_SHIFT  9
#define CHUNK_BLOCKS (1u << CHUNK_SHIFT)

struct chunk {
    uint64_t index; /* lba >> CHUNK_SHIFT */
    struct cands c[CHUNK_BLOCKS];
};

struct block_map {
    struct chunk **slots;
    size_t cap, n;
};

static uint64_t *cands_ids(struct cands *c)
{
    return c->cap > 2 ? c->u.ext : c->u.inl;
}

static int cands_push(struct cands *c, uint64_t id)
{
    if (c->n == 2 && c->cap <= 2) {
        uint64_t *v = malloc(8 * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        memcpy(v, c->u.inl, sizeof(c->u.inl));
        c->u.ext = v;
        c->cap = 8;
    } else if (c->cap > 2 && c->n == c->cap) {
        uint64_t *v = realloc(c->u.ext, 2 * c->cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        c->u.ext = v;
        c->cap *= 2;
    }
    cands_ids(c)[c->n++] = id;
    return 0;
}

static struct chunk *map_get(struct block_map *m, uint64_t index, bool create)
{
    if (create && (m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct chunk **s = calloc(cap, sizeof(*s));
        if (s == NULL)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i] == NULL)
                continue;
            size_t k = mix64(m->slots[i]->index) & (cap - 1);
            while (s[k] != NULL)
                k = (k + 1) & (cap - 1);
            s[k] = m->slots[i];
        }
        free(m->slots);
        m->slots = s;
        m->cap = cap;
    }
    if (m->cap == 0)
        return NULL;
    size_t k = mix64(index) & (m->cap - 1);
    while (m->slots[k] != NULL) {
        if (m->slots[k]->index == index)
            return m->slots[k];
        k = (k + 1) & (m->cap - 1);
    }
    if (!create)
        return NULL;
    struct chunk *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->index = index;
    m->slots[k] = c;
    m->n++;
    return c;
}

static void map_free(struct block_map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        struct chunk *c = m->slots[i];
        if (c == NULL)
            continue;
        for (uint32_t b = 0; b < CHUNK_BLOCKS; b++)
            if (c->c[b].cap > 2)
                free(c->c[b].u.ext);
        free(c);
    }
    free(m->slots);
}

/* Op `id` touches the block: an acknowledged op ends every candidate that definitely precedes
 * it, and the previous content. */
static int cands_apply(struct cands *c, uint64_t id, const struct vop *ops)
{
    if (c->n == 0 && cands_push(c, 0) < 0)
        return -ENOMEM;
    uint64_t *v = cands_ids(c);
    if (v[c->n - 1] == id)
        return 0; /* the two extents of one UNMAP overlap */
    if (ops[id].result == R_GOOD) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < c->n; i++)
            if (v[i] != 0 && ops[v[i]].seen >= id)
                v[k++] = v[i];
        c->n = k;
    }
    return cands_push(c, id);
}

struct verifier {
    struct journal_reader jr;
    struct vop *ops; /* indexed by op id; [0] unused */
    uint64_t n_ops;
    bool ended;
    uint64_t end_count, no_completion;
    struct block_map map;
    uint64_t touched;
};

static int load_ops(struct verifier *v)
{
    struct record rec;
    uint64_t cap = 0;
    int rc;
    while ((rc = jr_next(&v->jr, &rec)) > 0) {
        if (v->ended)
            return jr_bad(&v->jr, v->jr.offset, "records after the END record");
        if (rec.type == 'I') {
            if (rec.id != v->n_ops + 1)
                return jr_bad(&v->jr, v->jr.offset, "op ids do not follow 1, 2, 3...");
            if (rec.id >= cap) {
                cap = cap ? cap * 2 : 4096;
                struct vop *p = realloc(v->ops, cap * sizeof(*p));
                if (p == NULL)
                    return -ENOMEM;
                v->ops = p;
            }
            v->ops[rec.id] = (struct vop){.first_lba = rec.ext[0].lba,
                                          .seen = SEEN_NEVER,
                                          .kind = (uint8_t)rec.kind,
                                          .result = R_NONE};
            v->n_ops = rec.id;
        } else if (rec.type == 'C') {
            if (rec.id == 0 || rec.id > v->n_ops || v->ops[rec.id].result != R_NONE)
                return jr_bad(&v->jr, v->jr.offset, "COMPLETE for an unknown or completed op");
            if (rec.result != R_LOST && (rec.seen < rec.id || rec.seen > v->n_ops))
                return jr_bad(&v->jr, v->jr.offset, "COMPLETE with an impossible 'seen'");
            v->ops[rec.id].result = (uint8_t)rec.result;
            v->ops[rec.id].seen = rec.result == R_LOST ? SEEN_NEVER : rec.seen;
        } else {
            v->ended = true;
            v->end_count = rec.count;
        }
    }
    if (rc < 0)
        return rc;
    for (uint64_t i = 1; i <= v->n_ops; i++)
        if (v->ops[i].result == R_NONE)
            v->no_completion++;
    return 0;
}

static int build_cands(struct verifier *v)
{
    struct record rec;
    int rc = jr_rewind(&v->jr);
    if (rc < 0)
        return rc;
    while ((rc = jr_next(&v->jr, &rec)) > 0) {
        if (rec.type != 'I')
            continue;
        for (unsigned i = 0; i < rec.next; i++) {
            for (uint64_t lba = rec.ext[i].lba; lba < rec.ext[i].lba + rec.ext[i].blocks;) {
                struct chunk *ch = map_get(&v->map, lba >> CHUNK_SHIFT, true);
                if (ch == NULL)
                    return -ENOMEM;
                uint64_t end = ((lba >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT;
                if (end > rec.ext[i].lba + rec.ext[i].blocks)
                    end = rec.ext[i].lba + rec.ext[i].blocks;
                for (; lba < end; lba++) {
                    struct cands *c = &ch->c[lba & (CHUNK_BLOCKS - 1)];
                    if (c->n == 0)
                        v->touched++;
                    if (cands_apply(c, rec.id, v->ops) < 0)
                        return -ENOMEM;
                }
            }
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- verify */

struct source {
    const char *name;
    int fd;
    struct iscsi_context *iscsi;
    int lun;
    uint32_t bs;
    uint32_t max_blocks;
};

static int source_read(struct source *s, uint64_t lba, uint32_t n, uint8_t *buf)
{
    size_t len = (size_t)n * s->bs;
    if (s->iscsi == NULL) {
        size_t off = 0;
        while (off < len) {
            ssize_t got = pread(s->fd, buf + off, len - off, (off_t)(lba * s->bs + off));
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                int err = errno;
                fprintf(stderr, PROG ": %s: read at LBA %" PRIu64 ": %s\n", s->name,
                        lba + off / s->bs, strerror(err));
                return -err;
            }
            if (got == 0) {
                fprintf(stderr, PROG ": %s: ends before LBA %" PRIu64 "\n", s->name,
                        lba + off / s->bs);
                return -ENODATA;
            }
            off += (size_t)got;
        }
        return 0;
    }
    struct scsi_task *t =
        iscsi_read16_sync(s->iscsi, s->lun, lba, (uint32_t)len, s->bs, 0, 0, 0, 0, 0);
    if (t == NULL || t->status != SCSI_STATUS_GOOD || t->datain.size != (int)len) {
        fprintf(stderr, PROG ": %s: READ(16) LBA %" PRIu64 "+%u failed: %s\n", s->name, lba, n,
                t && t->status == SCSI_STATUS_GOOD ? "short data" : iscsi_err(s->iscsi));
        if (t)
            scsi_free_scsi_task(t);
        return -EIO;
    }
    memcpy(buf, t->datain.data, len);
    scsi_free_scsi_task(t);
    return 0;
}

static bool matches(const struct verifier *v, const uint8_t *b, uint64_t lba, uint64_t id,
                    uint8_t *scratch)
{
    uint32_t bs = v->jr.h.block_size;
    if (id == 0) {
        if (v->jr.h.flags & FLAG_PRIOR_ZERO)
            return is_zero(b, bs);
        return get_le(b + 16, 8) != v->jr.h.run_id;
    }
    const struct vop *op = &v->ops[id];
    if (op->kind == K_UNMAP)
        return is_zero(b, bs);
    uint64_t want_lba = op->kind == K_WSAME ? op->first_lba : lba;
    if (get_le(b, 8) != want_lba || get_le(b + 8, 8) != id || get_le(b + 16, 8) != v->jr.h.run_id)
        return false;
    stamp_block(scratch, bs, want_lba, id, v->jr.h.run_id);
    return memcmp(b, scratch, bs) == 0;
}

static void describe_content(const struct verifier *v, const uint8_t *b, char *out, size_t len)
{
    uint32_t bs = v->jr.h.block_size;
    if (is_zero(b, bs)) {
        snprintf(out, len, "zeros");
        return;
    }
    uint64_t lba = get_le(b, 8), op = get_le(b + 8, 8), run = get_le(b + 16, 8);
    if (get_le(b + 24, 8) == block_hash(b, bs)) {
        const char *whose = run != v->jr.h.run_id      ? " (another run)"
                            : op == 0 || op > v->n_ops ? " (an op id the journal does not have)"
                                                       : "";
        snprintf(out, len, "stamp LBA %" PRIu64 " op %" PRIu64 " run 0x%016" PRIx64 "%s", lba, op,
                 run, whose);
    } else if (run == v->jr.h.run_id) {
        snprintf(out, len,
                 "torn block: header of LBA %" PRIu64 " op %" PRIu64 " but the rest does not match "
                 "its hash",
                 lba, op);
    } else {
        snprintf(out, len, "garbage (starts %02x%02x%02x%02x%02x%02x%02x%02x)", b[0], b[1], b[2],
                 b[3], b[4], b[5], b[6], b[7]);
    }
}

static const char *result_name(int result)
{
    switch (result) {
    case R_GOOD:
        return "acked";
    case R_FAILED:
        return "failed";
    case R_LOST:
        return "lost";
    }
    return "no completion";
}

static void describe_cands(const struct verifier *v, struct cands *c, char *out, size_t len)
{
    size_t off = 0;
    const uint64_t *ids = cands_ids(c);
    for (uint32_t i = 0; i < c->n && off + 1 < len; i++) {
        const char *sep = i ? ", " : "";
        if (i == 6) {
            snprintf(out + off, len - off, "%s%u more", sep, c->n - i);
            return;
        }
        int n;
        uint64_t id = ids[i];
        if (id == 0) {
            n = snprintf(out + off, len - off, "%sprevious content (%s)", sep,
                         v->jr.h.flags & FLAG_PRIOR_ZERO ? "zeros" : "anything not of this run");
        } else if (v->ops[id].kind == K_UNMAP) {
            n = snprintf(out + off, len - off, "%szeros (op %" PRIu64 " UNMAP %s)", sep, id,
                         result_name(v->ops[id].result));
        } else if (v->ops[id].kind == K_WSAME) {
            n = snprintf(out + off, len - off,
                         "%sop %" PRIu64 " (WRITE SAME from LBA %" PRIu64 ", %s)", sep, id,
                         v->ops[id].first_lba, result_name(v->ops[id].result));
        } else {
            n = snprintf(out + off, len - off, "%sop %" PRIu64 " (WRITE, %s)", sep, id,
                         result_name(v->ops[id].result));
        }
        if (n < 0)
            return;
        off += (size_t)n;
    }
}

static int cmp_chunk(const void *a, const void *b)
{
    const struct chunk *x = *(struct chunk *const *)a, *y = *(struct chunk *const *)b;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int check_blocks(struct verifier *v, struct source *src, uint64_t *bad)
{
    uint32_t bs = v->jr.h.block_size;
    struct chunk **list = malloc((v->map.n ? v->map.n : 1) * sizeof(*list));
    uint8_t *buf = malloc((size_t)src->max_blocks * bs);
    uint8_t *scratch = malloc(bs);
    int rc = 0;
    if (list == NULL || buf == NULL || scratch == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < v->map.cap; i++)
        if (v->map.slots[i])
            list[n++] = v->map.slots[i];
    qsort(list, n, sizeof(*list), cmp_chunk);

    for (size_t ci = 0; ci < n; ci++) {
        struct chunk *ch = list[ci];
        uint32_t b = 0;
        while (b < CHUNK_BLOCKS) {
            if (ch->c[b].n == 0) {
                b++;
                continue;
            }
            uint32_t e = b;
            while (e < CHUNK_BLOCKS && ch->c[e].n && e - b < src->max_blocks)
                e++;
            uint64_t lba0 = (ch->index << CHUNK_SHIFT) + b;
            rc = source_read(src, lba0, e - b, buf);
            if (rc < 0)
                goto out;
            for (uint32_t k = b; k < e; k++) {
                struct cands *c = &ch->c[k];
                const uint8_t *blk = buf + (size_t)(k - b) * bs;
                uint64_t lba = lba0 + (k - b);
                bool ok = false;
                const uint64_t *ids = cands_ids(c);
                for (uint32_t i = 0; i < c->n && !ok; i++)
                    ok = matches(v, blk, lba, ids[i], scratch);
                if (ok)
                    continue;
                if (++*bad <= MAX_BAD_LINES) {
                    char got[160], want[512];
                    describe_content(v, blk, got, sizeof(got));
                    describe_cands(v, c, want, sizeof(want));
                    fprintf(stderr,
                            PROG ": verify: BAD LBA %" PRIu64 ": holds %s; acceptable: %s\n", lba,
                            got, want);
                }
            }
            b = e;
        }
    }
out:
    free(list);
    free(buf);
    free(scratch);
    return rc;
}

struct verify_opts {
    const char *journal, *url, *file;
    uint32_t block_size;
};

static int cmd_verify(const struct verify_opts *o)
{
    struct verifier v = {0};
    struct source src = {.fd = -1};
    int rc = jr_open(&v.jr, o->journal);
    if (rc < 0)
        return 1;
    uint32_t bs = v.jr.h.block_size;
    if (o->block_size && o->block_size != bs) {
        fprintf(stderr, PROG ": --block-size %u but the journal was written with %u-byte blocks\n",
                o->block_size, bs);
        rc = -EINVAL;
        goto out;
    }
    rc = load_ops(&v);
    if (rc == 0)
        rc = build_cands(&v);
    if (rc < 0) {
        if (rc == -ENOMEM)
            fprintf(stderr, PROG ": out of memory reading journal %s\n", o->journal);
        goto out;
    }

    src.bs = bs;
    src.max_blocks = (1u << 20) / bs;
    if (o->url) {
        src.name = o->url;
        src.iscsi = connect_lun(o->url, &src.lun);
        if (src.iscsi == NULL) {
            rc = -ENOTCONN;
            goto out;
        }
        struct lun_info li;
        rc = probe_lun(src.iscsi, src.lun, &li);
        if (rc < 0)
            goto out;
        if (li.block_size != bs || li.blocks < v.jr.h.lba_start + v.jr.h.lba_count) {
            fprintf(stderr,
                    PROG ": %s: %" PRIu64 " blocks of %u bytes; the journal covers LBA %" PRIu64
                         "+%" PRIu64 " of %u bytes\n",
                    o->url, li.blocks, li.block_size, v.jr.h.lba_start, v.jr.h.lba_count, bs);
            rc = -EINVAL;
            goto out;
        }
        if (li.max_xfer_blocks && li.max_xfer_blocks < src.max_blocks)
            src.max_blocks = li.max_xfer_blocks;
    } else {
        src.name = o->file;
        src.fd = open(o->file, O_RDONLY | O_CLOEXEC);
        if (src.fd < 0) {
            rc = -errno;
            fprintf(stderr, PROG ": %s: %s\n", o->file, strerror(-rc));
            goto out;
        }
    }

    uint64_t bad = 0;
    rc = check_blocks(&v, &src, &bad);
    if (rc < 0)
        goto out;
    if (bad > MAX_BAD_LINES)
        fprintf(stderr, PROG ": verify: %" PRIu64 " more bad blocks not listed\n",
                bad - MAX_BAD_LINES);
    printf(PROG ": verify: %" PRIu64 " blocks checked, %" PRIu64 " bad; %s; journal run "
                "0x%016" PRIx64 ", %" PRIu64 " ops, %s%s\n",
           v.touched, bad, src.name, v.jr.h.run_id, v.n_ops,
           v.ended ? "complete" : "no END record (the run was interrupted)",
           v.jr.truncated ? ", truncated last record ignored" : "");
    if (v.no_completion)
        printf(PROG ": verify: %" PRIu64 " ops have no completion record: they may or may not "
                    "have happened\n",
               v.no_completion);
    rc = bad ? -EIO : 0;
out:
    if (src.iscsi) {
        iscsi_logout_sync(src.iscsi);
        iscsi_destroy_context(src.iscsi);
    }
    if (src.fd >= 0)
        close(src.fd);
    if (v.jr.f)
        fclose(v.jr.f);
    map_free(&v.map);
    free(v.ops);
    return rc < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- command line */

static const char usage_text[] =
    "usage:\n"
    "  " PROG " run --url URL --journal FILE [options]\n"
    "  " PROG " verify --journal FILE (--url URL | --file PATH [--block-size N])\n"
    "  " PROG " --help\n"
    "\n"
    "run: logs in to URL (iscsi://[user%password@]HOST:PORT/IQN/LUN), reads the capacity\n"
    "and keeps QD commands in flight: WRITE(16) of random sizes at random LBAs, some\n"
    "overlapping a command in flight, WRITE SAME(16) and UNMAP. Every block written is\n"
    "stamped (LBA, op id, run id, hash, pattern) and every command journaled before it is\n"
    "sent, so `verify` knows each touched block's acceptable contents even if the target or\n"
    "this program was killed meanwhile.\n"
    "  --ops N            commands to issue (default 10000; 0 = no limit, with --seconds)\n"
    "  --seconds S        stop issuing after S seconds (with --ops: whichever comes first)\n"
    "  --qd N             commands in flight (default 16)\n"
    "  --min BYTES        smallest WRITE (default 512; rounded up to the block size)\n"
    "  --max BYTES        largest WRITE and UNMAP extent (default 1048576); sizes are\n"
    "                     log-uniform in between. BYTES may end in K, M or G.\n"
    "  --unmap-pct P      share of UNMAPs, one or two extents (default 5)\n"
    "  --writesame-pct P  share of WRITE SAMEs of 1..256 blocks (default 5)\n"
    "  --overlap-pct P    share of commands placed over a block of one in flight (default 20)\n"
    "  --lba-start L      first LBA to use (default 0)\n"
    "  --lba-count N      LBAs to use (default: up to the end of the LUN)\n"
    "  --seed S           PRNG seed for the choices (default: random; printed)\n"
    "  --timeout S        a command unanswered after S seconds is lost (default 60; 0 = none)\n"
    "  --prior-zero       the range held zeros before the run (a new thin LUN): a block no\n"
    "                     acknowledged command touched must then read zeros or one of its\n"
    "                     commands' data; otherwise anything not stamped by this run passes\n"
    "  --allow-failures   exit 0 even if commands failed or the connection dropped\n"
    "  --progress FILE    every 0.25 s append \"EPOCH SECONDS BYTES COMMANDS\": the wall\n"
    "                     clock, time since the start, bytes written and commands\n"
    "                     completed so far\n"
    "The summary line gives issued/acked/failed per kind, bytes written, IOPS, run id and\n"
    "seed. A failed command is listed on stderr and counts as maybe-happened. SIGINT or\n"
    "SIGTERM stops issuing and drains; the journal is fdatasync'ed every second and at the\n"
    "end. Exit 0 when every command was acknowledged GOOD, 1 otherwise, 2 on usage errors.\n"
    "\n"
    "verify: reads every block the journal touched, from the target (--url) or straight\n"
    "from a backing file or device (--file; --block-size must match the journal's, which is\n"
    "the default), and checks each holds one of its acceptable contents, byte for byte.\n"
    "Prints the number of blocks checked and, for at most 20 bad blocks, the LBA, what it\n"
    "holds (a decoded stamp, zeros, a torn block or garbage) and what was acceptable.\n"
    "Exit 0 only when every block matches; 1 otherwise; 2 on usage errors.\n"
    "\n"
    "The journal format and the rule for acceptable contents are documented at the top of\n"
    "tests/workload/twl_workload.c.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see " PROG " --help)\n");
    return 2;
}

/* An unsigned number, with an optional K, M or G (binary) suffix when `sized`. */
static bool parse_u64(const char *s, uint64_t *out, bool sized)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno)
        return false;
    int shift = 0;
    if (sized && *end) {
        const char *units = "KMG";
        const char *u = strchr(units, *end & ~0x20);
        if (u == NULL || end[1])
            return false;
        shift = 10 * (int)(u - units + 1);
        end++;
    }
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

enum {
    OPT_URL = 256,
    OPT_JOURNAL,
    OPT_OPS,
    OPT_SECONDS,
    OPT_QD,
    OPT_MIN,
    OPT_MAX,
    OPT_UNMAP,
    OPT_WS,
    OPT_OVERLAP,
    OPT_LBA_START,
    OPT_LBA_COUNT,
    OPT_SEED,
    OPT_TIMEOUT,
    OPT_PRIOR_ZERO,
    OPT_PROGRESS,
    OPT_ALLOW,
    OPT_FILE,
    OPT_BS,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"journal", required_argument, NULL, OPT_JOURNAL},
    {"ops", required_argument, NULL, OPT_OPS},
    {"seconds", required_argument, NULL, OPT_SECONDS},
    {"qd", required_argument, NULL, OPT_QD},
    {"min", required_argument, NULL, OPT_MIN},
    {"max", required_argument, NULL, OPT_MAX},
    {"unmap-pct", required_argument, NULL, OPT_UNMAP},
    {"writesame-pct", required_argument, NULL, OPT_WS},
    {"overlap-pct", required_argument, NULL, OPT_OVERLAP},
    {"lba-start", required_argument, NULL, OPT_LBA_START},
    {"lba-count", required_argument, NULL, OPT_LBA_COUNT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"prior-zero", no_argument, NULL, OPT_PRIOR_ZERO},
    {"allow-failures", no_argument, NULL, OPT_ALLOW},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"file", required_argument, NULL, OPT_FILE},
    {"block-size", required_argument, NULL, OPT_BS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static bool is_run_only(int opt)
{
    return opt >= OPT_OPS && opt <= OPT_ALLOW;
}

static const char *opt_name(int opt)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == opt)
            return o->name;
    return "?";
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("%s", "a mode is required: run or verify");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    const char *mode = argv[1];
    bool run = strcmp(mode, "run") == 0;
    if (!run && strcmp(mode, "verify") != 0)
        return usage_error("unknown mode '%s' (want run or verify)", mode);

    struct run_opts ro = {.ops = 10000,
                          .qd = 16,
                          .min_bytes = 512,
                          .max_bytes = 1048576,
                          .unmap_pct = 5,
                          .ws_pct = 5,
                          .overlap_pct = 20,
                          .timeout = 60};
    struct verify_opts vo = {0};
    bool ops_given = false;
    int opt;
    uint64_t n = 0;
    optind = 2;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        const char *arg = optarg;
        if (opt == '?' || opt == ':')
            return usage_error("bad option '%s'", argv[optind - 1]);
        if (opt == OPT_HELP) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!run && is_run_only(opt))
            return usage_error("--%s is an option of run, not verify", opt_name(opt));
        if (run && (opt == OPT_FILE || opt == OPT_BS))
            return usage_error("--%s is an option of verify, not run", opt_name(opt));
        bool sized = opt == OPT_MIN || opt == OPT_MAX;
        bool numeric = opt != OPT_URL && opt != OPT_JOURNAL && opt != OPT_FILE &&
                       opt != OPT_PRIOR_ZERO && opt != OPT_ALLOW && opt != OPT_SECONDS &&
                       opt != OPT_PROGRESS;
        if (numeric && !parse_u64(arg, &n, sized))
            return usage_error("bad number '%s'", arg);
        bool pct = opt == OPT_UNMAP || opt == OPT_WS || opt == OPT_OVERLAP;
        if (pct && n > 100)
            return usage_error("a percentage above 100: '%s'", arg);
        switch (opt) {
        case OPT_URL:
            ro.url = vo.url = arg;
            break;
        case OPT_JOURNAL:
            ro.journal = vo.journal = arg;
            break;
        case OPT_OPS:
            ro.ops = n;
            ops_given = true;
            break;
        case OPT_SECONDS: {
            char *end;
            ro.seconds = strtod(arg, &end);
            if (*end || !(ro.seconds > 0))
                return usage_error("bad --seconds '%s'", arg);
            break;
        }
        case OPT_QD:
            if (n < 1 || n > 1024)
                return usage_error("--qd must be 1..1024, not '%s'", arg);
            ro.qd = (uint32_t)n;
            break;
        case OPT_MIN:
            ro.min_bytes = n;
            break;
        case OPT_MAX:
            ro.max_bytes = n;
            break;
        case OPT_UNMAP:
            ro.unmap_pct = (uint32_t)n;
            break;
        case OPT_WS:
            ro.ws_pct = (uint32_t)n;
            break;
        case OPT_OVERLAP:
            ro.overlap_pct = (uint32_t)n;
            break;
        case OPT_LBA_START:
            ro.lba_start = n;
            break;
        case OPT_LBA_COUNT:
            if (n == 0)
                return usage_error("--lba-count must be positive, not '%s'", arg);
            ro.lba_count = n;
            ro.have_lba_count = true;
            break;
        case OPT_SEED:
            ro.seed = n;
            ro.have_seed = true;
            break;
        case OPT_TIMEOUT:
            if (n > 86400)
                return usage_error("--timeout too large: '%s'", arg);
            ro.timeout = (int)n;
            break;
        case OPT_PRIOR_ZERO:
            ro.prior_zero = true;
            break;
        case OPT_ALLOW:
            ro.allow_failures = true;
            break;
        case OPT_PROGRESS:
            ro.progress = arg;
            break;
        case OPT_FILE:
            vo.file = arg;
            break;
        case OPT_BS:
            if (n < 64 || n > 65536 || n % 8)
                return usage_error("bad --block-size '%s'", arg);
            vo.block_size = (uint32_t)n;
            break;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (ro.journal == NULL)
        return usage_error("%s", "--journal FILE is required");
    if (run) {
        if (ro.url == NULL)
            return usage_error("%s", "run needs --url");
        if (ro.seconds > 0 && !ops_given)
            ro.ops = 0;
        if (ro.ops == 0 && ro.seconds <= 0)
            return usage_error("%s", "--ops 0 needs --seconds");
        if (ro.unmap_pct + ro.ws_pct > 100)
            return usage_error("%s", "--unmap-pct plus --writesame-pct exceed 100");
        if (ro.min_bytes > ro.max_bytes)
            return usage_error("%s", "--min is above --max");
        return cmd_run(&ro);
    }
    if ((vo.url == NULL) == (vo.file == NULL))
        return usage_error("%s", "verify needs exactly one of --url and --file");
    return cmd_verify(&vo);
}
