/*
 * twinlun common: the few things every part needs, written once.
 *
 * - logging: one line per event, "HH:MM:SS.mmm LEVEL part: message", to stderr; when stderr is
 *   the systemd journal (JOURNAL_STREAM names it) the line is "<N>part: message" instead, N
 *   the syslog priority, since the journal stamps the time itself. The level, and the parts
 *   whose debug lines are printed below it, may change at run time.
 * - monotonic time in nanoseconds.
 * - CRC32C as iSCSI and the on-disk logs use it (ISA-L underneath).
 * - big-endian load/store helpers for wire formats.
 */
#ifndef TWL_COMMON_H
#define TWL_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum twl_log_level {
    TWL_LOG_ERROR = 0,
    TWL_LOG_WARN = 1,
    TWL_LOG_INFO = 2,
    TWL_LOG_DEBUG = 3,
};

/* Sets the most verbose level printed. */
void twl_log_set_level(enum twl_log_level level);
enum twl_log_level twl_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -EINVAL on anything else. */
int twl_log_parse_level(const char *name, enum twl_log_level *level);

/* The parts that log (every part's PART name): debug lines can be switched on per part. */
extern const char *const twl_log_parts[];

/* Debug lines of the parts named in a comma-separated list are printed whatever the level;
 * "all" names every part, "" or "none" none. -EINVAL (nothing changes) on an unknown part,
 * which is named in err. */
int twl_log_set_debug(const char *list, char *err, size_t errlen);
/* The same check without the change (for a configuration being validated). */
int twl_log_check_debug(const char *list, char *err, size_t errlen);
/* The list as set ("" when none). */
void twl_log_get_debug(char *out, size_t len);
/* Whether a debug line of part is printed (the level is debug, or the part is switched on). */
int twl_log_debug_on(const char *part);

void twl_log(enum twl_log_level level, const char *part, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TWL_ERROR(part, ...) twl_log(TWL_LOG_ERROR, part, __VA_ARGS__)
#define TWL_WARN(part, ...)  twl_log(TWL_LOG_WARN, part, __VA_ARGS__)
#define TWL_INFO(part, ...)  twl_log(TWL_LOG_INFO, part, __VA_ARGS__)
#define TWL_DEBUG(part, ...)                                                                       \
    do {                                                                                           \
        if (twl_log_debug_on(part))                                                                \
            twl_log(TWL_LOG_DEBUG, part, __VA_ARGS__);                                             \
    } while (0)

/* Monotonic clock in nanoseconds. */
uint64_t twl_now_ns(void);

/* CRC32C (Castagnoli) of buf, standard init and final inversion: "123456789" -> 0xE3069283. */
uint32_t twl_crc32c(const void *buf, size_t len);
/* Incremental form: start with crc = 0, feed pieces, the result equals twl_crc32c of the whole. */
uint32_t twl_crc32c_update(uint32_t crc, const void *buf, size_t len);

static inline uint16_t twl_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t twl_get_be24(const uint8_t *p)
{
    return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}
static inline uint32_t twl_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t twl_get_be64(const uint8_t *p)
{
    return ((uint64_t)twl_get_be32(p) << 32) | twl_get_be32(p + 4);
}
static inline void twl_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void twl_put_be24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 16);
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
}
static inline void twl_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void twl_put_be64(uint8_t *p, uint64_t v)
{
    twl_put_be32(p, (uint32_t)(v >> 32));
    twl_put_be32(p + 4, (uint32_t)v);
}
static inline void twl_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t twl_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif
