#include "twl_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static _Atomic int current_level = TWL_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities (err, warning, info, debug) for the journal's "<N>" prefix */
static const int level_priority[] = {3, 4, 6, 7};

const char *const twl_log_parts[] = {"admin",    "backing", "backplane", "iscsi", "lu",
                                     "media",    "metrics", "pair",      "pr",    "rdma",
                                     "throttle", "tracker", "twinlund",  NULL};
#define PART_COUNT (sizeof(twl_log_parts) / sizeof(twl_log_parts[0]) - 1)

/* Parts with debug lines on, one bit per twl_log_parts entry; read on every TWL_DEBUG. */
static _Atomic unsigned debug_mask;

/* -1 until the first line: whether stderr is the journal's stream (JOURNAL_STREAM is
 * "device:inode" of it, set by systemd for the service's stdout/stderr). */
static _Atomic int to_journal = -1;

void twl_log_set_level(enum twl_log_level level)
{
    atomic_store(&current_level, (int)level);
}

enum twl_log_level twl_log_get_level(void)
{
    return (enum twl_log_level)atomic_load(&current_level);
}

int twl_log_parse_level(const char *name, enum twl_log_level *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum twl_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int part_index(const char *part, size_t len)
{
    for (size_t i = 0; i < PART_COUNT; i++)
        if (strlen(twl_log_parts[i]) == len && strncmp(twl_log_parts[i], part, len) == 0)
            return (int)i;
    return -1;
}

static int parse_debug(const char *list, unsigned *out, char *err, size_t errlen)
{
    unsigned mask = 0;
    if (strcmp(list, "all") == 0) {
        mask = (1u << PART_COUNT) - 1;
    } else if (strcmp(list, "none") != 0) {
        for (const char *p = list; *p;) {
            size_t len = strcspn(p, ",");
            int i = part_index(p, len);
            if (len && i < 0) {
                char known[256] = "";
                for (size_t k = 0; k < PART_COUNT; k++)
                    snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                             k ? ", " : "", twl_log_parts[k]);
                snprintf(err, errlen, "'%.*s' is not a part; expected all, none or some of: %s",
                         (int)len, p, known);
                return -EINVAL;
            }
            if (len)
                mask |= 1u << i;
            p += len + (p[len] == ',');
        }
    }
    *out = mask;
    return 0;
}

int twl_log_check_debug(const char *list, char *err, size_t errlen)
{
    unsigned mask;
    return parse_debug(list, &mask, err, errlen);
}

int twl_log_set_debug(const char *list, char *err, size_t errlen)
{
    unsigned mask;
    int rc = parse_debug(list, &mask, err, errlen);
    if (rc == 0)
        atomic_store(&debug_mask, mask);
    return rc;
}

void twl_log_get_debug(char *out, size_t len)
{
    unsigned mask = atomic_load(&debug_mask);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < PART_COUNT && used < len; i++) {
        if (!(mask & (1u << i)))
            continue;
        int n = snprintf(out + used, len - used, "%s%s", used ? "," : "", twl_log_parts[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

int twl_log_debug_on(const char *part)
{
    if (atomic_load_explicit(&current_level, memory_order_relaxed) >= TWL_LOG_DEBUG)
        return 1;
    unsigned mask = atomic_load_explicit(&debug_mask, memory_order_relaxed);
    if (mask == 0)
        return 0;
    int i = part_index(part, strlen(part));
    return i >= 0 && (mask & (1u << i));
}

static bool stderr_is_journal(void)
{
    int v = atomic_load(&to_journal);
    if (v >= 0)
        return v;
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long dev, ino;
    struct stat st;
    v = js && sscanf(js, "%lu:%lu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
        (unsigned long)st.st_dev == dev && (unsigned long)st.st_ino == ino;
    atomic_store(&to_journal, v);
    return v;
}

void twl_log(enum twl_log_level level, const char *part, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level) &&
        !(level == TWL_LOG_DEBUG && twl_log_debug_on(part)))
        return;
    /* One fprintf per line so lines from several threads do not interleave. */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (stderr_is_journal()) {
        fprintf(stderr, "<%d>%s: %s\n", level_priority[level], part, msg);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, level_names[level], part, msg);
}

uint64_t twl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
