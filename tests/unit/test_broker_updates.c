/*  Unit tests of the broker's Update encoding (services/broker/broker.c):
    `same_reason` means "the reason of the previous update in this message",
    as both clients decode it, whatever the quality of that update.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../services/broker/broker.c"

static s_tag_t s_tag(uint32_t id, int quality, const char *reason)
{
    s_tag_t t;
    memset(&t, 0, sizeof t);
    t.id = id;
    t.have = true;
    t.value = 1.5;
    t.quality = quality;
    t.ts = 1000;
    t.reason = reason;
    return t;
}

//  What a client makes of the updates: the reason of each (same_reason: the
//  previous update's, as scada_client.c and pyclient.py read it).
static void s_decode(Scada__Update *u, size_t n, const char **out)
{
    const char *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *r = u[i].has_same_reason && u[i].same_reason ? prev : u[i].reason;
        out[i] = r;
        prev = r;
    }
}

static void test_same_reason_once_for_a_run(void **state)
{
    static const char *why = "io1 lost";
    s_tag_t t[3] = {s_tag(1, SCADA__QUALITY__BAD_NO_COMM, why),
                    s_tag(2, SCADA__QUALITY__BAD_NO_COMM, why),
                    s_tag(3, SCADA__QUALITY__BAD_NO_COMM, why)};
    Scada__Update u[3];
    const char *prev = NULL, *got[3];
    for (int i = 0; i < 3; i++)
        s_fill_update(&u[i], &t[i], 1000, &prev);
    assert_string_equal(u[0].reason, why);
    assert_true(u[1].same_reason && !u[1].reason);
    assert_true(u[2].same_reason && !u[2].reason);
    s_decode(u, 3, got);
    for (int i = 0; i < 3; i++)
        assert_string_equal(got[i], why);
}

//  A good update between two bad ones with the same reason: the second bad
//  one carries its reason again (it was lost before: a page showed dead
//  devices bad with no reason).
static void test_good_update_between_resets_the_run(void **state)
{
    static const char *why = "no offer registered";
    s_tag_t t[4] = {
        s_tag(1, SCADA__QUALITY__BAD_NO_COMM, why), s_tag(2, SCADA__QUALITY__GOOD, NULL),
        s_tag(3, SCADA__QUALITY__BAD_NO_COMM, why), s_tag(4, SCADA__QUALITY__BAD_NO_COMM, why)};
    Scada__Update u[4];
    const char *prev = NULL, *got[4];
    for (int i = 0; i < 4; i++)
        s_fill_update(&u[i], &t[i], 1000, &prev);
    assert_false(u[1].has_quality);
    assert_false(u[2].same_reason);
    assert_string_equal(u[2].reason, why);
    assert_true(u[3].same_reason);
    s_decode(u, 4, got);
    assert_string_equal(got[0], why);
    assert_null(got[1]);
    assert_string_equal(got[2], why);
    assert_string_equal(got[3], why);
}

static void test_other_reason_is_sent(void **state)
{
    s_tag_t t[2] = {s_tag(1, SCADA__QUALITY__BAD_NO_COMM, "a"),
                    s_tag(2, SCADA__QUALITY__BAD_DEVICE, "b")};
    Scada__Update u[2];
    const char *prev = NULL;
    for (int i = 0; i < 2; i++)
        s_fill_update(&u[i], &t[i], 1000, &prev);
    assert_false(u[1].same_reason);
    assert_string_equal(u[1].reason, "b");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_reason_once_for_a_run),
        cmocka_unit_test(test_good_update_between_resets_the_run),
        cmocka_unit_test(test_other_reason_is_sent),
    };
    return cmocka_run_group_tests_name("broker_updates", tests, NULL, NULL);
}
