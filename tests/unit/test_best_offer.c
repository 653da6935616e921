/*  Unit tests of best_offer and resolve_retry_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "best_offer.h"

static void test_highest_priority_alive_and_online_wins(void **state)
{
    offer_t o[] = {{"io2", 2, true, true}, {"io1", 1, true, true}, {"io3", 3, true, true}};
    assert_int_equal(best_offer(o, 3), 1);
    o[1].alive = false; //  the primary stops heartbeating
    assert_int_equal(best_offer(o, 3), 0);
    o[0].unit_online = false; //  the unit is offline at the standby
    assert_int_equal(best_offer(o, 3), 2);
    o[1].alive = true; //  fail-back
    assert_int_equal(best_offer(o, 3), 1);
}

static void test_none_usable(void **state)
{
    offer_t o[] = {{"io1", 1, false, true}, {"io2", 2, true, false}};
    assert_int_equal(best_offer(o, 2), -1);
    assert_int_equal(best_offer(o, 0), -1);
    assert_int_equal(best_offer(NULL, 0), -1);
    offer_t bad[] = {{"io1", 0, true, true}}; //  priority 0 is not a priority
    assert_int_equal(best_offer(bad, 1), -1);
}

static void test_ties_are_broken_by_name_whatever_the_order(void **state)
{
    offer_t a[] = {{"io-b", 1, true, true}, {"io-a", 1, true, true}, {"io-c", 1, true, true}};
    assert_int_equal(best_offer(a, 3), 1);
    offer_t b[] = {{"io-a", 1, true, true}, {"io-c", 1, true, true}, {"io-b", 1, true, true}};
    assert_int_equal(best_offer(b, 3), 0);
    //  A lower priority never wins on its name.
    offer_t c[] = {{"zz", 1, true, true}, {"aa", 2, true, true}};
    assert_int_equal(best_offer(c, 2), 0);
}

static void test_every_permutation_picks_the_same_server(void **state)
{
    offer_t base[] = {{"io1", 2, true, true},
                      {"io2", 1, true, false},
                      {"io3", 2, true, true},
                      {"io4", 1, false, true}};
    //  Expected: io1 (priority 2, alive, online; io3 loses the tie on name).
    int perm[24][4], np = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                for (int d = 0; d < 4; d++)
                    if (a != b && a != c && a != d && b != c && b != d && c != d) {
                        perm[np][0] = a, perm[np][1] = b, perm[np][2] = c, perm[np][3] = d;
                        np++;
                    }
    assert_int_equal(np, 24);
    for (int p = 0; p < np; p++) {
        offer_t o[4];
        for (int i = 0; i < 4; i++)
            o[i] = base[perm[p][i]];
        int best = best_offer(o, 4);
        assert_true(best >= 0);
        assert_string_equal(o[best].ioserver, "io1");
    }
}

static void test_resolve_retry_formula(void **state)
{
    //  backoff x min(attempt, 3)^2
    assert_int_equal(resolve_retry_ms(500, 1), 500);
    assert_int_equal(resolve_retry_ms(500, 2), 2000);
    assert_int_equal(resolve_retry_ms(500, 3), 4500);
    assert_int_equal(resolve_retry_ms(500, 4), 4500);
    assert_int_equal(resolve_retry_ms(500, 1000), 4500);
    assert_int_equal(resolve_retry_ms(500, 0), 500);
    assert_int_equal(resolve_retry_ms(0, 3), 0);
    //  No overflow at the top of the range.
    assert_int_equal(resolve_retry_ms(UINT32_MAX, 3), (uint64_t)UINT32_MAX * 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_highest_priority_alive_and_online_wins),
        cmocka_unit_test(test_none_usable),
        cmocka_unit_test(test_ties_are_broken_by_name_whatever_the_order),
        cmocka_unit_test(test_every_permutation_picks_the_same_server),
        cmocka_unit_test(test_resolve_retry_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
