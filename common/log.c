#include "twl_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int current_level = TWL_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

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

void twl_log(enum twl_log_level level, const char *part, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    /* One fprintf per line so lines from several threads do not interleave. */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
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
