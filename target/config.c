/*
 * twinlund configuration loader: libconfig parses, this file validates and fills the structs.
 *
 * Parsing goes into a private struct that is copied out only when everything checked out, so
 * a caller never sees half a configuration. Messages name the file and line of the offending
 * setting and say what was expected; secrets never appear in them.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "twl_common.h"

#define DEFAULT_NAME     "<built-in default>"
#define DEFAULT_PORT     3260
#define MAX_THREADS      64
#define MAX_LUN_ID       255
#define MAX_FILE_BYTES   (1024 * 1024)
#define MAX_SEGMENT      16777215 /* 2^24 - 1: the largest value RFC 7143 allows */
#define SERIAL_MAX       32
#define SECRET_MIN       12
#define STATE_DIR_MARKER "@STATE_DIR@"
#define LISTEN_EXPECTED  "expected \"host:port\", \"[ipv6]:port\" or \"host\" (port 3260)"
#define IQN_EXPECTED                                                                               \
    "expected iqn.YYYY-MM.reversed.domain[:name] (lowercase a-z 0-9 - . :, at most 223 "           \
    "bytes), eui. + 16 hex digits, or naa. + 16 or 32 hex digits"

const char tgt_config_default_text[] =
    "# twinlund built-in default: one target, one thin 1 GiB LUN, loopback only.\n"
    "node = { state_dir = \"" STATE_DIR_MARKER "\"; };\n"
    "iscsi = { listen = \"127.0.0.1:3260\"; };\n"
    "metrics = { listen = \"127.0.0.1:9470\"; };\n"
    "targets = (\n"
    "  { iqn = \"iqn.2026-11.io.twinlun:default\";\n"
    "    alias = \"twinlun\";\n"
    "    luns = ( { id = 0; path = \"lun0.img\"; size = \"1G\"; block_size = 512;\n"
    "               create = true; } );\n"
    "  }\n"
    ");\n";

struct ctx {
    const char *name; /* file name used in messages */
    char *err;
    size_t errlen;
};

static const char *const root_keys[] = {"node", "log",      "iscsi",   "targets",
                                        "pair", "throttle", "metrics", NULL};
static const char *const pair_keys[] = {
    "partner",       "listen",   "partner_address", "policy",         "ack",
    "ring_file",     "data_crc", "region_size",     "timeout_ms",     "ring_size",
    "heartbeat_ms",  "dead_ms",  "buffer_pool",     "alone_after_ms", "secret",
    "explicit_alua", NULL};
static const char *const throttle_keys[] = {"enabled", "burst",    "min_rate", "resync_share",
                                            "ewma_ms", "queue_ms", NULL};
static const char *const node_keys[] = {"name", "state_dir", "admin_socket", NULL};
static const char *const log_keys[] = {"level", "debug", NULL};
static const char *const metrics_keys[] = {"listen", NULL};
static const char *const iscsi_keys[] = {"listen",
                                         "threads",
                                         "nop_interval",
                                         "nop_timeout",
                                         "login_timeout",
                                         "max_recv_data_segment_length",
                                         "max_burst_length",
                                         "first_burst_length",
                                         "initial_r2t",
                                         "immediate_data",
                                         "max_outstanding_r2t",
                                         "header_digest",
                                         "data_digest",
                                         "default_time2wait",
                                         "default_time2retain",
                                         "cmd_window",
                                         "discovery_auth",
                                         NULL};
static const char *const auth_keys[] = {"username", "secret", "mutual_username", "mutual_secret",
                                        NULL};
static const char *const target_keys[] = {"iqn", "alias", "auth", "luns", "allow", NULL};
static const char *const allow_keys[] = {"initiators", "addresses", NULL};
static const char *const lun_keys[] = {"id",        "path",   "size",   "block_size",
                                       "direct",    "create", "serial", "thin",
                                       "read_only", "owner",  NULL};

__attribute__((format(printf, 4, 0))) static int
vfail_at(struct ctx *c, const char *file, unsigned line, const char *fmt, va_list ap)
{
    if (c->err && c->errlen > 0) {
        int n = snprintf(c->err, c->errlen, "%s:%u: ", file, line ? line : 1);
        if (n >= 0 && (size_t)n < c->errlen)
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    }
    return -EINVAL;
}

__attribute__((format(printf, 4, 5))) static int fail_at(struct ctx *c, const char *file,
                                                         unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_at(c, file, line, fmt, ap);
    va_end(ap);
    return rc;
}

/* Settings from an @include'd file carry that file's name; the rest belong to c->name. */
__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, const config_setting_t *s,
                                                      const char *fmt, ...)
{
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s) : c->name;
    unsigned line = s ? config_setting_source_line(s) : 1;
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_at(c, file, line, fmt, ap);
    va_end(ap);
    return rc;
}

static unsigned line_of(const config_setting_t *s)
{
    return s ? config_setting_source_line(s) : 0;
}

static const char *type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group { ... }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a floating-point number";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array [ ... ]";
    case CONFIG_TYPE_LIST:
        return "a list ( ... )";
    default:
        return "nothing";
    }
}

static void key_name(char *buf, size_t len, const char *where, const char *key)
{
    if (where)
        snprintf(buf, len, "%s.%s", where, key);
    else
        snprintf(buf, len, "%s", key);
}

static int wrong_type(struct ctx *c, const config_setting_t *s, const char *where,
                      const char *expected)
{
    char k[128];
    key_name(k, sizeof(k), where, config_setting_name(s));
    return fail(c, s, "wrong type for %s: expected %s, got %s", k, expected,
                type_name(config_setting_type(s)));
}

static int check_keys(struct ctx *c, const config_setting_t *group, const char *where,
                      const char *const *allowed)
{
    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(name, *a) == 0;
        if (known)
            continue;
        char list[512] = "";
        size_t used = 0;
        for (const char *const *a = allowed; *a && used < sizeof(list); a++)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
                                     a == allowed ? "" : ", ", *a);
        if (where)
            return fail(c, s, "unknown key '%s' in %s; expected one of: %s", name, where, list);
        return fail(c, s, "unknown key '%s' at top level; expected one of: %s", name, list);
    }
    return 0;
}

/* A missing group is not an error: every section has defaults. */
static int get_group(struct ctx *c, const config_setting_t *parent, const char *where,
                     const char *key, const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(parent, key);
    *out = NULL;
    if (!s)
        return 0;
    if (!config_setting_is_group(s))
        return wrong_type(c, s, where, "a group { ... }");
    *out = s;
    return 0;
}

static int get_int(struct ctx *c, const config_setting_t *parent, const char *where,
                   const char *key, long long min, long long max, long long *out)
{
    const config_setting_t *s = config_setting_get_member(parent, key);
    if (!s)
        return 0;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return wrong_type(c, s, where, "an integer");
    long long v = config_setting_get_int64(s);
    if (v < min || v > max) {
        char k[128];
        key_name(k, sizeof(k), where, key);
        return fail(c, s, "%s = %lld is out of range; expected %lld..%lld", k, v, min, max);
    }
    *out = v;
    return 0;
}

