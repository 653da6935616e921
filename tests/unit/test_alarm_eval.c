/*  Unit tests of alarm_eval: deadband, on-delay, the analog, state and COMM
    conditions, every lifecycle transition and illegal acknowledgement,
    shelving, out of service, bad quality, restore from the journal; then a
    random run checked against a table-driven reference model, and a check
    that the outcome does not depend on how late the tick runs.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "alarm_eval.h"
#include "scada.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The numbering is the wire's.
_Static_assert((int)AL_NORMAL == (int)SCADA__ALARM_STATE__NORMAL, "state");
_Static_assert((int)AL_UNACK_ACTIVE == (int)SCADA__ALARM_STATE__UNACK_ACTIVE, "state");
_Static_assert((int)AL_ACK_ACTIVE == (int)SCADA__ALARM_STATE__ACK_ACTIVE, "state");
_Static_assert((int)AL_UNACK_CLEARED == (int)SCADA__ALARM_STATE__UNACK_CLEARED, "state");
_Static_assert((int)AL_EV_RAISE == (int)SCADA__ALARM_EVENT__KIND__RAISE, "kind");
_Static_assert((int)AL_EV_CLEAR == (int)SCADA__ALARM_EVENT__KIND__CLEAR, "kind");
_Static_assert((int)AL_EV_ACK == (int)SCADA__ALARM_EVENT__KIND__ACK, "kind");
_Static_assert((int)AL_EV_SHELVE == (int)SCADA__ALARM_EVENT__KIND__SHELVE, "kind");
_Static_assert((int)AL_EV_UNSHELVE == (int)SCADA__ALARM_EVENT__KIND__UNSHELVE, "kind");
_Static_assert((int)AL_EV_OUT_OF_SERVICE == (int)SCADA__ALARM_EVENT__KIND__OUT_OF_SERVICE, "kind");
_Static_assert((int)AL_EV_IN_SERVICE == (int)SCADA__ALARM_EVENT__KIND__IN_SERVICE, "kind");

static al_t s_alarm(al_type_t type, double limit, double deadband, uint32_t on_delay_ms)
{
    al_config_t c = {
        .type = type, .limit = limit, .deadband = deadband, .on_delay_ms = on_delay_ms};
    al_t a;
    assert_int_equal(al_init(&a, &c), 0);
    return a;
}

//  Event i of ev has this kind and state.
#define assert_event(ev, i, k, st)                                                                 \
    do {                                                                                           \
        assert_int_equal((ev)[i].kind, (k));                                                       \
        assert_int_equal((ev)[i].state, (st));                                                     \
    } while (0)

//  Every field of two alarms is the same (a byte compare would see padding).
static void s_assert_same(const al_t *x, const al_t *y)
{
    assert_int_equal(x->cfg.type, y->cfg.type);
    assert_true(x->cfg.limit == y->cfg.limit || (isnan(x->cfg.limit) && isnan(y->cfg.limit)));
    assert_true(x->cfg.deadband == y->cfg.deadband ||
                (isnan(x->cfg.deadband) && isnan(y->cfg.deadband)));
    assert_int_equal(x->cfg.on_delay_ms, y->cfg.on_delay_ms);
    assert_int_equal(x->state, y->state);
    assert_int_equal(x->active, y->active);
    assert_int_equal(x->cond, y->cond);
    assert_int_equal(x->frozen, y->frozen);
    assert_int_equal(x->shelved, y->shelved);
    assert_int_equal(x->out_of_service, y->out_of_service);
    assert_int_equal(x->has_value, y->has_value);
    assert_true(x->value == y->value || (isnan(x->value) && isnan(y->value)));
    assert_int_equal(x->pending_since_ms, y->pending_since_ms);
    assert_int_equal(x->until_ms, y->until_ms);
}

static void test_rejects_bad_config(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_LO, 5, 1, 7);
    assert_int_equal(al_on_value(&a, 1, true, 100, ev), 0);
    al_t before = a;
    al_config_t c = {.type = AL_HI, .limit = 80, .deadband = 1};
    c.type = AL_TYPE_COUNT;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    c.type = (al_type_t)-1;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    c.type = AL_HI;
    c.limit = NAN;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    c.limit = INFINITY;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    c.limit = 80;
    c.deadband = -0.5;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    c.deadband = NAN;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    c.type = AL_STATE;
    c.limit = NAN;
    assert_int_equal(al_init(&a, &c), AL_ERR_INVALID);
    assert_int_equal(al_init(&a, NULL), AL_ERR_INVALID);
    s_assert_same(&a, &before); //  untouched
    //  Fields a type does not use are not checked.
    c.limit = 1;
    c.deadband = -1;
    assert_int_equal(al_init(&a, &c), 0);
    c.type = AL_COMM;
    c.limit = NAN;
    assert_int_equal(al_init(&a, &c), 0);
    assert_int_equal(a.state, AL_NORMAL);
    assert_int_equal(al_next_due(&a), INT64_MAX);
}

static void test_names_ids_and_errors(void **state)
{
    assert_string_equal(al_type_name(AL_HIHI), "HIHI");
    assert_string_equal(al_type_name(AL_LOLO), "LOLO");
    assert_string_equal(al_type_name(AL_COMM), "COMM");
    assert_string_equal(al_type_name(AL_TYPE_COUNT), "?");
    assert_string_equal(al_state_name(AL_UNACK_CLEARED), "UNACK_CLEARED");
    assert_string_equal(al_state_name((al_state_t)-1), "?");
    assert_string_equal(al_kind_name(AL_EV_OUT_OF_SERVICE), "OUT_OF_SERVICE");
    assert_string_equal(al_kind_name(AL_EV_COUNT), "?");
    for (int t = 0; t < AL_TYPE_COUNT; t++)
        assert_int_equal(al_type_parse(al_type_name((al_type_t)t)), t);
    assert_int_equal(al_type_parse("hi"), -1);
    assert_int_equal(al_type_parse(NULL), -1);
    char buf[32];
    assert_int_equal(al_format_id(buf, sizeof buf, "PLC1.LEVEL", AL_HI), 13);
    assert_string_equal(buf, "PLC1.LEVEL.HI");
    assert_int_equal(al_format_id(buf, 6, "PLC1.LEVEL", AL_COMM), 15);
    assert_string_equal(buf, "PLC1.");
    assert_string_equal(al_strerror(AL_ERR_NOT_UNACKED), "not unacknowledged");
    assert_string_equal(al_strerror(AL_ERR_NOT_SHELVED), "not shelved");
    assert_string_equal(al_strerror(AL_ERR_IN_SERVICE), "not out of service");
    assert_string_equal(al_strerror(2), "ok");
    assert_string_equal(al_strerror(-99), "unknown error");
    for (int e = AL_ERR_IN_SERVICE; e <= AL_ERR_INVALID; e++)
        assert_string_not_equal(al_strerror(e), "unknown error");
}

static void test_hi_oscillating_inside_deadband_raises_once(void **state)
{
    al_t a = s_alarm(AL_HI, 80, 2, 0);
    al_event_t ev[AL_EVENTS_MAX];
    int64_t now = 1000;
    assert_int_equal(al_on_value(&a, 79, true, now++, ev), 0);
    assert_int_equal(al_on_value(&a, 80, true, now++, ev), 0); //  at the limit: not above
    assert_int_equal(al_on_value(&a, 80.5, true, now++, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].has_value);
    assert_true(ev[0].value == 80.5);
    assert_false(ev[0].shelved);
    assert_false(ev[0].out_of_service);
    assert_int_equal(ev[0].until_ms, 0);
    //  Noise around the limit, never below limit - deadband: no stream.
    int events = 0;
    for (int i = 0; i < 1000; i++) {
        double v = i % 2 ? 80.0 + (i % 7) * 0.3 : 80.0 - (i % 5) * 0.5; //  78.0 .. 81.8
        events += al_on_value(&a, v, true, now++, ev);
    }
    assert_int_equal(events, 0);
    assert_int_equal(al_on_value(&a, 78, true, now++, ev), 0); //  == limit - deadband: holds
    assert_int_equal(a.state, AL_UNACK_ACTIVE);
    //  Below the deadband it clears, and stays clear inside it.
    assert_int_equal(al_on_value(&a, 77.9, true, now++, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_true(ev[0].value == 77.9);
    assert_int_equal(al_on_value(&a, 79.9, true, now++, ev), 0);
    assert_int_equal(al_on_value(&a, 80, true, now++, ev), 0);
    assert_int_equal(al_on_value(&a, 80.1, true, now++, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
}

static void test_hi_deadband_zero_and_hihi(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 0, 0);
    assert_int_equal(al_on_value(&a, 80.01, true, 1, ev), 1);
    assert_int_equal(al_on_value(&a, 80, true, 2, ev), 0); //  not below the limit
    assert_int_equal(al_on_value(&a, 79.99, true, 3, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);

    al_t hh = s_alarm(AL_HIHI, 95, 1, 0), hi = s_alarm(AL_HI, 80, 1, 0);
    double values[] = {85, 96, 94.5, 95.5, 93.9, 79.5, 78.9};
    //  Events of (HIHI, HI) per value.
    int expect_hh[] = {0, 1, 0, 0, 1, 0, 0};
    int expect_hi[] = {1, 0, 0, 0, 0, 0, 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        assert_int_equal(al_on_value(&hh, values[i], true, (int64_t)i, ev), expect_hh[i]);
        assert_int_equal(al_on_value(&hi, values[i], true, (int64_t)i, ev), expect_hi[i]);
    }
    assert_int_equal(hh.state, AL_UNACK_CLEARED);
    assert_int_equal(hi.state, AL_UNACK_CLEARED);
}

static void test_lo_and_lolo_mirror_hi(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t lo = s_alarm(AL_LO, 20, 2, 0), ll = s_alarm(AL_LOLO, 10, 1, 0);
    assert_int_equal(al_on_value(&lo, 20, true, 1, ev), 0); //  at the limit: not below
    assert_int_equal(al_on_value(&lo, 19.9, true, 2, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_int_equal(al_on_value(&lo, 21, true, 3, ev), 0);
    assert_int_equal(al_on_value(&lo, 19, true, 4, ev), 0);
    assert_int_equal(al_on_value(&lo, 22, true, 5, ev), 0); //  == limit + deadband: holds
    assert_int_equal(al_on_value(&lo, 22.1, true, 6, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_int_equal(al_on_value(&lo, 20.5, true, 7, ev), 0);

    assert_int_equal(al_on_value(&ll, 12, true, 1, ev), 0);
    assert_int_equal(al_on_value(&ll, 9, true, 2, ev), 1);
    assert_int_equal(al_on_value(&ll, 10.9, true, 3, ev), 0);
    assert_int_equal(al_on_value(&ll, -1e9, true, 4, ev), 0);
    assert_int_equal(al_on_value(&ll, 11.5, true, 5, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
}

static void test_value_jumping_from_lo_to_hi(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t lo = s_alarm(AL_LO, 20, 1, 0), hi = s_alarm(AL_HI, 80, 1, 0);
    assert_int_equal(al_on_value(&lo, 10, true, 1, ev), 1);
    assert_int_equal(al_on_value(&hi, 10, true, 1, ev), 0);
    assert_int_equal(al_on_value(&lo, 90, true, 2, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_true(ev[0].value == 90);
    assert_int_equal(al_on_value(&hi, 90, true, 2, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].value == 90);
}

static void test_on_delay_short_excursion_raises_nothing(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 0, 5000);
    assert_int_equal(al_on_value(&a, 81, true, 1000, ev), 0);
    assert_int_equal(al_next_due(&a), 6000);
    assert_int_equal(al_tick(&a, 5999, ev), 0);
    assert_int_equal(al_on_value(&a, 79, true, 5999, ev), 0); //  gone 1 ms early
    assert_int_equal(al_next_due(&a), INT64_MAX);
    assert_int_equal(al_tick(&a, 6000, ev), 0);
    assert_int_equal(al_tick(&a, 100000, ev), 0);
    assert_int_equal(a.state, AL_NORMAL);
    //  A new excursion starts the on-delay afresh.
    assert_int_equal(al_on_value(&a, 82, true, 7000, ev), 0);
    assert_int_equal(al_next_due(&a), 12000);
}

static void test_on_delay_long_excursion_raises_at_exact_time(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 2, 5000);
    assert_int_equal(al_on_value(&a, 81, true, 1000, ev), 0);
    assert_int_equal(al_on_value(&a, 85, true, 3000, ev), 0);
    assert_int_equal(al_on_value(&a, 79, true, 4000, ev), 0); //  inside the deadband: holds
    assert_int_equal(al_tick(&a, 5999, ev), 0);
    assert_int_equal(a.state, AL_NORMAL);
    assert_int_equal(al_tick(&a, 6000, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].has_value);
    assert_true(ev[0].value == 79); //  the last good value
    assert_int_equal(al_next_due(&a), INT64_MAX);
    assert_int_equal(al_tick(&a, 7000, ev), 0);
    assert_int_equal(al_on_value(&a, 90, true, 8000, ev), 0);
    //  Clearing has no delay.
    assert_int_equal(al_on_value(&a, 70, true, 8001, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);

    //  Without a tick, the next value finds the expired on-delay.
    a = s_alarm(AL_HI, 80, 0, 5000);
    assert_int_equal(al_on_value(&a, 81, true, 0, ev), 0);
    assert_int_equal(al_on_value(&a, 82, true, 5000, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].value == 81); //  raised at 5000 by the value that held since 0

    //  A late tick changes nothing: the raise that was due comes before the
    //  clearing value.
    a = s_alarm(AL_HI, 80, 0, 1000);
    assert_int_equal(al_on_value(&a, 81, true, 0, ev), 0);
    assert_int_equal(al_on_value(&a, 70, true, 5000, ev), 2);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_event(ev, 1, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_true(ev[0].value == 81);
    assert_true(ev[1].value == 70);
}

static void test_state_alarm(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_STATE, 1, 5, 0); //  deadband unused
    assert_int_equal(al_on_value(&a, 0, true, 1, ev), 0);
    assert_int_equal(al_on_value(&a, 1, true, 2, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].value == 1);
    assert_int_equal(al_on_value(&a, 1, true, 3, ev), 0);
    assert_int_equal(al_on_value(&a, 0, true, 4, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_int_equal(al_on_value(&a, 1, true, 5, ev), 1);
    assert_int_equal(al_on_value(&a, 2, true, 6, ev), 1); //  any other value clears
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_int_equal(al_on_value(&a, 1.0001, true, 7, ev), 0);
    //  State 0 (e.g. a permissive that dropped), with an on-delay.
    a = s_alarm(AL_STATE, 0, 0, 2000);
    assert_int_equal(al_on_value(&a, 1, true, 0, ev), 0);
    assert_int_equal(al_on_value(&a, 0, true, 100, ev), 0);
    assert_int_equal(al_tick(&a, 2099, ev), 0);
    assert_int_equal(al_tick(&a, 2100, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].value == 0);
}

static void test_comm_alarm(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_COMM, 0, 0, 0);
    assert_int_equal(al_on_condition(&a, false, 1, ev), 0);
    assert_int_equal(al_on_condition(&a, true, 2, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_false(ev[0].has_value);
    assert_int_equal(al_on_condition(&a, true, 3, ev), 0);
    assert_int_equal(al_ack(&a, 4, ev), 1);
    assert_int_equal(al_on_condition(&a, false, 5, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_NORMAL);
    assert_false(ev[0].has_value);
    //  With an on-delay: a device offline for 10 s.
    a = s_alarm(AL_COMM, 0, 0, 10000);
    assert_int_equal(al_on_condition(&a, true, 0, ev), 0);
    assert_int_equal(al_on_condition(&a, false, 9000, ev), 0);
    assert_int_equal(al_on_condition(&a, true, 9500, ev), 0);
    assert_int_equal(al_tick(&a, 19499, ev), 0);
    assert_int_equal(al_tick(&a, 19500, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
}

static void test_every_lifecycle_transition_and_illegal_ack(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 0, 0);
    int64_t now = 0;
    //  NORMAL: ack is an error and changes nothing.
    al_t before = a;
    assert_int_equal(al_ack(&a, now, ev), AL_ERR_NOT_UNACKED);
    s_assert_same(&a, &before);
    //  NORMAL -> UNACK_ACTIVE (raise)
    assert_int_equal(al_on_value(&a, 90, true, ++now, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(al_annunciated(&a));
    //  UNACK_ACTIVE -> ACK_ACTIVE (ack)
    assert_int_equal(al_ack(&a, ++now, ev), 1);
    assert_event(ev, 0, AL_EV_ACK, AL_ACK_ACTIVE);
    assert_false(ev[0].has_value);
    assert_true(al_annunciated(&a));
    //  ACK_ACTIVE: ack is an error.
    before = a;
    assert_int_equal(al_ack(&a, ++now, ev), AL_ERR_NOT_UNACKED);
    s_assert_same(&a, &before);
    //  ACK_ACTIVE -> NORMAL (clear)
    assert_int_equal(al_on_value(&a, 70, true, ++now, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_NORMAL);
    assert_false(al_annunciated(&a));
    //  UNACK_ACTIVE -> UNACK_CLEARED (clear)
    assert_int_equal(al_on_value(&a, 90, true, ++now, ev), 1);
    assert_int_equal(al_on_value(&a, 70, true, ++now, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_true(al_annunciated(&a));
    //  UNACK_CLEARED -> UNACK_ACTIVE (raise again)
    assert_int_equal(al_on_value(&a, 90, true, ++now, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    //  UNACK_CLEARED -> NORMAL (ack)
    assert_int_equal(al_on_value(&a, 70, true, ++now, ev), 1);
    assert_int_equal(al_ack(&a, ++now, ev), 1);
    assert_event(ev, 0, AL_EV_ACK, AL_NORMAL);
    assert_int_equal(al_ack(&a, ++now, ev), AL_ERR_NOT_UNACKED);
    assert_false(al_annunciated(&a));
}

static void test_bad_quality_freezes_limit_alarms(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 1, 0);
    //  An active alarm stays active on a bad (stale) value, whatever it says.
    assert_int_equal(al_on_value(&a, 90, true, 1, ev), 1);
    assert_int_equal(al_on_value(&a, 10, false, 2, ev), 0);
    assert_int_equal(al_on_value(&a, NAN, true, 3, ev), 0);
    assert_int_equal(a.state, AL_UNACK_ACTIVE);
    assert_true(a.frozen);
    assert_true(a.value == 90);
    //  The next good value is evaluated.
    assert_int_equal(al_on_value(&a, 10, true, 4, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_false(a.frozen);
    //  An inactive one is not raised by a bad value.
    assert_int_equal(al_on_value(&a, 100, false, 5, ev), 0);
    assert_int_equal(a.state, AL_UNACK_CLEARED);

    //  A running on-delay stops on bad quality and restarts on good.
    a = s_alarm(AL_HI, 80, 2, 1000);
    assert_int_equal(al_on_value(&a, 81, true, 0, ev), 0);
    assert_int_equal(al_next_due(&a), 1000);
    assert_int_equal(al_on_value(&a, 81, false, 500, ev), 0);
    assert_int_equal(al_next_due(&a), INT64_MAX);
    assert_int_equal(al_tick(&a, 1000, ev), 0);
    assert_int_equal(al_on_value(&a, 79, true, 2000, ev), 0); //  in the deadband: still met
    assert_int_equal(al_next_due(&a), 3000);
    assert_int_equal(al_tick(&a, 3000, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);

    //  State alarms freeze too.
    a = s_alarm(AL_STATE, 1, 0, 0);
    assert_int_equal(al_on_value(&a, 1, true, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 0, false, 1, ev), 0);
    assert_int_equal(a.state, AL_UNACK_ACTIVE);
}

static void test_shelve_auto_unshelve_at_until(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 0, 0);
    assert_int_equal(al_shelve(&a, 60000, 1000, ev), 1);
    assert_event(ev, 0, AL_EV_SHELVE, AL_NORMAL);
    assert_true(ev[0].shelved);
    assert_int_equal(ev[0].until_ms, 61000);
    assert_int_equal(al_next_due(&a), 61000);
    //  Raise while shelved: an event for the journal, not annunciated.
    assert_int_equal(al_on_value(&a, 90, true, 2000, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].shelved);
    assert_false(al_annunciated(&a));
    assert_int_equal(al_tick(&a, 60999, ev), 0);
    assert_int_equal(al_tick(&a, 61000, ev), 1);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_UNACK_ACTIVE);
    assert_false(ev[0].shelved);
    assert_int_equal(ev[0].until_ms, 0);
    assert_true(al_annunciated(&a)); //  still active: the operator must acknowledge it
    assert_int_equal(al_next_due(&a), INT64_MAX);
    assert_int_equal(al_tick(&a, 70000, ev), 0);

    //  Raised and cleared while shelved: back to NORMAL when the shelve ends.
    a = s_alarm(AL_HI, 80, 0, 0);
    assert_int_equal(al_shelve(&a, 1000, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 90, true, 100, ev), 1);
    assert_int_equal(al_on_value(&a, 70, true, 200, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_true(ev[0].shelved);
    assert_int_equal(al_tick(&a, 1000, ev), 1);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_NORMAL);
    assert_false(al_annunciated(&a));

    //  Acknowledged while shelved: stays acknowledged.
    a = s_alarm(AL_HI, 80, 0, 0);
    assert_int_equal(al_on_value(&a, 90, true, 0, ev), 1);
    assert_int_equal(al_shelve(&a, 1000, 0, ev), 1);
    assert_event(ev, 0, AL_EV_SHELVE, AL_UNACK_ACTIVE);
    assert_int_equal(al_ack(&a, 10, ev), 1);
    assert_event(ev, 0, AL_EV_ACK, AL_ACK_ACTIVE);
    assert_true(ev[0].shelved);
    assert_int_equal(al_tick(&a, 2000, ev), 1);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_ACK_ACTIVE);

    //  The shelve end found by a value: UNSHELVE first, then the raise unshelved.
    a = s_alarm(AL_HI, 80, 0, 0);
    assert_int_equal(al_shelve(&a, 1000, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 90, true, 1500, ev), 2);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_NORMAL);
    assert_event(ev, 1, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_false(ev[1].shelved);

    //  Both timers due: in time order. The on-delay ends at 500, the shelve at
    //  1000: RAISE (shelved) then UNSHELVE; the value at 2000 then clears.
    a = s_alarm(AL_HI, 80, 0, 500);
    assert_int_equal(al_shelve(&a, 1000, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 90, true, 0, ev), 0);
    assert_int_equal(al_next_due(&a), 500);
    assert_int_equal(al_on_value(&a, 70, true, 2000, ev), 3);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[0].shelved);
    assert_event(ev, 1, AL_EV_UNSHELVE, AL_UNACK_ACTIVE);
    assert_event(ev, 2, AL_EV_CLEAR, AL_UNACK_CLEARED);
    assert_false(ev[2].shelved);
    //  The other order: the shelve ends first.
    a = s_alarm(AL_HI, 80, 0, 1500);
    assert_int_equal(al_shelve(&a, 1000, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 90, true, 0, ev), 0);
    assert_int_equal(al_next_due(&a), 1000);
    assert_int_equal(al_tick(&a, 2000, ev), 2);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_NORMAL);
    assert_event(ev, 1, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_false(ev[1].shelved);
}

static void test_shelve_durations_reshelve_and_unshelve(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 0, 0);
    al_t before = a;
    assert_int_equal(al_shelve(&a, 0, 1000, ev), AL_ERR_DURATION);
    assert_int_equal(al_shelve(&a, -1, 1000, ev), AL_ERR_DURATION);
    assert_int_equal(al_shelve(&a, INT64_MIN, 1000, ev), AL_ERR_DURATION);
    assert_int_equal(al_shelve(&a, AL_SHELVE_MAX_MS + 1, 1000, ev), AL_ERR_DURATION);
    assert_int_equal(al_shelve(&a, INT64_MAX, 1000, ev), AL_ERR_DURATION);
    s_assert_same(&a, &before);
    assert_int_equal(al_unshelve(&a, 1000, ev), AL_ERR_NOT_SHELVED);
    s_assert_same(&a, &before);
    //  The bounds themselves are fine.
    assert_int_equal(al_shelve(&a, 1, 1000, ev), 1);
    assert_int_equal(ev[0].until_ms, 1001);
    assert_int_equal(al_shelve(&a, AL_SHELVE_MAX_MS, 1000, ev), 1);
    assert_int_equal(ev[0].until_ms, 1000 + 2592000000LL);
    //  Shelving again sets a new end, earlier or later.
    assert_int_equal(al_shelve(&a, 5000, 2000, ev), 1);
    assert_int_equal(ev[0].until_ms, 7000);
    assert_int_equal(al_next_due(&a), 7000);
    //  By hand.
    assert_int_equal(al_on_value(&a, 90, true, 3000, ev), 1);
    assert_int_equal(al_on_value(&a, 70, true, 3001, ev), 1);
    assert_int_equal(al_unshelve(&a, 4000, ev), 1);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_NORMAL);
    assert_false(a.shelved);
    assert_int_equal(al_next_due(&a), INT64_MAX);
    assert_int_equal(al_unshelve(&a, 4001, ev), AL_ERR_NOT_SHELVED);
    assert_int_equal(al_tick(&a, 7000, ev), 0);
    //  A shelve ending past the end of time ends at the end of time.
    assert_int_equal(al_shelve(&a, 10, INT64_MAX - 5, ev), 1);
    assert_int_equal(ev[0].until_ms, INT64_MAX);
}

static void test_out_of_service_and_return(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    al_t a = s_alarm(AL_HI, 80, 0, 0);
    assert_int_equal(al_in_service(&a, 0, ev), AL_ERR_IN_SERVICE);
    assert_int_equal(al_on_value(&a, 90, true, 1, ev), 1);
    assert_int_equal(al_shelve(&a, 1000, 2, ev), 1);
    //  Removal: NORMAL, shelve ended.
    assert_int_equal(al_out_of_service(&a, 3, ev), 1);
    assert_event(ev, 0, AL_EV_OUT_OF_SERVICE, AL_NORMAL);
    assert_true(ev[0].out_of_service);
    assert_false(ev[0].shelved);
    assert_false(al_annunciated(&a));
    assert_int_equal(al_next_due(&a), INT64_MAX);
    assert_int_equal(al_out_of_service(&a, 4, ev), AL_ERR_OUT_OF_SERVICE);
    assert_int_equal(al_shelve(&a, 1000, 4, ev), AL_ERR_OUT_OF_SERVICE);
    assert_int_equal(al_unshelve(&a, 4, ev), AL_ERR_NOT_SHELVED);
    assert_int_equal(al_ack(&a, 4, ev), AL_ERR_NOT_UNACKED);
    //  Values are tracked silently.
    assert_int_equal(al_on_value(&a, 70, true, 5, ev), 0);
    assert_false(a.active);
    assert_int_equal(al_on_value(&a, 95, true, 6, ev), 0);
    assert_true(a.active);
    assert_int_equal(a.state, AL_NORMAL);
    //  Return with the condition met: IN_SERVICE, then RAISE at once.
    assert_int_equal(al_in_service(&a, 7, ev), 2);
    assert_event(ev, 0, AL_EV_IN_SERVICE, AL_NORMAL);
    assert_false(ev[0].out_of_service);
    assert_event(ev, 1, AL_EV_RAISE, AL_UNACK_ACTIVE);
    assert_true(ev[1].has_value);
    assert_true(ev[1].value == 95);
    assert_int_equal(al_in_service(&a, 8, ev), AL_ERR_IN_SERVICE);
    //  Return with the condition gone: IN_SERVICE only.
    assert_int_equal(al_out_of_service(&a, 9, ev), 1);
    assert_int_equal(al_on_value(&a, 70, true, 10, ev), 0);
    assert_int_equal(al_in_service(&a, 11, ev), 1);
    assert_event(ev, 0, AL_EV_IN_SERVICE, AL_NORMAL);
    //  The on-delay runs while out of service; if it has not ended at the
    //  return, the tick raises at its end.
    a = s_alarm(AL_HI, 80, 0, 1000);
    assert_int_equal(al_out_of_service(&a, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 90, true, 100, ev), 0);
    assert_int_equal(al_in_service(&a, 500, ev), 1);
    assert_int_equal(al_tick(&a, 1099, ev), 0);
    assert_int_equal(al_tick(&a, 1100, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    //  An on-delay ending while out of service makes no event.
    a = s_alarm(AL_HI, 80, 0, 1000);
    assert_int_equal(al_out_of_service(&a, 0, ev), 1);
    assert_int_equal(al_on_value(&a, 90, true, 100, ev), 0);
    assert_int_equal(al_tick(&a, 1100, ev), 0);
    assert_true(a.active);
    assert_int_equal(al_in_service(&a, 2000, ev), 2);
    //  COMM alarms the same way.
    a = s_alarm(AL_COMM, 0, 0, 0);
    assert_int_equal(al_out_of_service(&a, 0, ev), 1);
    assert_int_equal(al_on_condition(&a, true, 1, ev), 0);
    assert_int_equal(al_in_service(&a, 2, ev), 2);
    assert_false(ev[1].has_value);
}

static al_t s_restored(al_type_t type, uint32_t on_delay_ms, al_state_t st, int64_t now)
{
    al_t a = s_alarm(type, 80, 2, on_delay_ms);
    al_saved_t saved = {.state = st};
    assert_int_equal(al_restore(&a, &saved, now), 0);
    return a;
}

static void test_restore_from_journal(void **state)
{
    al_event_t ev[AL_EVENTS_MAX];
    const int64_t t0 = 1700000000000LL;
    //  Acknowledged and still active: stays acknowledged, no event, no on-delay.
    al_t a = s_restored(AL_HI, 5000, AL_ACK_ACTIVE, t0);
    assert_int_equal(al_on_value(&a, 90, true, t0, ev), 0);
    assert_int_equal(a.state, AL_ACK_ACTIVE);
    assert_int_equal(al_next_due(&a), INT64_MAX);
    //  The deadband holds across the restart.
    a = s_restored(AL_HI, 0, AL_UNACK_ACTIVE, t0);
    assert_int_equal(al_on_value(&a, 79, true, t0, ev), 0);
    assert_int_equal(a.state, AL_UNACK_ACTIVE);
    a = s_restored(AL_HI, 0, AL_NORMAL, t0);
    assert_int_equal(al_on_value(&a, 79, true, t0, ev), 0);
    assert_int_equal(a.state, AL_NORMAL);
    //  Acknowledged, condition gone: CLEAR to NORMAL.
    a = s_restored(AL_HI, 0, AL_ACK_ACTIVE, t0);
    assert_int_equal(al_on_value(&a, 50, true, t0, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_NORMAL);
    assert_true(ev[0].value == 50);
    //  Unacknowledged, condition gone: CLEAR to UNACK_CLEARED.
    a = s_restored(AL_HI, 0, AL_UNACK_ACTIVE, t0);
    assert_int_equal(al_on_value(&a, 50, true, t0, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_UNACK_CLEARED);
    //  NORMAL, condition met now (it tripped while the service was down):
    //  raises, at once without on-delay...
    a = s_restored(AL_HI, 0, AL_NORMAL, t0);
    assert_int_equal(al_on_value(&a, 90, true, t0, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    //  ...and after the on-delay counted from the restart with one.
    a = s_restored(AL_HI, 5000, AL_NORMAL, t0);
    assert_int_equal(al_on_value(&a, 90, true, t0 + 10, ev), 0);
    assert_int_equal(al_next_due(&a), t0 + 5010);
    assert_int_equal(al_tick(&a, t0 + 5010, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    //  UNACK_CLEARED: stays so while clear, raises again when met.
    a = s_restored(AL_HI, 0, AL_UNACK_CLEARED, t0);
    assert_int_equal(al_on_value(&a, 50, true, t0, ev), 0);
    assert_int_equal(a.state, AL_UNACK_CLEARED);
    assert_int_equal(al_ack(&a, t0, ev), 1);
    a = s_restored(AL_HI, 0, AL_UNACK_CLEARED, t0);
    assert_int_equal(al_on_value(&a, 90, true, t0, ev), 1);
    assert_event(ev, 0, AL_EV_RAISE, AL_UNACK_ACTIVE);
    //  The first value has bad quality: the journal's state holds.
    a = s_restored(AL_HI, 0, AL_UNACK_ACTIVE, t0);
    assert_int_equal(al_on_value(&a, 0, false, t0, ev), 0);
    assert_int_equal(a.state, AL_UNACK_ACTIVE);
    //  COMM alarms.
    a = s_restored(AL_COMM, 0, AL_ACK_ACTIVE, t0);
    assert_int_equal(al_on_condition(&a, true, t0, ev), 0);
    assert_int_equal(al_on_condition(&a, false, t0 + 1, ev), 1);
    assert_event(ev, 0, AL_EV_CLEAR, AL_NORMAL);

    //  Shelved: the end is kept, and found by the first call past it.
    a = s_alarm(AL_HI, 80, 2, 0);
    al_saved_t saved = {.state = AL_UNACK_CLEARED, .shelved = true, .until_ms = t0 - 1};
    assert_int_equal(al_restore(&a, &saved, t0), 0);
    assert_false(al_annunciated(&a));
    assert_int_equal(al_next_due(&a), t0 - 1);
    assert_int_equal(al_on_value(&a, 50, true, t0, ev), 1);
    assert_event(ev, 0, AL_EV_UNSHELVE, AL_NORMAL);
    saved.until_ms = t0 + 60000;
    assert_int_equal(al_restore(&a, &saved, t0), 0);
    assert_int_equal(al_next_due(&a), t0 + 60000);
    //  A shelve ending too far ahead (clock or journal trouble) is cut to the maximum.
    saved.until_ms = INT64_MAX;
    assert_int_equal(al_restore(&a, &saved, t0), 0);
    assert_int_equal(a.until_ms, t0 + AL_SHELVE_MAX_MS);

    //  Out of service: tracked silently, raised on return.
    a = s_alarm(AL_HI, 80, 2, 0);
    saved = (al_saved_t){.state = AL_NORMAL, .out_of_service = true};
    assert_int_equal(al_restore(&a, &saved, t0), 0);
    assert_int_equal(al_on_value(&a, 90, true, t0, ev), 0);
    assert_int_equal(al_in_service(&a, t0 + 1, ev), 2);
    assert_event(ev, 1, AL_EV_RAISE, AL_UNACK_ACTIVE);

    //  Journal records that cannot be: rejected, the alarm untouched.
    a = s_alarm(AL_HI, 80, 2, 0);
    al_t before = a;
    saved = (al_saved_t){.state = (al_state_t)7};
    assert_int_equal(al_restore(&a, &saved, t0), AL_ERR_INVALID);
    saved = (al_saved_t){.state = (al_state_t)-1};
    assert_int_equal(al_restore(&a, &saved, t0), AL_ERR_INVALID);
    saved = (al_saved_t){.state = AL_UNACK_ACTIVE, .out_of_service = true};
    assert_int_equal(al_restore(&a, &saved, t0), AL_ERR_INVALID);
    saved = (al_saved_t){.state = AL_NORMAL, .out_of_service = true, .shelved = true};
    assert_int_equal(al_restore(&a, &saved, t0), AL_ERR_INVALID);
    s_assert_same(&a, &before);
}

//  --------------------------------------------------------------------------
//  Reference model: the lifecycle as a table, the condition as zones, timers
//  as a list of due times. Written for clarity, not speed.

enum { R_RAISE, R_CLEAR, R_ACK };
static const int s_table[AL_STATE_COUNT][3] = {
    //  columns: RAISE, CLEAR, ACK; -1: not a transition
    [AL_NORMAL] = {AL_UNACK_ACTIVE, -1, -1},
    [AL_UNACK_ACTIVE] = {-1, AL_UNACK_CLEARED, AL_ACK_ACTIVE},
    [AL_ACK_ACTIVE] = {-1, AL_NORMAL, -1},
    [AL_UNACK_CLEARED] = {AL_UNACK_ACTIVE, -1, AL_NORMAL},
};

typedef struct {
    al_config_t cfg;
    int state;
    bool oos, shelved;
    int64_t until;
    bool cond;          //  condition with deadband
    bool known;         //  quality good (the condition may be trusted)
    int64_t cond_start; //  when cond last became true with good quality; -1
    bool active;
    double last;
    bool has_last;
    al_event_t ev[8];
    int n;
} ref_t;

static void r_push(ref_t *r, al_kind_t kind, bool with_value)
{
    al_event_t e = {.kind = kind,
                    .state = (al_state_t)r->state,
                    .shelved = r->shelved,
                    .out_of_service = r->oos,
                    .has_value = with_value && r->has_last,
                    .value = with_value && r->has_last ? r->last : 0,
                    .until_ms = kind == AL_EV_SHELVE ? r->until : 0};
    r->ev[r->n++] = e;
}

static void r_lifecycle(ref_t *r, int what)
{
    if (what == R_RAISE || what == R_CLEAR) {
        r->active = what == R_RAISE;
        if (r->oos)
            return;
    }
    int next = s_table[r->state][what];
    assert_int_not_equal(next, -1);
    r->state = next;
    r_push(r,
           what == R_RAISE   ? AL_EV_RAISE
           : what == R_CLEAR ? AL_EV_CLEAR
                             : AL_EV_ACK,
           what != R_ACK);
}

static void r_timers(ref_t *r, int64_t now)
{
    for (;;) {
        int64_t raise_at = INT64_MAX, unshelve_at = INT64_MAX;
        if (r->known && r->cond && !r->active && r->cond_start >= 0)
            raise_at = r->cond_start + r->cfg.on_delay_ms;
        if (r->shelved)
            unshelve_at = r->until;
        if (raise_at <= now && raise_at <= unshelve_at) {
            r_lifecycle(r, R_RAISE);
        } else if (unshelve_at <= now) {
            r->shelved = false;
            if (r->state == AL_UNACK_CLEARED)
                r->state = AL_NORMAL;
            r_push(r, AL_EV_UNSHELVE, false);
        } else {
            return;
        }
    }
}

//  Zone of a value: 2 beyond the limit, 1 inside the deadband, 0 clear of it.
static int r_zone(const al_config_t *c, double v)
{
    double beyond = c->type <= AL_HI ? v - c->limit : c->limit - v;
    return beyond > 0 ? 2 : beyond >= -c->deadband ? 1 : 0;
}

static void r_condition(ref_t *r, bool cond, int64_t now)
{
    bool was = r->cond && r->cond_start >= 0;
    r->cond = cond;
    if (!cond)
        r->cond_start = -1;
    else if (!was)
        r->cond_start = now;
    if (!cond && r->active)
        r_lifecycle(r, R_CLEAR);
    if (cond && !r->active && now - r->cond_start >= r->cfg.on_delay_ms)
        r_lifecycle(r, R_RAISE);
}

static int r_value(ref_t *r, double v, bool good, int64_t now)
{
    r->n = 0;
    r_timers(r, now);
    if (!good || isnan(v)) {
        r->known = false;
        r->cond_start = -1;
        return r->n;
    }
    r->known = true;
    bool cond;
    if (r->cfg.type == AL_STATE) {
        cond = v == r->cfg.limit;
    } else {
        int z = r_zone(&r->cfg, v);
        cond = z == 2 || (z == 1 && r->cond);
    }
    r->last = v;
    r->has_last = true;
    r_condition(r, cond, now);
    return r->n;
}

static int r_comm(ref_t *r, bool met, int64_t now)
{
    r->n = 0;
    r_timers(r, now);
    r->known = true;
    r_condition(r, met, now);
    return r->n;
}

static int r_tick(ref_t *r, int64_t now)
{
    r->n = 0;
    r_timers(r, now);
    return r->n;
}

static int r_ack(ref_t *r)
{
    r->n = 0;
    if (s_table[r->state][R_ACK] < 0)
        return AL_ERR_NOT_UNACKED;
    r_lifecycle(r, R_ACK);
    return r->n;
}

static int r_shelve(ref_t *r, int64_t d, int64_t now)
{
    r->n = 0;
    if (d <= 0 || d > 30LL * 86400000)
        return AL_ERR_DURATION;
    if (r->oos)
        return AL_ERR_OUT_OF_SERVICE;
    r->shelved = true;
    r->until = now + d;
    r_push(r, AL_EV_SHELVE, false);
    return r->n;
}

static int r_unshelve(ref_t *r)
{
    r->n = 0;
    if (!r->shelved)
        return AL_ERR_NOT_SHELVED;
    r->shelved = false;
    if (r->state == AL_UNACK_CLEARED)
        r->state = AL_NORMAL;
    r_push(r, AL_EV_UNSHELVE, false);
    return r->n;
}

static int r_oos(ref_t *r, bool out)
{
    r->n = 0;
    if (out == r->oos)
        return out ? AL_ERR_OUT_OF_SERVICE : AL_ERR_IN_SERVICE;
    r->oos = out;
    r->state = AL_NORMAL;
    r->shelved = false;
    r_push(r, out ? AL_EV_OUT_OF_SERVICE : AL_EV_IN_SERVICE, false);
    if (!out && r->active) {
        r->state = AL_UNACK_ACTIVE;
        r_push(r, AL_EV_RAISE, true);
    }
    return r->n;
}

static uint64_t s_rng;
static uint32_t s_rand(uint32_t n)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t)(s_rng % n);
}

static void s_compare(const al_t *a, const ref_t *r, int got, int want, const al_event_t *ev)
{
    assert_int_equal(got, want);
    assert_true(got <= AL_EVENTS_MAX);
    for (int i = 0; i < got; i++) {
        assert_int_equal(ev[i].kind, r->ev[i].kind);
        assert_int_equal(ev[i].state, r->ev[i].state);
        assert_int_equal(ev[i].shelved, r->ev[i].shelved);
        assert_int_equal(ev[i].out_of_service, r->ev[i].out_of_service);
        assert_int_equal(ev[i].has_value, r->ev[i].has_value);
        assert_true(ev[i].value == r->ev[i].value);
        assert_int_equal(ev[i].until_ms, r->ev[i].until_ms);
    }
    assert_int_equal(a->state, r->state);
    assert_int_equal(a->shelved, r->shelved);
    assert_int_equal(a->out_of_service, r->oos);
    assert_int_equal(a->active, r->active);
}

static void s_random_run(al_type_t type, double deadband, uint32_t on_delay_ms, uint64_t seed)
{
    s_rng = seed;
    al_t a = s_alarm(type, 50, deadband, on_delay_ms);
    ref_t r = {.cfg = a.cfg, .state = AL_NORMAL, .cond_start = -1};
    if (s_rand(4) == 0) {
        //  Start from a journal record.
        al_saved_t saved = {.state = (al_state_t)s_rand(AL_STATE_COUNT)};
        assert_int_equal(al_restore(&a, &saved, 0), 0);
        r.state = saved.state;
        r.active = r.cond = saved.state == AL_UNACK_ACTIVE || saved.state == AL_ACK_ACTIVE;
    }
    al_event_t ev[AL_EVENTS_MAX];
    int64_t now = 0;
    int raises = 0, entries = 0, returns = 0;
    int prev_zone = -1; //  0 clear, 1 beyond, of the last value outside the deadband
    for (int step = 0; step < 20000; step++) {
        now += s_rand(4) == 0 ? s_rand(3000) : s_rand(50);
        uint32_t op = s_rand(100);
        int got, want;
        if (op < 70) {
            bool good = s_rand(20) != 0;
            double v = 50 + ((double)s_rand(2001) - 1000) / 1000.0 * (deadband + 2);
            if (type == AL_STATE)
                v = s_rand(3) ? 50 : 49;
            if (s_rand(100) == 0)
                v = NAN;
            if (type == AL_COMM) {
                got = al_on_condition(&a, good, now, ev);
                want = r_comm(&r, good, now);
            } else {
                got = al_on_value(&a, v, good, now, ev);
                want = r_value(&r, v, good, now);
                if (good && !isnan(v) && type != AL_STATE) {
                    int z = r_zone(&r.cfg, v);
                    if (z == 2 && prev_zone != 1)
                        entries++;
                    if (z != 1)
                        prev_zone = z / 2;
                }
            }
        } else if (op < 78) {
            got = al_tick(&a, now, ev);
            want = r_tick(&r, now);
        } else if (op < 88) {
            got = al_ack(&a, now, ev);
            want = r_ack(&r);
        } else if (op < 92) {
            int64_t d = (int64_t)s_rand(5000) - 100;
            if (s_rand(10) == 0)
                d = AL_SHELVE_MAX_MS + (int64_t)s_rand(3) - 1;
            got = al_shelve(&a, d, now, ev);
            want = r_shelve(&r, d, now);
        } else if (op < 95) {
            got = al_unshelve(&a, now, ev);
            want = r_unshelve(&r);
        } else if (op < 97) {
            got = al_out_of_service(&a, now, ev);
            want = r_oos(&r, true);
        } else {
            got = al_in_service(&a, now, ev);
            want = r_oos(&r, false);
            returns += got == 2;
        }
        s_compare(&a, &r, got, want, ev);
        for (int i = 0; i < got; i++)
            raises += ev[i].kind == AL_EV_RAISE;
        //  Invariants of the lifecycle.
        if (a.out_of_service)
            assert_int_equal(a.state, AL_NORMAL);
        else
            assert_int_equal(a.active, a.state == AL_UNACK_ACTIVE || a.state == AL_ACK_ACTIVE);
        //  Values and ticks leave no timer due (requests apply none).
        if (op < 78)
            assert_true(al_next_due(&a) > now);
    }
    //  No stream of alarms: a raise needs the value to go from clear of the
    //  deadband to beyond the limit, or a return to service.
    if (type <= AL_LOLO) {
        assert_true(raises <= entries + returns);
        assert_true(raises > 0);
        if (getenv("VERBOSE"))
            printf("%s: %d raises, %d entries beyond the limit, %d returns\n", al_type_name(type),
                   raises, entries, returns);
    }
}

static void test_random_against_reference_model(void **state)
{
    for (uint64_t seed = 1; seed <= 8; seed++) {
        s_random_run(AL_HI, 0.5, 0, seed * 7919);
        s_random_run(AL_HI, 0.5, 100, seed * 7919);
        s_random_run(AL_HIHI, 0, 40, seed * 104729);
        s_random_run(AL_LO, 1, 0, seed * 15485863);
        s_random_run(AL_LOLO, 0.25, 500, seed * 32452843);
        s_random_run(AL_STATE, 0, 0, seed * 49979687);
        s_random_run(AL_STATE, 0, 60, seed * 49979687);
        s_random_run(AL_COMM, 0, 0, seed * 67867967);
        s_random_run(AL_COMM, 0, 200, seed * 67867967);
    }
}

//  The same values, conditions and requests, with a tick every millisecond
//  and with no tick at all (requests preceded by one, since requests apply no
//  timer): the same events in the same order, the same final alarm.
typedef struct {
    al_t a;
    al_event_t log[4096];
    int n;
} s_run_t;

static void s_log(s_run_t *run, const al_event_t *ev, int n)
{
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        assert_true(run->n < 4096);
        run->log[run->n++] = ev[i];
    }
}

static void test_outcome_does_not_depend_on_tick_latency(void **state)
{
    static s_run_t dense, sparse;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        al_type_t type = seed % 2 ? AL_HI : AL_COMM;
        dense.a = s_alarm(type, 50, 1, (uint32_t)(seed * 37 % 400));
        dense.n = 0;
        sparse = dense;
        al_event_t ev[AL_EVENTS_MAX];
        s_rng = seed * 2654435761u;
        int64_t now = 0;
        for (int step = 0; step < 1000; step++) {
            int64_t next = now + s_rand(300);
            for (int64_t t = now + 1; t <= next; t++)
                s_log(&dense, ev, al_tick(&dense.a, t, ev));
            now = next;
            uint32_t op = s_rand(10);
            bool met = s_rand(2) == 0;
            double v = 48 + s_rand(5);
            int64_t d = 1 + s_rand(700);
            s_run_t *runs[2] = {&dense, &sparse};
            for (int k = 0; k < 2; k++) {
                s_run_t *run = runs[k];
                if (op >= 7 && run == &sparse)
                    s_log(run, ev, al_tick(&run->a, now, ev));
                if (op < 7 && type == AL_COMM)
                    s_log(run, ev, al_on_condition(&run->a, met, now, ev));
                else if (op < 7)
                    s_log(run, ev, al_on_value(&run->a, v, true, now, ev));
                else if (op == 7 && al_ack(&run->a, now, ev) == 1)
                    s_log(run, ev, 1);
                else if (op == 8)
                    s_log(run, ev, al_shelve(&run->a, d, now, ev));
                else if (op == 9 && al_unshelve(&run->a, now, ev) == 1)
                    s_log(run, ev, 1);
            }
        }
        assert_true(dense.n > 100);
        assert_int_equal(dense.n, sparse.n);
        for (int i = 0; i < dense.n; i++) {
            assert_int_equal(dense.log[i].kind, sparse.log[i].kind);
            assert_int_equal(dense.log[i].state, sparse.log[i].state);
            assert_int_equal(dense.log[i].shelved, sparse.log[i].shelved);
            assert_int_equal(dense.log[i].until_ms, sparse.log[i].until_ms);
            assert_true(dense.log[i].value == sparse.log[i].value);
        }
        s_assert_same(&dense.a, &sparse.a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_bad_config),
        cmocka_unit_test(test_names_ids_and_errors),
        cmocka_unit_test(test_hi_oscillating_inside_deadband_raises_once),
        cmocka_unit_test(test_hi_deadband_zero_and_hihi),
        cmocka_unit_test(test_lo_and_lolo_mirror_hi),
        cmocka_unit_test(test_value_jumping_from_lo_to_hi),
        cmocka_unit_test(test_on_delay_short_excursion_raises_nothing),
        cmocka_unit_test(test_on_delay_long_excursion_raises_at_exact_time),
        cmocka_unit_test(test_state_alarm),
        cmocka_unit_test(test_comm_alarm),
        cmocka_unit_test(test_every_lifecycle_transition_and_illegal_ack),
        cmocka_unit_test(test_bad_quality_freezes_limit_alarms),
        cmocka_unit_test(test_shelve_auto_unshelve_at_until),
        cmocka_unit_test(test_shelve_durations_reshelve_and_unshelve),
        cmocka_unit_test(test_out_of_service_and_return),
        cmocka_unit_test(test_restore_from_journal),
        cmocka_unit_test(test_random_against_reference_model),
        cmocka_unit_test(test_outcome_does_not_depend_on_tick_latency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
