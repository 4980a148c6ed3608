/* Persistent mappings through libpmem2. */
#include "tracker.h"

#include "twl_common.h"

#include <errno.h>
#include <fcntl.h>
#include <libpmem2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PART "tracker"

struct trk_pmem {
    int fd;
    struct pmem2_config *cfg;
    struct pmem2_source *src;
    struct pmem2_map *map;
    pmem2_persist_fn persist;
    void *addr;
    size_t len;
    bool is_pmem;
    uint8_t *shadow; /* a file that cannot be mapped: its bytes in memory, written through */
    char path[256];
};

/* libpmem2 returns its own negative codes next to negative errnos; the message says more. */
static int pmem_fail(const char *path, const char *what, int rc)
{
    TWL_ERROR(PART, "%s: %s: %s", path, what, pmem2_errormsg());
    return rc < 0 && rc > -4096 ? rc : -EIO;
}

/* The file in memory: a persist writes the range to the file and waits for the device. */
static int open_written_through(struct trk_pmem *m, const char *path, size_t len)
{
    m->shadow = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
    if (m->shadow == NULL)
        return -ENOMEM;
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(m->fd, m->shadow + got, len - got, (off_t)got);
        if (n <= 0) {
            int rc = n < 0 ? -errno : -EIO;
            TWL_ERROR(PART, "%s: cannot read: %s", path, strerror(-rc));
            free(m->shadow);
            m->shadow = NULL;
            return rc;
        }
        got += (size_t)n;
    }
    m->addr = m->shadow;
    m->len = len;
    snprintf(m->path, sizeof(m->path), "%s", path);
    return 0;
}

int trk_pmem_open(const char *path, size_t len, struct trk_pmem **out)
{
    *out = NULL;
    if (len == 0)
        return -EINVAL;
    struct trk_pmem *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    int rc;
    m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m->fd < 0) {
        rc = -errno;
        TWL_ERROR(PART, "%s: cannot open: %s", path, strerror(-rc));
        goto err_free;
    }
    struct stat st;
    if (fstat(m->fd, &st) < 0 || ((size_t)st.st_size != len && ftruncate(m->fd, (off_t)len) < 0)) {
        rc = -errno;
        TWL_ERROR(PART, "%s: cannot size to %zu bytes: %s", path, len, strerror(-rc));
        goto err_close;
    }
    /* the new bytes must be backed now, so a full disk fails here and not at a store */
    rc = posix_fallocate(m->fd, 0, (off_t)len);
    if (rc && rc != EOPNOTSUPP) {
        rc = -rc;
        TWL_ERROR(PART, "%s: cannot allocate %zu bytes: %s", path, len, strerror(-rc));
        goto err_close;
    }
    rc = pmem2_config_new(&m->cfg);
    if (rc) {
        rc = pmem_fail(path, "pmem2_config_new", rc);
        goto err_close;
    }
    /* page granularity accepts any file; on pmem libpmem2 still picks cache flushes */
    rc = pmem2_config_set_required_store_granularity(m->cfg, PMEM2_GRANULARITY_PAGE);
    if (rc == 0)
        rc = pmem2_source_from_fd(&m->src, m->fd);
    if (rc) {
        rc = pmem_fail(path, "pmem2 source", rc);
        goto err_cfg;
    }
    rc = pmem2_map_new(&m->map, m->cfg, m->src);
    if (rc) {
        /* some file systems (9p, FUSE without writeback) cannot map a file shared */
        TWL_WARN(PART, "%s: cannot be mapped (%s): kept in memory and written through", path,
                 pmem2_errormsg());
        rc = open_written_through(m, path, len);
        if (rc)
            goto err_src;
        *out = m;
        return 0;
    }
    m->addr = pmem2_map_get_address(m->map);
    m->len = pmem2_map_get_size(m->map);
    m->persist = pmem2_get_persist_fn(m->map);
    m->is_pmem = pmem2_map_get_store_granularity(m->map) != PMEM2_GRANULARITY_PAGE;
    TWL_DEBUG(PART, "%s: mapped %zu bytes (%s)", path, m->len,
              m->is_pmem ? "persistent memory" : "page cache, persisted by msync");
    *out = m;
    return 0;

err_src:
    pmem2_source_delete(&m->src);
err_cfg:
    pmem2_config_delete(&m->cfg);
err_close:
    close(m->fd);
err_free:
    free(m);
    return rc;
}

void *trk_pmem_addr(const struct trk_pmem *m)
{
    return m->addr;
}

size_t trk_pmem_len(const struct trk_pmem *m)
{
    return m->len;
}

bool trk_pmem_is_pmem(const struct trk_pmem *m)
{
    return m->is_pmem;
}

void trk_pmem_persist(const struct trk_pmem *m, const void *addr, size_t len)
{
    if (m->shadow == NULL) {
        m->persist(addr, len);
        return;
    }
    size_t off = (size_t)((const uint8_t *)addr - m->shadow);
    const uint8_t *p = addr;
    while (len > 0) {
        ssize_t n = pwrite(m->fd, p, len, (off_t)off);
        if (n <= 0) {
            /* the log cannot vouch for anything any more: stop rather than lie */
            TWL_ERROR(PART, "%s: write-through of %zu bytes at %zu failed: %s; aborting", m->path,
                      len, off, n < 0 ? strerror(errno) : "no progress");
            abort();
        }
        p += n;
        off += (size_t)n;
        len -= (size_t)n;
    }
    if (fdatasync(m->fd) < 0) {
        TWL_ERROR(PART, "%s: fdatasync failed: %s; aborting", m->path, strerror(errno));
        abort();
    }
}

void trk_pmem_close(struct trk_pmem *m)
{
    if (m == NULL)
        return;
    free(m->shadow);
    if (m->map)
        pmem2_map_delete(&m->map);
    pmem2_source_delete(&m->src);
    pmem2_config_delete(&m->cfg);
    close(m->fd);
    free(m);
}
