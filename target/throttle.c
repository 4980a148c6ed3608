/*
 * Write admission: a token bucket refilled at a rate derived from the backplane's completion
 * rate and ring occupancy (throttle.h has the rules), a FIFO queue per class, the CmdSN window
 * budget, and the figures twinlunctl shows.
 */
#include "throttle.h"

#include "twl_common.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PART "throttle"

#define WAITS_KEPT       4096u       /* the wait-time percentiles are over this many admissions */
#define IDLE_TICK_NS     10000000ull /* sampling period while nothing waits */
#define BUSY_TICK_NS     2000000ull  /* longest sleep while writes wait */
#define MIN_TICK_NS      200000ull
#define QUIET_NS         1000000000ull /* no wait for this long: throttling has stopped */
#define MAX_OWNERS_SEEN  64u           /* distinct sessions counted for the window budget */
#define TARGET_S         0.25          /* the ring occupancy aimed for, in seconds of capacity */
#define TARGET_MIN_BYTES (2ull << 20)

struct throttle {
    struct throttle_opts o;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* the thread's sleep: a write queued, or a stop */

    double rate; /* bytes/s; 0 = not limiting */
    double tokens;
    uint64_t last_ns;
    struct throttle_sample sample;
    _Atomic uint64_t inflight; /* bytes admitted and not yet released (released without the
                                  lock: one lock per write is enough) */

    struct throttle_waiter *head[2], *tail[2];
    uint32_t queued[2];
    uint64_t queued_bytes[2];
    uint64_t served[2]; /* bytes granted per class while both queues held writes */

    uint64_t admitted[2], admitted_bytes[2], waited[2];
    uint32_t waits_us[WAITS_KEPT];
    uint32_t waits_n, waits_pos;
    uint64_t ring_peak;

    bool throttling, start_logged;
    uint64_t last_wait_ns, episode_start_ns, episode_waited, episodes;
    uint32_t sessions_waiting;
    _Atomic uint64_t budget;

    pthread_t tid;
    bool started, stop;
    void (*sample_fn)(void *ctx, struct throttle_sample *s);
    void *sample_ctx;
};

struct throttle *throttle_create(const struct throttle_opts *o, uint64_t now_ns)
{
    if (o->burst_bytes == 0 || o->min_rate == 0 || o->ring_bytes == 0 || o->resync_share > 100) {
        TWL_ERROR(PART,
                  "bad options: burst %" PRIu64 ", min_rate %" PRIu64 ", ring %" PRIu64
                  ", resync_share %u",
                  o->burst_bytes, o->min_rate, o->ring_bytes, o->resync_share);
        return NULL;
    }
    struct throttle *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->o = *o;
    t->tokens = (double)o->burst_bytes;
    t->last_ns = now_ns;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    return t;
}

/* The occupancy the rate aims below: TARGET_S of the link's capacity, at least two of the
 * largest records (so the link stays busy), at most a quarter of the ring. Heartbeats share the
 * link with the records: a short queue keeps them on time. */
static uint64_t target_bytes(const struct throttle *t)
{
    uint64_t most = t->o.ring_bytes / 4;
    if (t->sample.capacity_bytes_s <= 0)
        return most;
    uint64_t target = (uint64_t)(t->sample.capacity_bytes_s * TARGET_S);
    if (target < TARGET_MIN_BYTES)
        target = TARGET_MIN_BYTES;
    return target < most ? target : most;
}

/* The ring guard: at twice the target nothing more is admitted until the partner consumes. */
static uint64_t guard_bytes(const struct throttle *t)
{
    return 2 * target_bytes(t);
}

/* What is on its way to the partner: the backplane's ring and queue, or what was admitted here
 * and is not done yet (admitted changes reach the backplane a little later), whichever is more. */
static uint64_t occupancy(const struct throttle *t)
{
    uint64_t inflight = atomic_load(&t->inflight);
    return t->sample.ring_bytes > inflight ? t->sample.ring_bytes : inflight;
}

/* The refill rate for an occupancy (throttle.h's table); 0 = not limiting. */
static double derive_rate(const struct throttle *t, uint64_t occ)
{
    if (!t->o.enabled || !t->sample.connected)
        return 0;
    uint64_t target = target_bytes(t);
    /* the capacity is measured while the ring is backlogged, so it stays the link's even while
     * the rate holds the ring short; before any such interval, the throughput stands in */
    double cap =
        t->sample.capacity_bytes_s > 0 ? t->sample.capacity_bytes_s : t->sample.rate_bytes_s;
    double rate;
    if (occ < target / 4)
        return 0;
    if (occ < target / 2)
        rate = 1.25 * cap;
    else if (occ < target)
        rate = cap;
    else
        rate = 0.9 * cap;
    return rate < (double)t->o.min_rate ? (double)t->o.min_rate : rate;
}

