#include "bufpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE      4096u
#define MIN_SHIFT 12
#define CLASSES   13 /* 4 KiB .. 16 MiB */

struct bufpool {
    pthread_mutex_t lock;
    uint8_t *base;
    size_t size;
    size_t bump;              /* carved so far */
    void *free_list[CLASSES]; /* a freed buffer's first bytes link the list */
    uint8_t *page_class;      /* class of the buffer starting at each page */
};

int bufpool_create(size_t bytes, struct bufpool **out)
{
    *out = NULL;
    struct bufpool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    if (bytes) {
        bytes = (bytes + PAGE - 1) & ~(size_t)(PAGE - 1);
        p->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p->page_class = calloc(bytes / PAGE, 1);
        if (p->base == MAP_FAILED || p->page_class == NULL) {
            int rc = p->base == MAP_FAILED ? -errno : -ENOMEM;
            if (p->base != MAP_FAILED)
                munmap(p->base, bytes);
            free(p->page_class);
            free(p);
            return rc;
        }
        p->size = bytes;
    }
    *out = p;
    return 0;
}

void bufpool_destroy(struct bufpool *p)
{
    if (p == NULL)
        return;
    if (p->size)
        munmap(p->base, p->size);
    free(p->page_class);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void *bufpool_base(const struct bufpool *p)
{
    return p ? p->base : NULL;
}

size_t bufpool_size(const struct bufpool *p)
{
    return p ? p->size : 0;
}

static int class_of(size_t len)
{
    int c = 0;
    while (c < CLASSES && ((size_t)PAGE << c) < len)
        c++;
    return c;
}

uint8_t *bufpool_alloc(struct bufpool *p, size_t len)
{
    int c = class_of(len ? len : 1);
    uint8_t *b = NULL;
    if (p && p->size && c < CLASSES) {
        size_t bytes = (size_t)PAGE << c;
        pthread_mutex_lock(&p->lock);
        if (p->free_list[c]) {
            b = p->free_list[c];
            memcpy(&p->free_list[c], b, sizeof(void *));
        } else if (p->bump + bytes <= p->size) {
            b = p->base + p->bump;
            p->bump += bytes;
            p->page_class[(size_t)(b - p->base) / PAGE] = (uint8_t)c;
        }
        pthread_mutex_unlock(&p->lock);
    }
    if (b)
        return b;
    size_t size = (len + PAGE - 1) & ~(size_t)(PAGE - 1);
    return aligned_alloc(PAGE, size ? size : PAGE);
}

void bufpool_free(struct bufpool *p, uint8_t *buf)
{
    if (buf == NULL)
        return;
    if (p == NULL || p->size == 0 || buf < p->base || buf >= p->base + p->size) {
        free(buf);
        return;
    }
    int c = p->page_class[(size_t)(buf - p->base) / PAGE];
    pthread_mutex_lock(&p->lock);
    memcpy(buf, &p->free_list[c], sizeof(void *));
    p->free_list[c] = buf;
    pthread_mutex_unlock(&p->lock);
}
