/*  Unit tests of connect_window: every rule of the scheduler, with `now`
    passed in, no sockets and no sleeps. The last tests run a discrete-event
    simulation of a plant with N dead devices and one live device that is
    restarted, and check the reconnect bound does not grow with N.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "connect_window.h"

#include <stdio.h>
#include <stdlib.h>

static cw_config_t s_config(uint32_t window)
{
    cw_config_t c = {.window = window,
                     .timeout_ms = 3000,
                     .timeout_min_ms = 250,
                     .reconnect_min_ms = 1000,
                     .reconnect_max_ms = 60000,
                     .recent_ms = 600000,
                     .reserve = -1,
                     .seed = 42};
    return c;
}

static void test_rejects_bad_config(void **state)
{
    cw_config_t c = s_config(0);
    assert_null(cw_new(&c));
    c = s_config(10);
    c.timeout_min_ms = 4000;
    assert_null(cw_new(&c));
    c = s_config(10);
    c.reconnect_min_ms = 70000;
    assert_null(cw_new(&c));
    c = s_config(10);
    c.timeout_ms = 0;
    assert_null(cw_new(&c));
    assert_null(cw_new(NULL));
    cw_t *cw = NULL;
    cw_destroy(&cw); //  tolerates NULL
    cw_destroy(NULL);
}

static void test_default_reserve_holds_back_new_devices(void **state)
{
    cw_config_t c = s_config(10); //  reserve: 10 / 5 = 2
    cw_t *cw = cw_new(&c);
    for (int i = 0; i < 20; i++) {
        cw_add(cw);
        cw_want(cw, i, 0);
    }
    int id, started = 0;
    uint32_t timeout;
    while (cw_start(cw, 0, &id, &timeout))
        started++;
    assert_int_equal(started, 8);
    cw_destroy(&cw);
    c = s_config(1); //  a window of one keeps no reserve
    cw = cw_new(&c);
    cw_add(cw);
    cw_want(cw, 0, 0);
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    cw_destroy(&cw);
}

static void test_window_caps_attempts_in_flight(void **state)
{
    cw_config_t c = s_config(10);
    c.reserve = 0;
    cw_t *cw = cw_new(&c);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(cw_add(cw), i);
        cw_want(cw, i, 0);
    }
    int id;
    uint32_t timeout;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
        assert_int_equal(id, i); //  first come, first served among equals
        assert_int_equal(timeout, 3000);
        assert_int_equal(cw_state(cw, id, 0), CW_CONNECTING);
    }
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 0);
    cw_stats_t st;
    cw_stats(cw, 0, &st);
    assert_int_equal(st.in_flight, 10);
    assert_int_equal(st.queued, 40);
    assert_int_equal(cw_state(cw, 20, 0), CW_QUEUED);
    //  One completes: exactly one more may start.
    cw_connected(cw, 3, 5);
    assert_int_equal(cw_state(cw, 3, 5), CW_ONLINE);
    assert_int_equal(cw_start(cw, 5, &id, &timeout), 1);
    assert_int_equal(id, 10);
    assert_int_equal(cw_start(cw, 5, &id, &timeout), 0);
    cw_destroy(&cw);
    assert_null(cw);
}

static void test_timeout_starts_at_start_not_in_queue(void **state)
{
    cw_config_t c = s_config(1);
    cw_t *cw = cw_new(&c);
    cw_add(cw);
    cw_add(cw);
    cw_want(cw, 0, 0);
    cw_want(cw, 1, 0);
    int id;
    uint32_t timeout;
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    assert_int_equal(id, 0);
    //  Device 1 waits in the queue for 2999 ms: it has not failed.
    assert_int_equal(cw_expired(cw, 2999, &id), 0);
    assert_int_equal(cw_state(cw, 1, 2999), CW_QUEUED);
    assert_int_equal(cw_failures(cw, 1), 0);
    assert_int_equal(cw_expired(cw, 3000, &id), 1);
    assert_int_equal(id, 0);
    assert_int_equal(cw_failures(cw, 0), 1);
    //  Now device 1 starts, and its own full timeout runs from 3000.
    assert_int_equal(cw_start(cw, 3000, &id, &timeout), 1);
    assert_int_equal(id, 1);
    assert_int_equal(cw_expired(cw, 5999, &id), 0);
    assert_int_equal(cw_next_event(cw, 3000), 6000);
    assert_int_equal(cw_expired(cw, 6000, &id), 1);
    assert_int_equal(id, 1);
    cw_destroy(&cw);
}

static void test_dead_backoff_grows_with_jitter_to_max(void **state)
{
    cw_config_t c = s_config(1);
    cw_t *cw = cw_new(&c);
    cw_add(cw);
    cw_want(cw, 0, 0);
    int64_t now = 0;
    int id;
    uint32_t timeout;
    double expected = 1000;
    for (int attempt = 1; attempt <= 12; attempt++) {
        assert_int_equal(cw_start(cw, now, &id, &timeout), 1);
        assert_int_equal(timeout, 3000); //  never connected: full timeout
        now += 10;
        cw_failed(cw, 0, now); //  refused
        assert_int_equal(cw_failures(cw, 0), attempt);
        int64_t next = cw_next_event(cw, now);
        double delay = (double)(next - now);
        //  Equal jitter: between half and all of the exponential delay, never below min.
        double lo = expected / 2 < 1000 ? 1000 : expected / 2;
        assert_true(delay >= lo - 1);
        assert_true(delay <= expected + 1);
        assert_int_equal(cw_state(cw, 0, now), CW_OFFLINE);
        assert_int_equal(cw_start(cw, next - 1, &id, &timeout), 0);
        now = next;
        expected = expected * 2 > 60000 ? 60000 : expected * 2;
    }
    cw_stats_t st;
    cw_stats(cw, now, &st);
    assert_int_equal(st.failures, 12);
    assert_int_equal(st.attempts, 12);
    cw_destroy(&cw);
}

static void test_lost_device_retries_at_reconnect_min_with_adaptive_timeout(void **state)
{
    cw_config_t c = s_config(4);
    cw_t *cw = cw_new(&c);
    cw_add(cw);
    cw_want(cw, 0, 0);
    int id;
    uint32_t timeout;
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    cw_connected(cw, 0, 2); //  2 ms to connect
    assert_int_equal(cw_connect_ms(cw, 0), 2);
    cw_lost(cw, 0, 10000);
    assert_int_equal(cw_state(cw, 0, 10000), CW_OFFLINE);
    int64_t next = cw_next_event(cw, 10000);
    assert_true(next >= 11000 && next <= 11250);
    //  Every retry stays at reconnect_min while the device is recent, with the
    //  short adaptive timeout (4 x 2 ms, floored at 250).
    int64_t now = next;
    for (int i = 0; i < 30; i++) {
        assert_int_equal(cw_start(cw, now, &id, &timeout), 1);
        assert_int_equal(timeout, 250);
        now += 250;
        assert_int_equal(cw_expired(cw, now, &id), 1);
        next = cw_next_event(cw, now);
        assert_true(next - now >= 1000 && next - now <= 1250);
        now = next;
    }
    //  After recent_ms the device is dead: exponential backoff, full timeout.
    now = 10000 + 600000 + 1;
    cw_t *cw2 = cw; //  same scheduler, keep going
    while (cw_start(cw2, now, &id, &timeout) == 0)
        now = cw_next_event(cw2, now);
    now += timeout;
    assert_int_equal(cw_expired(cw2, now, &id), 1);
    while (cw_start(cw2, now, &id, &timeout) == 0)
        now = cw_next_event(cw2, now);
    assert_int_equal(timeout, 3000);
    cw_destroy(&cw);
}

static void test_dropped_before_answer_is_a_failure(void **state)
{
    cw_config_t c = s_config(2);
    cw_t *cw = cw_new(&c);
    cw_add(cw);
    cw_want(cw, 0, 0);
    int id;
    uint32_t timeout;
    //  It accepts TCP but never answers: each drop is a failure, the backoff
    //  grows like a dead device's, and it is never "recent".
    int64_t now = 0, prev_delay = 0;
    for (int i = 1; i <= 6; i++) {
        while (cw_start(cw, now, &id, &timeout) == 0)
            now = cw_next_event(cw, now);
        cw_connected(cw, 0, now + 1);
        now += 700;
        cw_dropped(cw, 0, now);
        assert_int_equal(cw_failures(cw, 0), i);
        assert_int_equal(cw_state(cw, 0, now), CW_OFFLINE);
        int64_t delay = cw_next_event(cw, now) - now;
        assert_true(delay >= 1000);
        if (i >= 3)
            assert_true(delay > 1250); //  beyond the recent retry
        prev_delay = delay;
    }
    assert_true(prev_delay >= 8000); //  min x 2^5 / 2 at least
    cw_stats_t st;
    cw_stats(cw, now, &st);
    assert_int_equal(st.online, 0);
    assert_int_equal(st.dead, 1);
    //  In the wrong state it is ignored.
    cw_dropped(cw, 0, now);
    assert_int_equal(cw_failures(cw, 0), 6);
    cw_destroy(&cw);
}

static void test_adaptive_timeout_bounds(void **state)
{
    cw_config_t c = s_config(2);
    cw_t *cw = cw_new(&c);
    cw_add(cw);
    cw_want(cw, 0, 0);
    int id;
    uint32_t timeout;
    //  A slow device (connect takes 500 ms): 4 x 500 = 2000.
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    cw_connected(cw, 0, 500);
    cw_lost(cw, 0, 1000);
    int64_t now = cw_next_event(cw, 1000);
    assert_int_equal(cw_start(cw, now, &id, &timeout), 1);
    assert_int_equal(timeout, 2000);
    //  A very slow one: capped at the configured timeout.
    cw_connected(cw, 0, now + 5000); //  srtt = (500*7 + 5000)/8 = 1062
    assert_int_equal(cw_connect_ms(cw, 0), 1062);
    cw_lost(cw, 0, now + 6000);
    now = cw_next_event(cw, now + 6000);
    assert_int_equal(cw_start(cw, now, &id, &timeout), 1);
    assert_int_equal(timeout, 3000);
    cw_destroy(&cw);
}

static void test_recent_devices_go_before_dead_ones(void **state)
{
    cw_config_t c = s_config(10);
    cw_t *cw = cw_new(&c);
    int id;
    uint32_t timeout;
    for (int i = 0; i < 11; i++)
        cw_add(cw);
    //  Device 10 comes online.
    cw_want(cw, 10, 0);
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    assert_int_equal(id, 10);
    cw_connected(cw, 10, 1);
    //  Devices 0..9 are tried once and refused: dead, due again at 1002.
    for (int i = 0; i < 10; i++)
        cw_want(cw, i, 1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cw_start(cw, 1, &id, &timeout), 1);
        cw_failed(cw, id, 2);
    }
    //  Device 10 is lost at 1500: due again at 2500..2750, later than the dead ones.
    cw_lost(cw, 10, 1500);
    //  At 3000 everyone is overdue; the recent device goes first all the same.
    assert_int_equal(cw_start(cw, 3000, &id, &timeout), 1);
    assert_int_equal(id, 10);
    assert_int_equal(timeout, 250); //  adaptive: it connected in 1 ms
    //  Then dead probes, full timeout, at most window - reserve = 8 of them.
    int dead = 0;
    while (cw_start(cw, 3000, &id, &timeout)) {
        assert_int_not_equal(id, 10);
        assert_int_equal(timeout, 3000);
        dead++;
    }
    assert_int_equal(dead, 8);
    cw_destroy(&cw);
}

static void test_dead_probes_leave_reserve_for_recent(void **state)
{
    cw_config_t c = s_config(10); //  reserve 2
    cw_t *cw = cw_new(&c);
    int id;
    uint32_t timeout;
    for (int i = 0; i < 30; i++) {
        cw_add(cw);
        cw_want(cw, i, 0);
    }
    //  First pass: everyone tried once and failed -> dead.
    int64_t now = 0;
    int tried = 0;
    while (tried < 30) {
        while (cw_start(cw, now, &id, &timeout)) {
            cw_failed(cw, id, now + 1);
            tried++;
        }
        now++;
    }
    now += 120000; //  everyone overdue
    int started = 0;
    while (cw_start(cw, now, &id, &timeout))
        started++;
    assert_int_equal(started, 8);
    cw_stats_t st;
    cw_stats(cw, now, &st);
    assert_int_equal(st.in_flight_dead, 8);
    assert_true(st.queued >= 22);
    //  Neither a never-tried device...
    int fresh = cw_add(cw);
    cw_want(cw, fresh, now);
    assert_int_equal(cw_start(cw, now, &id, &timeout), 0);
    //  ...but a recently online device finds a free slot at once.
    cw_destroy(&cw);
    cw = cw_new(&c);
    for (int i = 0; i < 31; i++) {
        cw_add(cw);
        cw_want(cw, i, 0);
    }
    //  Device 0 connects first.
    now = 0;
    assert_int_equal(cw_start(cw, now, &id, &timeout), 1);
    assert_int_equal(id, 0);
    cw_connected(cw, 0, 1);
    //  Everyone else fails once, then all are overdue.
    tried = 1;
    while (tried < 31) {
        while (cw_start(cw, now, &id, &timeout)) {
            cw_failed(cw, id, now + 1);
            tried++;
        }
        now++;
    }
    cw_lost(cw, 0, now);
    now += 120000;
    started = 0;
    while (cw_start(cw, now, &id, &timeout)) {
        assert_true(started > 0 || id == 0); //  the recent one goes first
        started++;
    }
    assert_int_equal(started, 9); //  1 recent + 8 dead
    cw_stats(cw, now, &st);
    assert_int_equal(st.in_flight_dead, 8);
    //  And while dead probes hold 8 slots a second recent device still gets the 10th.
    cw_connected(cw, 0, now + 1);
    cw_lost(cw, 0, now + 2);
    assert_int_equal(cw_start(cw, now + 1300, &id, &timeout), 1);
    assert_int_equal(id, 0);
    cw_destroy(&cw);
}

static void test_cancel_frees_slot_and_idles(void **state)
{
    cw_config_t c = s_config(1);
    cw_t *cw = cw_new(&c);
    cw_add(cw);
    cw_add(cw);
    cw_want(cw, 0, 0);
    cw_want(cw, 1, 0);
    int id;
    uint32_t timeout;
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    cw_cancel(cw, 0);
    assert_int_equal(cw_state(cw, 0, 0), CW_IDLE);
    assert_int_equal(cw_start(cw, 0, &id, &timeout), 1);
    assert_int_equal(id, 1);
    cw_connected(cw, 1, 1);
    cw_cancel(cw, 1);
    cw_stats_t st;
    cw_stats(cw, 1, &st);
    assert_int_equal(st.online, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(cw_next_event(cw, 1), INT64_MAX);
    //  Calls in the wrong state are ignored.
    cw_connected(cw, 1, 2);
    cw_failed(cw, 1, 2);
    cw_lost(cw, 1, 2);
    assert_int_equal(cw_state(cw, 1, 2), CW_IDLE);
    cw_destroy(&cw);
}

static void test_starvation_is_reported(void **state)
{
    cw_config_t c = s_config(10);
    c.timeout_ms = 3000;
    c.reconnect_max_ms = 10000;
    cw_t *cw = cw_new(&c);
    //  1,000 dead devices: 8 probes per 3 s cannot visit each every 10 s.
    for (int i = 0; i < 1000; i++) {
        cw_add(cw);
        cw_want(cw, i, 0);
    }
    int id;
    uint32_t timeout;
    bool starved = false;
    for (int64_t now = 0; now < 600000; now += 100) {
        while (cw_expired(cw, now, &id))
            ;
        while (cw_start(cw, now, &id, &timeout))
            ;
        cw_stats_t st;
        cw_stats(cw, now, &st);
        assert_true(st.in_flight <= 10);
        if (st.starved) {
            starved = true;
            assert_true(st.dead_lag_ms > 10000);
            break;
        }
    }
    assert_true(starved);
    cw_destroy(&cw);

    //  Ten dead devices are probed on time: never starved.
    cw = cw_new(&c);
    for (int i = 0; i < 10; i++) {
        cw_add(cw);
        cw_want(cw, i, 0);
    }
    for (int64_t now = 0; now < 600000; now += 100) {
        while (cw_expired(cw, now, &id))
            ;
        while (cw_start(cw, now, &id, &timeout))
            ;
        cw_stats_t st;
        cw_stats(cw, now, &st);
        assert_false(st.starved);
    }
    cw_destroy(&cw);
}

//  --------------------------------------------------------------------------
//  Discrete-event simulation: `dead` devices whose SYNs are dropped (their
//  attempts only ever time out) and one live device (id 0) that goes down at
//  `down_at` (connections refused at once) and comes back at `up_at`.
//  Returns the time from up_at until the live device is online again.

static int64_t s_simulate_restart(int dead, uint64_t seed)
{
    cw_config_t c = s_config(10);
    c.seed = seed;
    cw_t *cw = cw_new(&c);
    int n = dead + 1;
    for (int i = 0; i < n; i++) {
        cw_add(cw);
        cw_want(cw, i, 0);
    }
    const int64_t down_at = 200000, up_at = 260000, end = 400000;
    int64_t *complete = calloc((size_t)n, sizeof *complete); //  0: none pending
    int64_t online_again = -1;
    bool was_online = false;
    int64_t now = 0;
    int id;
    uint32_t timeout;
    while (now <= end && online_again < 0) {
        while (cw_expired(cw, now, &id))
            ;
        //  The live device's pending outcome.
        if (complete[0] && complete[0] <= now) {
            complete[0] = 0;
            if (now < down_at || now >= up_at) {
                cw_connected(cw, 0, now);
                if (now >= up_at)
                    online_again = now - up_at;
                else
                    was_online = true;
            } else
                cw_failed(cw, 0, now);
        }
        if (now >= down_at && cw_state(cw, 0, now) == CW_ONLINE && was_online) {
            cw_lost(cw, 0, now); //  the device went away
            was_online = false;
        }
        while (cw_start(cw, now, &id, &timeout)) {
            if (id == 0)
                complete[0] = now + 1; //  1 ms connect (or refusal)
        }
        int64_t next = cw_next_event(cw, now);
        if (complete[0] && complete[0] < next)
            next = complete[0];
        if (now < down_at && down_at < next)
            next = down_at;
        if (next <= now)
            next = now + 1;
        now = next;
    }
    free(complete);
    cw_destroy(&cw);
    return online_again;
}

static void test_reconnect_bound_is_flat_in_dead_devices(void **state)
{
    //  Bound: reconnect_min x 1.25 (jittered retry) + one adaptive timeout of a
    //  retry that started just before the device came back (250) + the
    //  connect itself; dead devices never take the reserved slots.
    const int64_t bound = 1250 + 250 + 10;
    int counts[] = {0, 100, 1000, 5000};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        int64_t worst = 0;
        for (uint64_t seed = 1; seed <= 5; seed++) {
            int64_t t = s_simulate_restart(counts[k], seed * 7919);
            assert_true(t >= 0);
            if (t > worst)
                worst = t;
        }
        if (getenv("VERBOSE"))
            printf("dead=%d worst reconnect %lld ms\n", counts[k], (long long)worst);
        assert_true(worst <= bound);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_bad_config),
        cmocka_unit_test(test_default_reserve_holds_back_new_devices),
        cmocka_unit_test(test_window_caps_attempts_in_flight),
        cmocka_unit_test(test_timeout_starts_at_start_not_in_queue),
        cmocka_unit_test(test_dead_backoff_grows_with_jitter_to_max),
        cmocka_unit_test(test_lost_device_retries_at_reconnect_min_with_adaptive_timeout),
        cmocka_unit_test(test_dropped_before_answer_is_a_failure),
        cmocka_unit_test(test_adaptive_timeout_bounds),
        cmocka_unit_test(test_recent_devices_go_before_dead_ones),
        cmocka_unit_test(test_dead_probes_leave_reserve_for_recent),
        cmocka_unit_test(test_cancel_frees_slot_and_idles),
        cmocka_unit_test(test_starvation_is_reported),
        cmocka_unit_test(test_reconnect_bound_is_flat_in_dead_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