static bool guarded(const struct throttle *t)
{
    return t->o.enabled && t->sample.connected && occupancy(t) >= guard_bytes(t);
}

static void refill(struct throttle *t, uint64_t now_ns)
{
    double burst = (double)t->o.burst_bytes;
    if (t->rate == 0) {
        t->tokens = burst;
    } else if (now_ns > t->last_ns) {
        t->tokens += t->rate * (double)(now_ns - t->last_ns) / 1e9;
        if (t->tokens > burst)
            t->tokens = burst;
    }
    if (now_ns > t->last_ns)
        t->last_ns = now_ns;
}

static void note_wait(struct throttle *t, uint64_t ns)
{
    uint64_t us = ns / 1000;
    t->waits_us[t->waits_pos] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    t->waits_pos = (t->waits_pos + 1) % WAITS_KEPT;
    if (t->waits_n < WAITS_KEPT)
        t->waits_n++;
}

/* Takes the tokens for an admitted write (nothing when not limiting). */
static void take(struct throttle *t, const struct throttle_waiter *w, uint64_t now_ns, bool waited)
{
    if (t->rate != 0)
        t->tokens -= (double)w->bytes;
    atomic_fetch_add(&t->inflight, w->bytes);
    t->admitted[w->cls]++;
    t->admitted_bytes[w->cls] += w->bytes;
    if (waited) {
        t->waited[w->cls]++;
        t->episode_waited++;
    }
    if (w->cls == THROTTLE_CLIENT)
        note_wait(t, waited && now_ns > w->since_ns ? now_ns - w->since_ns : 0);
}

/* A write of bytes may go now given the tokens (a write larger than the bucket goes once the
 * bucket is full, and leaves a debt). */
static bool tokens_allow(const struct throttle *t, uint64_t bytes)
{
    if (t->rate == 0)
        return true;
    double need = (double)(bytes < t->o.burst_bytes ? bytes : t->o.burst_bytes);
    return t->tokens >= need;
}

bool throttle_admit(struct throttle *t, struct throttle_waiter *w, uint64_t now_ns)
{
    pthread_mutex_lock(&t->lock);
    refill(t, now_ns);
    t->rate = derive_rate(t, occupancy(t));
    bool empty = t->head[THROTTLE_CLIENT] == NULL && t->head[THROTTLE_RESYNC] == NULL;
    if (empty && !guarded(t) && tokens_allow(t, w->bytes)) {
        take(t, w, now_ns, false);
        pthread_mutex_unlock(&t->lock);
        return true;
    }
    w->next = NULL;
    w->since_ns = now_ns;
    if (t->tail[w->cls])
        t->tail[w->cls]->next = w;
    else
        t->head[w->cls] = w;
    t->tail[w->cls] = w;
    t->queued[w->cls]++;
    t->queued_bytes[w->cls] += w->bytes;
    t->last_wait_ns = now_ns;
    if (!t->throttling) {
        t->throttling = true;
        t->start_logged = false;
        t->episode_start_ns = now_ns;
        t->episode_waited = 0;
        t->episodes++;
    }
    if (empty)
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    return false;
}

/* Which class is served next: the one with writes waiting, or while both have, the one that
 * got less than its share so far. -1 when nothing waits. */
static int next_class(struct throttle *t)
{
    bool client = t->head[THROTTLE_CLIENT] != NULL, resync = t->head[THROTTLE_RESYNC] != NULL;
    if (!client || !resync) {
        t->served[THROTTLE_CLIENT] = t->served[THROTTLE_RESYNC] = 0;
        return client ? THROTTLE_CLIENT : resync ? THROTTLE_RESYNC : -1;
    }
    uint32_t share = t->o.resync_share;
    /* served_resync / share < served_client / (100 - share), without dividing */
    double r = (double)t->served[THROTTLE_RESYNC] * (100 - share);
    double c = (double)t->served[THROTTLE_CLIENT] * share;
    return r < c ? THROTTLE_RESYNC : THROTTLE_CLIENT;
}

