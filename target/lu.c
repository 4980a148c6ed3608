#include "lu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twl_common.h"

#define PART "lu"

#define OP_REQUEST_SENSE 0x03
#define OP_RESERVE_6     0x16
#define OP_RELEASE_6     0x17
#define OP_PR_IN         0x5e
#define OP_PR_OUT        0x5f

/*
 * Saved mode parameters file, "<state_base>.mode": one line of text, "wce=<0|1>\n". Written
 * to a temporary file, synced, renamed over the old one: a crash leaves the old or the new.
 */
static int mode_save(const struct lu *lu, bool wce)
{
    char tmp[sizeof(lu->mode_path) + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", lu->mode_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    char line[16];
    int n = snprintf(line, sizeof(line), "wce=%d\n", wce ? 1 : 0);
    int rc = 0;
    if (write(fd, line, (size_t)n) != n || fsync(fd) < 0)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, lu->mode_path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

static void mode_load(struct lu *lu)
{
    FILE *f = fopen(lu->mode_path, "r");
    if (f == NULL)
        return; /* never saved: the defaults */
    int wce;
    if (fscanf(f, "wce=%d", &wce) == 1 && (wce == 0 || wce == 1)) {
        lu->info->write_cache = wce;
        lu->info->saved_write_cache = wce;
    } else {
        TWL_WARN(PART, "LUN %u: %s is not a saved mode file; using defaults", lu->lun_id,
                 lu->mode_path);
    }
    fclose(f);
}

static bool any_reservation(const struct pr_state *s)
{
    return s->reserved || s->r6_reserved;
}

int lu_init(struct lu *lu, struct scsi_lun *info, const char *state_base)
{
    memset(lu, 0, sizeof(*lu));
    int rc = pthread_mutex_init(&lu->lock, NULL);
    if (rc)
        return -rc;
    lu->lun_id = info->id;
    lu->info = info;
    atomic_store(&lu->alua_state, -1);
    info->saved_write_cache = info->write_cache;
    snprintf(lu->pr_path, sizeof(lu->pr_path), "%s.pr", state_base);
    snprintf(lu->mode_path, sizeof(lu->mode_path), "%s.mode", state_base);
    mode_load(lu);
    pr_state_init(&lu->pr);
    rc = pr_state_load(&lu->pr, lu->pr_path);
    if (rc == -ENOENT) {
        pr_state_init(&lu->pr);
    } else if (rc) {
        /* A damaged file must not silently drop reservations a cluster relies on. */
        TWL_ERROR(PART, "LUN %u: cannot load persistent reservations from %s: %s", lu->lun_id,
                  lu->pr_path, strerror(-rc));
        pthread_mutex_destroy(&lu->lock);
        return rc;
    } else {
        TWL_INFO(PART, "LUN %u: persistent reservations restored from %s", lu->lun_id, lu->pr_path);
    }
    atomic_store(&lu->reserved, any_reservation(&lu->pr));
    return 0;
}

void lu_destroy(struct lu *lu)
{
    struct lu_nexus *n = lu->nexuses;
    while (n) {
        struct lu_nexus *next = n->next;
        free(n);
        n = next;
    }
    lu->nexuses = NULL;
    pthread_mutex_destroy(&lu->lock);
}

/* ---------------- range locks ---------------- */

static bool overlaps(const struct lu_range *a, const struct lu_range *b)
{
    return a->lba < b->end && b->lba < a->end;
}

static bool conflicts_with_list(const struct lu_range *r, const struct lu_range *list,
                                const struct lu_range *stop)
{
    for (const struct lu_range *o = list; o && o != stop; o = o->next)
        if (overlaps(r, o))
            return true;
    return false;
}

bool lu_range_lock(struct lu *lu, struct lu_range *r, uint64_t lba, uint64_t blocks)
{
    r->lba = lba;
    r->end = lba + (blocks ? blocks : 1);
    r->next = NULL;
    pthread_mutex_lock(&lu->lock);
    /* Waiters keep their turn: a new request also waits behind an overlapping waiter. */
    bool wait =
        conflicts_with_list(r, lu->active, NULL) || conflicts_with_list(r, lu->wait_head, NULL);
    if (wait) {
        r->held = false;
        if (lu->wait_tail)
            lu->wait_tail->next = r;
        else
            lu->wait_head = r;
        lu->wait_tail = r;
    } else {
        r->held = true;
        r->next = lu->active;
        lu->active = r;
    }
    pthread_mutex_unlock(&lu->lock);
    return !wait;
}

void lu_range_unlock(struct lu *lu, struct lu_range *r)
{
    struct lu_range *granted = NULL;
    struct lu_range **granted_tail = &granted;
    pthread_mutex_lock(&lu->lock);
    for (struct lu_range **p = &lu->active; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    r->held = false;
    /* Grant, in order, every waiter that overlaps neither a holder nor an earlier waiter. */
    struct lu_range *prev = NULL;
    struct lu_range *w = lu->wait_head;
    while (w) {
        struct lu_range *next = w->next;
        if (!conflicts_with_list(w, lu->active, NULL) &&
            !conflicts_with_list(w, lu->wait_head, w)) {
            if (prev)
                prev->next = next;
            else
                lu->wait_head = next;
            if (lu->wait_tail == w)
                lu->wait_tail = prev;
            w->held = true;
            w->next = lu->active;
            lu->active = w;
            /* collected in arrival order for the callbacks, which run after unlocking */
            w->granted_next = NULL;
            *granted_tail = w;
            granted_tail = &w->granted_next;
        } else {
            prev = w;
        }
        w = next;
    }
    pthread_mutex_unlock(&lu->lock);
    while (granted) {
        struct lu_range *next = granted->granted_next;
        granted->granted_next = NULL;
        granted->granted(granted);
        granted = next;
    }
}

/* ---------------- I_T nexuses and unit attentions ---------------- */

/* Under lu->lock. A full queue drops the new condition: the oldest ones say more and SAM-5
 * lets a device server report fewer (the initiator rescans on any of them). */
static void ua_queue(struct lu_nexus *n, uint16_t asc_ascq)
{
    unsigned count = atomic_load(&n->ua_count);
    for (unsigned i = 0; i < count; i++)
        if (n->ua[i] == asc_ascq)
            return;
    if (count == LU_UA_MAX)
        return;
    n->ua[count] = asc_ascq;
    atomic_store(&n->ua_count, count + 1);
}

static uint16_t ua_pop(struct lu_nexus *n)
{
    unsigned count = atomic_load(&n->ua_count);
    if (count == 0)
        return 0;
    uint16_t asc = n->ua[0];
    memmove(n->ua, n->ua + 1, (count - 1) * sizeof(n->ua[0]));
    atomic_store(&n->ua_count, count - 1);
    return asc;
}

struct lu_nexus *lu_nexus_get(struct lu *lu, const char *initiator, const uint8_t isid[6],
                              uint16_t rel_port)
{
    pthread_mutex_lock(&lu->lock);
    struct lu_nexus *n;
    for (n = lu->nexuses; n; n = n->next) {
        if (n->rel_port == rel_port && memcmp(n->isid, isid, 6) == 0 &&
            strcmp(n->initiator, initiator) == 0)
            break;
    }
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n) {
            snprintf(n->initiator, sizeof(n->initiator), "%s", initiator);
            memcpy(n->isid, isid, 6);
            n->rel_port = rel_port;
            ua_queue(n, SCSI_ASC_POWER_ON_RESET);
            xcopy_history_init(&n->xcopy);
            n->next = lu->nexuses;
            lu->nexuses = n;
        }
    }
    if (n)
        n->users++;
    pthread_mutex_unlock(&lu->lock);
    return n;
}

void lu_nexus_put(struct lu *lu, struct lu_nexus *n)
{
    pthread_mutex_lock(&lu->lock);
    if (--n->users == 0) {
        for (struct lu_nexus **pp = &lu->nexuses; *pp; pp = &(*pp)->next) {
            if (*pp == n) {
                *pp = n->next;
                break;
            }
        }
        free(n);
    }
    pthread_mutex_unlock(&lu->lock);
}

static void ua_all_locked(struct lu *lu, uint16_t asc_ascq, const struct lu_nexus *except)
{
    for (struct lu_nexus *n = lu->nexuses; n; n = n->next)
        if (n != except)
            ua_queue(n, asc_ascq);
}

void lu_ua_all(struct lu *lu, uint16_t asc_ascq, const struct lu_nexus *except)
{
    pthread_mutex_lock(&lu->lock);
    ua_all_locked(lu, asc_ascq, except);
    pthread_mutex_unlock(&lu->lock);
}

void lu_alua_changed(struct lu *lu)
{
    uint64_t now = twl_now_ns();
    pthread_mutex_lock(&lu->lock);
    for (struct lu_nexus *n = lu->nexuses; n; n = n->next)
        atomic_store(&n->alua_changed_ns, now);
    ua_all_locked(lu, SCSI_ASC_ALUA_STATE_CHANGED, NULL);
    pthread_mutex_unlock(&lu->lock);
}

bool lu_nexus_alua_settling(const struct lu_nexus *n, uint64_t now_ns)
{
    uint64_t t = atomic_load(&n->alua_changed_ns);
    /* now_ns may be a thread's loop time, taken just before the change */
    return t && (now_ns < t || now_ns - t < LU_ALUA_SETTLE_NS);
}

static struct pr_nexus pr_nexus_of(const struct lu_nexus *n)
{
    struct pr_nexus p;
    p.initiator_name = n->initiator;
    memcpy(p.isid, n->isid, 6);
    p.rel_port = n->rel_port;
    return p;
}

bool lu_admit(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb, struct scsi_plan *plan,
              uint16_t *pending_ua)
{
    *pending_ua = 0;
    if (atomic_load(&n->ua_count) && (!scsi_ua_passes(cdb) || cdb[0] == OP_REQUEST_SENSE)) {
        pthread_mutex_lock(&lu->lock);
        uint16_t asc = ua_pop(n);
        pthread_mutex_unlock(&lu->lock);
        if (asc && cdb[0] == OP_REQUEST_SENSE) {
            *pending_ua = asc;
        } else if (asc) {
            memset(plan, 0, sizeof(*plan));
            scsi_plan_check_condition(plan, SCSI_SENSE_UNIT_ATTENTION, asc);
            return false;
        }
    }
    if (!atomic_load(&lu->reserved))
        return true;
    struct pr_nexus pn = pr_nexus_of(n);
    pthread_mutex_lock(&lu->lock);
    bool conflict = pr_conflicts(&lu->pr, &pn, cdb);
    pthread_mutex_unlock(&lu->lock);
    if (conflict) {
        memset(plan, 0, sizeof(*plan));
        plan->action = SCSI_ACTION_COMPLETE;
        plan->status = SCSI_STATUS_RESERVATION_CONFLICT;
        return false;
    }
    return true;
}

/* ---------------- reservations and mode parameters ---------------- */

static void apply_pr_result(struct lu *lu, const struct pr_result *r, struct scsi_plan *plan,
                            struct lu_effects *effects)
{
    if (effects && r->abort_preempted) {
        for (unsigned i = 0; i < r->ua_count; i++)
            if (r->ua[i].asc_ascq == PR_ASC_REGISTRATIONS_PREEMPTED)
                effects->sel[effects->count++] = r->ua[i];
    }
    if (effects && r->changed)
        effects->meta_changed = true;
    for (unsigned i = 0; i < r->ua_count; i++) {
        for (struct lu_nexus *n = lu->nexuses; n; n = n->next) {
            struct pr_nexus pn = pr_nexus_of(n);
            if (pr_ua_matches(&r->ua[i], &pn))
                ua_queue(n, r->ua[i].asc_ascq);
        }
    }
    atomic_store(&lu->reserved, any_reservation(&lu->pr));
    if (r->persist) {
        int rc = pr_state_save(&lu->pr, lu->pr_path);
        if (rc) {
            /* The change stands in memory; the initiator learns it did not persist. */
            TWL_ERROR(PART, "LUN %u: saving persistent reservations to %s: %s", lu->lun_id,
                      lu->pr_path, strerror(-rc));
            scsi_plan_check_condition(plan, SCSI_SENSE_HARDWARE_ERROR,
                                      SCSI_ASC_INTERNAL_TARGET_FAILURE);
            return;
        }
    }
    plan->status = r->status;
    plan->data_len = r->data_len;
    if (r->status == SCSI_STATUS_CHECK_CONDITION) {
        scsi_plan_check_condition(plan, r->sense_key, r->asc_ascq);
        if (r->sense_field >= 0) {
            uint8_t sks = (uint8_t)(0x80 | (r->sense_in_param ? 0 : 0x40));
            if (r->sense_bit >= 0)
                sks |= (uint8_t)(0x08 | (r->sense_bit & 0x07));
            plan->sense[15] = sks;
            twl_put_be16(plan->sense + 16, (uint16_t)r->sense_field);
        }
    }
}

static void mode_select(struct lu *lu, const struct lu_nexus *self, const uint8_t *cdb,
                        const uint8_t *param, uint32_t len, struct scsi_plan *plan,
                        struct lu_effects *effects)
{
    struct scsi_mode_params cur = {.write_cache = lu->info->write_cache};
    struct scsi_mode_params next;
    if (scsi_mode_select_parse(lu->info, cdb, param, len, &cur, &next, plan) != 0)
        return;
    bool save = cdb[1] & 0x01;
    if (save && next.write_cache != lu->info->saved_write_cache) {
        int rc = mode_save(lu, next.write_cache);
        if (rc) {
            TWL_ERROR(PART, "LUN %u: saving mode parameters to %s: %s", lu->lun_id, lu->mode_path,
                      strerror(-rc));
            scsi_plan_check_condition(plan, SCSI_SENSE_HARDWARE_ERROR,
                                      SCSI_ASC_INTERNAL_TARGET_FAILURE);
            return;
        }
        lu->info->saved_write_cache = next.write_cache;
        if (effects)
            effects->meta_changed = true;
    }
    if (next.write_cache != cur.write_cache) {
        lu->info->write_cache = next.write_cache;
        if (effects)
            effects->meta_changed = true;
        ua_all_locked(lu, SCSI_ASC_MODE_PARAMS_CHANGED, self);
        TWL_INFO(PART, "LUN %u: write cache %s by %s", lu->lun_id,
                 next.write_cache ? "enabled" : "disabled", self->initiator);
    }
}

void lu_execute(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb, const uint8_t *param,
                uint32_t param_len, uint8_t *buf, uint32_t buflen, struct scsi_plan *plan,
                struct lu_effects *effects)
{
    if (effects) {
        effects->count = 0;
        effects->meta_changed = false;
    }
    struct pr_nexus pn = pr_nexus_of(n);
    struct pr_result r;
    plan->action = SCSI_ACTION_COMPLETE;
    plan->status = SCSI_STATUS_GOOD;
    plan->sense_len = 0;
    plan->data_len = 0;
    pthread_mutex_lock(&lu->lock);
    switch (cdb[0]) {
    case OP_PR_IN:
        pr_in(&lu->pr, &pn, cdb, buf, buflen, &r);
        apply_pr_result(lu, &r, plan, effects);
        break;
    case OP_PR_OUT:
        pr_out(&lu->pr, &pn, cdb, param, param_len, &r);
        apply_pr_result(lu, &r, plan, effects);
        break;
    case OP_RESERVE_6:
        pr_reserve6(&lu->pr, &pn, cdb, &r);
        apply_pr_result(lu, &r, plan, effects);
        break;
    case OP_RELEASE_6:
        pr_release6(&lu->pr, &pn, cdb, &r);
        apply_pr_result(lu, &r, plan, effects);
        break;
    case XCOPY_RCR_OPCODE:
        xcopy_receive_results(cdb, &n->xcopy, buf, buflen, plan);
        break;
    default:
        mode_select(lu, n, cdb, param, param_len, plan, effects);
        break;
    }
    pthread_mutex_unlock(&lu->lock);
}

bool lu_reservation_conflict(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb)
{
    if (!atomic_load(&lu->reserved))
        return false;
    struct pr_nexus pn = pr_nexus_of(n);
    pthread_mutex_lock(&lu->lock);
    bool conflict = pr_conflicts(&lu->pr, &pn, cdb);
    pthread_mutex_unlock(&lu->lock);
    return conflict;
}

int lu_xcopy_begin(struct lu *lu, struct lu_nexus *n, const struct xcopy_list *list,
                   struct scsi_plan *plan)
{
    pthread_mutex_lock(&lu->lock);
    int rc = xcopy_history_begin(&n->xcopy, list, plan);
    pthread_mutex_unlock(&lu->lock);
    return rc;
}

void lu_xcopy_finish(struct lu *lu, struct lu_nexus *n, const struct xcopy_list *list, bool failed,
                     const struct xcopy_progress *done)
{
    pthread_mutex_lock(&lu->lock);
    xcopy_history_finish(&n->xcopy, list, failed, done);
    pthread_mutex_unlock(&lu->lock);
}

/* Copy lists are forgotten with the nexus (and on reset) as SPC-4 6.18.3 allows; a copy still
 * running records its end into the fresh history, harmlessly. */
void lu_reset(struct lu *lu)
{
    pthread_mutex_lock(&lu->lock);
    pr_reset(&lu->pr);
    atomic_store(&lu->reserved, any_reservation(&lu->pr));
    ua_all_locked(lu, SCSI_ASC_POWER_ON_RESET, NULL);
    for (struct lu_nexus *n = lu->nexuses; n; n = n->next)
        xcopy_history_init(&n->xcopy);
    pthread_mutex_unlock(&lu->lock);
}

void lu_nexus_lost(struct lu *lu, struct lu_nexus *n)
{
    struct pr_nexus pn = pr_nexus_of(n);
    pthread_mutex_lock(&lu->lock);
    xcopy_history_init(&n->xcopy);
    pr_nexus_lost(&lu->pr, &pn);
    atomic_store(&lu->reserved, any_reservation(&lu->pr));
    pthread_mutex_unlock(&lu->lock);
}

/* ---------------- replicated metadata ---------------- */

#define META_MAGIC   0x54574c4du /* "TWLM" */
#define META_VERSION 1u
#define META_HDR     12u

size_t lu_meta_encode(struct lu *lu, uint8_t *buf, size_t cap)
{
    pthread_mutex_lock(&lu->lock);
    size_t pr_len = pr_state_encode(&lu->pr, NULL, 0);
    size_t total = META_HDR + pr_len + 4;
    if (total <= cap) {
        twl_put_be32(buf, META_MAGIC);
        twl_put_be16(buf + 4, META_VERSION);
        twl_put_be16(buf + 6, (uint16_t)((lu->info->write_cache ? 1u : 0u) |
                                         (lu->info->saved_write_cache ? 2u : 0u)));
        twl_put_be32(buf + 8, (uint32_t)pr_len);
        pr_state_encode(&lu->pr, buf + META_HDR, pr_len);
        twl_put_be32(buf + META_HDR + pr_len, twl_crc32c(buf, META_HDR + pr_len));
    }
    pthread_mutex_unlock(&lu->lock);
    return total;
}

int lu_meta_apply(struct lu *lu, const uint8_t *buf, size_t len)
{
    if (len < META_HDR + 4 || twl_get_be32(buf) != META_MAGIC ||
        twl_get_be16(buf + 4) != META_VERSION)
        return -EINVAL;
    size_t pr_len = twl_get_be32(buf + 8);
    if (pr_len != len - META_HDR - 4 ||
        twl_get_be32(buf + META_HDR + pr_len) != twl_crc32c(buf, META_HDR + pr_len))
        return -EINVAL;
    static _Thread_local struct pr_state pr;
    if (pr_state_decode(&pr, buf + META_HDR, pr_len) != 0)
        return -EINVAL;
    uint16_t flags = twl_get_be16(buf + 6);
    int rc = 0;
    pthread_mutex_lock(&lu->lock);
    bool was_aptpl = lu->pr.aptpl;
    lu->pr = pr;
    atomic_store(&lu->reserved, any_reservation(&lu->pr));
    lu->info->write_cache = flags & 1u;
    if ((bool)(flags & 2u) != lu->info->saved_write_cache) {
        rc = mode_save(lu, flags & 2u);
        if (rc == 0)
            lu->info->saved_write_cache = flags & 2u;
    }
    /* this node must come back with the same persistent reservations as the owner */
    if (rc == 0 && (lu->pr.aptpl || was_aptpl))
        rc = pr_state_save(&lu->pr, lu->pr_path);
    pthread_mutex_unlock(&lu->lock);
    if (rc)
        TWL_ERROR(PART, "LUN %u: saving the partner's metadata: %s", lu->lun_id, strerror(-rc));
    return rc;
}