static int get_u32(struct ctx *c, const config_setting_t *parent, const char *where,
                   const char *key, uint32_t min, uint32_t max, uint32_t *out)
{
    long long v = *out;
    int rc = get_int(c, parent, where, key, min, max, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

static int get_bool(struct ctx *c, const config_setting_t *parent, const char *where,
                    const char *key, bool *out)
{
    const config_setting_t *s = config_setting_get_member(parent, key);
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(c, s, where, "true or false");
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

/* *out stays NULL when the key is absent. */
static int get_string(struct ctx *c, const config_setting_t *parent, const char *where,
                      const char *key, const char **out, const config_setting_t **setting)
{
    const config_setting_t *s = config_setting_get_member(parent, key);
    *out = NULL;
    if (setting)
        *setting = s;
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(c, s, where, "a string");
    *out = config_setting_get_string(s);
    return 0;
}

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Copies a string setting that must be min..dst_len-1 bytes without control characters. */
static int copy_text(struct ctx *c, const config_setting_t *s, const char *where, const char *value,
                     size_t min, char *dst, size_t dst_len)
{
    size_t len = strlen(value);
    char k[128];
    key_name(k, sizeof(k), where, config_setting_name(s));
    if (len < min || len >= dst_len)
        return fail(c, s, "%s is %zu bytes long; expected %zu..%zu bytes", k, len, min,
                    dst_len - 1);
    if (has_control_chars(value))
        return fail(c, s, "%s contains control characters; expected printable text", k);
    memcpy(dst, value, len + 1);
    return 0;
}

/*
 * libconfig 1.5 silently wraps integers that do not fit in 32 bits unless they carry an L
 * suffix ("size = 5000000000;" reads as 705032704), so such literals are refused before
 * parsing. This only tokenises comments, strings and numbers; the grammar stays libconfig's.
 */
static int check_int_literals(struct ctx *c, const char *text)
{
    unsigned line = 1;
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                if (*p == '\n')
                    line++;
            if (*p)
                p += 2;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (*p == '\n')
                    line++;
            }
            if (*p)
                p++;
        } else if (isalpha((unsigned char)*p) || *p == '*' || *p == '_') {
            while (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '*')
                p++;
        } else if (isdigit((unsigned char)*p) ||
                   ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
            const char *start = p;
            bool neg = *p == '-';
            if (*p == '-' || *p == '+')
                p++;
            bool hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
            const char *digits = hex ? p + 2 : p;
            const char *q = digits;
            while (hex ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q))
                q++;
            if (!hex && (*q == '.' || *q == 'e' || *q == 'E')) {
                while (isdigit((unsigned char)*q) || *q == '.' || *q == 'e' || *q == 'E' ||
                       ((*q == '-' || *q == '+') && (q[-1] == 'e' || q[-1] == 'E')))
                    q++;
                p = q;
                continue;
            }
            if (*q == 'L') {
                p = q + 1 + (q[1] == 'L');
                continue;
            }
            errno = 0;
            unsigned long long v = strtoull(digits, NULL, hex ? 16 : 10);
            unsigned long long limit = hex ? 0x7fffffffull : neg ? 0x80000000ull : 0x7fffffffull;
            if (q > digits && (errno == ERANGE || v > limit)) {
                int len = (int)(q - start) > 40 ? 40 : (int)(q - start);
                return fail_at(c, c->name, line,
                               "integer %.*s does not fit in 32 bits and libconfig would "
                               "silently wrap it; expected a 64-bit literal (%.*sL) or, for "
                               "sizes, a string such as \"5G\"",
                               len, start, len, start);
            }
            p = q;
        } else {
            p++;
        }
    }
    return 0;
}

/* Writes src with "." components and repeated slashes removed; ".." is kept because its
 * meaning depends on symlinks. */
static void normalize_path(const char *src, char *dst)
{
    char *o = dst;
    bool absolute = src[0] == '/';
    if (absolute)
        *o++ = '/';
    const char *p = src;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - p);
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o > dst && o[-1] != '/')
                *o++ = '/';
            memcpy(o, p, n);
            o += n;
        }
        p = e;
    }
    if (o == dst)
        *o++ = '.';
    *o = '\0';
}

static bool valid_node_name(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
            return false;
    return true;
}

static int parse_node(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    const config_setting_t *g, *s;
    const char *v;
    int rc = get_group(c, root, NULL, "node", &g);
    if (rc || (g && (rc = check_keys(c, g, "node", node_keys))))
        return rc;

    snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", TGT_CONFIG_DEFAULT_STATE_DIR);
    if (gethostname(cfg->node_name, sizeof(cfg->node_name)) != 0 || !cfg->node_name[0])
        snprintf(cfg->node_name, sizeof(cfg->node_name), "twinlun");
    cfg->node_name[sizeof(cfg->node_name) - 1] = '\0';
    if (!g)
        return 0;

    if ((rc = get_string(c, g, "node", "name", &v, &s)))
        return rc;
    if (v) {
        if (!v[0] || strlen(v) >= sizeof(cfg->node_name) || !valid_node_name(v))
            return fail(c, s,
                        "node.name '%s' is not valid; expected 1..%zu characters from a-z A-Z "
                        "0-9 - . _",
                        v, sizeof(cfg->node_name) - 1);
        snprintf(cfg->node_name, sizeof(cfg->node_name), "%s", v);
    }
    if ((rc = get_string(c, g, "node", "state_dir", &v, &s)))
        return rc;
    if (v) {
        if (v[0] != '/')
            return fail(c, s,
                        "node.state_dir '%s' is not absolute; expected a path starting "
                        "with '/'",
                        v);
        if (strlen(v) >= sizeof(cfg->state_dir) / 2)
            return fail(c, s, "node.state_dir is too long; expected at most %zu bytes",
                        sizeof(cfg->state_dir) / 2 - 1);
        normalize_path(v, cfg->state_dir);
    }
    if ((rc = get_string(c, g, "node", "admin_socket", &v, &s)))
        return rc;
    if (v) {
        if (v[0] != '/' || strlen(v) >= sizeof(cfg->admin_socket))
            return fail(c, s,
                        "node.admin_socket '%s' is not valid; expected an absolute path of at "
                        "most %zu bytes (a Unix socket's limit)",
                        v, sizeof(cfg->admin_socket) - 1);
        snprintf(cfg->admin_socket, sizeof(cfg->admin_socket), "%s", v);
    }
    return 0;
}

/* log.debug: the parts whose debug lines are printed from the start (twl_log_set_debug). */
static int parse_log_debug(struct ctx *c, const config_setting_t *g, struct tgt_config *cfg)
{
    const config_setting_t *s;
    const char *v;
    int rc = get_string(c, g, "log", "debug", &v, &s);
    if (rc || !v)
        return rc;
    char why[512];
    if (strlen(v) >= sizeof(cfg->log_debug))
        return fail(c, s, "log.debug '%s' is too long; expected at most %zu bytes", v,
                    sizeof(cfg->log_debug) - 1);
    if (twl_log_check_debug(v, why, sizeof(why)) != 0)
        return fail(c, s, "log.debug '%s': %s", v, why);
    snprintf(cfg->log_debug, sizeof(cfg->log_debug), "%s", v);
    return 0;
}