/* Pops the writes the tokens allow onto *granted (in grant order). */
static void grant(struct throttle *t, uint64_t now_ns, struct throttle_waiter **granted)
{
    struct throttle_waiter **tail = granted;
    for (;;) {
        int cls = next_class(t);
        if (cls < 0 || guarded(t))
            break;
        struct throttle_waiter *w = t->head[cls];
        /* each grant fills the ring a little: the rate may start to apply midway */
        double rate = derive_rate(t, occupancy(t));
        if (t->rate == 0 && rate != 0)
            t->tokens = (double)t->o.burst_bytes;
        t->rate = rate;
        if (!tokens_allow(t, w->bytes))
            break;
        bool both = t->head[THROTTLE_CLIENT] && t->head[THROTTLE_RESYNC];
        t->head[cls] = w->next;
        if (t->head[cls] == NULL)
            t->tail[cls] = NULL;
        t->queued[cls]--;
        t->queued_bytes[cls] -= w->bytes;
        if (both)
            t->served[cls] += w->bytes;
        take(t, w, now_ns, true);
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
}

/* Bytes each waiting session may keep queued: queue_ms of the rate (or of the completion rate
 * while the guard holds everything), shared among the sessions with writes waiting. The budget
 * holds while pacing goes on, even when the queue empties for a moment: windows that reopened
 * then would let every initiator send its whole queue again, and the queue would saw. */
static void update_budget(struct throttle *t)
{
    const void *owners[MAX_OWNERS_SEEN];
    uint32_t n = 0;
    for (struct throttle_waiter *w = t->head[THROTTLE_CLIENT]; w && n < MAX_OWNERS_SEEN;
         w = w->next) {
        uint32_t i = 0;
        while (i < n && owners[i] != w->owner)
            i++;
        if (i == n)
            owners[n++] = w->owner;
    }
    t->sessions_waiting = n;
    if (n == 0) {
        if (!t->throttling)
            atomic_store(&t->budget, 0);
        return;
    }
    double rate = t->rate != 0 ? t->rate : t->sample.rate_bytes_s;
    if (rate < (double)t->o.min_rate)
        rate = (double)t->o.min_rate;
    double budget = rate * t->o.queue_ms / 1000.0 / n;
    atomic_store(&t->budget, budget < 1 ? 1 : (uint64_t)budget);
}

static void log_episode(struct throttle *t, uint64_t now_ns)
{
    if (t->throttling && !t->start_logged && t->sample.connected) {
        t->start_logged = true;
        TWL_INFO(PART,
                 "throttling client writes: paced at %.1f MB/s (replication %.1f MB/s, capacity "
                 "%.1f MB/s), partner ring %.0f%% full",
                 t->rate / 1e6, t->sample.rate_bytes_s / 1e6, t->sample.capacity_bytes_s / 1e6,
                 100.0 * (double)occupancy(t) / (double)t->o.ring_bytes);
    }
    if (t->throttling && t->head[0] == NULL && t->head[1] == NULL &&
        now_ns - t->last_wait_ns >= QUIET_NS) {
        t->throttling = false;
        if (t->start_logged)
            TWL_INFO(PART,
                     "throttling stopped after %.1f s: %" PRIu64 " writes waited, replication "
                     "%.1f MB/s",
                     (double)(t->last_wait_ns - t->episode_start_ns) / 1e9, t->episode_waited,
                     t->sample.rate_bytes_s / 1e6);
    }
}

uint64_t throttle_tick(struct throttle *t, uint64_t now_ns, const struct throttle_sample *s)
{
    pthread_mutex_lock(&t->lock);
    refill(t, now_ns);
    if (s) {
        t->sample = *s;
        if (s->ring_bytes > t->ring_peak)
            t->ring_peak = s->ring_bytes;
    }
    t->rate = derive_rate(t, occupancy(t));
    struct throttle_waiter *granted = NULL;
    grant(t, now_ns, &granted);
    log_episode(t, now_ns);
    update_budget(t);
    uint64_t next = IDLE_TICK_NS;
    int cls = next_class(t);
    if (cls >= 0) {
        next = BUSY_TICK_NS;
        if (t->rate != 0 && !guarded(t)) {
            double need = (double)t->head[cls]->bytes;
            if (need > (double)t->o.burst_bytes)
                need = (double)t->o.burst_bytes;
            double ns = (need - t->tokens) / t->rate * 1e9;
            if (ns < (double)next)
                next = ns < (double)MIN_TICK_NS ? MIN_TICK_NS : (uint64_t)ns;
        }
    }
    pthread_mutex_unlock(&t->lock);
    while (granted) {
        struct throttle_waiter *w = granted;
        granted = w->next;
        w->granted(w);
    }
    return next;
}

static void *throttle_main(void *arg)
{
    struct throttle *t = arg;
    for (;;) {
        struct throttle_sample s;
        bool have = false;
        if (t->sample_fn) {
            memset(&s, 0, sizeof(s));
            t->sample_fn(t->sample_ctx, &s);
            have = true;
        }
        uint64_t ns = throttle_tick(t, twl_now_ns(), have ? &s : NULL);
        pthread_mutex_lock(&t->lock);
        if (t->stop) {
            pthread_mutex_unlock(&t->lock);
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t nsec = (uint64_t)ts.tv_nsec + ns;
        ts.tv_sec += (time_t)(nsec / 1000000000ull);
        ts.tv_nsec = (long)(nsec % 1000000000ull);
        pthread_cond_timedwait(&t->cond, &t->lock, &ts);
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            break;
    }
    return NULL;
}

int throttle_start(struct throttle *t, void (*sample)(void *ctx, struct throttle_sample *s),
                   void *ctx)
{
    /* the thread sleeps on the monotonic clock */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&t->cond);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    t->sample_fn = sample;
    t->sample_ctx = ctx;
    int rc = pthread_create(&t->tid, NULL, throttle_main, t);
    if (rc) {
        TWL_ERROR(PART, "cannot start the throttle thread: %s", strerror(rc));
        return -rc;
    }
    t->started = true;
    return 0;
}

void throttle_destroy(struct throttle *t)
{
    if (t == NULL)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->tid, NULL);
    }
    /* nothing may wait for ever: whatever still waits goes */
    pthread_mutex_lock(&t->lock);
    struct throttle_waiter *left[2] = {t->head[0], t->head[1]};
    t->head[0] = t->head[1] = t->tail[0] = t->tail[1] = NULL;
    pthread_mutex_unlock(&t->lock);
    for (int c = 0; c < 2; c++)
        while (left[c]) {
            struct throttle_waiter *w = left[c];
            left[c] = w->next;
            w->granted(w);
        }
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

