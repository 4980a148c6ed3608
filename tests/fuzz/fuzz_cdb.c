/*
 * SCSI command planning and the parsers of what follows a CDB, fed arbitrary bytes:
 *
 *   byte 0    the LUN: bit 0 4096-byte blocks, 1 thin, 2 read-only, 3 write cache, 4 no transfer
 *             limit, 5 no LUN at all, 6-7 lbppbe
 *   byte 1    the view: bits 0-2 ALUA state, 3-4 Data-In buffer size, 5 a pending unit
 *             attention, 6 no view, 7 two port groups
 *   bytes 2-9 block count (masked so the LUN's bytes fit 64 bits)
 *   byte 10   CDB length (0..32), or 0xFF: a PERSISTENT RESERVE sequence follows, 0xFE: a
 *             reservation state image follows (its length and CRC are fixed up by the harness)
 *   then      the CDB, then its parameter list (UNMAP, MODE SELECT, PR OUT, EXTENDED COPY)
 *
 * Every buffer has exactly the size the code is told, so reads past it are caught. Beyond
 * "no crash": a CHECK CONDITION carries valid fixed-format sense and no data, GOOD carries no
 * sense, Data-In fits the buffer, a media plan lies inside the LUN, needs exactly the Data-Out
 * its blocks make, honours read-only, the transfer limit and the ALUA state; parsed UNMAP and
 * EXTENDED COPY extents lie inside their LUNs; a PERSISTENT RESERVE command that does not end
 * GOOD leaves the state as it was, one that changes it says so, and every state reached encodes
 * and decodes to itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pr.h"
#include "scsi.h"
#include "twl_common.h"
#include "xcopy.h"

#define TARGET_NAME "iqn.2026-11.io.twinlun:fuzz"

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_cdb: invariant broken: %s\n", what);
        abort();
    }
}

/* Exactly len bytes (at least one allocated), so ASan sees any read past them. */
static uint8_t *exact_copy(const uint8_t *src, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    if (p == NULL)
        abort();
    if (len)
        memcpy(p, src, len);
    return p;
}

static void check_sense(const struct scsi_plan *plan)
{
    if (plan->action != SCSI_ACTION_COMPLETE)
        return;
    if (plan->status == SCSI_STATUS_CHECK_CONDITION) {
        check(plan->sense_len == SCSI_SENSE_FIXED_LEN, "CHECK CONDITION without sense");
        check((plan->sense[0] & 0x7f) == 0x70, "sense not fixed format, current");
        check((plan->sense[2] & 0xf0) == 0, "sense byte 2 has bits beyond the key");
        check(plan->sense[7] == SCSI_SENSE_FIXED_LEN - 8, "additional sense length");
        check(plan->data_len == 0, "CHECK CONDITION with Data-In");
    } else {
        check(plan->status == SCSI_STATUS_GOOD || plan->status == SCSI_STATUS_CONDITION_MET,
              "unexpected status");
        check(plan->sense_len == 0, "sense with a good status");
    }
}

static bool inside(const struct scsi_lun *lun, uint64_t lba, uint64_t blocks)
{
    return lba <= lun->block_count && blocks <= lun->block_count - lba;
}