static int parse_log(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    const config_setting_t *g, *s;
    const char *v;
    enum twl_log_level level;
    snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
    int rc = get_group(c, root, NULL, "log", &g);
    if (rc || !g || (rc = check_keys(c, g, "log", log_keys)))
        return rc;
    if ((rc = parse_log_debug(c, g, cfg)) || (rc = get_string(c, g, "log", "level", &v, &s)))
        return rc;
    if (!v)
        return 0;
    if (twl_log_parse_level(v, &level) != 0)
        return fail(c, s,
                    "log.level '%s' is not a level; expected one of: error, warn, info, debug", v);
    snprintf(cfg->log_level, sizeof(cfg->log_level), "%s", v);
    return 0;
}

static int parse_port(const char *p, uint16_t *port)
{
    if (!*p || strlen(p) > 5)
        return -EINVAL;
    unsigned long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < 1 || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

static int parse_listen(struct ctx *c, const config_setting_t *s, const char *v,
                        struct tgt_config *cfg)
{
    char host[sizeof(cfg->listen_host)];
    const char *port = NULL;
    size_t hlen;
    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        if (!end)
            return fail(c, s, "iscsi.listen '%s' has no closing ']'; " LISTEN_EXPECTED, v);
        hlen = (size_t)(end - v - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return fail(c, s, "iscsi.listen '%s' has a bad IPv6 address; " LISTEN_EXPECTED, v);
        memcpy(host, v + 1, hlen);
        host[hlen] = '\0';
        char addr[sizeof(host)];
        struct in6_addr a6;
        snprintf(addr, sizeof(addr), "%s", host);
        addr[strcspn(addr, "%")] = '\0'; /* a zone (fe80::1%eth0) is fine; inet_pton rejects it */
        if (inet_pton(AF_INET6, addr, &a6) != 1)
            return fail(c, s, "iscsi.listen '%s': '%s' is not an IPv6 address; " LISTEN_EXPECTED, v,
                        host);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return fail(c, s, "iscsi.listen '%s' has junk after ']'; " LISTEN_EXPECTED, v);
    } else {
        const char *colon = strchr(v, ':');
        if (colon && strchr(colon + 1, ':'))
            return fail(c, s,
                        "iscsi.listen '%s': IPv6 addresses need brackets, e.g. "
                        "\"[::1]:3260\"; " LISTEN_EXPECTED,
                        v);
        hlen = colon ? (size_t)(colon - v) : strlen(v);
        if (hlen == 0 || hlen >= sizeof(host))
            return fail(c, s, "iscsi.listen '%s' has an empty or too long host; " LISTEN_EXPECTED,
                        v);
        memcpy(host, v, hlen);
        host[hlen] = '\0';
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)host[i]) && !strchr("-._", host[i]))
                return fail(c, s, "iscsi.listen '%s' has a bad host name; " LISTEN_EXPECTED, v);
        if (colon)
            port = colon + 1;
    }
    cfg->listen_port = DEFAULT_PORT;
    if (port && parse_port(port, &cfg->listen_port) != 0)
        return fail(c, s, "iscsi.listen '%s' has a bad port '%s'; expected a port 1..65535", v,
                    port);
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "%s", host);
    return 0;
}

/* Copies a CHAP or pair secret after checking its length; the message never echoes the
 * secret, only its length. */
static int copy_secret(struct ctx *c, const config_setting_t *s, const char *where, const char *key,
                       const char *secret, char *dst, size_t dstlen)
{
    size_t len = strlen(secret);
    if (len < SECRET_MIN || len >= dstlen)
        return fail(c, s,
                    "%s.%s is %zu bytes long; expected %d..%zu bytes (RFC 7143 requires CHAP "
                    "secrets of at least 12 bytes, 96 bits; the pair's secret likewise)",
                    where, key, len, SECRET_MIN, dstlen - 1);
    memcpy(dst, secret, len + 1);
    return 0;
}

static int parse_chap(struct ctx *c, const config_setting_t *g, const char *where,
                      struct tgt_chap_config *chap)
{
    const config_setting_t *us, *ss, *mus, *mss;
    const char *user, *secret, *muser, *msecret;
    int rc = check_keys(c, g, where, auth_keys);
    if (rc || (rc = get_string(c, g, where, "username", &user, &us)) ||
        (rc = get_string(c, g, where, "secret", &secret, &ss)) ||
        (rc = get_string(c, g, where, "mutual_username", &muser, &mus)) ||
        (rc = get_string(c, g, where, "mutual_secret", &msecret, &mss)))
        return rc;
    if (!user || !secret)
        return fail(c, g, "%s needs both username and secret (an auth block makes CHAP required)",
                    where);
    if ((rc = copy_text(c, us, where, user, 1, chap->username, sizeof(chap->username))))
        return rc;
    if ((rc = copy_secret(c, ss, where, "secret", secret, chap->secret, sizeof(chap->secret))))
        return rc;
    if (!muser != !msecret)
        return fail(c, mus ? mus : mss,
                    "%s has %s without %s; expected both mutual_username and mutual_secret, or "
                    "neither",
                    where, muser ? "mutual_username" : "mutual_secret",
                    muser ? "mutual_secret" : "mutual_username");
    chap->required = true;
    if (!muser)
        return 0;
    if ((rc = copy_text(c, mus, where, muser, 1, chap->mutual_username,
                        sizeof(chap->mutual_username))))
        return rc;
    if ((rc = copy_secret(c, mss, where, "mutual_secret", msecret, chap->mutual_secret,
                          sizeof(chap->mutual_secret))))
        return rc;
    /* Equal secrets let an attacker reflect the target's challenge back at it. */
    if (strcmp(secret, msecret) == 0)
        return fail(c, mss, "%s.mutual_secret is the same as secret; expected a different secret",
                    where);
    chap->mutual = true;
    return 0;
}

