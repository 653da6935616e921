/*  Unit tests of link_fsm: every state x event transition from a table, for
    both kinds of link, then the scenarios of seed 002 (intermittent faults,
    the limits, separate write counter, re-assign once, recovery) and a long
    random run that checks the invariants after every event.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "link_fsm.h"

#include <stdio.h>
#include <string.h>

#define RAISE   LINK_ACT_RAISE_ALARM
#define BAD     LINK_ACT_MARK_BAD
#define CLOSE   LINK_ACT_CLOSE
#define REASSN  LINK_ACT_REASSIGN
#define RETRY   LINK_ACT_RETRY_LATER
#define CLEAR   LINK_ACT_CLEAR_ALARM
#define CHANGED LINK_ACT_STATE_CHANGED

static link_fsm_t s_link(link_kind_t kind, uint32_t max_read, uint32_t max_write)
{
    link_config_t c = {
        .kind = kind, .max_read_timeouts = max_read, .max_write_timeouts = max_write};
    link_fsm_t l;
    assert_int_equal(link_fsm_init(&l, &c, 0), 0);
    return l;
}

//  Drive a fresh link into `state` by real events only.
static link_fsm_t s_reach(link_kind_t kind, uint32_t limit, link_state_t state)
{
    link_fsm_t l = s_link(kind, limit, limit);
    int64_t now = 1;
    if (state == LINK_DOWN)
        return l;
    link_opened(&l, now++);
    if (state == LINK_HEALTHY)
        return l;
    for (uint32_t i = 0; i < limit; i++)
        link_read_timeout(&l, now++);
    if (kind == LINK_CHANNEL) {
        assert_int_equal(l.state, LINK_REASSIGNING);
        if (state == LINK_REASSIGNING)
            return l;
        if (state == LINK_REASSIGNED) {
            link_opened(&l, now++);
            return l;
        }
        link_open_failed(&l, now++);
    }
    assert_int_equal(l.state, LINK_FAILED);
    if (state == LINK_FAILED)
        return l;
    assert_int_equal(state, LINK_RECOVERING);
    link_opened(&l, now++);
    return l;
}

static bool s_reachable(link_kind_t kind, link_state_t state)
{
    return kind == LINK_CHANNEL || (state != LINK_REASSIGNING && state != LINK_REASSIGNED);
}

static bool s_alarm_state(link_state_t s)
{
    return s == LINK_REASSIGNING || s == LINK_REASSIGNED || s == LINK_FAILED ||
           s == LINK_RECOVERING;
}

static bool s_same(const link_fsm_t *a, const link_fsm_t *b)
{
    return a->state == b->state && a->consecutive_read_timeouts == b->consecutive_read_timeouts &&
           a->consecutive_write_timeouts == b->consecutive_write_timeouts &&
           a->alarm_active == b->alarm_active && a->last_timeout_ms == b->last_timeout_ms &&
           a->failures == b->failures && a->since_ms == b->since_ms;
}

//  --------------------------------------------------------------------------
//  The transition table, with every timeout at the limit (limits of 1).

typedef struct {
    link_state_t from;
    link_event_t event;
    link_state_t to;
    unsigned socket_actions;  //  for LINK_SOCKET (unused where unreachable)
    unsigned channel_actions; //  for LINK_CHANNEL
    link_state_t socket_to;   //  where a socket goes, if it differs (else = to)
} s_row_t;

#define SAME 0xffffffffu //  socket_actions equal channel_actions

static const s_row_t s_table[] = {
    //  DOWN: only open results matter.
    {LINK_DOWN, LINK_EV_GOOD_REPLY, LINK_DOWN, SAME, 0, LINK_DOWN},
    {LINK_DOWN, LINK_EV_READ_TIMEOUT, LINK_DOWN, SAME, 0, LINK_DOWN},
    {LINK_DOWN, LINK_EV_WRITE_TIMEOUT, LINK_DOWN, SAME, 0, LINK_DOWN},
    {LINK_DOWN, LINK_EV_OPENED, LINK_HEALTHY, SAME, CHANGED, LINK_HEALTHY},
    {LINK_DOWN, LINK_EV_OPEN_FAILED, LINK_DOWN, SAME, RETRY, LINK_DOWN},
    {LINK_DOWN, LINK_EV_CLOSED, LINK_DOWN, SAME, 0, LINK_DOWN},
    //  HEALTHY: the limit fails a socket, or de-assigns and re-assigns a channel.
    {LINK_HEALTHY, LINK_EV_GOOD_REPLY, LINK_HEALTHY, SAME, 0, LINK_HEALTHY},
    {LINK_HEALTHY, LINK_EV_READ_TIMEOUT, LINK_REASSIGNING, RAISE | BAD | CLOSE | RETRY | CHANGED,
     RAISE | BAD | CLOSE | REASSN | CHANGED, LINK_FAILED},
    {LINK_HEALTHY, LINK_EV_WRITE_TIMEOUT, LINK_REASSIGNING, RAISE | BAD | CLOSE | RETRY | CHANGED,
     RAISE | BAD | CLOSE | REASSN | CHANGED, LINK_FAILED},
    {LINK_HEALTHY, LINK_EV_OPENED, LINK_HEALTHY, SAME, 0, LINK_HEALTHY},
    {LINK_HEALTHY, LINK_EV_OPEN_FAILED, LINK_HEALTHY, SAME, 0, LINK_HEALTHY},
    {LINK_HEALTHY, LINK_EV_CLOSED, LINK_DOWN, SAME, BAD | RETRY | CHANGED, LINK_DOWN},
    //  REASSIGNING (channel only): waiting for the one immediate reopen.
    {LINK_REASSIGNING, LINK_EV_GOOD_REPLY, LINK_REASSIGNING, SAME, 0, LINK_REASSIGNING},
    {LINK_REASSIGNING, LINK_EV_READ_TIMEOUT, LINK_REASSIGNING, SAME, 0, LINK_REASSIGNING},
    {LINK_REASSIGNING, LINK_EV_WRITE_TIMEOUT, LINK_REASSIGNING, SAME, 0, LINK_REASSIGNING},
    {LINK_REASSIGNING, LINK_EV_OPENED, LINK_REASSIGNED, SAME, CHANGED, LINK_REASSIGNED},
    {LINK_REASSIGNING, LINK_EV_OPEN_FAILED, LINK_FAILED, SAME, RETRY | CHANGED, LINK_FAILED},
    {LINK_REASSIGNING, LINK_EV_CLOSED, LINK_REASSIGNING, SAME, 0, LINK_REASSIGNING},
    //  REASSIGNED (channel only): on trial after the re-assign.
    {LINK_REASSIGNED, LINK_EV_GOOD_REPLY, LINK_HEALTHY, SAME, CLEAR | CHANGED, LINK_HEALTHY},
    {LINK_REASSIGNED, LINK_EV_READ_TIMEOUT, LINK_FAILED, SAME, CLOSE | RETRY | CHANGED,
     LINK_FAILED},
    {LINK_REASSIGNED, LINK_EV_WRITE_TIMEOUT, LINK_FAILED, SAME, CLOSE | RETRY | CHANGED,
     LINK_FAILED},
    {LINK_REASSIGNED, LINK_EV_OPENED, LINK_REASSIGNED, SAME, 0, LINK_REASSIGNED},
    {LINK_REASSIGNED, LINK_EV_OPEN_FAILED, LINK_REASSIGNED, SAME, 0, LINK_REASSIGNED},
    {LINK_REASSIGNED, LINK_EV_CLOSED, LINK_FAILED, SAME, RETRY | CHANGED, LINK_FAILED},
    //  FAILED: closed, retried with backoff.
    {LINK_FAILED, LINK_EV_GOOD_REPLY, LINK_FAILED, SAME, 0, LINK_FAILED},
    {LINK_FAILED, LINK_EV_READ_TIMEOUT, LINK_FAILED, SAME, 0, LINK_FAILED},
    {LINK_FAILED, LINK_EV_WRITE_TIMEOUT, LINK_FAILED, SAME, 0, LINK_FAILED},
    {LINK_FAILED, LINK_EV_OPENED, LINK_RECOVERING, SAME, CHANGED, LINK_RECOVERING},
    {LINK_FAILED, LINK_EV_OPEN_FAILED, LINK_FAILED, SAME, RETRY, LINK_FAILED},
    {LINK_FAILED, LINK_EV_CLOSED, LINK_FAILED, SAME, 0, LINK_FAILED},
    //  RECOVERING: reopened after a failure, on trial.
    {LINK_RECOVERING, LINK_EV_GOOD_REPLY, LINK_HEALTHY, SAME, CLEAR | CHANGED, LINK_HEALTHY},
    {LINK_RECOVERING, LINK_EV_READ_TIMEOUT, LINK_FAILED, SAME, CLOSE | RETRY | CHANGED,
     LINK_FAILED},
    {LINK_RECOVERING, LINK_EV_WRITE_TIMEOUT, LINK_FAILED, SAME, CLOSE | RETRY | CHANGED,
     LINK_FAILED},
    {LINK_RECOVERING, LINK_EV_OPENED, LINK_RECOVERING, SAME, 0, LINK_RECOVERING},
    {LINK_RECOVERING, LINK_EV_OPEN_FAILED, LINK_RECOVERING, SAME, 0, LINK_RECOVERING},
    {LINK_RECOVERING, LINK_EV_CLOSED, LINK_FAILED, SAME, RETRY | CHANGED, LINK_FAILED},
};
#define S_ROWS (sizeof s_table / sizeof s_table[0])

static void s_check_row(const s_row_t *r, link_kind_t kind)
{
    link_fsm_t l = s_reach(kind, 1, r->from);
    assert_int_equal(l.state, r->from);
    link_fsm_t before = l;
    unsigned want =
        kind == LINK_CHANNEL || r->socket_actions == SAME ? r->channel_actions : r->socket_actions;
    link_state_t to = kind == LINK_CHANNEL ? r->to : r->socket_to;
    unsigned got = link_event(&l, r->event, 1000);
    char wtext[128], gtext[128];
    link_actions_text(want, wtext, sizeof wtext);
    link_actions_text(got, gtext, sizeof gtext);
    if (got != want || l.state != to)
        fail_msg("%s %s + %s: want %s [%s], got %s [%s]",
                 kind == LINK_CHANNEL ? "channel" : "socket", link_state_detail(r->from),
                 link_event_name(r->event), link_state_detail(to), wtext,
                 link_state_detail(l.state), gtext);
    //  The alarm follows the state; the bits say so.
    assert_int_equal(l.alarm_active, s_alarm_state(l.state));
    assert_int_equal((got & RAISE) != 0, !before.alarm_active && l.alarm_active);
    assert_int_equal((got & CLEAR) != 0, before.alarm_active && !l.alarm_active);
    assert_int_equal((got & CHANGED) != 0, l.state != before.state);
    assert_true(l.since_ms == (l.state != before.state ? 1000 : before.since_ms));
    //  A failure episode starts exactly when the alarm is raised.
    assert_int_equal(l.failures, before.failures + ((got & RAISE) ? 1 : 0));
    //  Ignored events change nothing at all.
    if (got == 0 && to == r->from)
        assert_true(s_same(&l, &before));
    //  Timeouts are stamped only when counted.
    if (r->event == LINK_EV_READ_TIMEOUT || r->event == LINK_EV_WRITE_TIMEOUT)
        assert_true(l.last_timeout_ms == (link_is_open(&before) ? 1000 : before.last_timeout_ms));
}

static void test_table_covers_every_state_and_event(void **state)
{
    for (int s = 0; s < LINK_STATE_COUNT; s++)
        for (int e = 0; e < LINK_EV_COUNT; e++) {
            int n = 0;
            for (size_t i = 0; i < S_ROWS; i++)
                n += s_table[i].from == (link_state_t)s && s_table[i].event == (link_event_t)e;
            assert_int_equal(n, 1);
        }
}

static void test_every_transition_channel(void **state)
{
    for (size_t i = 0; i < S_ROWS; i++)
        s_check_row(&s_table[i], LINK_CHANNEL);
}

static void test_every_transition_socket(void **state)
{
    for (size_t i = 0; i < S_ROWS; i++)
        if (s_reachable(LINK_SOCKET, s_table[i].from))
            s_check_row(&s_table[i], LINK_SOCKET);
}

//  Below the limit a timeout on an open link only counts, in every open state.
static void test_timeouts_below_limit_only_count(void **state)
{
    link_state_t open[] = {LINK_HEALTHY, LINK_REASSIGNED, LINK_RECOVERING};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < 3; i++) {
            if (!s_reachable((link_kind_t)k, open[i]))
                continue;
            link_fsm_t l = s_reach((link_kind_t)k, 3, open[i]);
            assert_true(link_is_open(&l));
            assert_int_equal(l.consecutive_read_timeouts, 0);
            assert_int_equal(link_read_timeout(&l, 500), 0);
            assert_int_equal(link_write_timeout(&l, 501), 0);
            assert_int_equal(link_read_timeout(&l, 502), 0);
            assert_int_equal(link_write_timeout(&l, 503), 0);
            assert_int_equal(l.state, open[i]);
            assert_int_equal(l.consecutive_read_timeouts, 2);
            assert_int_equal(l.consecutive_write_timeouts, 2);
            assert_int_equal(l.last_timeout_ms, 503);
        }
}

//  --------------------------------------------------------------------------
//  Scenarios

static void test_intermittent_timeouts_never_fail(void **state)
{
    for (int k = 0; k < 2; k++)
        for (uint32_t limit = 2; limit <= 3; limit++) {
            link_fsm_t l = s_link((link_kind_t)k, limit, limit);
            link_opened(&l, 0);
            for (int64_t t = 1; t < 2000; t += 2) {
                //  Every other reply late, alternating read and write faults.
                unsigned a = (t % 4 == 1) ? link_read_timeout(&l, t) : link_write_timeout(&l, t);
                assert_int_equal(a, 0);
                assert_int_equal(link_good_reply(&l, t + 1), 0);
                assert_int_equal(l.state, LINK_HEALTHY);
                assert_false(l.alarm_active);
            }
            //  Runs of limit - 1 late replies are still intermittent.
            for (int round = 0; round < 100; round++) {
                for (uint32_t i = 0; i + 1 < limit; i++)
                    assert_int_equal(link_read_timeout(&l, 5000 + round), 0);
                link_good_reply(&l, 5000 + round);
            }
            assert_int_equal(l.state, LINK_HEALTHY);
            assert_int_equal(l.failures, 0);
        }
}

static void test_exactly_max_read_timeouts_fail(void **state)
{
    link_fsm_t l = s_link(LINK_SOCKET, 4, 10);
    link_opened(&l, 0);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(link_read_timeout(&l, 100 * i), 0);
        assert_int_equal(l.consecutive_read_timeouts, (uint32_t)i);
    }
    assert_int_equal(link_read_timeout(&l, 400), RAISE | BAD | CLOSE | RETRY | CHANGED);
    assert_int_equal(l.state, LINK_FAILED);
    assert_int_equal(l.consecutive_read_timeouts, 4); //  kept for the Redis key
    assert_int_equal(l.last_timeout_ms, 400);
    assert_int_equal(l.since_ms, 400);
    assert_int_equal(l.failures, 1);
    assert_true(l.alarm_active);
    assert_false(link_is_open(&l));
    assert_string_equal(link_state_name(l.state), "failed");
}

static void test_write_timeouts_have_their_own_counter_and_limit(void **state)
{
    link_fsm_t l = s_link(LINK_CHANNEL, 5, 2);
    link_opened(&l, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(link_read_timeout(&l, 1), 0);
    assert_int_equal(link_write_timeout(&l, 2), 0);
    //  Read timeouts neither reset nor feed the write counter, and the reverse.
    assert_int_equal(l.consecutive_read_timeouts, 4);
    assert_int_equal(l.consecutive_write_timeouts, 1);
    assert_int_equal(link_write_timeout(&l, 3), RAISE | BAD | CLOSE | REASSN | CHANGED);
    assert_int_equal(l.state, LINK_REASSIGNING);
    assert_int_equal(l.consecutive_write_timeouts, 2);
    assert_int_equal(l.consecutive_read_timeouts, 4);
    //  And the read limit alone fails it too.
    l = s_link(LINK_CHANNEL, 3, 100);
    link_opened(&l, 0);
    for (int i = 0; i < 50; i++)
        link_write_timeout(&l, 1);
    link_read_timeout(&l, 2);
    link_read_timeout(&l, 3);
    assert_int_equal(l.state, LINK_HEALTHY);
    assert_int_equal(link_read_timeout(&l, 4) & REASSN, REASSN);
}

static void test_good_reply_resets_both_counters(void **state)
{
    link_fsm_t l = s_link(LINK_SOCKET, 3, 3);
    link_opened(&l, 0);
    link_read_timeout(&l, 1);
    link_read_timeout(&l, 2);
    link_write_timeout(&l, 3);
    link_write_timeout(&l, 4);
    assert_int_equal(link_good_reply(&l, 5), 0); //  an exception reply is a good reply too
    assert_int_equal(l.consecutive_read_timeouts, 0);
    assert_int_equal(l.consecutive_write_timeouts, 0);
    assert_int_equal(l.last_timeout_ms, 4); //  the last timeout is still reported
    //  Two more of each are again below the limit.
    link_read_timeout(&l, 6);
    link_read_timeout(&l, 7);
    link_write_timeout(&l, 8);
    assert_int_equal(link_write_timeout(&l, 9), 0);
    assert_int_equal(l.state, LINK_HEALTHY);
}

static void test_channel_reassign_works_once_and_recovers(void **state)
{
    link_fsm_t l = s_link(LINK_CHANNEL, 3, 3);
    assert_string_equal(link_state_name(l.state), "down");
    assert_int_equal(link_opened(&l, 0), CHANGED);
    assert_string_equal(link_state_name(l.state), "healthy");
    link_read_timeout(&l, 1000);
    link_read_timeout(&l, 2000);
    assert_int_equal(link_read_timeout(&l, 3000), RAISE | BAD | CLOSE | REASSN | CHANGED);
    assert_string_equal(link_state_name(l.state), "reassigning");
    //  The caller closed the port: its own close report changes nothing.
    assert_int_equal(link_closed(&l, 3000), 0);
    //  The port reopens at once: the channel is used again, still alarmed.
    assert_int_equal(link_opened(&l, 3001), CHANGED);
    assert_int_equal(l.state, LINK_REASSIGNED);
    assert_string_equal(link_state_name(l.state), "reassigning");
    assert_true(link_is_open(&l));
    assert_true(l.alarm_active);
    assert_int_equal(l.consecutive_read_timeouts, 0);
    //  Intermittent faults on trial are still tolerated.
    assert_int_equal(link_read_timeout(&l, 3500), 0);
    assert_int_equal(link_good_reply(&l, 3600), CLEAR | CHANGED);
    assert_int_equal(l.state, LINK_HEALTHY);
    assert_false(l.alarm_active);
    assert_int_equal(l.consecutive_read_timeouts, 0);
    assert_int_equal(l.failures, 1);
    assert_int_equal(l.since_ms, 3600);
    //  A later, separate episode gets its own re-assign.
    link_write_timeout(&l, 9000);
    link_write_timeout(&l, 9001);
    assert_int_equal(link_write_timeout(&l, 9002), RAISE | BAD | CLOSE | REASSN | CHANGED);
    assert_int_equal(l.failures, 2);
}

static void test_channel_reassign_then_silent_stays_failed_and_recovers(void **state)
{
    link_fsm_t l = s_link(LINK_CHANNEL, 2, 2);
    link_opened(&l, 0);
    link_read_timeout(&l, 100);
    unsigned all = link_read_timeout(&l, 200);
    assert_int_equal(all, RAISE | BAD | CLOSE | REASSN | CHANGED);
    link_opened(&l, 201);
    //  The gateway stays silent after the re-assign: the second failure in a
    //  row does not re-assign again.
    assert_int_equal(link_read_timeout(&l, 400), 0);
    unsigned a = link_read_timeout(&l, 600);
    assert_int_equal(a, CLOSE | RETRY | CHANGED);
    assert_int_equal(l.state, LINK_FAILED);
    all |= a;
    //  Retried with backoff while silent: connects fail, or connect and stay silent.
    int64_t now = 1000;
    for (int round = 0; round < 20; round++) {
        if (round % 2 == 0) {
            a = link_open_failed(&l, now);
            assert_int_equal(a, RETRY);
        } else {
            a = link_opened(&l, now);
            assert_int_equal(l.state, LINK_RECOVERING);
            assert_string_equal(link_state_name(l.state), "failed");
            a |= link_read_timeout(&l, now + 250);
            a |= link_read_timeout(&l, now + 500);
            assert_true(a & RETRY);
        }
        all |= a;
        assert_int_equal(a & (REASSN | RAISE | CLEAR | BAD), 0);
        assert_int_equal(l.state, LINK_FAILED);
        assert_true(l.alarm_active);
        now += 1000 << (round < 5 ? round : 5);
    }
    assert_int_equal(l.failures, 1); //  one episode
    //  The fault clears: it reconnects and answers, and the alarm clears.
    assert_int_equal(link_opened(&l, now), CHANGED);
    assert_int_equal(link_good_reply(&l, now + 50), CLEAR | CHANGED);
    assert_int_equal(l.state, LINK_HEALTHY);
    assert_false(l.alarm_active);
    assert_int_equal(all & REASSN, REASSN);
}

static void test_channel_reassign_fails_to_open(void **state)
{
    link_fsm_t l = s_link(LINK_CHANNEL, 1, 1);
    link_opened(&l, 0);
    link_read_timeout(&l, 10);
    assert_int_equal(link_open_failed(&l, 11), RETRY | CHANGED);
    assert_int_equal(l.state, LINK_FAILED);
    //  A peer close while trying changes nothing either.
    assert_int_equal(link_closed(&l, 12), 0);
    assert_int_equal(link_opened(&l, 5000), CHANGED);
    //  It drops the connection before answering: back to failed, no new alarm.
    assert_int_equal(link_closed(&l, 5100), RETRY | CHANGED);
    assert_int_equal(l.state, LINK_FAILED);
    assert_int_equal(link_opened(&l, 9000), CHANGED);
    assert_int_equal(link_good_reply(&l, 9001), CLEAR | CHANGED);
}

static void test_socket_recovery_clears_alarm(void **state)
{
    link_fsm_t l = s_link(LINK_SOCKET, 3, 3);
    link_opened(&l, 0);
    for (int i = 0; i < 3; i++)
        link_read_timeout(&l, 250 * (i + 1));
    assert_int_equal(l.state, LINK_FAILED);
    assert_true(l.alarm_active);
    //  The connect window reconnects it; TCP alone does not clear the alarm.
    assert_int_equal(link_opened(&l, 2000), CHANGED);
    assert_int_equal(l.state, LINK_RECOVERING);
    assert_true(l.alarm_active);
    assert_int_equal(l.consecutive_read_timeouts, 0);
    assert_int_equal(link_good_reply(&l, 2100), CLEAR | CHANGED);
    assert_int_equal(l.state, LINK_HEALTHY);
    assert_false(l.alarm_active);
    assert_int_equal(l.failures, 1);
    assert_int_equal(l.since_ms, 2100);
}

static void test_socket_never_reassigns(void **state)
{
    link_fsm_t l = s_link(LINK_SOCKET, 1, 1);
    unsigned all = 0;
    for (int64_t t = 0; t < 100; t += 4) {
        all |= link_opened(&l, t);
        all |= link_write_timeout(&l, t + 1);
        all |= link_open_failed(&l, t + 2);
    }
    assert_int_equal(all & REASSN, 0);
    assert_int_equal(l.failures, 1);
}

static void test_limits_of_one(void **state)
{
    link_fsm_t l = s_link(LINK_SOCKET, 1, 1);
    link_opened(&l, 0);
    assert_int_equal(link_read_timeout(&l, 1), RAISE | BAD | CLOSE | RETRY | CHANGED);
    link_opened(&l, 2);
    assert_int_equal(link_write_timeout(&l, 3), CLOSE | RETRY | CHANGED);
    link_opened(&l, 4);
    assert_int_equal(link_good_reply(&l, 5), CLEAR | CHANGED);
    l = s_link(LINK_CHANNEL, 1, 1);
    link_opened(&l, 0);
    assert_int_equal(link_write_timeout(&l, 1), RAISE | BAD | CLOSE | REASSN | CHANGED);
    link_opened(&l, 2);
    assert_int_equal(link_read_timeout(&l, 3), CLOSE | RETRY | CHANGED);
}

static void test_counters_survive_plain_reconnect(void **state)
{
    //  A peer that drops every connection before answering still reaches the limit.
    link_fsm_t l = s_link(LINK_SOCKET, 3, 3);
    link_opened(&l, 0);
    link_read_timeout(&l, 1);
    link_read_timeout(&l, 2);
    assert_int_equal(link_closed(&l, 3), BAD | RETRY | CHANGED);
    assert_int_equal(l.state, LINK_DOWN);
    assert_false(l.alarm_active); //  a close is not an I/O timeout
    assert_int_equal(l.consecutive_read_timeouts, 2);
    link_opened(&l, 10);
    assert_int_equal(link_read_timeout(&l, 11), RAISE | BAD | CLOSE | RETRY | CHANGED);
}

static void test_init_rejects_bad_config(void **state)
{
    link_fsm_t l;
    memset(&l, 0x5a, sizeof l);
    link_config_t c = {.kind = LINK_SOCKET, .max_read_timeouts = 0, .max_write_timeouts = 3};
    assert_int_equal(link_fsm_init(&l, &c, 0), -1);
    c.max_read_timeouts = 3;
    c.max_write_timeouts = 0;
    assert_int_equal(link_fsm_init(&l, &c, 0), -1);
    c.max_write_timeouts = 3;
    c.kind = (link_kind_t)7;
    assert_int_equal(link_fsm_init(&l, &c, 0), -1);
    assert_int_equal(link_fsm_init(&l, NULL, 0), -1);
    assert_int_equal(link_fsm_init(NULL, &c, 0), -1);
    assert_int_equal(l.consecutive_read_timeouts, 0x5a5a5a5a); //  untouched
    c.kind = LINK_CHANNEL;
    assert_int_equal(link_fsm_init(&l, &c, 77), 0);
    assert_int_equal(l.state, LINK_DOWN);
    assert_int_equal(l.since_ms, 77);
    assert_int_equal(l.last_timeout_ms, -1);
    assert_int_equal(l.failures, 0);
    assert_false(l.alarm_active);
    assert_false(link_is_open(&l));
}

static void test_names(void **state)
{
    const char *redis[] = {"down", "healthy", "reassigning", "reassigning", "failed", "failed"};
    const char *detail[] = {"down", "healthy", "reassigning", "reassigned", "failed", "recovering"};
    for (int s = 0; s < LINK_STATE_COUNT; s++) {
        assert_string_equal(link_state_name((link_state_t)s), redis[s]);
        assert_string_equal(link_state_detail((link_state_t)s), detail[s]);
    }
    assert_string_equal(link_state_name(LINK_STATE_COUNT), "?");
    assert_string_equal(link_state_detail((link_state_t)-1), "?");
    assert_string_equal(link_event_name(LINK_EV_GOOD_REPLY), "good-reply");
    assert_string_equal(link_event_name(LINK_EV_WRITE_TIMEOUT), "write-timeout");
    assert_string_equal(link_event_name(LINK_EV_CLOSED), "closed");
    assert_string_equal(link_event_name(LINK_EV_COUNT), "?");
    assert_string_equal(link_action_name(RAISE), "raise-alarm");
    assert_string_equal(link_action_name(REASSN), "reassign");
    assert_string_equal(link_action_name(CHANGED), "state-changed");
    assert_string_equal(link_action_name(RAISE | BAD), "?");
    assert_string_equal(link_action_name(0), "?");
    assert_string_equal(link_action_name(1u << 7), "?");
    char buf[64];
    assert_int_equal(link_actions_text(0, buf, sizeof buf), 4);
    assert_string_equal(buf, "none");
    size_t n = link_actions_text(RAISE | CLOSE | CHANGED, buf, sizeof buf);
    assert_string_equal(buf, "raise-alarm,close,state-changed");
    assert_int_equal(n, strlen(buf));
    //  Truncated like snprintf, and the full length is still reported.
    char small[8];
    assert_int_equal(link_actions_text(RAISE | CLOSE, small, sizeof small),
                     strlen("raise-alarm,close"));
    assert_string_equal(small, "raise-a");
    assert_int_equal(link_actions_text(RAISE | CLOSE, NULL, 0), strlen("raise-alarm,close"));
    assert_int_equal(link_actions_text(LINK_ACT_ALL, buf, sizeof buf),
                     strlen("raise-alarm,mark-bad,close,reassign,retry-later,clear-alarm,"
                            "state-changed"));
}

//  A long random run: after every event the invariants hold, alarms are
//  raised and cleared in turn, and a channel re-assigns at most once per episode.
static void test_random_events_keep_invariants(void **state)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < 2; k++) {
        link_fsm_t l = s_link((link_kind_t)k, 1 + (uint32_t)k * 2, 2);
        int reassigns_this_episode = 0;
        int raised = 0, cleared = 0;
        for (int64_t t = 0; t < 200000; t++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            link_event_t ev = (link_event_t)(rng % LINK_EV_COUNT);
            link_fsm_t before = l;
            unsigned a = link_event(&l, ev, t);
            assert_int_equal(a & ~LINK_ACT_ALL, 0);
            assert_int_equal(l.alarm_active, s_alarm_state(l.state));
            assert_true(l.consecutive_read_timeouts <= l.cfg.max_read_timeouts);
            assert_true(l.consecutive_write_timeouts <= l.cfg.max_write_timeouts);
            assert_int_equal((a & CHANGED) != 0, before.state != l.state);
            if (k == LINK_SOCKET)
                assert_true(l.state != LINK_REASSIGNING && l.state != LINK_REASSIGNED);
            //  CLOSE always comes with a way back: now or later.
            if (a & CLOSE)
                assert_int_equal(__builtin_popcount(a & (REASSN | RETRY)), 1);
            if (a & RAISE) {
                assert_int_equal(raised, cleared);
                raised++;
                reassigns_this_episode = 0;
            }
            if (a & CLEAR) {
                cleared++;
                assert_int_equal(raised, cleared);
            }
            if (a & REASSN)
                assert_int_equal(++reassigns_this_episode, 1);
        }
        assert_true(raised > 100);
        assert_true(raised - cleared <= 1);
        assert_int_equal(l.failures, (uint64_t)raised);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_every_state_and_event),
        cmocka_unit_test(test_every_transition_channel),
        cmocka_unit_test(test_every_transition_socket),
        cmocka_unit_test(test_timeouts_below_limit_only_count),
        cmocka_unit_test(test_intermittent_timeouts_never_fail),
        cmocka_unit_test(test_exactly_max_read_timeouts_fail),
        cmocka_unit_test(test_write_timeouts_have_their_own_counter_and_limit),
        cmocka_unit_test(test_good_reply_resets_both_counters),
        cmocka_unit_test(test_channel_reassign_works_once_and_recovers),
        cmocka_unit_test(test_channel_reassign_then_silent_stays_failed_and_recovers),
        cmocka_unit_test(test_channel_reassign_fails_to_open),
        cmocka_unit_test(test_socket_recovery_clears_alarm),
        cmocka_unit_test(test_socket_never_reassigns),
        cmocka_unit_test(test_limits_of_one),
        cmocka_unit_test(test_counters_survive_plain_reconnect),
        cmocka_unit_test(test_init_rejects_bad_config),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_random_events_keep_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