static void check_media(const struct scsi_lun *lun, const struct scsi_target_view *view,
                        const uint8_t *cdb, const struct scsi_plan *plan)
{
    uint64_t bs = lun->block_size;
    switch (plan->action) {
    case SCSI_ACTION_READ:
    case SCSI_ACTION_WRITE:
        check(plan->blocks > 0, "media plan of no blocks");
        check(lun->max_transfer_blocks == 0 || plan->blocks <= lun->max_transfer_blocks,
              "transfer above the limit");
        break;
    default:
        break;
    }
    switch (plan->action) {
    case SCSI_ACTION_COMPLETE:
        return;
    case SCSI_ACTION_READ:
        check(plan->data_out == 0, "READ with Data-Out");
        break;
    case SCSI_ACTION_WRITE:
        check(plan->data_out == plan->blocks * bs, "WRITE Data-Out is not its blocks");
        break;
    case SCSI_ACTION_SYNC:
        check(plan->data_out == 0, "SYNC with Data-Out");
        break;
    case SCSI_ACTION_COMPARE_AND_WRITE:
        check(plan->blocks > 0 && plan->data_out == 2 * plan->blocks * bs,
              "COMPARE AND WRITE Data-Out is not twice its blocks");
        break;
    case SCSI_ACTION_VERIFY:
        check((plan->bytchk == 1 && plan->data_out == plan->blocks * bs) ||
                  (plan->bytchk == 3 && plan->data_out == bs),
              "VERIFY Data-Out");
        break;
    case SCSI_ACTION_ORWRITE:
        check(plan->blocks > 0 && plan->data_out == plan->blocks * bs, "ORWRITE Data-Out");
        break;
    case SCSI_ACTION_WRITE_SAME:
        check(plan->blocks > 0 && plan->data_out == (plan->ndob ? 0 : bs), "WRITE SAME Data-Out");
        break;
    case SCSI_ACTION_UNMAP:
    case SCSI_ACTION_GET_LBA_STATUS:
    case SCSI_ACTION_LU:
    case SCSI_ACTION_EXTENDED_COPY:
        check(lun != NULL, "LU action without a LUN");
        if (plan->action == SCSI_ACTION_GET_LBA_STATUS)
            check(plan->lba < lun->block_count && plan->alloc_len > 0, "GET LBA STATUS");
        return;
    default:
        check(false, "unknown action");
    }
    check(inside(lun, plan->lba, plan->blocks), "media plan outside the LUN");
    bool writes = plan->action == SCSI_ACTION_WRITE || plan->action == SCSI_ACTION_WRITE_SAME ||
                  plan->action == SCSI_ACTION_COMPARE_AND_WRITE ||
                  plan->action == SCSI_ACTION_ORWRITE;
    check(!(writes && lun->read_only), "a write planned on a read-only LUN");
    check(!writes || scsi_is_medium_write(cdb), "a write from a command not known to write");
    check(view == NULL || scsi_alua_denies(view->alua_state, cdb) == 0,
          "medium access through a port ALUA denies");
    check(!writes || lun->write_cache || plan->fua, "write cache off, write not FUA");
}

/* UNMAP, MODE SELECT and EXTENDED COPY parameter lists of a planned command. */
static void parse_param(const struct scsi_lun *lun, const uint8_t *cdb, const struct scsi_plan *p,
                        const uint8_t *rest, size_t rest_len)
{
    size_t len = p->data_out < rest_len ? p->data_out : rest_len;
    uint8_t *param = exact_copy(rest, len);
    struct scsi_plan plan;
    memset(&plan, 0, sizeof(plan));
    if (p->action == SCSI_ACTION_UNMAP) {
        struct scsi_extent ext[256];
        int n = scsi_unmap_parse(lun, param, len, ext, 256, &plan);
        if (n < 0)
            check_sense(&plan);
        for (int i = 0; i < n; i++)
            check(inside(lun, ext[i].lba, ext[i].blocks), "UNMAP extent outside the LUN");
    } else if (p->action == SCSI_ACTION_LU && (cdb[0] == 0x15 || cdb[0] == 0x55)) {
        struct scsi_mode_params cur = {.write_cache = lun->write_cache}, out;
        if (scsi_mode_select_parse(lun, cdb, param, len, &cur, &out, &plan) != 0)
            check_sense(&plan);
    } else if (p->action == SCSI_ACTION_EXTENDED_COPY) {
        /* the LUN itself and a second one of the same block size */
        struct scsi_lun other = *lun;
        other.id = lun->id + 1;
        other.block_count = lun->block_count / 2 + 1;
        scsi_lun_derive_ids(&other, TARGET_NAME);
        struct xcopy_lu lus[2] = {{.info = lun}, {.info = &other}};
        struct xcopy_segment segs[XCOPY_MAX_SEGMENT_DESCRIPTORS];
        struct xcopy_list list;
        int n = xcopy_parse(param, len, lus, 2, segs, XCOPY_MAX_SEGMENT_DESCRIPTORS, &list, &plan);
        if (n < 0)
            check_sense(&plan);
        for (int i = 0; i < n; i++) {
            check(segs[i].src < 2 && segs[i].dst < 2, "segment LU index");
            const struct scsi_lun *s = lus[segs[i].src].info, *d = lus[segs[i].dst].info;
            check(inside(s, segs[i].src_lba, segs[i].blocks), "copy source outside its LUN");
            check(inside(d, segs[i].dst_lba, segs[i].blocks), "copy destination outside its LUN");
            check((uint64_t)segs[i].blocks * s->block_size <= XCOPY_MAX_SEGMENT_BYTES,
                  "segment above the limit");
        }
    }
    free(param);
}