static int parse_iscsi(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    struct tgt_iscsi_params *p = &cfg->iscsi;
    const config_setting_t *g, *s, *auth;
    const char *v;
    uint32_t threads = 0;

    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = DEFAULT_PORT;
    cfg->nop_interval_s = 30;
    cfg->nop_timeout_s = 15;
    cfg->login_timeout_s = 15;
    p->max_recv_data_segment_length = 262144;
    p->max_burst_length = 1048576;
    p->first_burst_length = 262144;
    p->initial_r2t = false;
    p->immediate_data = true;
    p->max_outstanding_r2t = 8;
    p->header_digest = true;
    p->data_digest = true;
    p->default_time2wait = 2;
    p->default_time2retain = 20;
    p->cmd_window = 128;

    int rc = get_group(c, root, NULL, "iscsi", &g);
    if (rc || (g && (rc = check_keys(c, g, "iscsi", iscsi_keys))))
        return rc;
    if (g) {
        if ((rc = get_string(c, g, "iscsi", "listen", &v, &s)) ||
            (v && (rc = parse_listen(c, s, v, cfg))) ||
            (rc = get_u32(c, g, "iscsi", "threads", 0, MAX_THREADS, &threads)) ||
            (rc = get_u32(c, g, "iscsi", "nop_interval", 0, 3600, &cfg->nop_interval_s)) ||
            (rc = get_u32(c, g, "iscsi", "nop_timeout", 1, 3600, &cfg->nop_timeout_s)) ||
            (rc = get_u32(c, g, "iscsi", "login_timeout", 1, 3600, &cfg->login_timeout_s)) ||
            (rc = get_u32(c, g, "iscsi", "max_recv_data_segment_length", 512, MAX_SEGMENT,
                          &p->max_recv_data_segment_length)) ||
            (rc = get_u32(c, g, "iscsi", "max_burst_length", 512, MAX_SEGMENT,
                          &p->max_burst_length)) ||
            (rc = get_u32(c, g, "iscsi", "first_burst_length", 512, MAX_SEGMENT,
                          &p->first_burst_length)) ||
            (rc = get_bool(c, g, "iscsi", "initial_r2t", &p->initial_r2t)) ||
            (rc = get_bool(c, g, "iscsi", "immediate_data", &p->immediate_data)) ||
            (rc = get_u32(c, g, "iscsi", "max_outstanding_r2t", 1, 65535,
                          &p->max_outstanding_r2t)) ||
            (rc = get_bool(c, g, "iscsi", "header_digest", &p->header_digest)) ||
            (rc = get_bool(c, g, "iscsi", "data_digest", &p->data_digest)) ||
            (rc = get_u32(c, g, "iscsi", "default_time2wait", 0, 3600, &p->default_time2wait)) ||
            (rc =
                 get_u32(c, g, "iscsi", "default_time2retain", 0, 3600, &p->default_time2retain)) ||
            (rc = get_u32(c, g, "iscsi", "cmd_window", 1, 4096, &p->cmd_window)))
            return rc;
        if (p->first_burst_length > p->max_burst_length) {
            s = config_setting_get_member(g, "first_burst_length");
            return fail(c, s ? s : config_setting_get_member(g, "max_burst_length"),
                        "iscsi.first_burst_length (%u) is larger than max_burst_length (%u); "
                        "expected first_burst_length <= max_burst_length",
                        p->first_burst_length, p->max_burst_length);
        }
        if ((rc = get_group(c, g, "iscsi", "discovery_auth", &auth)) ||
            (auth && (rc = parse_chap(c, auth, "iscsi.discovery_auth", &cfg->discovery_chap))))
            return rc;
    }
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (uint32_t)n;
    }
    cfg->threads = threads;
    return 0;
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return s[n] == '\0';
}

static bool in_set(const char *s, const char *set)
{
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && !strchr(set, *s))
            return false;
    return true;
}

/* Returns why name is not a valid iSCSI name (RFC 7143 4.2.7), or NULL if it is. */
static const char *iqn_problem(const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return "it is empty";
    if (len > TGT_NAME_MAX - 1)
        return "it is longer than 223 bytes";
    /* eui./naa. hex digits may be upper case: RFC 7143's own examples are. */
    if (strncmp(name, "eui.", 4) == 0)
        return all_hex(name + 4, 16) ? NULL : "eui. must be followed by exactly 16 hex digits";
    if (strncmp(name, "naa.", 4) == 0)
        return all_hex(name + 4, 16) || all_hex(name + 4, 32)
                   ? NULL
                   : "naa. must be followed by exactly 16 or 32 hex digits";
    if (strncmp(name, "iqn.", 4) != 0) {
        if (strncasecmp(name, "iqn.", 4) == 0 || strncasecmp(name, "eui.", 4) == 0 ||
            strncasecmp(name, "naa.", 4) == 0)
            return "the type prefix must be lower case";
        return "it must start with iqn., eui. or naa.";
    }
    for (const char *p = name; *p; p++)
        if (isupper((unsigned char)*p))
            return "iqn. names must be lower case";
    if (!in_set(name, "-.:"))
        return "it contains characters other than a-z 0-9 - . :";
    const char *d = name + 4;
    bool date = len >= 12 && isdigit((unsigned char)d[0]) && isdigit((unsigned char)d[1]) &&
                isdigit((unsigned char)d[2]) && isdigit((unsigned char)d[3]) && d[4] == '-' &&
                isdigit((unsigned char)d[5]) && isdigit((unsigned char)d[6]) && d[7] == '.';
    int month = date ? (d[5] - '0') * 10 + (d[6] - '0') : 0;
    if (!date || month < 1 || month > 12)
        return "iqn. must be followed by a date yyyy-mm and a dot";
    const char *auth = d + 8;
    if (*auth == '\0' || *auth == ':' || *auth == '.')
        return "the naming authority (a reversed domain name) after the date is missing";
    return NULL;
}

/* Sizes are bytes, either an integer or a string with an optional binary suffix K/M/G/T. */
static int parse_size(struct ctx *c, const config_setting_t *s, const char *where, uint64_t *out)
{
    char k[128];
    key_name(k, sizeof(k), where, config_setting_name(s));
    int type = config_setting_type(s);
    if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
        long long v = config_setting_get_int64(s);
        if (v < 0)
            return fail(c, s, "%s = %lld is out of range; expected 0 or more bytes", k, v);
        *out = (uint64_t)v;
        return 0;
    }
    if (type != CONFIG_TYPE_STRING)
        return wrong_type(c, s, where, "bytes as an integer or a string such as \"1G\"");
    const char *v = config_setting_get_string(s);
    const char *p = v;
    uint64_t n = 0;
    bool overflow = false;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > (UINT64_MAX - 9) / 10)
            overflow = true;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    unsigned shift = 0;
    const char *suffix = p;
    if (*p) {
        const char *u = strchr("KMGT", toupper((unsigned char)*p));
        shift = u && *u ? 10 * (unsigned)(u - "KMGT" + 1) : 0;
        p++;
    }
    if (p == v || suffix == v || (*suffix && shift == 0) || *p)
        return fail(c, s,
                    "%s '%s' is not a size; expected bytes or a number with suffix K, M, G or "
                    "T (powers of 1024), e.g. \"512M\" or \"100G\"",
                    k, v);
    if (overflow || n > ((uint64_t)INT64_MAX >> shift))
        return fail(c, s, "%s '%s' is too large; expected at most 2^63-1 bytes", k, v);
    *out = n << shift;
    return 0;
}

/* Line of the earlier setting a duplicate clashes with, for the message. */
static unsigned member_line(const config_setting_t *group, const char *key)
{
    const config_setting_t *s = config_setting_get_member(group, key);
    return line_of(s ? s : group);
}

static const config_setting_t *lun_setting(const config_setting_t *targets, size_t t, size_t l)
{
    const config_setting_t *tg = config_setting_get_elem(targets, (unsigned)t);
    const config_setting_t *luns = tg ? config_setting_get_member(tg, "luns") : NULL;
    return luns ? config_setting_get_elem(luns, (unsigned)l) : NULL;
}

static int parse_lun(struct ctx *c, const config_setting_t *targets, const config_setting_t *g,
                     struct tgt_config *cfg, size_t ti, size_t li)
{
    struct tgt_target_config *t = &cfg->targets[ti];
    struct tgt_lun_config *lun = &t->luns[li];
    const config_setting_t *ps, *ss;
    const char *path, *serial, *owner;
    const config_setting_t *os;
    long long id = (long long)li;
    char where[64];
    snprintf(where, sizeof(where), "targets[%zu].luns[%zu]", ti, li);

