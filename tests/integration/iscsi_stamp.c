/*
 * iscsi_stamp: writes and verifies self-describing blocks through libiscsi, a real initiator.
 *
 *   iscsi_stamp [options] write|verify URL SEED NBLOCKS
 *
 * URL is iscsi://[user%password@]host:port/iqn/lun (mutual CHAP: append
 * ?target_user=NAME&target_password=SECRET). Every block written carries a stamp: a magic, its
 * LBA, the seed, and a pattern derived from both, so a block that lands at the wrong LBA, a stale
 * block from another run, or a torn transfer all show up as a mismatch.
 *
 * NBLOCKS blocks are written as extents of varied sizes (1 block up to 1 MiB, so immediate data,
 * unsolicited data and R2T sequences are all used), spread over the LBA range and ending at its
 * last LBA. `verify` recomputes the same layout from SEED and NBLOCKS and reads it back.
 *
 * Options:
 *   --header-digest      negotiate HeaderDigest=CRC32C (and require it)
 *   --r2t                negotiate InitialR2T=Yes, ImmediateData=No: all data by R2T
 *   --range START:COUNT  use only LBAs START..START+COUNT-1 (default: the whole LUN)
 *
 * Exit status 0 when every command succeeded and every byte matched; 1 otherwise, with the
 * first failure on stderr.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define MAGIC       "TWLSTAMP"
#define MAX_EXTENTS 4096
#define MAX_XFER    (1024u * 1024u)

struct extent {
    uint64_t lba;
    uint32_t blocks;
};

static uint64_t mix(uint64_t x)
{
    /* splitmix64 finaliser: cheap, and every input bit changes every output bit */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The content of one block: magic, LBA, seed, then a pattern of (LBA, seed). */
static void stamp_block(uint8_t *b, uint32_t block_size, uint64_t lba, uint32_t seed)
{
    memcpy(b, MAGIC, 8);
    put_le64(b + 8, lba);
    put_le64(b + 16, seed);
    uint64_t s = mix(lba ^ ((uint64_t)seed << 32) ^ seed);
    for (uint32_t off = 24; off < block_size; off += 8) {
        s = mix(s);
        uint8_t w[8];
        put_le64(w, s);
        uint32_t n = block_size - off < 8 ? block_size - off : 8;
        memcpy(b + off, w, n);
    }
}

/* Extent layout from (seed, nblocks, range): sizes cycle through a list that crosses the
 * immediate-data, first-burst and R2T boundaries; each extent sits at a seed-dependent place in
 * its own slot of the range, and the last one ends on the range's last LBA. */
static int plan_extents(uint32_t seed, uint64_t nblocks, uint64_t start, uint64_t count,
                        uint32_t block_size, struct extent *ex, size_t *n_out)
{
    static const uint32_t sizes_bytes[] = {512,    4096,   65536,  512 * 3, 262144,       1048576,
                                           266240, 131072, 524288, 8192,    1048576 - 512};
    const size_t nsizes = sizeof(sizes_bytes) / sizeof(sizes_bytes[0]);
    size_t n = 0;
    uint64_t left = nblocks;
    while (left > 0) {
        if (n == MAX_EXTENTS) {
            fprintf(stderr, "iscsi_stamp: too many extents (NBLOCKS too large)\n");
            return -1;
        }
        uint32_t b = sizes_bytes[(n + seed) % nsizes] / block_size;
        if (b == 0)
            b = 1;
        if (b > MAX_XFER / block_size)
            b = MAX_XFER / block_size;
        if (b > left)
            b = (uint32_t)left;
        ex[n].blocks = b;
        left -= b;
        n++;
    }
    uint64_t slot = count / n;
    for (size_t i = 0; i < n; i++) {
        if (slot < ex[i].blocks) {
            fprintf(stderr, "iscsi_stamp: range of %" PRIu64 " blocks too small for %zu extents\n",
                    count, n);
            return -1;
        }
        uint64_t room = slot - ex[i].blocks;
        uint64_t jitter = room ? mix(seed * 1000003ull + i) % (room + 1) : 0;
        ex[i].lba = start + i * slot + jitter;
    }
    /* the last extent ends exactly on the last LBA of the range */
    ex[n - 1].lba = start + count - ex[n - 1].blocks;
    if (n > 1 && ex[n - 2].lba + ex[n - 2].blocks > ex[n - 1].lba) {
        fprintf(stderr, "iscsi_stamp: range too small\n");
        return -1;
    }
    *n_out = n;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: iscsi_stamp [--header-digest] [--r2t] [--range START:COUNT] "
                    "write|verify URL SEED NBLOCKS\n");
}

