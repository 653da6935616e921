/*  test_tagval: registers and bits to engineering values and back.

    Known values for every type in both word orders, scaling, exhaustive
    16-bit round trips, and every reason a write is refused.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tagval.h"

#include <float.h>
#include <math.h>
#include <string.h>

static site_tag_t s_tag(site_type_t type, site_word_order_t order)
{
    site_tag_t tag;
    memset(&tag, 0, sizeof tag);
    tag.area = SITE_AREA_HR;
    tag.type = type;
    tag.word_order = order;
    tag.scale = 1;
    tag.offset = 0;
    return tag;
}

//  Write `value`, check the registers, read them back and check the value.
static void s_write_read(const site_tag_t *tag, double value, uint16_t r0, uint16_t r1,
                         double expect_back)
{
    uint16_t regs[2] = {0xDEAD, 0xBEEF};
    const char *why = NULL;
    assert_int_equal(tagval_to_registers(tag, value, regs, &why), 0);
    assert_int_equal(regs[0], r0);
    if (site_type_width(tag->type) == 2)
        assert_int_equal(regs[1], r1);
    else
        assert_int_equal(regs[1], 0xBEEF); //  a 16-bit write touches one register
    assert_true(tagval_from_registers(tag, regs) == expect_back);
}

static void s_refused(const site_tag_t *tag, double value)
{
    uint16_t regs[2] = {0x1234, 0x5678};
    const char *why = NULL;
    assert_int_equal(tagval_to_registers(tag, value, regs, &why), -1);
    assert_non_null(why);
    assert_true(strlen(why) > 0);
    //  Nothing is written on refusal.
    assert_int_equal(regs[0], 0x1234);
    assert_int_equal(regs[1], 0x5678);
    //  why may be NULL.
    assert_int_equal(tagval_to_registers(tag, value, regs, NULL), -1);
}

static void test_widths(void **state)
{
    assert_int_equal(site_type_width(SITE_T_BOOL), 1);
    assert_int_equal(site_type_width(SITE_T_INT16), 1);
    assert_int_equal(site_type_width(SITE_T_UINT16), 1);
    assert_int_equal(site_type_width(SITE_T_INT32), 2);
    assert_int_equal(site_type_width(SITE_T_UINT32), 2);
    assert_int_equal(site_type_width(SITE_T_FLOAT32), 2);
}

static void test_bool_register(void **state)
{
    site_tag_t tag = s_tag(SITE_T_BOOL, SITE_WO_BIG);
    tag.scale = 10; //  ignored for bools
    tag.offset = 3;
    uint16_t regs[1] = {0};
    assert_true(tagval_from_registers(&tag, regs) == 0);
    regs[0] = 1;
    assert_true(tagval_from_registers(&tag, regs) == 1);
    regs[0] = 0x8000;
    assert_true(tagval_from_registers(&tag, regs) == 1);
    regs[0] = 0xFFFF;
    assert_true(tagval_from_registers(&tag, regs) == 1);
    s_write_read(&tag, 1, 1, 0, 1);
    s_write_read(&tag, 0, 0, 0, 0);
    s_refused(&tag, 2);
    s_refused(&tag, 0.5);
    s_refused(&tag, -1);
    s_refused(&tag, NAN);
}

static void test_int16(void **state)
{
    site_tag_t tag = s_tag(SITE_T_INT16, SITE_WO_BIG);
    uint16_t regs[1] = {0xFFFF};
    assert_true(tagval_from_registers(&tag, regs) == -1);
    regs[0] = 0x8000;
    assert_true(tagval_from_registers(&tag, regs) == -32768);
    regs[0] = 0x7FFF;
    assert_true(tagval_from_registers(&tag, regs) == 32767);
    s_write_read(&tag, -2, 0xFFFE, 0, -2);
    s_write_read(&tag, -32768, 0x8000, 0, -32768);
    s_write_read(&tag, 32767, 0x7FFF, 0, 32767);
    //  Round to nearest, halves away from zero, then range-check.
    s_write_read(&tag, 32767.4, 0x7FFF, 0, 32767);
    s_write_read(&tag, -32768.4, 0x8000, 0, -32768);
    s_write_read(&tag, 1.5, 2, 0, 2);
    s_write_read(&tag, -1.5, 0xFFFE, 0, -2);
    s_write_read(&tag, 0.49, 0, 0, 0);
    s_refused(&tag, 32767.5);
    s_refused(&tag, -32768.5);
    s_refused(&tag, 40000);
    s_refused(&tag, 1e300);
}

static void test_uint16(void **state)
{
    site_tag_t tag = s_tag(SITE_T_UINT16, SITE_WO_BIG);
    uint16_t regs[1] = {0xFFFF};
    assert_true(tagval_from_registers(&tag, regs) == 65535);
    s_write_read(&tag, 65535, 0xFFFF, 0, 65535);
    s_write_read(&tag, 0, 0, 0, 0);
    s_write_read(&tag, -0.4, 0, 0, 0);
    s_write_read(&tag, 65535.4, 0xFFFF, 0, 65535);
    s_refused(&tag, -0.5);
    s_refused(&tag, -1);
    s_refused(&tag, 65535.5);
    s_refused(&tag, 65536);
}

static void test_int32(void **state)
{
    site_tag_t big = s_tag(SITE_T_INT32, SITE_WO_BIG);
    site_tag_t little = s_tag(SITE_T_INT32, SITE_WO_LITTLE);
    //  -2 = 0xFFFFFFFE: high word 0xFFFF, low word 0xFFFE.
    uint16_t abcd[2] = {0xFFFF, 0xFFFE};
    uint16_t cdab[2] = {0xFFFE, 0xFFFF};
    assert_true(tagval_from_registers(&big, abcd) == -2);
    assert_true(tagval_from_registers(&little, cdab) == -2);
    //  The same registers in the other word order are another number.
    assert_true(tagval_from_registers(&big, cdab) == (int32_t)0xFFFEFFFF);
    s_write_read(&big, -2, 0xFFFF, 0xFFFE, -2);
    s_write_read(&little, -2, 0xFFFE, 0xFFFF, -2);
    s_write_read(&big, 0x12345678, 0x1234, 0x5678, 0x12345678);
    s_write_read(&little, 0x12345678, 0x5678, 0x1234, 0x12345678);
    s_write_read(&big, INT32_MIN, 0x8000, 0x0000, INT32_MIN);
    s_write_read(&little, INT32_MAX, 0xFFFF, 0x7FFF, INT32_MAX);
    s_write_read(&big, 65536, 0x0001, 0x0000, 65536);
    s_refused(&big, 2147483647.5);
    s_refused(&little, -2147483648.5);
    s_refused(&big, 1e10);
}

static void test_uint32(void **state)
{
    site_tag_t big = s_tag(SITE_T_UINT32, SITE_WO_BIG);
    site_tag_t little = s_tag(SITE_T_UINT32, SITE_WO_LITTLE);
    //  4000000000 = 0xEE6B2800.
    uint16_t abcd[2] = {0xEE6B, 0x2800};
    uint16_t cdab[2] = {0x2800, 0xEE6B};
    assert_true(tagval_from_registers(&big, abcd) == 4000000000.0);
    assert_true(tagval_from_registers(&little, cdab) == 4000000000.0);
    s_write_read(&big, 4000000000.0, 0xEE6B, 0x2800, 4000000000.0);
    s_write_read(&little, 4000000000.0, 0x2800, 0xEE6B, 4000000000.0);
    s_write_read(&big, UINT32_MAX, 0xFFFF, 0xFFFF, UINT32_MAX);
    s_write_read(&little, 0, 0, 0, 0);
    s_refused(&big, 4294967295.5);
    s_refused(&big, 4294967296.0);
    s_refused(&little, -1);
}

static void test_float32(void **state)
{
    site_tag_t big = s_tag(SITE_T_FLOAT32, SITE_WO_BIG);
    site_tag_t little = s_tag(SITE_T_FLOAT32, SITE_WO_LITTLE);
    //  123.456f = 0x42F6E979.
    const double f = (double)123.456f;
    uint16_t abcd[2] = {0x42F6, 0xE979};
    uint16_t cdab[2] = {0xE979, 0x42F6};
    assert_true(tagval_from_registers(&big, abcd) == f);
    assert_true(tagval_from_registers(&little, cdab) == f);
    assert_true(fabs(tagval_from_registers(&big, abcd) - 123.456) < 1e-5);
    s_write_read(&big, 123.456, 0x42F6, 0xE979, f);
    s_write_read(&little, 123.456, 0xE979, 0x42F6, f);
    //  -1.5 = 0xBFC00000, 1.0 = 0x3F800000.
    s_write_read(&big, -1.5, 0xBFC0, 0x0000, -1.5);
    s_write_read(&little, 1.0, 0x0000, 0x3F80, 1.0);
    s_write_read(&big, 0, 0, 0, 0);
    //  Not rounded to an integer: float32 keeps fractions.
    s_write_read(&big, 0.25, 0x3E80, 0x0000, 0.25);
    s_write_read(&big, FLT_MAX, 0x7F7F, 0xFFFF, FLT_MAX);
    s_write_read(&big, -FLT_MAX, 0xFF7F, 0xFFFF, -FLT_MAX);
    s_refused(&big, 1e39);
    s_refused(&little, -1e39);
    s_refused(&big, NAN);
    s_refused(&big, INFINITY);
    s_refused(&big, -INFINITY);
}

static void test_float32_not_finite(void **state)
{
    //  NaN and infinity from the device pass through unscaled; the caller
    //  sets the quality.
    site_tag_t tag = s_tag(SITE_T_FLOAT32, SITE_WO_BIG);
    tag.scale = -2;
    tag.offset = 5;
    uint16_t nan_regs[2] = {0x7FC0, 0x0000};
    uint16_t inf_regs[2] = {0x7F80, 0x0000};
    uint16_t ninf_regs[2] = {0xFF80, 0x0000};
    double v = tagval_from_registers(&tag, nan_regs);
    assert_true(isnan(v));
    assert_false(tagval_is_finite(v));
    v = tagval_from_registers(&tag, inf_regs);
    assert_true(isinf(v) && v > 0);
    assert_false(tagval_is_finite(v));
    v = tagval_from_registers(&tag, ninf_regs);
    assert_true(isinf(v) && v < 0);
    uint16_t one[2] = {0x3F80, 0x0000};
    v = tagval_from_registers(&tag, one);
    assert_true(v == 3);
    assert_true(tagval_is_finite(v));
}

static void test_scaling(void **state)
{
    //  A level transmitter: raw 0..10000 is -50.0..950.0 cm.
    site_tag_t tag = s_tag(SITE_T_UINT16, SITE_WO_BIG);
    tag.scale = 0.1;
    tag.offset = -50;
    uint16_t regs[1] = {1000};
    assert_true(fabs(tagval_from_registers(&tag, regs) - 50.0) < 1e-9);
    regs[0] = 0;
    assert_true(tagval_from_registers(&tag, regs) == -50);
    //  Writes unscale: (value - offset) / scale, then round.
    uint16_t out[1];
    const char *why;
    assert_int_equal(tagval_to_registers(&tag, 50, out, &why), 0);
    assert_int_equal(out[0], 1000);
    assert_int_equal(tagval_to_registers(&tag, 50.04, out, &why), 0);
    assert_int_equal(out[0], 1000);
    assert_int_equal(tagval_to_registers(&tag, 50.06, out, &why), 0);
    assert_int_equal(out[0], 1001);
    //  -50.1 is raw -1: out of range for uint16.
    s_refused(&tag, -50.1);
    assert_int_equal(tagval_to_registers(&tag, 950, out, &why), 0);
    assert_int_equal(out[0], 10000);

    //  Negative scale and a 32-bit type in little word order.
    site_tag_t neg = s_tag(SITE_T_INT32, SITE_WO_LITTLE);
    neg.scale = -0.5;
    neg.offset = 100;
    uint16_t r2[2] = {0x0064, 0x0000}; //  raw 100
    assert_true(tagval_from_registers(&neg, r2) == 50);
    s_write_read(&neg, 50, 0x0064, 0x0000, 50);
    s_write_read(&neg, 150, 0xFF9C, 0xFFFF, 150); //  raw -100

    //  Scaled float32.
    site_tag_t fl = s_tag(SITE_T_FLOAT32, SITE_WO_BIG);
    fl.scale = 2;
    fl.offset = 1;
    uint16_t r3[2] = {0x3FC0, 0x0000}; //  1.5
    assert_true(tagval_from_registers(&fl, r3) == 4);
    s_write_read(&fl, 4, 0x3FC0, 0x0000, 4);

    //  A scale that cannot be inverted refuses every write.
    site_tag_t zero = s_tag(SITE_T_UINT16, SITE_WO_BIG);
    zero.scale = 0;
    s_refused(&zero, 0);
    s_refused(&zero, 1);

    //  Unscaling that overflows a double.
    site_tag_t tiny = s_tag(SITE_T_FLOAT32, SITE_WO_BIG);
    tiny.scale = 1e-300;
    s_refused(&tiny, 1e300);
}

static void test_round_trip_16bit(void **state)
{
    //  Every register value survives decode then encode, for both 16-bit types.
    site_tag_t s16 = s_tag(SITE_T_INT16, SITE_WO_BIG);
    site_tag_t u16 = s_tag(SITE_T_UINT16, SITE_WO_BIG);
    for (uint32_t raw = 0; raw <= 0xFFFF; raw++) {
        uint16_t in[1] = {(uint16_t)raw}, out[1] = {0};
        assert_int_equal(tagval_to_registers(&s16, tagval_from_registers(&s16, in), out, NULL), 0);
        assert_int_equal(out[0], raw);
        assert_int_equal(tagval_to_registers(&u16, tagval_from_registers(&u16, in), out, NULL), 0);
        assert_int_equal(out[0], raw);
    }
}

static void test_round_trip_32bit(void **state)
{
    //  A sweep of 32-bit patterns in both word orders. Float32 patterns that
    //  are NaN or infinite are not values and are skipped.
    const site_type_t types[] = {SITE_T_INT32, SITE_T_UINT32, SITE_T_FLOAT32};
    const site_word_order_t orders[] = {SITE_WO_BIG, SITE_WO_LITTLE};
    for (size_t t = 0; t < 3; t++) {
        for (size_t o = 0; o < 2; o++) {
            site_tag_t tag = s_tag(types[t], orders[o]);
            tag.scale = 1;
            for (uint64_t word = 0; word <= 0xFFFFFFFFu; word += 0x00F0F0F1u) {
                uint16_t in[2], out[2];
                uint16_t hi = (uint16_t)(word >> 16), lo = (uint16_t)word;
                in[0] = orders[o] == SITE_WO_BIG ? hi : lo;
                in[1] = orders[o] == SITE_WO_BIG ? lo : hi;
                double v = tagval_from_registers(&tag, in);
                if (!tagval_is_finite(v))
                    continue;
                assert_int_equal(tagval_to_registers(&tag, v, out, NULL), 0);
                assert_int_equal(out[0], in[0]);
                assert_int_equal(out[1], in[1]);
            }
        }
    }
}

static void test_bits(void **state)
{
    site_tag_t b = s_tag(SITE_T_BOOL, SITE_WO_BIG);
    b.area = SITE_AREA_CO;
    b.scale = 10; //  ignored for bools
    assert_true(tagval_from_bit(&b, 0) == 0);
    assert_true(tagval_from_bit(&b, 1) == 1);
    assert_true(tagval_from_bit(&b, 7) == 1);
    int bit = -1;
    const char *why = NULL;
    assert_int_equal(tagval_to_bit(&b, 1, &bit, &why), 0);
    assert_int_equal(bit, 1);
    assert_int_equal(tagval_to_bit(&b, 0, &bit, &why), 0);
    assert_int_equal(bit, 0);
    assert_int_equal(tagval_to_bit(&b, 2, &bit, &why), -1);
    assert_non_null(why);
    assert_int_equal(tagval_to_bit(&b, 0.5, &bit, &why), -1);
    assert_int_equal(tagval_to_bit(&b, NAN, &bit, &why), -1);
    assert_int_equal(tagval_to_bit(&b, -INFINITY, &bit, NULL), -1);

    //  A numeric type on a bit is scaled: raw 1 reads 10 + 5.
    site_tag_t n = s_tag(SITE_T_UINT16, SITE_WO_BIG);
    n.area = SITE_AREA_DI;
    n.scale = 10;
    n.offset = 5;
    assert_true(tagval_from_bit(&n, 0) == 5);
    assert_true(tagval_from_bit(&n, 1) == 15);
    assert_int_equal(tagval_to_bit(&n, 15, &bit, &why), 0);
    assert_int_equal(bit, 1);
    assert_int_equal(tagval_to_bit(&n, 5, &bit, &why), 0);
    assert_int_equal(bit, 0);
    assert_int_equal(tagval_to_bit(&n, 25, &bit, &why), -1);
    assert_int_equal(tagval_to_bit(&n, -5, &bit, &why), -1);
    n.scale = 0;
    assert_int_equal(tagval_to_bit(&n, 5, &bit, &why), -1);
}

static void test_is_finite(void **state)
{
    assert_true(tagval_is_finite(0));
    assert_true(tagval_is_finite(-DBL_MAX));
    assert_false(tagval_is_finite(NAN));
    assert_false(tagval_is_finite(INFINITY));
    assert_false(tagval_is_finite(-INFINITY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_widths),
        cmocka_unit_test(test_bool_register),
        cmocka_unit_test(test_int16),
        cmocka_unit_test(test_uint16),
        cmocka_unit_test(test_int32),
        cmocka_unit_test(test_uint32),
        cmocka_unit_test(test_float32),
        cmocka_unit_test(test_float32_not_finite),
        cmocka_unit_test(test_scaling),
        cmocka_unit_test(test_round_trip_16bit),
        cmocka_unit_test(test_round_trip_32bit),
        cmocka_unit_test(test_bits),
        cmocka_unit_test(test_is_finite),
    };
    return cmocka_run_group_tests_name("tagval", tests, NULL, NULL);
}