    lun->block_size = 512;
    lun->thin = true;
    int rc = check_keys(c, g, where, lun_keys);
    if (rc || (rc = get_int(c, g, where, "id", 0, MAX_LUN_ID, &id)) ||
        (rc = get_u32(c, g, where, "block_size", 0, UINT32_MAX, &lun->block_size)) ||
        (rc = get_bool(c, g, where, "direct", &lun->direct)) ||
        (rc = get_bool(c, g, where, "create", &lun->create)) ||
        (rc = get_bool(c, g, where, "thin", &lun->thin)) ||
        (rc = get_bool(c, g, where, "read_only", &lun->read_only)) ||
        (rc = get_string(c, g, where, "owner", &owner, &os)) ||
        (rc = get_string(c, g, where, "path", &path, &ps)) ||
        (rc = get_string(c, g, where, "serial", &serial, &ss)))
        return rc;
    lun->id = (uint32_t)id;
    if (owner && !cfg->pair.enabled)
        return fail(c, os,
                    "%s.owner is set but there is no pair section; expected no owner on "
                    "a single node",
                    where);
    if (cfg->pair.enabled) {
        if (!owner)
            return fail(c, g,
                        "%s has no owner; expected owner = \"%s\" or \"%s\" (the node "
                        "that serves it and replicates to the other)",
                        where, cfg->node_name, cfg->pair.partner);
        if (strcmp(owner, cfg->node_name) != 0 && strcmp(owner, cfg->pair.partner) != 0)
            return fail(c, os, "%s.owner '%s' is neither this node ('%s') nor its partner ('%s')",
                        where, owner, cfg->node_name, cfg->pair.partner);
        snprintf(lun->owner, sizeof(lun->owner), "%s", owner);
    }
    for (size_t k = 0; k < li; k++)
        if (t->luns[k].id == lun->id)
            return fail(c,
                        config_setting_get_member(g, "id") ? config_setting_get_member(g, "id") : g,
                        "duplicate LUN id %u in targets[%zu] (first at line %u); expected each LUN "
                        "id once per target",
                        lun->id, ti, member_line(lun_setting(targets, ti, k), "id"));

    if (lun->block_size != 512 && lun->block_size != 4096)
        return fail(c, config_setting_get_member(g, "block_size"),
                    "%s.block_size = %u is not supported; expected 512 or 4096", where,
                    lun->block_size);

    const config_setting_t *size = config_setting_get_member(g, "size");
    if (size && (rc = parse_size(c, size, where, &lun->size_bytes)))
        return rc;
    if (lun->size_bytes == 0 && lun->create)
        return fail(c, size ? size : g,
                    "%s has create = true but no size; expected a positive size such as \"1G\" "
                    "(size 0 or none means: use the existing file's size, with create = false)",
                    where);
    if (lun->size_bytes % lun->block_size != 0)
        return fail(c, size,
                    "%s.size %llu is not a multiple of block_size %u; expected a whole number of "
                    "blocks",
                    where, (unsigned long long)lun->size_bytes, lun->block_size);

    if (!path)
        return fail(c, g, "%s has no path; expected path = \"file or device\"", where);
    if (!path[0])
        return fail(c, ps, "%s.path is empty; expected a file or block device path", where);
    char joined[2 * PATH_MAX];
    if (path[0] == '/')
        snprintf(joined, sizeof(joined), "%s", path);
    else
        snprintf(joined, sizeof(joined), "%s/%s", cfg->state_dir, path);
    if (strlen(joined) >= sizeof(lun->path))
        return fail(c, ps, "%s.path is too long; expected at most %d bytes after joining state_dir",
                    where, PATH_MAX - 1);
    normalize_path(joined, lun->path);
    lun->path_line = config_setting_source_line(ps);
    for (size_t u = 0; u <= ti; u++) {
        size_t n = u == ti ? li : cfg->targets[u].lun_count;
        for (size_t k = 0; k < n; k++)
            if (strcmp(cfg->targets[u].luns[k].path, lun->path) == 0)
                return fail(c, ps,
                            "%s.path '%s' is already used by targets[%zu].luns[%zu] (line %u); "
                            "expected every LUN to have its own file",
                            where, lun->path, u, k,
                            member_line(lun_setting(targets, u, k), "path"));
    }

    if (serial) {
        bool ok = serial[0] && strlen(serial) <= SERIAL_MAX;
        for (const char *p = serial; ok && *p; p++)
            ok = *p > 0x20 && *p < 0x7f;
        if (!ok)
            return fail(c, ss,
                        "%s.serial '%s' is not valid; expected 1..%d printable ASCII characters "
                        "without spaces",
                        where, serial, SERIAL_MAX);
        snprintf(lun->serial, sizeof(lun->serial), "%s", serial);
    } else {
        /* Derived from the target name, which both nodes of a pair share, so an initiator sees
         * one unit through either node. */
        snprintf(lun->serial, sizeof(lun->serial), "%08X%04X", twl_crc32c(t->iqn, strlen(t->iqn)),
                 lun->id);
    }
    return 0;
}

/* "10.0.0.0/8", "192.168.1.5" (/32), "fd00::/8", "::1" (/128); the bits past the prefix must be
 * 0, so that what is written is what matches. */
static int parse_net(struct ctx *c, const config_setting_t *s, const char *where, const char *v,
                     struct tgt_net *n)
{
    char addr[INET6_ADDRSTRLEN + 8];
    snprintf(addr, sizeof(addr), "%s", v);
    char *slash = strchr(addr, '/');
    if (slash)
        *slash = '\0';
    memset(n, 0, sizeof(*n));
    if (inet_pton(AF_INET, addr, n->addr) == 1) {
        n->family = AF_INET;
        n->prefix = 32;
    } else if (inet_pton(AF_INET6, addr, n->addr) == 1) {
        n->family = AF_INET6;
        n->prefix = 128;
    } else {
        return fail(c, s,
                    "%s '%s' is not an address; expected an IPv4 or IPv6 address with an optional "
                    "/prefix, e.g. \"10.0.0.0/24\" or \"fd00::/64\"",
                    where, v);
    }
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || p < 0 || p > n->prefix)
            return fail(c, s, "%s '%s' has a bad prefix length; expected 0..%u", where, v,
                        n->prefix);
        n->prefix = (uint8_t)p;
    }
    for (unsigned bit = n->prefix; bit < (n->family == AF_INET ? 32u : 128u); bit++)
        if (n->addr[bit / 8] & (0x80u >> (bit % 8)))
            return fail(c, s,
                        "%s '%s' has address bits set past the /%u prefix; expected the "
                        "network's first address",
                        where, v, n->prefix);
    return 0;
}

