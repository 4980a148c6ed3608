/* The registered command-buffer pool: alignment, size classes, reuse, and the heap fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bufpool.h"

static int in_pool(const struct bufpool *p, const uint8_t *b)
{
    const uint8_t *base = bufpool_base(p);
    return b >= base && b < base + bufpool_size(p);
}

static void buffers_come_from_the_region_and_are_reused(void **state)
{
    (void)state;
    struct bufpool *p;
    assert_int_equal(bufpool_create(1 << 20, &p), 0);
    assert_int_equal(bufpool_size(p), 1 << 20);
    uint8_t *a = bufpool_alloc(p, 512);
    uint8_t *b = bufpool_alloc(p, 5000); /* an 8 KiB class */
    assert_true(in_pool(p, a) && in_pool(p, b));
    assert_int_equal((uintptr_t)a % 4096, 0);
    assert_int_equal((uintptr_t)b % 4096, 0);
    assert_true(b - a >= 4096 || a - b >= 8192); /* no overlap */
    memset(a, 1, 4096);
    memset(b, 2, 8192);
    bufpool_free(p, a);
    assert_ptr_equal(bufpool_alloc(p, 4096), a); /* same class: reused */
    bufpool_free(p, b);
    uint8_t *c = bufpool_alloc(p, 8192);
    assert_ptr_equal(c, b);
    bufpool_free(p, c);
    bufpool_free(p, a);
    bufpool_destroy(p);
}

static void an_exhausted_or_absent_pool_falls_back_to_the_heap(void **state)
{
    (void)state;
    struct bufpool *p;
    assert_int_equal(bufpool_create(64 << 10, &p), 0);
    uint8_t *big = bufpool_alloc(p, 64 << 10);
    assert_true(in_pool(p, big));
    uint8_t *more = bufpool_alloc(p, 4096); /* nothing left */
    assert_non_null(more);
    assert_false(in_pool(p, more));
    assert_int_equal((uintptr_t)more % 4096, 0);
    uint8_t *huge = bufpool_alloc(p, 32u << 20); /* beyond the largest class */
    assert_non_null(huge);
    assert_false(in_pool(p, huge));
    bufpool_free(p, more);
    bufpool_free(p, huge);
    bufpool_free(p, big);
    bufpool_destroy(p);

    struct bufpool *none;
    assert_int_equal(bufpool_create(0, &none), 0);
    assert_null(bufpool_base(none));
    uint8_t *h = bufpool_alloc(none, 100);
    assert_non_null(h);
    bufpool_free(none, h);
    bufpool_destroy(none);
    h = bufpool_alloc(NULL, 0);
    assert_non_null(h);
    bufpool_free(NULL, h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buffers_come_from_the_region_and_are_reused),
        cmocka_unit_test(an_exhausted_or_absent_pool_falls_back_to_the_heap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
