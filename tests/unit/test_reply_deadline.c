/*  Unit tests of reply_deadline on worked numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "reply_deadline.h"

static void test_unlimited_link_has_no_transmission_term(void **state)
{
    assert_int_equal(reply_tx_ms(260, 10, 0), 0);
    assert_int_equal(reply_deadline(1000, 200, 0, 10, 12, 209), 1200);
}

static void test_worked_numbers(void **state)
{
    //  9600 baud 8N1 (10 bits): a read of 10 registers over RTU is 8 bytes out,
    //  25 bytes back. 8 x 10 / 9600 s = 8.33 ms -> 9; 25 x 10 / 9600 = 26.04 -> 27.
    assert_int_equal(reply_tx_ms(8, 10, 9600), 9);
    assert_int_equal(reply_tx_ms(25, 10, 9600), 27);
    assert_int_equal(reply_deadline(5000, 200, 9600, 10, 8, 25), 5000 + 200 + 9 + 27);
    //  8E1 (11 bits) at 1200 baud: 125 registers back = 255 bytes -> 2337.5 -> 2338 ms.
    assert_int_equal(reply_tx_ms(255, 11, 1200), 2338);
    //  A 56 kbit/s TCP link, 8 bits a byte: 12 + 259 bytes.
    assert_int_equal(reply_tx_ms(12, 8, 56000), 2);
    assert_int_equal(reply_tx_ms(259, 8, 56000), 37);
    //  Exact multiples are not rounded up.
    assert_int_equal(reply_tx_ms(96, 10, 9600), 100);
}

static void test_deadline_grows_with_size(void **state)
{
    int64_t prev = 0;
    for (size_t reply = 9; reply <= 259; reply += 10) {
        int64_t d = reply_deadline(0, 100, 19200, 10, 12, reply);
        assert_true(d >= prev);
        prev = d;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited_link_has_no_transmission_term),
        cmocka_unit_test(test_worked_numbers),
        cmocka_unit_test(test_deadline_grows_with_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