static struct iscsi_context *connect_lun(const char *url_text, bool header_digest, bool r2t,
                                         int *lun)
{
    struct iscsi_context *iscsi = iscsi_create_context("iqn.2026-11.io.twinlun:test-stamp");
    if (iscsi == NULL) {
        fprintf(stderr, "iscsi_stamp: cannot create context\n");
        return NULL;
    }
    struct iscsi_url *url = iscsi_parse_full_url(iscsi, url_text);
    if (url == NULL) {
        fprintf(stderr, "iscsi_stamp: bad URL %s: %s\n", url_text, iscsi_get_error(iscsi));
        iscsi_destroy_context(iscsi);
        return NULL;
    }
    iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_targetname(iscsi, url->target);
    if (header_digest)
        iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_CRC32C);
    else
        iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
    if (r2t) {
        iscsi_set_initial_r2t(iscsi, ISCSI_INITIAL_R2T_YES);
        iscsi_set_immediate_data(iscsi, ISCSI_IMMEDIATE_DATA_NO);
    }
    if (url->user[0] && iscsi_set_initiator_username_pwd(iscsi, url->user, url->passwd) != 0) {
        fprintf(stderr, "iscsi_stamp: CHAP setup: %s\n", iscsi_get_error(iscsi));
        goto fail;
    }
    if (url->target_user[0] &&
        iscsi_set_target_username_pwd(iscsi, url->target_user, url->target_passwd) != 0) {
        fprintf(stderr, "iscsi_stamp: mutual CHAP setup: %s\n", iscsi_get_error(iscsi));
        goto fail;
    }
    /* a dropped connection must fail the run, not be papered over by a silent reconnect */
    iscsi_set_noautoreconnect(iscsi, 1);
    if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
        fprintf(stderr, "iscsi_stamp: login to %s %s failed: %s\n", url->portal, url->target,
                iscsi_get_error(iscsi));
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

