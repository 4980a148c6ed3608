/*
 * twl-prcheck: persistent reservations through libiscsi, for the takeover tests: one
 * initiator port (the name given, a fixed ISID), one command, one line of output. Unit attentions
 * (a new nexus, an ALUA change) are taken and the command sent again. twl-prcheck URL INITIATOR
 * register KEY   REGISTER KEY with ALL_TG_PT (valid through both nodes' ports) twl-prcheck URL
 * INITIATOR reserve KEY    RESERVE Write Exclusive - Registrants Only twl-prcheck URL INITIATOR
 * clear KEY      CLEAR twl-prcheck URL INITIATOR show           "generation G keys K,... holder K
 * type T" (READ KEYS and READ RESERVATION; holder none when none) twl-prcheck URL INITIATOR write
 * LBA      WRITE(10) of one block: prints GOOD, RESERVATION-CONFLICT or SENSE key/asc/ascq Exit 0
 * when the command ran (write: whatever its status), 1 when it failed.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define ATTEMPTS 8

static struct iscsi_context *login(const char *url_text, const char *initiator, int *lun)
{
    struct iscsi_context *iscsi = iscsi_create_context(initiator);
    if (iscsi == NULL)
        return NULL;
    struct iscsi_url *url = iscsi_parse_full_url(iscsi, url_text);
    if (url == NULL) {
        fprintf(stderr, "twl-prcheck: bad URL %s: %s\n", url_text, iscsi_get_error(iscsi));
        iscsi_destroy_context(iscsi);
        return NULL;
    }
    /* one fixed ISID: reservations belong to the initiator port (name and ISID), which must
     * be the same in every run of this program */
    iscsi_set_isid_oui(iscsi, 0x001405, 0x7701);
    iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_targetname(iscsi, url->target);
    /* no TEST UNIT READY at login, which a standby port refuses */
    if (iscsi_connect_sync(iscsi, url->portal) != 0 || iscsi_login_sync(iscsi) != 0) {
        fprintf(stderr, "twl-prcheck: login to %s: %s\n", url_text, iscsi_get_error(iscsi));
        iscsi_destroy_url(url);
        iscsi_destroy_context(iscsi);
        return NULL;
    }
    *lun = url->lun;
    iscsi_destroy_url(url);
    return iscsi;
}

static bool unit_attention(const struct scsi_task *t)
{
    return t && t->status == SCSI_STATUS_CHECK_CONDITION &&
           t->sense.key == SCSI_SENSE_UNIT_ATTENTION;
}

static int prout(struct iscsi_context *iscsi, int lun, int sa, uint64_t key, uint64_t sakey,
                 bool all_tg_pt)
{
    struct scsi_persistent_reserve_out_basic b = {
        .reservation_key = key, .service_action_reservation_key = sakey, .all_tg_pt = all_tg_pt};
    int type = sa == SCSI_PERSISTENT_RESERVE_RESERVE
                   ? SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY
                   : 0;
    struct scsi_task *t = NULL;
    for (int i = 0; i < ATTEMPTS && (t == NULL || unit_attention(t)); i++) {
        if (t)
            scsi_free_scsi_task(t);
        t = iscsi_persistent_reserve_out_sync(iscsi, lun, sa, 0, type, &b);
    }
    int rc = t && t->status == SCSI_STATUS_GOOD ? 0 : 1;
    if (rc)
        fprintf(stderr, "twl-prcheck: PR OUT service action %d: %s\n", sa,
                t ? iscsi_get_error(iscsi) : "no task");
    if (t)
        scsi_free_scsi_task(t);
    return rc;
}

static struct scsi_task *prin(struct iscsi_context *iscsi, int lun, int sa)
{
    struct scsi_task *t = NULL;
    for (int i = 0; i < ATTEMPTS && (t == NULL || unit_attention(t)); i++) {
        if (t)
            scsi_free_scsi_task(t);
        t = iscsi_persistent_reserve_in_sync(iscsi, lun, sa, 8192);
    }
    if (t && t->status != SCSI_STATUS_GOOD) {
        fprintf(stderr, "twl-prcheck: PR IN service action %d: %s\n", sa, iscsi_get_error(iscsi));
        scsi_free_scsi_task(t);
        return NULL;
    }
    return t;
}

static int show(struct iscsi_context *iscsi, int lun)
{
    struct scsi_task *keys = prin(iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS);
    struct scsi_task *res = prin(iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_RESERVATION);
    int rc = 1;
    const struct scsi_persistent_reserve_in_read_keys *k =
        keys ? scsi_datain_unmarshall(keys) : NULL;
    const struct scsi_persistent_reserve_in_read_reservation *r =
        res ? scsi_datain_unmarshall(res) : NULL;
    if (k && r) {
        printf("generation %" PRIu32 " keys ", k->prgeneration);
        for (int i = 0; i < k->num_keys; i++)
            printf("%s%" PRIx64, i ? "," : "", k->keys[i]);
        if (k->num_keys == 0)
            printf("none");
        if (r->reserved)
            printf(" holder %" PRIx64 " type %d\n", r->reservation_key, r->pr_type);
        else
            printf(" holder none\n");
        rc = 0;
    }
    if (keys)
        scsi_free_scsi_task(keys);
    if (res)
        scsi_free_scsi_task(res);
    return rc;
}

static int write_one(struct iscsi_context *iscsi, int lun, uint32_t lba)
{
    uint8_t block[512];
    memset(block, 0x5c, sizeof(block));
    struct scsi_task *t = NULL;
    for (int i = 0; i < ATTEMPTS && (t == NULL || unit_attention(t)); i++) {
        if (t)
            scsi_free_scsi_task(t);
        t = iscsi_write10_sync(iscsi, lun, lba, block, sizeof(block), 512, 0, 0, 0, 0, 0);
    }
    if (t == NULL) {
        fprintf(stderr, "twl-prcheck: WRITE: %s\n", iscsi_get_error(iscsi));
        return 1;
    }
    if (t->status == SCSI_STATUS_GOOD)
        printf("GOOD\n");
    else if (t->status == SCSI_STATUS_RESERVATION_CONFLICT)
        printf("RESERVATION-CONFLICT\n");
    else
        printf("SENSE %x/%04x\n", t->sense.key, t->sense.ascq);
    scsi_free_scsi_task(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: twl-prcheck URL INITIATOR register|reserve|clear KEY | show | "
                        "write LBA\n");
        return 2;
    }
    const char *cmd = argv[3];
    uint64_t arg = argc > 4 ? strtoull(argv[4], NULL, 0) : 0;
    int lun;
    struct iscsi_context *iscsi = login(argv[1], argv[2], &lun);
    if (iscsi == NULL)
        return 1;
    int rc;
    if (strcmp(cmd, "register") == 0)
        rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, arg,
                   true);
    else if (strcmp(cmd, "reserve") == 0)
        rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_RESERVE, arg, 0, false);
    else if (strcmp(cmd, "clear") == 0)
        rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_CLEAR, arg, 0, false);
    else if (strcmp(cmd, "show") == 0)
        rc = show(iscsi, lun);
    else if (strcmp(cmd, "write") == 0)
        rc = write_one(iscsi, lun, (uint32_t)arg);
    else {
        fprintf(stderr, "twl-prcheck: unknown command %s\n", cmd);
        rc = 2;
    }
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
    return rc;
}