/* ---- PERSISTENT RESERVE ---- */

static struct pr_state state, decoded;
static struct pr_result result;
static uint8_t image_a[PR_STATE_IMAGE_MAX], image_b[PR_STATE_IMAGE_MAX];

static const struct pr_nexus nexuses[4] = {
    {"iqn.1994-05.com.example:a", {0x80, 0, 0, 0, 0, 1}, 1},
    {"iqn.1994-05.com.example:a", {0x80, 0, 0, 0, 0, 2}, 1},
    {"iqn.1994-05.com.example:b", {0x80, 0, 0, 0, 0, 1}, 2},
    {"IQN.1994-05.COM.EXAMPLE:A", {0x80, 0, 0, 0, 0, 1}, 2},
};

/* The state encodes within its bound and decodes to the same image. Returns the image length. */
static size_t check_roundtrip(const struct pr_state *s, uint8_t *image)
{
    size_t n = pr_state_encode(s, image, PR_STATE_IMAGE_MAX);
    check(n <= PR_STATE_IMAGE_MAX, "image above PR_STATE_IMAGE_MAX");
    check(pr_state_decode(&decoded, image, n) == 0, "a reached state does not decode");
    uint8_t *again = malloc(PR_STATE_IMAGE_MAX);
    if (again == NULL)
        abort();
    check(pr_state_encode(&decoded, again, PR_STATE_IMAGE_MAX) == n && memcmp(again, image, n) == 0,
          "decoded state encodes differently");
    free(again);
    return n;
}

/* Records: [selector][10-byte CDB][2-byte length][parameter list]. Selector bits 0-1 the nexus,
 * 2-3 the command: PR OUT, PR IN, RESERVE(6), RELEASE(6). */
static void pr_sequence(const uint8_t *data, size_t size)
{
    pr_state_init(&state);
    size_t pos = 0;
    for (int n = 0; n < 32 && size - pos >= 11; n++) {
        uint8_t sel = data[pos];
        const struct pr_nexus *nx = &nexuses[sel & 3];
        uint8_t cdb[10];
        memcpy(cdb, data + pos + 1, 10);
        pos += 11;
        size_t plen = 0;
        if (size - pos >= 2) {
            plen = (size_t)data[pos] << 8 | data[pos + 1];
            pos += 2;
        }
        if (plen > size - pos)
            plen = size - pos;
        uint8_t *param = exact_copy(data + pos, plen);
        pos += plen;

        size_t before = check_roundtrip(&state, image_a);
        unsigned kind = (sel >> 2) & 3;
        cdb[0] = (uint8_t[]){0x5f, 0x5e, 0x16, 0x17}[kind];
        (void)pr_conflicts(&state, nx, cdb);
        memset(&result, 0, sizeof(result));
        if (kind == 0) {
            pr_out(&state, nx, cdb, param, plen, &result);
        } else if (kind == 1) {
            size_t buflen = (sel & 0x10) ? 24 : 4096;
            uint8_t *buf = malloc(buflen);
            if (buf == NULL)
                abort();
            pr_in(&state, nx, cdb, buf, buflen, &result);
            check(result.data_len <= buflen, "PR IN data beyond the buffer");
            free(buf);
        } else if (kind == 2) {
            pr_reserve6(&state, nx, cdb, &result);
        } else {
            pr_release6(&state, nx, cdb, &result);
        }
        free(param);
        check(result.status == 0x00 || result.status == 0x02 || result.status == 0x18, "PR status");
        check(result.ua_count <= PR_MAX_REGISTRANTS, "too many unit attentions");
        size_t after = check_roundtrip(&state, image_b);
        bool same = after == before && memcmp(image_a, image_b, after) == 0;
        if (result.status != 0x00)
            check(same, "a refused PR command changed the state");
        if (!same && kind <= 1)
            check(result.changed, "PR state changed, not reported");
        if (sel & 0x20)
            pr_nexus_lost(&state, nx);
        if (sel & 0x40)
            pr_reset(&state);
    }
}