/* targets[i].allow = { initiators = ( "iqn..." ); addresses = ( "10.0.0.0/24" ); } */
static int parse_allow(struct ctx *c, const config_setting_t *g, const char *where,
                       struct tgt_allow *a)
{
    int rc = check_keys(c, g, where, allow_keys);
    if (rc)
        return rc;
    static const char *const lists[] = {"initiators", "addresses"};
    for (int k = 0; k < 2; k++) {
        const config_setting_t *l = config_setting_get_member(g, lists[k]);
        if (l == NULL)
            continue;
        char key[80];
        snprintf(key, sizeof(key), "%s.%s", where, lists[k]);
        if (!config_setting_is_aggregate(l) || config_setting_is_group(l))
            return fail(c, l, "%s is %s; expected a list of strings ( \"...\", ... )", key,
                        type_name(config_setting_type(l)));
        int n = config_setting_length(l);
        if (n == 0 || n > TGT_ALLOW_MAX)
            return fail(c, l, "%s has %d entries; expected 1..%d (leave it out to allow all)", key,
                        n, TGT_ALLOW_MAX);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
            const char *v = config_setting_get_string(e);
            if (v == NULL)
                return fail(c, e, "%s[%d] is %s; expected a string", key, i,
                            type_name(config_setting_type(e)));
            if (k == 1) {
                if ((rc = parse_net(c, e, key, v, &a->nets[a->net_count++])))
                    return rc;
                continue;
            }
            const char *problem = iqn_problem(v);
            if (problem)
                return fail(c, e, "%s '%s' is not a valid iSCSI name: %s; " IQN_EXPECTED, key, v,
                            problem);
            snprintf(a->initiators[a->initiator_count++], TGT_NAME_MAX, "%s", v);
        }
    }
    return 0;
}

static int parse_target(struct ctx *c, const config_setting_t *targets, struct tgt_config *cfg,
                        size_t ti)
{
    const config_setting_t *g = config_setting_get_elem(targets, (unsigned)ti);
    struct tgt_target_config *t = &cfg->targets[ti];
    const config_setting_t *is, *as, *auth, *luns;
    const char *iqn, *alias;
    char where[32];
    snprintf(where, sizeof(where), "targets[%zu]", ti);

    if (!config_setting_is_group(g))
        return fail(c, g, "%s is %s; expected a group { iqn = ...; luns = (...); }", where,
                    type_name(config_setting_type(g)));
    int rc = check_keys(c, g, where, target_keys);
    if (rc || (rc = get_string(c, g, where, "iqn", &iqn, &is)) ||
        (rc = get_string(c, g, where, "alias", &alias, &as)))
        return rc;
    if (!iqn)
        return fail(c, g, "%s has no iqn; expected iqn = \"iqn.YYYY-MM.reversed.domain:name\"",
                    where);
    const char *problem = iqn_problem(iqn);
    if (problem)
        return fail(c, is, "%s.iqn '%s' is not a valid iSCSI name: %s; " IQN_EXPECTED, where, iqn,
                    problem);
    for (size_t k = 0; k < ti; k++)
        if (strcasecmp(cfg->targets[k].iqn, iqn) == 0)
            return fail(c, is,
                        "duplicate target iqn '%s' (first at line %u); expected each target "
                        "name once",
                        iqn, member_line(config_setting_get_elem(targets, (unsigned)k), "iqn"));
    snprintf(t->iqn, sizeof(t->iqn), "%s", iqn);
    if (alias && (rc = copy_text(c, as, where, alias, 0, t->alias, sizeof(t->alias))))
        return rc;

    char auth_where[48];
    snprintf(auth_where, sizeof(auth_where), "%s.auth", where);
    if ((rc = get_group(c, g, where, "auth", &auth)) ||
        (auth && (rc = parse_chap(c, auth, auth_where, &t->chap))))
        return rc;
    const config_setting_t *allow;
    char allow_where[48];
    snprintf(allow_where, sizeof(allow_where), "%s.allow", where);
    if ((rc = get_group(c, g, where, "allow", &allow)) ||
        (allow && (rc = parse_allow(c, allow, allow_where, &t->allow))))
        return rc;

    luns = config_setting_get_member(g, "luns");
    if (!luns)
        return fail(c, g, "%s has no luns; expected luns = ( { id = 0; path = \"...\"; } )", where);
    if (!config_setting_is_list(luns) &&
        !(config_setting_is_array(luns) && config_setting_length(luns) == 0))
        return wrong_type(c, luns, where, "a list ( { ... }, ... )");
    size_t n = (size_t)config_setting_length(luns);
    if (n == 0)
        return fail(c, luns, "%s.luns is empty; expected at least one LUN", where);
    t->luns = calloc(n, sizeof(*t->luns));
    if (!t->luns)
        return -ENOMEM;
    for (size_t li = 0; li < n; li++) {
        const config_setting_t *lg = config_setting_get_elem(luns, (unsigned)li);
        if (!config_setting_is_group(lg))
            return fail(c, lg, "%s.luns[%zu] is %s; expected a group { id = ...; path = ...; }",
                        where, li, type_name(config_setting_type(lg)));
        if ((rc = parse_lun(c, targets, lg, cfg, ti, li)))
            return rc;
        t->lun_count = li + 1;
    }
    return 0;
}

/* "host:port" (IPv4, or a name; the port is required, 0 only where any_port allows it) of the
 * setting named key ("pair.listen"), example shows a good one. */
/* Splits "host:port" into host (a name or IPv4 literal) and port; NULL when it is one, else
 * what is wrong. */
static const char *split_host_port(const char *v, bool any_port, char *host, size_t hostlen,
                                   uint16_t *port)
{
    const char *colon = strrchr(v, ':');
    size_t hlen = colon ? (size_t)(colon - v) : 0;
    bool zero = any_port && colon && strcmp(colon + 1, "0") == 0;
    if (zero)
        *port = 0;
    if (!colon || hlen == 0 || hlen >= hostlen || (!zero && parse_port(colon + 1, port) != 0))
        return "is not an address";
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("-._", v[i]))
            return "has a bad host name";
    memcpy(host, v, hlen);
    host[hlen] = '\0';
    return NULL;
}

static int parse_host_port(struct ctx *c, const config_setting_t *s, const char *key, const char *v,
                           bool any_port, const char *example, char *host, size_t hostlen,
                           uint16_t *port)
{
    const char *problem = split_host_port(v, any_port, host, hostlen, port);
    if (problem)
        return fail(c, s, "%s '%s' %s; expected \"host:port\", e.g. \"%s\"", key, v, problem,
                    example);
    return 0;
}

/* metrics.listen: where the Prometheus endpoint listens (none when absent or ""). */
static int parse_metrics(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    const config_setting_t *g, *s;
    const char *v;
    int rc = get_group(c, root, NULL, "metrics", &g);
    if (rc || !g || (rc = check_keys(c, g, "metrics", metrics_keys)))
        return rc;
    if ((rc = get_string(c, g, "metrics", "listen", &v, &s)) || !v || !v[0])
        return rc;
    if ((rc = parse_host_port(c, s, "metrics.listen", v, true, "127.0.0.1:9470", cfg->metrics_host,
                              sizeof(cfg->metrics_host), &cfg->metrics_port)))
        return rc;
    cfg->metrics_enabled = true;
    return 0;
}

