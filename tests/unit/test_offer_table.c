/*  Unit tests of offer_table: registration, unit states, liveness, and the
    best-offer changes the resolver sends to brokers. No sockets, no sleeps:
    `now` is passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "best_offer.h"
#include "offer_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEAD_MS 750 //  1.5 x a ping time of 500 ms

static const char *s_devs[] = {"plc1", "plc2", "plc3"};
static const char *s_ios[] = {"io1", "io2", "io3"};

static offer_table_t *s_table(void)
{
    offer_table_t *t = offer_table_new(s_devs, 3, s_ios, 3, DEAD_MS);
    assert_non_null(t);
    return t;
}

//  Register `io` with `n` offers given as device, priority, online triples.
static void s_register(offer_table_t *t, const char *io, uint64_t inc, int64_t now, size_t n, ...)
{
    ot_offer_t offers[16];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        offers[i].device = va_arg(ap, const char *);
        offers[i].priority = va_arg(ap, int);
        offers[i].online = va_arg(ap, int) != 0;
    }
    va_end(ap);
    char pub[64], ctl[64];
    snprintf(pub, sizeof pub, "tcp://%s:1", io);
    snprintf(ctl, sizeof ctl, "tcp://%s:2", io);
    size_t ignored = 99;
    assert_int_equal(offer_table_register(t, io, inc, pub, ctl, offers, n, now, &ignored, NULL),
                     OT_OK);
    assert_int_equal(ignored, 0);
}

static ot_result_t s_unit(offer_table_t *t, const char *io, uint64_t inc, int64_t now,
                          const char *dev, bool online)
{
    ot_offer_t o = {dev, 0, online};
    return offer_table_unit_state(t, io, inc, &o, 1, now, NULL, NULL);
}

//  The change for `dev` among the last changes, NULL if it did not move.
static const ot_best_t *s_change(const ot_best_t *c, size_t n, const char *dev)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].device, dev) == 0)
            return &c[i];
    return NULL;
}

static const char *s_best_io(offer_table_t *t, const char *dev)
{
    ot_best_t b;
    assert_true(offer_table_best(t, (size_t)offer_table_device_index(t, dev), &b));
    return b.ioserver;
}

static void test_empty_table(void **state)
{
    offer_table_t *t = s_table();
    const ot_best_t *c = NULL;
    assert_int_equal(offer_table_changes(t, &c), 0);
    ot_best_t b;
    assert_true(offer_table_best(t, 0, &b));
    assert_string_equal(b.device, "plc1");
    assert_null(b.ioserver);
    assert_null(b.publish);
    assert_null(b.control);
    assert_string_equal(b.reason, "no offer registered");
    assert_false(offer_table_best(t, 3, &b));
    ot_stats_t st;
    offer_table_stats(t, &st);
    assert_int_equal(st.devices, 3);
    assert_int_equal(st.devices_without_offer, 3);
    assert_int_equal(st.ioservers, 3);
    assert_int_equal(st.ioservers_alive, 0);
    assert_int_equal(st.ioservers_known, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(offer_table_io_state(t, i), OT_IO_UNREGISTERED);
    assert_string_equal(ot_io_state_name(OT_IO_UNREGISTERED), "unregistered");
    assert_string_equal(ot_io_state_name(OT_IO_ALIVE), "alive");
    assert_string_equal(ot_io_state_name(OT_IO_DEAD), "dead");
    assert_int_equal(offer_table_io_state(t, 7), OT_IO_UNREGISTERED);
    assert_null(offer_table_io_name(t, 7));
    assert_string_equal(offer_table_io_name(t, 1), "io2");
    assert_int_equal(offer_table_io_index(t, "io3"), 2);
    assert_int_equal(offer_table_io_index(t, "io9"), -1);
    assert_int_equal(offer_table_device_index(t, "plc2"), 1);
    assert_int_equal(offer_table_device_index(t, "nope"), -1);
    assert_int_equal(offer_table_device_index(t, NULL), -1);
    offer_table_destroy(&t);
    assert_null(t);
    offer_table_destroy(&t);
    offer_table_destroy(NULL);
}

static void test_registration_reports_its_devices(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 7, 0, 2, "plc1", 1, 1, "plc2", 1, 0);
    const ot_best_t *c;
    size_t n = offer_table_changes(t, &c);
    //  plc1 is online at io1; plc2 is offered but offline: it stays without offer.
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc1");
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].publish, "tcp://io1:1");
    assert_string_equal(c[0].control, "tcp://io1:2");
    assert_string_equal(c[0].reason, "io1 registered");
    assert_false(c[0].previous_usable);
    //  Reported once.
    assert_int_equal(offer_table_changes(t, &c), 0);
    ot_best_t b;
    offer_table_best(t, 0, &b);
    assert_string_equal(b.ioserver, "io1");
    assert_string_equal(b.reason, "io1 registered");
    offer_table_best(t, 1, &b);
    assert_null(b.ioserver);
    ot_stats_t st;
    offer_table_stats(t, &st);
    assert_int_equal(st.ioservers_alive, 1);
    assert_int_equal(st.ioservers_known, 1);
    assert_int_equal(st.devices_without_offer, 2);
    assert_int_equal(offer_table_io_state(t, 0), OT_IO_ALIVE);
    offer_table_destroy(&t);
}

static void test_failover_when_primary_stops_heartbeating(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 1, "plc1", 1, 1);
    s_register(t, "io2", 2, 0, 1, "plc1", 2, 1);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].ioserver, "io1");
    //  Both heartbeat every 500 ms for a while: nothing dies.
    int64_t now = 0;
    for (; now <= 5000; now += 500) {
        assert_int_equal(offer_table_heartbeat(t, "io1", 1, now), OT_OK);
        assert_int_equal(offer_table_heartbeat(t, "io2", 2, now), OT_OK);
        assert_int_equal(offer_table_expire(t, now + 499), 0);
        assert_int_equal(offer_table_changes(t, &c), 0);
    }
    //  io1 stops at 5000; io2 goes on. Exactly dead_after later it still counts.
    assert_int_equal(offer_table_heartbeat(t, "io2", 2, 5500), OT_OK);
    assert_int_equal(offer_table_expire(t, 5000 + DEAD_MS), 0);
    assert_int_equal(offer_table_changes(t, &c), 0);
    assert_int_equal(offer_table_expire(t, 5000 + DEAD_MS + 1), 1);
    assert_int_equal(offer_table_io_state(t, 0), OT_IO_DEAD);
    size_t n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc1");
    assert_string_equal(c[0].ioserver, "io2");
    assert_string_equal(c[0].publish, "tcp://io2:1");
    assert_string_equal(c[0].reason, "io1 stopped heartbeating");
    assert_false(c[0].previous_usable); //  io1 is gone: a quality dip is real
    //  Dying once is reported once.
    assert_int_equal(offer_table_expire(t, 9000), 1); //  io2 too, now
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_null(c[0].ioserver);
    assert_null(c[0].publish);
    assert_string_equal(c[0].reason, "io2 stopped heartbeating");
    assert_int_equal(offer_table_expire(t, 20000), 0);
    assert_int_equal(offer_table_changes(t, &c), 0);
    ot_stats_t st;
    offer_table_stats(t, &st);
    assert_int_equal(st.ioservers_alive, 0);
    assert_int_equal(st.ioservers_known, 2);
    offer_table_destroy(&t);
}

static void test_dead_server_must_register_again(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 1, "plc1", 1, 1);
    offer_table_changes(t, NULL);
    assert_int_equal(offer_table_expire(t, 1000), 1);
    offer_table_changes(t, NULL);
    //  Its old incarnation comes back (a network partition healed): its
    //  unit states may be stale, so it is asked to register.
    assert_int_equal(offer_table_heartbeat(t, "io1", 1, 1100), OT_REREGISTER);
    assert_int_equal(s_unit(t, "io1", 1, 1100, "plc1", true), OT_REREGISTER);
    assert_int_equal(offer_table_io_state(t, 0), OT_IO_DEAD);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 0);
    assert_null(s_best_io(t, "plc1"));
    //  Registering (same incarnation) brings it back.
    s_register(t, "io1", 1, 1200, 1, "plc1", 1, 1);
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].reason, "io1 registered");
    assert_int_equal(offer_table_heartbeat(t, "io1", 1, 1300), OT_OK);
    offer_table_destroy(&t);
}

static void test_failback_with_previous_usable(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 2, "plc1", 1, 1, "plc2", 1, 1);
    s_register(t, "io2", 2, 0, 2, "plc1", 2, 1, "plc2", 2, 1);
    offer_table_changes(t, NULL);
    offer_table_heartbeat(t, "io2", 2, 800);
    offer_table_expire(t, 800); //  io1 dead
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 2);
    assert_string_equal(s_best_io(t, "plc1"), "io2");
    //  io1 restarts (new incarnation) with plc1 online, plc2 not yet.
    s_register(t, "io1", 11, 900, 2, "plc1", 1, 1, "plc2", 1, 0);
    size_t n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc1");
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].reason, "io1 registered");
    assert_true(c[0].previous_usable); //  io2 still serves plc1: no dip
    //  plc2 comes online at io1: fail-back, io2 still usable.
    assert_int_equal(s_unit(t, "io1", 11, 950, "plc2", true), OT_OK);
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc2");
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].reason, "plc2 online at io1");
    assert_true(c[0].previous_usable);
    //  A fail-back from a standby that is itself offline is not "usable".
    assert_int_equal(s_unit(t, "io1", 11, 960, "plc2", false), OT_OK);
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].ioserver, "io2");
    assert_false(c[0].previous_usable);
    assert_int_equal(s_unit(t, "io2", 2, 970, "plc2", false), OT_OK);
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_null(c[0].ioserver);
    assert_string_equal(c[0].reason, "plc2 offline at io2");
    assert_false(c[0].previous_usable);
    assert_int_equal(s_unit(t, "io1", 11, 980, "plc2", true), OT_OK);
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].ioserver, "io1");
    assert_false(c[0].previous_usable); //  there was none before
    offer_table_destroy(&t);
}

static void test_unit_offline_moves_only_that_device(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 3, "plc1", 1, 1, "plc2", 1, 1, "plc3", 1, 1);
    s_register(t, "io2", 2, 0, 3, "plc1", 2, 1, "plc2", 2, 1, "plc3", 2, 1);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 3);
    assert_int_equal(s_unit(t, "io1", 1, 10, "plc3", false), OT_OK);
    size_t n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc3");
    assert_string_equal(c[0].ioserver, "io2");
    assert_string_equal(c[0].reason, "plc3 offline at io1");
    assert_false(c[0].previous_usable);
    assert_string_equal(s_best_io(t, "plc1"), "io1");
    assert_string_equal(s_best_io(t, "plc2"), "io1");
    //  The same state again changes nothing.
    assert_int_equal(s_unit(t, "io1", 1, 20, "plc3", false), OT_OK);
    assert_int_equal(offer_table_changes(t, &c), 0);
    //  Offline at the standby: no move (the best is elsewhere).
    assert_int_equal(s_unit(t, "io2", 2, 30, "plc1", false), OT_OK);
    assert_int_equal(offer_table_changes(t, &c), 0);
    //  Back online at io1.
    assert_int_equal(s_unit(t, "io1", 1, 40, "plc3", true), OT_OK);
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc3");
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].reason, "plc3 online at io1");
    assert_true(c[0].previous_usable);
    //  Flapping between two reports is no change.
    s_unit(t, "io1", 1, 50, "plc2", false);
    s_unit(t, "io1", 1, 51, "plc2", true);
    assert_int_equal(offer_table_changes(t, &c), 0);
    offer_table_destroy(&t);
}

static void test_ties_are_deterministic(void **state)
{
    //  Same priority at io2 and io3: io2 wins by name whatever the order of
    //  registration.
    for (int order = 0; order < 2; order++) {
        offer_table_t *t = s_table();
        const char *first = order ? "io3" : "io2", *second = order ? "io2" : "io3";
        s_register(t, first, 1, 0, 1, "plc1", 1, 1);
        s_register(t, second, 2, 0, 1, "plc1", 1, 1);
        const ot_best_t *c;
        assert_int_equal(offer_table_changes(t, &c), 1);
        assert_string_equal(c[0].ioserver, "io2");
        //  io2 offline: io3; io2 back: io2 again, io3 still usable.
        s_unit(t, "io2", order ? 2 : 1, 5, "plc1", false);
        assert_int_equal(offer_table_changes(t, &c), 1);
        assert_string_equal(c[0].ioserver, "io3");
        s_unit(t, "io2", order ? 2 : 1, 6, "plc1", true);
        assert_int_equal(offer_table_changes(t, &c), 1);
        assert_string_equal(c[0].ioserver, "io2");
        assert_true(c[0].previous_usable);
        offer_table_destroy(&t);
    }
    //  A better priority beats a better name.
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 1, "plc1", 2, 1);
    s_register(t, "io3", 3, 0, 1, "plc1", 1, 1);
    offer_table_changes(t, NULL);
    assert_string_equal(s_best_io(t, "plc1"), "io3");
    offer_table_destroy(&t);
}

static void test_reregister_new_incarnation_replaces_offers(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 2, "plc1", 1, 1, "plc2", 1, 1);
    s_register(t, "io2", 2, 0, 1, "plc1", 2, 1);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 2);
    //  io1 restarts and now serves only plc2 (the site changed).
    s_register(t, "io1", 100, 10, 1, "plc2", 1, 1);
    size_t n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc1");
    assert_string_equal(c[0].ioserver, "io2");
    assert_string_equal(c[0].reason, "io1 registered");
    assert_false(c[0].previous_usable); //  io1 no longer offers plc1
    assert_string_equal(s_best_io(t, "plc2"), "io1");
    //  The old incarnation is no longer heard.
    assert_int_equal(offer_table_heartbeat(t, "io1", 1, 20), OT_REREGISTER);
    assert_int_equal(s_unit(t, "io1", 1, 20, "plc2", false), OT_REREGISTER);
    assert_string_equal(s_best_io(t, "plc2"), "io1");
    assert_int_equal(offer_table_heartbeat(t, "io1", 100, 20), OT_OK);
    //  ... and its heartbeats do not keep the new one alive.
    for (int64_t now = 100; now < 2000; now += 100)
        offer_table_heartbeat(t, "io1", 1, now);
    offer_table_heartbeat(t, "io2", 2, 1900);
    assert_int_equal(offer_table_expire(t, 2000), 1);
    assert_int_equal(offer_table_io_state(t, 0), OT_IO_DEAD);
    n = offer_table_changes(t, &c);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].device, "plc2");
    assert_null(c[0].ioserver);
    offer_table_destroy(&t);
}

static void test_new_endpoints_are_a_change(void **state)
{
    offer_table_t *t = s_table();
    ot_offer_t o = {"plc1", 1, true};
    offer_table_register(t, "io1", 1, "tcp://a:1", "tcp://a:2", &o, 1, 0, NULL, NULL);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 1);
    //  Same endpoints again (a duplicate REGISTER): nothing to report.
    offer_table_register(t, "io1", 2, "tcp://a:1", "tcp://a:2", &o, 1, 5, NULL, NULL);
    assert_int_equal(offer_table_changes(t, &c), 0);
    //  Restarted on other ports: same server, new endpoints.
    offer_table_register(t, "io1", 3, "tcp://b:1", "tcp://b:2", &o, 1, 10, NULL, NULL);
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].publish, "tcp://b:1");
    assert_string_equal(c[0].control, "tcp://b:2");
    assert_false(c[0].previous_usable);
    //  Endpoints may be absent.
    offer_table_register(t, "io1", 4, NULL, NULL, &o, 1, 20, NULL, NULL);
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_null(c[0].publish);
    assert_null(c[0].control);
    offer_table_destroy(&t);
}

static void test_unknown_devices_ignored_and_counted(void **state)
{
    offer_table_t *t = s_table();
    ot_offer_t o[] = {
        {"plc1", 1, true}, {"ghost", 1, true}, {"plc2", 0, true}, {"phantom", 2, false}};
    size_t ignored = 0;
    const char *first = NULL;
    assert_int_equal(offer_table_register(t, "io1", 1, "p", "c", o, 4, 0, &ignored, &first), OT_OK);
    assert_int_equal(ignored, 3); //  two unknown devices, one without priority
    assert_string_equal(first, "ghost");
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].device, "plc1");
    ot_stats_t st;
    offer_table_stats(t, &st);
    assert_int_equal(st.unknown_devices, 3);
    //  Unit states: an unknown device, and a device io1 never offered
    //  without a priority, are ignored too; with a priority it is added.
    ot_offer_t u[] = {{"ghost", 0, false}, {"plc3", 0, true}, {"plc2", 3, true}};
    assert_int_equal(offer_table_unit_state(t, "io1", 1, u, 3, 5, &ignored, &first), OT_OK);
    assert_int_equal(ignored, 2);
    assert_string_equal(first, "ghost");
    offer_table_stats(t, &st);
    assert_int_equal(st.unknown_devices, 5);
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].device, "plc2");
    assert_string_equal(c[0].reason, "plc2 online at io1");
    assert_null(s_best_io(t, "plc3"));
    //  An I/O server that is not in the table.
    assert_int_equal(offer_table_register(t, "io9", 1, "p", "c", o, 1, 0, &ignored, &first),
                     OT_UNKNOWN_IO);
    assert_int_equal(ignored, 0);
    assert_null(first);
    assert_int_equal(offer_table_heartbeat(t, "io9", 1, 0), OT_UNKNOWN_IO);
    assert_int_equal(s_unit(t, "io9", 1, 0, "plc1", true), OT_UNKNOWN_IO);
    assert_int_equal(offer_table_heartbeat(t, NULL, 1, 0), OT_UNKNOWN_IO);
    assert_int_equal(offer_table_changes(t, &c), 0);
    offer_table_destroy(&t);
}

static void test_unregistered_and_unknown_incarnation(void **state)
{
    offer_table_t *t = s_table();
    //  Heard of, never registered.
    assert_int_equal(offer_table_heartbeat(t, "io2", 5, 0), OT_REREGISTER);
    assert_int_equal(s_unit(t, "io2", 5, 0, "plc1", true), OT_REREGISTER);
    assert_int_equal(offer_table_io_state(t, 1), OT_IO_UNREGISTERED);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 0);
    s_register(t, "io2", 5, 0, 1, "plc1", 1, 0);
    assert_int_equal(offer_table_heartbeat(t, "io2", 6, 0), OT_REREGISTER);
    assert_int_equal(offer_table_heartbeat(t, "io2", 5, 0), OT_OK);
    //  An unregistered server never expires.
    assert_int_equal(offer_table_expire(t, 700), 0);
    assert_int_equal(offer_table_io_state(t, 0), OT_IO_UNREGISTERED);
    offer_table_destroy(&t);
}

static void test_duplicate_and_priority_changes(void **state)
{
    offer_table_t *t = s_table();
    //  plc1 listed twice: the last offer counts.
    s_register(t, "io1", 1, 0, 2, "plc1", 1, 0, "plc1", 3, 1);
    s_register(t, "io2", 2, 0, 1, "plc1", 2, 1);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].ioserver, "io2");
    //  io1 raises its priority for plc1 through a unit state.
    ot_offer_t u = {"plc1", 1, true};
    assert_int_equal(offer_table_unit_state(t, "io1", 1, &u, 1, 5, NULL, NULL), OT_OK);
    assert_int_equal(offer_table_changes(t, &c), 1);
    assert_string_equal(c[0].ioserver, "io1");
    assert_string_equal(c[0].reason, "plc1 priority changed at io1");
    assert_true(c[0].previous_usable);
    offer_table_destroy(&t);
}

static void test_reason_of_the_full_table_is_the_last_change(void **state)
{
    offer_table_t *t = s_table();
    s_register(t, "io1", 1, 0, 1, "plc1", 1, 1);
    offer_table_changes(t, NULL);
    //  A standby registering does not move plc1: its reason stays.
    s_register(t, "io2", 2, 0, 1, "plc1", 2, 1);
    offer_table_changes(t, NULL);
    ot_best_t b;
    offer_table_best(t, 0, &b);
    assert_string_equal(b.ioserver, "io1");
    assert_string_equal(b.reason, "io1 registered");
    assert_false(b.previous_usable);
    s_unit(t, "io1", 1, 5, "plc1", false);
    offer_table_changes(t, NULL);
    offer_table_best(t, 0, &b);
    assert_string_equal(b.ioserver, "io2");
    assert_string_equal(b.publish, "tcp://io2:1");
    assert_string_equal(b.reason, "plc1 offline at io1");
    //  Marks not yet reported do not show in the table.
    s_unit(t, "io1", 1, 6, "plc1", true);
    offer_table_best(t, 0, &b);
    assert_string_equal(b.ioserver, "io2");
    offer_table_destroy(&t);
}

//  A model of the table: per device and server, offered/priority/online,
//  per server alive. Random operations on both; after each report, every
//  device's best must equal best_offer() over the model, and the reported
//  changes must be exactly the devices whose best moved.
#define MD 200
#define MI 5
static void test_random_operations_match_a_model(void **state)
{
    char dnames[MD][16], inames[MI][16];
    const char *dptr[MD], *iptr[MI];
    for (int d = 0; d < MD; d++) {
        snprintf(dnames[d], sizeof dnames[d], "dev%03d", (d * 37) % MD);
        dptr[d] = dnames[d];
    }
    for (int i = 0; i < MI; i++) {
        snprintf(inames[i], sizeof inames[i], "io%d", MI - i);
        iptr[i] = inames[i];
    }
    offer_table_t *t = offer_table_new(dptr, MD, iptr, MI, DEAD_MS);
    assert_non_null(t);
    typedef struct {
        bool offered;
        int priority;
        bool online;
    } cell_t;
    cell_t m[MD][MI];
    memset(m, 0, sizeof m);
    bool alive[MI] = {false};
    uint64_t inc[MI] = {0};
    int64_t seen[MI] = {0};
    const char *prev[MD];
    for (int d = 0; d < MD; d++)
        prev[d] = NULL;
    unsigned seed = 12345;
    int64_t now = 0;
    size_t total_moved = 0, total_pu = 0;
    for (int step = 0; step < 3000; step++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 8) % 100;
        int io = (int)((seed >> 20) % MI);
        now += 50;
        if (r < 10) { //  register with random offers
            ot_offer_t offers[MD];
            size_t n = 0;
            for (int d = 0; d < MD; d++)
                m[d][io].offered = false;
            for (int d = 0; d < MD; d++) {
                seed = seed * 1103515245u + 12345u;
                if ((seed >> 16) % 3 == 0)
                    continue;
                int pr = 1 + (int)((seed >> 10) % 3);
                bool on = (seed >> 12) % 4 != 0;
                offers[n++] = (ot_offer_t){dnames[d], pr, on};
                m[d][io] = (cell_t){true, pr, on};
            }
            inc[io]++;
            assert_int_equal(
                offer_table_register(t, iptr[io], inc[io], "p", "c", offers, n, now, NULL, NULL),
                OT_OK);
            alive[io] = true;
            seen[io] = now;
        } else if (r < 60) { //  unit states
            ot_offer_t offers[8];
            size_t n = 0;
            for (int k = 0; k < 8; k++) {
                seed = seed * 1103515245u + 12345u;
                int d = (int)((seed >> 9) % MD);
                bool on = (seed >> 20) % 2;
                offers[n++] = (ot_offer_t){dnames[d], 0, on};
            }
            ot_result_t rc =
                offer_table_unit_state(t, iptr[io], inc[io], offers, n, now, NULL, NULL);
            assert_int_equal(rc, alive[io] ? OT_OK : OT_REREGISTER);
            if (rc == OT_OK) {
                seen[io] = now;
                for (size_t k = 0; k < n; k++) {
                    int d = (int)offer_table_device_index(t, offers[k].device);
                    //  dnames[d] is the table's device d
                    if (m[d][io].offered)
                        m[d][io].online = offers[k].online;
                }
            }
        } else if (r < 90) { //  heartbeat
            ot_result_t rc = offer_table_heartbeat(t, iptr[io], inc[io], now);
            assert_int_equal(rc, alive[io] ? OT_OK : OT_REREGISTER);
            if (rc == OT_OK)
                seen[io] = now;
        }
        size_t died = offer_table_expire(t, now);
        size_t expect_died = 0;
        for (int i = 0; i < MI; i++)
            if (alive[i] && now - seen[i] > DEAD_MS) {
                alive[i] = false;
                expect_died++;
            }
        assert_int_equal(died, expect_died);
        if (step % 3)
            continue; //  report every third step: changes accumulate
        const ot_best_t *c;
        size_t n = offer_table_changes(t, &c);
        size_t moved = 0;
        for (int d = 0; d < MD; d++) {
            offer_t o[MI];
            int map[MI];
            size_t k = 0;
            for (int i = 0; i < MI; i++)
                if (m[d][i].offered) {
                    o[k] = (offer_t){iptr[i], m[d][i].priority, alive[i], m[d][i].online};
                    map[k++] = i;
                }
            int b = best_offer(o, k);
            const char *want = b < 0 ? NULL : iptr[map[b]];
            const char *got = s_best_io(t, dnames[d]);
            if (want)
                assert_string_equal(got, want);
            else
                assert_null(got);
            const ot_best_t *ch = s_change(c, n, dnames[d]);
            if (want != prev[d]) {
                moved++;
                assert_non_null(ch);
                assert_ptr_equal(ch->ioserver, got);
                //  previous_usable: the old server is alive and online there.
                bool pu = false;
                for (int i = 0; i < MI; i++)
                    if (prev[d] == iptr[i])
                        pu = m[d][i].offered && alive[i] && m[d][i].online;
                assert_int_equal(ch->previous_usable, pu);
                total_pu += pu;
                assert_true(strlen(ch->reason) > 0);
            } else
                assert_null(ch);
            prev[d] = want;
        }
        assert_int_equal(n, moved);
        total_moved += moved;
    }
    //  The run went through many moves, fail-backs among them.
    assert_true(total_moved > 500);
    assert_true(total_pu > 50);
    offer_table_destroy(&t);
}

static void test_many_devices(void **state)
{
    //  20,000 devices, two servers: a registration and a death are reported
    //  for every device, each once.
    enum { N = 20000 };
    char(*names)[16] = malloc(N * sizeof *names);
    const char **ptrs = malloc(N * sizeof *ptrs);
    ot_offer_t *offers = malloc(N * sizeof *offers);
    assert_non_null(names);
    assert_non_null(ptrs);
    assert_non_null(offers);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "d%05d", N - i);
        ptrs[i] = names[i];
        offers[i] = (ot_offer_t){names[i], 1, true};
    }
    offer_table_t *t = offer_table_new(ptrs, N, s_ios, 2, DEAD_MS);
    offer_table_register(t, "io1", 1, "p1", "c1", offers, N, 0, NULL, NULL);
    for (int i = 0; i < N; i++)
        offers[i].priority = 2;
    offer_table_register(t, "io2", 1, "p2", "c2", offers, N, 0, NULL, NULL);
    const ot_best_t *c;
    assert_int_equal(offer_table_changes(t, &c), N);
    offer_table_heartbeat(t, "io2", 1, 700);
    assert_int_equal(offer_table_expire(t, 800), 1);
    size_t n = offer_table_changes(t, &c);
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(c[i].ioserver, "io2");
        assert_string_equal(c[i].reason, "io1 stopped heartbeating");
    }
    ot_stats_t st;
    offer_table_stats(t, &st);
    assert_int_equal(st.devices_without_offer, 0);
    offer_table_destroy(&t);
    free(names);
    free(ptrs);
    free(offers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_registration_reports_its_devices),
        cmocka_unit_test(test_failover_when_primary_stops_heartbeating),
        cmocka_unit_test(test_dead_server_must_register_again),
        cmocka_unit_test(test_failback_with_previous_usable),
        cmocka_unit_test(test_unit_offline_moves_only_that_device),
        cmocka_unit_test(test_ties_are_deterministic),
        cmocka_unit_test(test_reregister_new_incarnation_replaces_offers),
        cmocka_unit_test(test_new_endpoints_are_a_change),
        cmocka_unit_test(test_unknown_devices_ignored_and_counted),
        cmocka_unit_test(test_unregistered_and_unknown_incarnation),
        cmocka_unit_test(test_duplicate_and_priority_changes),
        cmocka_unit_test(test_reason_of_the_full_table_is_the_last_change),
        cmocka_unit_test(test_random_operations_match_a_model),
        cmocka_unit_test(test_many_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