/* A state image with its length and CRC made right, so the contents are what is tested. */
static void pr_image(const uint8_t *data, size_t size)
{
    if (size > PR_STATE_IMAGE_MAX)
        size = PR_STATE_IMAGE_MAX;
    size_t len = size + 4;
    uint8_t *img = malloc(len);
    if (img == NULL)
        abort();
    memcpy(img, data, size);
    if (size >= 12)
        twl_put_be32(img + 8, (uint32_t)len);
    twl_put_be32(img + size, twl_crc32c(img, size));
    pr_state_init(&state);
    if (pr_state_decode(&state, img, len) == 0) {
        /* Not byte for byte: fields that do not apply (the RESERVE(6) holder when there is
         * none, reserved bytes) may hold anything and encode as zeros. */
        check(check_roundtrip(&state, image_a) == len, "accepted image re-encodes to another size");
    }
    free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 11)
        return 0;
    uint8_t lf = data[0], vf = data[1];
    if (data[10] == 0xff) {
        pr_sequence(data + 11, size - 11);
        return 0;
    }
    if (data[10] == 0xfe) {
        pr_image(data + 11, size - 11);
        return 0;
    }

    static struct scsi_lun lun_store;
    struct scsi_lun *lun = &lun_store;
    memset(lun, 0, sizeof(*lun));
    lun->id = 3;
    lun->block_size = lf & 0x01 ? 4096 : 512;
    lun->thin = lf & 0x02;
    lun->read_only = lf & 0x04;
    lun->write_cache = lf & 0x08;
    lun->saved_write_cache = lf & 0x08;
    lun->max_transfer_blocks = lf & 0x10 ? 0 : (1u << 20) / lun->block_size;
    lun->lbppbe = lf >> 6;
    lun->block_count = twl_get_be64(data + 2) >> (lun->block_size == 512 ? 9 : 12);
    scsi_lun_derive_ids(lun, TARGET_NAME);
    if (lf & 0x20)
        lun = NULL;

    static const uint32_t lun_ids[] = {0, 3, 255, 256, 16383, 16384};
    static const struct scsi_port_group groups[2] = {{1, 1}, {2, 2}};
    static const enum scsi_alua_state alua[8] = {
        SCSI_ALUA_ACTIVE_OPTIMIZED, SCSI_ALUA_ACTIVE_OPTIMIZED,     SCSI_ALUA_ACTIVE_OPTIMIZED,
        SCSI_ALUA_ACTIVE_OPTIMIZED, SCSI_ALUA_ACTIVE_NON_OPTIMIZED, SCSI_ALUA_STANDBY,
        SCSI_ALUA_UNAVAILABLE,      SCSI_ALUA_TRANSITIONING};
    struct scsi_target_view view_store = {
        .target_name = TARGET_NAME,
        .relative_port_id = 1,
        .target_port_group = 1,
        .lun_ids = lun_ids,
        .lun_count = sizeof(lun_ids) / sizeof(lun_ids[0]),
        .groups = vf & 0x80 ? groups : NULL,
        .group_count = vf & 0x80 ? 2 : 0,
        .alua_state = alua[vf & 7],
        .pending_ua = vf & 0x20 ? SCSI_ASC_POWER_ON_RESET : 0,
    };
    const struct scsi_target_view *view = vf & 0x40 ? NULL : &view_store;
    static const size_t buflens[4] = {4096, 512, 24, 0};
    size_t buflen = buflens[(vf >> 3) & 3];
    uint8_t *buf = buflen ? malloc(buflen) : NULL;

    size_t cdb_len = data[10] % 33;
    size_t pos = 11;
    if (cdb_len > size - pos)
        cdb_len = size - pos;
    uint8_t *cdb = exact_copy(data + pos, cdb_len);
    pos += cdb_len;

    struct scsi_plan plan;
    memset(&plan, 0xa5, sizeof(plan));
    scsi_plan_command(lun, view, cdb_len ? cdb : NULL, cdb_len, buf, buflen, &plan);
    check_sense(&plan);
    check(plan.data_len <= buflen, "Data-In beyond the buffer");
    if (lun == NULL)
        check(plan.action == SCSI_ACTION_COMPLETE, "an action without a LUN");
    else
        check_media(lun, view, cdb, &plan);
    if (lun != NULL && plan.data_out > 0)
        parse_param(lun, cdb, &plan, data + pos, size - pos);

    free(cdb);
    free(buf);
    return 0;
}