static int parse_pair(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    struct tgt_pair_config *p = &cfg->pair;
    const config_setting_t *g, *s;
    const char *v;
    p->policy = TGT_PAIR_AVAILABLE;
    p->replica_timeout_ms = 5000;
    p->ring_bytes = 16u << 20;
    p->pool_bytes = 64u << 20;
    p->region_bytes = 64u << 10;
    p->alone_after_ms = 10000;
    p->heartbeat_ms = 200;
    p->dead_ms = 2000;
    int rc = get_group(c, root, NULL, "pair", &g);
    if (rc || !g || (rc = check_keys(c, g, "pair", pair_keys)))
        return rc;
    p->enabled = true;
    if ((rc = get_string(c, g, "pair", "partner", &v, &s)))
        return rc;
    if (!v)
        return fail(c, g, "pair has no partner; expected partner = \"<the other node's name>\"");
    if (!v[0] || strlen(v) >= sizeof(p->partner) || !valid_node_name(v))
        return fail(c, s, "pair.partner '%s' is not a node name", v);
    if (strcmp(v, cfg->node_name) == 0)
        return fail(c, s,
                    "pair.partner '%s' is this node's own name; expected the other node's "
                    "node.name",
                    v);
    snprintf(p->partner, sizeof(p->partner), "%s", v);
    if ((rc = get_string(c, g, "pair", "listen", &v, &s)))
        return rc;
    if (!v)
        return fail(c, g,
                    "pair has no listen; expected listen = \"host:port\" (this node's "
                    "backplane address)");
    if ((rc = parse_host_port(c, s, "pair.listen", v, false, "10.0.0.1:7471", p->listen_host,
                              sizeof(p->listen_host), &p->listen_port)))
        return rc;
    if ((rc = get_string(c, g, "pair", "partner_address", &v, &s)))
        return rc;
    if (!v)
        return fail(c, g,
                    "pair has no partner_address; expected partner_address = \"host:port\" "
                    "(the partner's backplane address)");
    if ((rc = parse_host_port(c, s, "pair.partner_address", v, false, "10.0.0.2:7471",
                              p->partner_host, sizeof(p->partner_host), &p->partner_port)))
        return rc;
    if ((rc = get_string(c, g, "pair", "secret", &v, &s)))
        return rc;
    if (v && (rc = copy_secret(c, s, "pair", "secret", v, p->secret, sizeof(p->secret))))
        return rc;
    if ((rc = get_string(c, g, "pair", "policy", &v, &s)))
        return rc;
    if (v && strcmp(v, "strict") == 0)
        p->policy = TGT_PAIR_STRICT;
    else if (v && strcmp(v, "available") != 0)
        return fail(c, s, "pair.policy '%s' is not a policy; expected \"available\" or \"strict\"",
                    v);
    if ((rc = get_string(c, g, "pair", "ack", &v, &s)))
        return rc;
    if (v && strcmp(v, "received") == 0)
        p->ack = TGT_PAIR_ACK_RECEIVED;
    else if (v && strcmp(v, "applied") != 0)
        return fail(c, s,
                    "pair.ack '%s' is not a durability point; expected \"applied\" or "
                    "\"received\"",
                    v);
    if ((rc = get_string(c, g, "pair", "ring_file", &v, &s)))
        return rc;
    if (v && v[0] != '/')
        return fail(c, s, "pair.ring_file '%s' is not absolute; expected a path starting with /",
                    v);
    if (v && strlen(v) >= sizeof(p->ring_file))
        return fail(c, s, "pair.ring_file is too long");
    if (v)
        snprintf(p->ring_file, sizeof(p->ring_file), "%s", v);
    else
        snprintf(p->ring_file, sizeof(p->ring_file), "%.*s/inflight-ring", PATH_MAX - 32,
                 cfg->state_dir);
    if ((rc = get_bool(c, g, "pair", "data_crc", &p->data_crc)) ||
        (rc = get_bool(c, g, "pair", "explicit_alua", &p->explicit_alua)))
        return rc;
    if ((rc = get_u32(c, g, "pair", "timeout_ms", 100, 600000, &p->replica_timeout_ms)) ||
        (rc = get_u32(c, g, "pair", "heartbeat_ms", 10, 10000, &p->heartbeat_ms)) ||
        (rc = get_u32(c, g, "pair", "alone_after_ms", 0, 3600000, &p->alone_after_ms)) ||
        (rc = get_u32(c, g, "pair", "dead_ms", 100, 600000, &p->dead_ms)))
        return rc;
    if (p->dead_ms <= 2 * p->heartbeat_ms)
        return fail(c, config_setting_get_member(g, "dead_ms"),
                    "pair.dead_ms %u must exceed two heartbeats (2 x heartbeat_ms = %u)",
                    p->dead_ms, 2 * p->heartbeat_ms);
    const config_setting_t *pool = config_setting_get_member(g, "buffer_pool");
    if (pool && (rc = parse_size(c, pool, "pair", &p->pool_bytes)))
        return rc;
    if (p->pool_bytes < (16u << 20) || p->pool_bytes > (16ull << 30))
        return fail(c, pool ? pool : g, "pair.buffer_pool %llu is out of range; expected 16M..16G",
                    (unsigned long long)p->pool_bytes);
    const config_setting_t *ring = config_setting_get_member(g, "ring_size");
    if (ring && (rc = parse_size(c, ring, "pair", &p->ring_bytes)))
        return rc;
    if (p->ring_bytes < (1u << 20) || p->ring_bytes > (1ull << 31) ||
        (p->ring_bytes & (p->ring_bytes - 1)) != 0)
        return fail(c, ring ? ring : g,
                    "pair.ring_size %llu is not a power of two between 1M and 2G",
                    (unsigned long long)p->ring_bytes);
    const config_setting_t *region = config_setting_get_member(g, "region_size");
    if (region && (rc = parse_size(c, region, "pair", &p->region_bytes)))
        return rc;
    if (p->region_bytes < 4096 || p->region_bytes > (64u << 20) ||
        (p->region_bytes & (p->region_bytes - 1)) != 0)
        return fail(c, region ? region : g,
                    "pair.region_size %llu is not a power of two between 4K and 64M",
                    (unsigned long long)p->region_bytes);
    return 0;
}

static int parse_throttle(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    struct tgt_throttle_config *t = &cfg->throttle;
    const config_setting_t *g, *s;
    *t = (struct tgt_throttle_config){.enabled = true,
                                      .burst_bytes = 4u << 20,
                                      .min_rate = 1u << 20,
                                      .resync_share = 50,
                                      .ewma_ms = 200,
                                      .queue_ms = 100};
    int rc = get_group(c, root, NULL, "throttle", &g);
    if (rc || !g || (rc = check_keys(c, g, "throttle", throttle_keys)))
        return rc;
    if ((rc = get_bool(c, g, "throttle", "enabled", &t->enabled)) ||
        (rc = get_u32(c, g, "throttle", "resync_share", 5, 95, &t->resync_share)) ||
        (rc = get_u32(c, g, "throttle", "ewma_ms", 20, 10000, &t->ewma_ms)) ||
        (rc = get_u32(c, g, "throttle", "queue_ms", 10, 10000, &t->queue_ms)))
        return rc;
    if ((s = config_setting_get_member(g, "burst")) &&
        (rc = parse_size(c, s, "throttle", &t->burst_bytes)))
        return rc;
    if (t->burst_bytes < (64u << 10) || t->burst_bytes > (1ull << 30))
        return fail(c, s ? s : g, "throttle.burst %llu is out of range; expected 64K..1G",
                    (unsigned long long)t->burst_bytes);
    if ((s = config_setting_get_member(g, "min_rate")) &&
        (rc = parse_size(c, s, "throttle", &t->min_rate)))
        return rc;
    if (t->min_rate < (64u << 10) || t->min_rate > (100ull << 30))
        return fail(c, s ? s : g,
                    "throttle.min_rate %llu is out of range; expected 64K..100G (bytes per second)",
                    (unsigned long long)t->min_rate);
    return 0;
}