static bool task_ok(struct iscsi_context *iscsi, struct scsi_task *task, const char *what,
                    uint64_t lba, uint32_t blocks)
{
    if (task == NULL) {
        fprintf(stderr, "iscsi_stamp: %s LBA %" PRIu64 "+%u: transport error: %s\n", what, lba,
                blocks, iscsi_get_error(iscsi));
        return false;
    }
    if (task->status != SCSI_STATUS_GOOD) {
        fprintf(stderr,
                "iscsi_stamp: %s LBA %" PRIu64 "+%u: status 0x%02x sense key 0x%x ASC/ASCQ "
                "0x%04x: %s\n",
                what, lba, blocks, task->status, task->sense.key, task->sense.ascq,
                iscsi_get_error(iscsi));
        scsi_free_scsi_task(task);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    bool header_digest = false, r2t = false, have_range = false;
    uint64_t range_start = 0, range_count = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--header-digest") == 0) {
            header_digest = true;
        } else if (strcmp(argv[i], "--r2t") == 0) {
            r2t = true;
        } else if (strcmp(argv[i], "--range") == 0 && i + 1 < argc) {
            char *end;
            range_start = strtoull(argv[++i], &end, 0);
            if (*end != ':') {
                usage();
                return 2;
            }
            range_count = strtoull(end + 1, &end, 0);
            if (*end || range_count == 0) {
                usage();
                return 2;
            }
            have_range = true;
        } else {
            usage();
            return 2;
        }
    }
    if (argc - i != 4) {
        usage();
        return 2;
    }
    const char *mode = argv[i];
    bool writing = strcmp(mode, "write") == 0;
    if (!writing && strcmp(mode, "verify") != 0) {
        usage();
        return 2;
    }
    const char *url = argv[i + 1];
    uint32_t seed = (uint32_t)strtoul(argv[i + 2], NULL, 0);
    uint64_t nblocks = strtoull(argv[i + 3], NULL, 0);
    if (nblocks == 0) {
        usage();
        return 2;
    }

    int lun = 0;
    struct iscsi_context *iscsi = connect_lun(url, header_digest, r2t, &lun);
    if (iscsi == NULL)
        return 1;
    int rc = 1;
    uint8_t *buf = NULL, *want = NULL;
    struct extent *ex = calloc(MAX_EXTENTS, sizeof(*ex));

    struct scsi_task *task = iscsi_readcapacity16_sync(iscsi, lun);
    if (!task_ok(iscsi, task, "READ CAPACITY(16)", 0, 0))
        goto out;
    struct scsi_readcapacity16 *rc16 = scsi_datain_unmarshall(task);
    if (rc16 == NULL) {
        fprintf(stderr, "iscsi_stamp: cannot decode READ CAPACITY(16) data\n");
        scsi_free_scsi_task(task);
        goto out;
    }
    uint32_t bs = rc16->block_length;
    uint64_t lun_blocks = rc16->returned_lba + 1;
    scsi_free_scsi_task(task);
    if (bs < 512 || bs > 65536 || (bs & 7)) {
        fprintf(stderr, "iscsi_stamp: odd block length %u\n", bs);
        goto out;
    }
    if (!have_range) {
        range_start = 0;
        range_count = lun_blocks;
    }
    if (range_start + range_count > lun_blocks) {
        fprintf(stderr, "iscsi_stamp: range beyond the LUN's %" PRIu64 " blocks\n", lun_blocks);
        goto out;
    }
    size_t n = 0;
    if (ex == NULL || plan_extents(seed, nblocks, range_start, range_count, bs, ex, &n) != 0)
        goto out;
    buf = malloc(MAX_XFER);
    want = malloc(MAX_XFER);
    if (buf == NULL || want == NULL)
        goto out;

    for (size_t e = 0; e < n; e++) {
        uint32_t len = ex[e].blocks * bs;
        for (uint32_t b = 0; b < ex[e].blocks; b++)
            stamp_block(want + (size_t)b * bs, bs, ex[e].lba + b, seed);
        if (writing) {
            task = iscsi_write16_sync(iscsi, lun, ex[e].lba, want, len, bs, 0, 0, 0, 0, 0);
            if (!task_ok(iscsi, task, "WRITE(16)", ex[e].lba, ex[e].blocks))
                goto out;
            scsi_free_scsi_task(task);
            continue;
        }
        task = iscsi_read16_sync(iscsi, lun, ex[e].lba, len, bs, 0, 0, 0, 0, 0);
        if (!task_ok(iscsi, task, "READ(16)", ex[e].lba, ex[e].blocks))
            goto out;
        if (task->datain.size != (int)len) {
            fprintf(stderr, "iscsi_stamp: READ(16) LBA %" PRIu64 "+%u returned %d bytes, want %u\n",
                    ex[e].lba, ex[e].blocks, task->datain.size, len);
            scsi_free_scsi_task(task);
            goto out;
        }
        memcpy(buf, task->datain.data, len);
        scsi_free_scsi_task(task);
        if (memcmp(buf, want, len) != 0) {
            uint32_t off = 0;
            while (buf[off] == want[off])
                off++;
            uint64_t lba = ex[e].lba + off / bs;
            uint64_t got_lba = 0;
            const uint8_t *blk = buf + (size_t)(off / bs) * bs;
            for (int k = 7; k >= 0; k--)
                got_lba = got_lba << 8 | blk[8 + k];
            fprintf(stderr,
                    "iscsi_stamp: MISMATCH at LBA %" PRIu64 " byte %u: got 0x%02x want 0x%02x "
                    "(block %s a stamp; its LBA field says %" PRIu64 ")\n",
                    lba, off % bs, buf[off], want[off],
                    memcmp(blk, MAGIC, 8) == 0 ? "has" : "lacks", got_lba);
            goto out;
        }
    }
    printf("iscsi_stamp: %s ok: %zu extents, %" PRIu64 " blocks of %u bytes, seed %u, last LBA "
           "%" PRIu64 "\n",
           mode, n, nblocks, bs, seed, ex[n - 1].lba + ex[n - 1].blocks - 1);
    rc = 0;
out:
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
    free(buf);
    free(want);
    free(ex);
    return rc;
}
