/*  test_mbplan: request merging.

    Each case builds a handful of tags, plans them and checks the blocks.
    Every plan also passes s_check_plan, which holds the invariants any plan
    must keep: tags sorted, each tag wholly inside its block, blocks within
    the read limits, and no block that could have absorbed the next one's
    first tag (the merge is greedy and never leaves a legal merge undone).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mbplan.h"
#include "mbtcp.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TAGS 4096

typedef struct {
    site_tag_t tags[MAX_TAGS];
    site_tag_t *ptrs[MAX_TAGS];
    size_t ntags;
} fixture_t;

static int s_setup(void **state)
{
    fixture_t *self = test_calloc(1, sizeof *self);
    assert_non_null(self);
    *state = self;
    return 0;
}

static int s_teardown(void **state)
{
    test_free(*state);
    return 0;
}

static site_tag_t *s_add(fixture_t *self, site_area_t area, uint16_t address, site_type_t type)
{
    assert_true(self->ntags < MAX_TAGS);
    site_tag_t *tag = &self->tags[self->ntags];
    memset(tag, 0, sizeof *tag);
    tag->area = area;
    tag->address = address;
    tag->type = type;
    tag->scale = 1;
    self->ptrs[self->ntags++] = tag;
    return tag;
}

static uint32_t s_width(const site_tag_t *tag)
{
    if (tag->area == SITE_AREA_CO || tag->area == SITE_AREA_DI)
        return 1;
    return (uint32_t)site_type_width(tag->type);
}

static uint32_t s_limit(site_area_t area)
{
    return area == SITE_AREA_CO || area == SITE_AREA_DI ? MB_MAX_READ_BITS : MB_MAX_READ_REGS;
}

static void s_check_plan(const mbplan_t *plan, uint32_t max_gap)
{
    size_t next = 0;
    for (size_t b = 0; b < plan->nblocks; b++) {
        const mbplan_block_t *block = &plan->blocks[b];
        assert_int_equal(block->first, next);
        assert_true(block->ntags >= 1);
        assert_true(block->count >= 1);
        assert_true(block->count <= s_limit(block->area));
        uint32_t lo = UINT32_MAX, hi = 0;
        for (size_t i = block->first; i < block->first + block->ntags; i++) {
            const site_tag_t *tag = plan->tags[i];
            assert_int_equal(tag->area, block->area);
            assert_true(tag->address >= block->start);
            assert_true(tag->address + s_width(tag) <= (uint32_t)block->start + block->count);
            if (tag->address < lo)
                lo = tag->address;
            if (tag->address + s_width(tag) > hi)
                hi = tag->address + s_width(tag);
        }
        //  A block reads nothing past its first and last tag.
        assert_int_equal(lo, block->start);
        assert_int_equal(hi, (uint32_t)block->start + block->count);
        next = block->first + block->ntags;

        //  Greedy: the next block of the same area starts with a tag that
        //  was too far away or would have overflowed this block.
        if (b + 1 < plan->nblocks && plan->blocks[b + 1].area == block->area) {
            const site_tag_t *tag = plan->tags[plan->blocks[b + 1].first];
            uint32_t end = hi;
            uint32_t gap = tag->address > end ? tag->address - end : 0;
            uint32_t stop = tag->address + s_width(tag);
            uint32_t new_end = stop > end ? stop : end;
            assert_true(gap > max_gap || new_end - block->start > s_limit(block->area));
        }
    }
    assert_int_equal(next, plan->ntags);
    for (size_t i = 1; i < plan->ntags; i++) {
        const site_tag_t *a = plan->tags[i - 1], *b = plan->tags[i];
        assert_true(a->area < b->area || (a->area == b->area && a->address <= b->address));
    }
}

static mbplan_t *s_plan(fixture_t *self, uint32_t max_gap, size_t *rejected)
{
    mbplan_t *plan = mbplan_new(self->ptrs, self->ntags, max_gap, rejected);
    assert_non_null(plan);
    s_check_plan(plan, max_gap);
    return plan;
}

static void s_assert_block(const mbplan_t *plan, size_t b, site_area_t area, uint16_t start,
                           uint16_t count, size_t ntags)
{
    assert_true(b < plan->nblocks);
    assert_int_equal(plan->blocks[b].area, area);
    assert_int_equal(plan->blocks[b].start, start);
    assert_int_equal(plan->blocks[b].count, count);
    assert_int_equal(plan->blocks[b].ntags, ntags);
}

static void test_empty(void **state)
{
    size_t rejected = 99;
    mbplan_t *plan = mbplan_new(NULL, 0, 16, &rejected);
    assert_non_null(plan);
    assert_int_equal(plan->ntags, 0);
    assert_int_equal(plan->nblocks, 0);
    assert_int_equal(rejected, 0);
    mbplan_destroy(&plan);
    assert_null(plan);
    mbplan_destroy(&plan); //  tolerated
}

static void test_single(void **state)
{
    fixture_t *self = *state;
    s_add(self, SITE_AREA_HR, 40, SITE_T_FLOAT32);
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_HR, 40, 2, 1);
    assert_ptr_equal(plan->tags[0], &self->tags[0]);
    mbplan_destroy(&plan);
}

static void test_gap_registers(void **state)
{
    fixture_t *self = *state;
    //  Registers 1..4 unused: a hole of 4.
    s_add(self, SITE_AREA_HR, 0, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 5, SITE_T_UINT16);
    mbplan_t *plan = s_plan(self, 4, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 6, 2);
    mbplan_destroy(&plan);

    plan = s_plan(self, 3, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 1, 1);
    s_assert_block(plan, 1, SITE_AREA_HR, 5, 1, 1);
    mbplan_destroy(&plan);
}

static void test_gap_after_32bit(void **state)
{
    fixture_t *self = *state;
    //  A 32-bit tag at 0 ends after register 1: the hole to 5 is 3, not 4.
    s_add(self, SITE_AREA_IR, 0, SITE_T_INT32);
    s_add(self, SITE_AREA_IR, 5, SITE_T_UINT16);
    mbplan_t *plan = s_plan(self, 3, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_IR, 0, 6, 2);
    mbplan_destroy(&plan);
    plan = s_plan(self, 2, NULL);
    assert_int_equal(plan->nblocks, 2);
    mbplan_destroy(&plan);
}

static void test_gap_zero(void **state)
{
    fixture_t *self = *state;
    //  max_gap 0 still merges neighbours that touch.
    s_add(self, SITE_AREA_HR, 10, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 11, SITE_T_UINT32);
    s_add(self, SITE_AREA_HR, 13, SITE_T_INT16);
    s_add(self, SITE_AREA_HR, 15, SITE_T_INT16);
    mbplan_t *plan = s_plan(self, 0, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_HR, 10, 4, 3);
    s_assert_block(plan, 1, SITE_AREA_HR, 15, 1, 1);
    mbplan_destroy(&plan);
}

static void test_gap_bits(void **state)
{
    fixture_t *self = *state;
    s_add(self, SITE_AREA_DI, 0, SITE_T_BOOL);
    s_add(self, SITE_AREA_DI, 17, SITE_T_BOOL); //  hole of 16
    s_add(self, SITE_AREA_DI, 35, SITE_T_BOOL); //  hole of 17
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_DI, 0, 18, 2);
    s_assert_block(plan, 1, SITE_AREA_DI, 35, 1, 1);
    mbplan_destroy(&plan);
}

static void test_register_limit(void **state)
{
    fixture_t *self = *state;
    for (uint16_t a = 0; a < 125; a++)
        s_add(self, SITE_AREA_HR, a, SITE_T_UINT16);
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 125, 125);
    mbplan_destroy(&plan);

    s_add(self, SITE_AREA_HR, 125, SITE_T_UINT16);
    plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 125, 125);
    s_assert_block(plan, 1, SITE_AREA_HR, 125, 1, 1);
    mbplan_destroy(&plan);
}

static void test_register_limit_sparse(void **state)
{
    fixture_t *self = *state;
    //  Two tags 124 apart span exactly 125 registers; 125 apart do not.
    s_add(self, SITE_AREA_IR, 1000, SITE_T_UINT16);
    s_add(self, SITE_AREA_IR, 1124, SITE_T_UINT16);
    mbplan_t *plan = s_plan(self, UINT32_MAX, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_IR, 1000, 125, 2);
    mbplan_destroy(&plan);

    self->tags[1].address = 1125;
    plan = s_plan(self, UINT32_MAX, NULL);
    assert_int_equal(plan->nblocks, 2);
    mbplan_destroy(&plan);
}

static void test_32bit_at_block_edge(void **state)
{
    fixture_t *self = *state;
    //  123 single registers, then a float at 123..124: exactly 125, one block.
    for (uint16_t a = 0; a < 123; a++)
        s_add(self, SITE_AREA_HR, a, SITE_T_UINT16);
    site_tag_t *f = s_add(self, SITE_AREA_HR, 123, SITE_T_FLOAT32);
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 125, 124);
    mbplan_destroy(&plan);

    //  One register further on it would straddle 124..125: it must not be
    //  split, so it starts the next block whole.
    s_add(self, SITE_AREA_HR, 123, SITE_T_UINT16);
    f->address = 124;
    plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 124, 124);
    s_assert_block(plan, 1, SITE_AREA_HR, 124, 2, 1);
    assert_ptr_equal(plan->tags[124], f);
    mbplan_destroy(&plan);
}

static void test_32bit_overlap_at_edge(void **state)
{
    fixture_t *self = *state;
    //  A uint16 and a uint32 share register 124: the uint16 still fits the
    //  first block, the uint32 does not and moves whole to the next one.
    s_add(self, SITE_AREA_HR, 0, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 124, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 124, SITE_T_UINT32);
    mbplan_t *plan = s_plan(self, UINT32_MAX, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_HR, 0, 125, 2);
    s_assert_block(plan, 1, SITE_AREA_HR, 124, 2, 1);
    mbplan_destroy(&plan);
}

static void test_bit_limit(void **state)
{
    fixture_t *self = *state;
    for (uint16_t a = 0; a < 2000; a++)
        s_add(self, SITE_AREA_CO, a, SITE_T_BOOL);
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_CO, 0, 2000, 2000);
    mbplan_destroy(&plan);

    s_add(self, SITE_AREA_CO, 2000, SITE_T_BOOL);
    plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_CO, 0, 2000, 2000);
    s_assert_block(plan, 1, SITE_AREA_CO, 2000, 1, 1);
    mbplan_destroy(&plan);
}

static void test_bit_limit_sparse(void **state)
{
    fixture_t *self = *state;
    s_add(self, SITE_AREA_DI, 0, SITE_T_BOOL);
    s_add(self, SITE_AREA_DI, 1999, SITE_T_BOOL);
    mbplan_t *plan = s_plan(self, 2000, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_DI, 0, 2000, 2);
    mbplan_destroy(&plan);
    self->tags[1].address = 2000;
    plan = s_plan(self, 2000, NULL);
    assert_int_equal(plan->nblocks, 2);
    mbplan_destroy(&plan);
}

static void test_mixed_areas(void **state)
{
    fixture_t *self = *state;
    //  The same addresses in all four areas, given in reverse order: never
    //  merged across areas, blocks in area order co, di, hr, ir.
    s_add(self, SITE_AREA_IR, 1, SITE_T_UINT16);
    s_add(self, SITE_AREA_IR, 0, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 1, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 0, SITE_T_UINT16);
    s_add(self, SITE_AREA_DI, 1, SITE_T_BOOL);
    s_add(self, SITE_AREA_DI, 0, SITE_T_BOOL);
    s_add(self, SITE_AREA_CO, 1, SITE_T_BOOL);
    s_add(self, SITE_AREA_CO, 0, SITE_T_BOOL);
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->nblocks, 4);
    s_assert_block(plan, 0, SITE_AREA_CO, 0, 2, 2);
    s_assert_block(plan, 1, SITE_AREA_DI, 0, 2, 2);
    s_assert_block(plan, 2, SITE_AREA_HR, 0, 2, 2);
    s_assert_block(plan, 3, SITE_AREA_IR, 0, 2, 2);
    assert_ptr_equal(plan->tags[0], &self->tags[7]);
    assert_ptr_equal(plan->tags[7], &self->tags[0]);
    mbplan_destroy(&plan);
}

static void test_unsorted(void **state)
{
    fixture_t *self = *state;
    s_add(self, SITE_AREA_HR, 50, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 10, SITE_T_INT32);
    s_add(self, SITE_AREA_HR, 30, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 12, SITE_T_UINT16);
    mbplan_t *plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->ntags, 4);
    assert_ptr_equal(plan->tags[0], &self->tags[1]);
    assert_ptr_equal(plan->tags[1], &self->tags[3]);
    assert_ptr_equal(plan->tags[2], &self->tags[2]);
    assert_ptr_equal(plan->tags[3], &self->tags[0]);
    //  10..12, hole of 17 to 30: two blocks, 30 and 50 (hole 19) three.
    assert_int_equal(plan->nblocks, 3);
    s_assert_block(plan, 0, SITE_AREA_HR, 10, 3, 2);
    s_assert_block(plan, 1, SITE_AREA_HR, 30, 1, 1);
    s_assert_block(plan, 2, SITE_AREA_HR, 50, 1, 1);
    mbplan_destroy(&plan);
}

static void test_duplicates(void **state)
{
    fixture_t *self = *state;
    //  Two tags on one register and a 32-bit view over the same and the next:
    //  one block of 2, tags at the same address keep the caller's order.
    s_add(self, SITE_AREA_HR, 7, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 7, SITE_T_FLOAT32);
    s_add(self, SITE_AREA_HR, 7, SITE_T_INT16);
    s_add(self, SITE_AREA_HR, 8, SITE_T_UINT16);
    mbplan_t *plan = s_plan(self, 0, NULL);
    assert_int_equal(plan->nblocks, 1);
    s_assert_block(plan, 0, SITE_AREA_HR, 7, 2, 4);
    assert_ptr_equal(plan->tags[0], &self->tags[0]);
    assert_ptr_equal(plan->tags[1], &self->tags[1]);
    assert_ptr_equal(plan->tags[2], &self->tags[2]);
    mbplan_destroy(&plan);
}

static void test_address_limit(void **state)
{
    fixture_t *self = *state;
    //  A 32-bit tag at 65535 would need register 65536: rejected. Single
    //  registers and bits at 65535 are fine, and a 32-bit type on a coil is
    //  one bit wide.
    s_add(self, SITE_AREA_HR, 65535, SITE_T_UINT32);
    s_add(self, SITE_AREA_HR, 65535, SITE_T_UINT16);
    s_add(self, SITE_AREA_HR, 65534, SITE_T_FLOAT32);
    s_add(self, SITE_AREA_IR, 65535, SITE_T_INT32);
    s_add(self, SITE_AREA_CO, 65535, SITE_T_UINT32);
    size_t rejected = 0;
    mbplan_t *plan = s_plan(self, 16, &rejected);
    assert_int_equal(rejected, 2);
    assert_int_equal(plan->ntags, 3);
    assert_int_equal(plan->nblocks, 2);
    s_assert_block(plan, 0, SITE_AREA_CO, 65535, 1, 1);
    s_assert_block(plan, 1, SITE_AREA_HR, 65534, 2, 2);
    mbplan_destroy(&plan);
    //  rejected may be NULL.
    plan = s_plan(self, 16, NULL);
    assert_int_equal(plan->ntags, 3);
    mbplan_destroy(&plan);
}

static void test_all_rejected(void **state)
{
    fixture_t *self = *state;
    s_add(self, SITE_AREA_HR, 65535, SITE_T_FLOAT32);
    size_t rejected = 0;
    mbplan_t *plan = s_plan(self, 16, &rejected);
    assert_int_equal(rejected, 1);
    assert_int_equal(plan->ntags, 0);
    assert_int_equal(plan->nblocks, 0);
    mbplan_destroy(&plan);
}

static void test_random(void **state)
{
    fixture_t *self = *state;
    //  Random plans keep every invariant (s_check_plan); a fixed seed keeps
    //  failures reproducible.
    srand(12345);
    const uint32_t gaps[] = {0, 1, 3, 16, 100, 2000, UINT32_MAX};
    for (int round = 0; round < 200; round++) {
        self->ntags = 0;
        size_t n = (size_t)(rand() % 300);
        uint16_t span = (uint16_t)(1 + rand() % 5000);
        uint16_t base = (uint16_t)(rand() % 65536);
        for (size_t i = 0; i < n; i++) {
            site_area_t area = (site_area_t)(rand() % 4);
            site_type_t type = (site_type_t)(rand() % 6);
            uint16_t address = (uint16_t)(base + rand() % span); //  wraps: some near 65535
            s_add(self, area, address, type);
        }
        size_t rejected = 0;
        mbplan_t *plan = s_plan(self, gaps[round % 7], &rejected);
        assert_int_equal(plan->ntags + rejected, n);
        mbplan_destroy(&plan);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test_setup_teardown(test_single, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gap_registers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gap_after_32bit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gap_zero, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gap_bits, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_register_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_register_limit_sparse, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_32bit_at_block_edge, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_32bit_overlap_at_edge, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bit_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bit_limit_sparse, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_mixed_areas, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unsorted, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_address_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_all_rejected, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_random, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("mbplan", tests, NULL, NULL);
}