static int parse_targets(struct ctx *c, const config_setting_t *root, struct tgt_config *cfg)
{
    const config_setting_t *s = config_setting_get_member(root, "targets");
    if (!s)
        return fail(c, root,
                    "no targets; expected targets = ( { iqn = \"...\"; luns = ( { path = "
                    "\"...\"; ... } ); } )");
    bool empty_array = config_setting_is_array(s) && config_setting_length(s) == 0;
    if (!config_setting_is_list(s) && !empty_array)
        return wrong_type(c, s, NULL, "a list ( { ... }, ... )");
    size_t n = (size_t)config_setting_length(s);
    if (n == 0)
        return fail(c, s, "no targets: targets is empty; expected at least one target");
    /* the pair presents one target; its LUN ids name the LUNs on the backplane */
    if (n > 1 && cfg->pair.enabled)
        return fail(c, s, "%zu targets with a pair section; expected one target on a pair", n);
    cfg->targets = calloc(n, sizeof(*cfg->targets));
    if (!cfg->targets)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_target(c, s, cfg, i);
        /* Counted before the error check so a failed target's LUNs are freed too. */
        cfg->target_count = i + 1;
        if (rc)
            return rc;
    }
    return 0;
}

static int load_text(const char *text, const char *name, const char *include_dir,
                     struct tgt_config *cfg, char *err, size_t errlen)
{
    struct ctx c = {.name = name, .err = err, .errlen = errlen};
    struct tgt_config tmp;
    config_t lc;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (err && errlen)
        err[0] = '\0';
    if (strlen(name) >= sizeof(cfg->source))
        return fail_at(&c, name, 1, "file name too long");
    if ((rc = check_int_literals(&c, text)))
        return rc;

    config_init(&lc);
    if (include_dir)
        config_set_include_dir(&lc, include_dir);
    if (!config_read_string(&lc, text)) {
        const char *file = config_error_file(&lc) ? config_error_file(&lc) : name;
        const char *what = config_error_text(&lc);
        rc = fail_at(&c, file, (unsigned)config_error_line(&lc), "%s%s", what,
                     strcmp(what, "syntax error") == 0
                         ? "; expected settings 'key = value;', groups { ... } and lists ( ... ) "
                           "(a missing ';' shows on the next line)"
                         : "");
        config_destroy(&lc);
        return rc;
    }

    memset(&tmp, 0, sizeof(tmp));
    snprintf(tmp.source, sizeof(tmp.source), "%s", name);
    const config_setting_t *root = config_root_setting(&lc);
    if ((rc = check_keys(&c, root, NULL, root_keys)) || (rc = parse_node(&c, root, &tmp)) ||
        (rc = parse_pair(&c, root, &tmp)) || (rc = parse_throttle(&c, root, &tmp)) ||
        (rc = parse_log(&c, root, &tmp)) || (rc = parse_metrics(&c, root, &tmp)) ||
        (rc = parse_iscsi(&c, root, &tmp)) || (rc = parse_targets(&c, root, &tmp))) {
        if (rc == -ENOMEM)
            fail_at(&c, name, 1, "out of memory");
        tgt_config_free(&tmp);
    } else {
        *cfg = tmp;
        explicit_bzero(&tmp, sizeof(tmp));
    }
    config_destroy(&lc);
    return rc;
}

int tgt_config_load_string(const char *text, const char *name, struct tgt_config *cfg, char *err,
                           size_t errlen)
{
    return load_text(text, name ? name : "<string>", NULL, cfg, err, errlen);
}

int tgt_config_load_file(const char *path, struct tgt_config *cfg, char *err, size_t errlen)
{
    struct ctx c = {.name = path, .err = err, .errlen = errlen};
    memset(cfg, 0, sizeof(*cfg));
    /* Read here rather than by config_read_file so the integer check sees the same bytes and
     * a missing file comes back as its errno. */
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        fail_at(&c, path, 1, "cannot open: %s", strerror(e));
        return -e;
    }
    char *text = malloc(MAX_FILE_BYTES + 1);
    if (!text) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(text, 1, MAX_FILE_BYTES + 1, f);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e || n > MAX_FILE_BYTES) {
        free(text);
        if (e)
            fail_at(&c, path, 1, "cannot read: %s", strerror(e));
        else
            fail_at(&c, path, 1, "larger than 1 MiB; expected a config file");
        return e ? -e : -EFBIG;
    }
    text[n] = '\0';

    /* @include paths are relative to the including file, not to the daemon's cwd. */
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int rc = load_text(text, path, dir, cfg, err, errlen);
    free(text);
    return rc;
}

int tgt_config_load_default(const char *state_dir, struct tgt_config *cfg, char *err, size_t errlen)
{
    if (!state_dir)
        state_dir = TGT_CONFIG_DEFAULT_STATE_DIR;
    const char *mark = strstr(tgt_config_default_text, STATE_DIR_MARKER);
    size_t head = (size_t)(mark - tgt_config_default_text);
    size_t cap = sizeof(tgt_config_default_text) + 2 * strlen(state_dir);
    char *text = malloc(cap);
    if (!text) {
        memset(cfg, 0, sizeof(*cfg));
        return -ENOMEM;
    }
    memcpy(text, tgt_config_default_text, head);
    char *o = text + head;
    /* The directory lands inside a libconfig string literal. */
    for (const char *p = state_dir; *p; p++) {
        if (*p == '"' || *p == '\\')
            *o++ = '\\';
        *o++ = *p;
    }
    strcpy(o, mark + strlen(STATE_DIR_MARKER));
    int rc = load_text(text, DEFAULT_NAME, NULL, cfg, err, errlen);
    free(text);
    return rc;
}

int tgt_config_set_metrics(struct tgt_config *cfg, const char *spec, char *err, size_t errlen)
{
    if (strcmp(spec, "off") == 0) {
        cfg->metrics_enabled = false;
        return 0;
    }
    const char *problem = split_host_port(spec, true, cfg->metrics_host, sizeof(cfg->metrics_host),
                                          &cfg->metrics_port);
    if (problem) {
        snprintf(err, errlen, "'%s' %s; expected \"host:port\" or off", spec, problem);
        return -EINVAL;
    }
    cfg->metrics_enabled = true;
    return 0;
}

void tgt_config_free(struct tgt_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->target_count; i++)
        free(cfg->targets[i].luns);
    if (cfg->targets)
        explicit_bzero(cfg->targets, cfg->target_count * sizeof(*cfg->targets));
    free(cfg->targets);
    explicit_bzero(cfg, sizeof(*cfg));
}