struct blocking_wait {
    struct throttle_waiter w;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void blocking_granted(struct throttle_waiter *w)
{
    struct blocking_wait *b = (struct blocking_wait *)w;
    pthread_mutex_lock(&b->lock);
    b->done = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

int throttle_wait(struct throttle *t, enum throttle_class cls, uint64_t bytes,
                  void (*before_sleep)(void *ctx), void *ctx)
{
    struct blocking_wait b = {.w = {.granted = blocking_granted, .bytes = bytes, .cls = cls}};
    /* ready before the write is queued: the grant may come at once, on the ticking thread */
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    if (!throttle_admit(t, &b.w, twl_now_ns())) {
        if (before_sleep)
            before_sleep(ctx);
        pthread_mutex_lock(&b.lock);
        while (!b.done)
            pthread_cond_wait(&b.cond, &b.lock);
        pthread_mutex_unlock(&b.lock);
    }
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.lock);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void throttle_get_stats(struct throttle *t, struct throttle_stats *st)
{
    uint32_t *sorted = malloc(sizeof(uint32_t) * WAITS_KEPT);
    pthread_mutex_lock(&t->lock);
    *st = (struct throttle_stats){
        .enabled = t->o.enabled,
        .throttling = t->throttling,
        .rate_bytes_s = t->rate,
        .tokens = t->tokens,
        .ring_bytes = occupancy(t),
        .inflight_bytes = atomic_load(&t->inflight),
        .ring_target_bytes = target_bytes(t),
        .ring_peak_bytes = t->ring_peak,
        .ring_limit_bytes = t->o.ring_bytes,
        .window_budget = atomic_load(&t->budget),
        .sessions_waiting = t->sessions_waiting,
        .episodes = t->episodes,
    };
    for (int c = 0; c < 2; c++) {
        st->queued[c] = t->queued[c];
        st->queued_bytes[c] = t->queued_bytes[c];
        st->admitted[c] = t->admitted[c];
        st->admitted_bytes[c] = t->admitted_bytes[c];
        st->waited[c] = t->waited[c];
    }
    uint32_t n = t->waits_n;
    if (sorted && n)
        memcpy(sorted, t->waits_us, sizeof(uint32_t) * n);
    pthread_mutex_unlock(&t->lock);
    if (sorted && n) {
        qsort(sorted, n, sizeof(uint32_t), cmp_u32);
        st->wait_p50_us = sorted[(n - 1) / 2];
        st->wait_p99_us = sorted[(uint64_t)(n - 1) * 99 / 100];
        st->wait_max_us = sorted[n - 1];
    }
    free(sorted);
}

void throttle_release(struct throttle *t, uint64_t bytes)
{
    atomic_fetch_sub(&t->inflight, bytes);
}

uint64_t throttle_window_budget(const struct throttle *t)
{
    return atomic_load(&t->budget);
}

uint32_t throttle_window_slots(uint32_t size, uint64_t budget, uint64_t mean_write_bytes)
{
    if (budget == 0 || size <= THROTTLE_MIN_WINDOW)
        return size;
    uint64_t slots = mean_write_bytes ? (budget + mean_write_bytes - 1) / mean_write_bytes : size;
    if (slots < THROTTLE_MIN_WINDOW)
        slots = THROTTLE_MIN_WINDOW;
    return slots > size ? size : (uint32_t)slots;
}
