/*  Unit tests of the broker's state for a slow client
    (services/broker/broker.c): a client that reads nothing fills its queue
    (CLIENT_SNDHWM); from then on the broker keeps one owed entry per tag
    however many changes arrive, counts them as missed, and the first message
    that goes through again says how many, with the current values. A client
    that subscribes and unsubscribes pages while it reads nothing does not
    grow the owed list either.

    The client is a DEALER on an inproc endpoint that the test reads only
    when it says so.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../services/broker/broker.c"

#define NTAGS 50

typedef struct {
    broker_t b;
    site_broker_t cfg;
    zsock_t *dealer;
    s_client_t *c;
    s_device_t dev;
    s_tag_t tags[NTAGS];
} rig_t;

static rig_t *rig_new(void)
{
    static int n = 0;
    rig_t *r = (rig_t *)zmalloc(sizeof *r);
    r->cfg.update_interval_ms = 0;
    r->b.cfg = &r->cfg;
    r->b.clients = zhashx_new();
    r->b.clients_sock = zsock_new(ZMQ_ROUTER);
    zsock_set_router_mandatory(r->b.clients_sock, 1);
    zsock_set_sndhwm(r->b.clients_sock, CLIENT_SNDHWM);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://broker-slow-%d", ++n);
    assert_int_equal(zsock_bind(r->b.clients_sock, "%s", ep), 0);
    r->dealer = zsock_new(ZMQ_DEALER);
    zsock_set_rcvhwm(r->dealer, 1);
    zsock_set_identity(r->dealer, "slow");
    assert_int_equal(zsock_connect(r->dealer, "%s", ep), 0);
    zstr_send(r->dealer, "hello"); //  the ROUTER learns the peer
    zmsg_t *hello = zmsg_recv(r->b.clients_sock);
    assert_non_null(hello);
    zframe_t *rid = zmsg_pop(hello);
    r->c = s_client_get(&r->b, rid, mclock_mono_ms());
    zframe_destroy(&rid);
    zmsg_destroy(&hello);
    r->dev.name = (char *)"d1";
    for (uint32_t i = 0; i < NTAGS; i++) {
        s_tag_t *t = &r->tags[i];
        t->id = i + 1;
        t->dev = &r->dev;
        t->refs = 1000; //  held by others too: a page release only decrements
        t->quality = SCADA__QUALITY__GOOD;
    }
    return r;
}

static void rig_destroy(rig_t **r_p)
{
    rig_t *r = *r_p;
    for (uint32_t i = 0; i < NTAGS; i++)
        free(r->tags[i].subs);
    zhashx_destroy(&r->c->pages);
    free(r->c->owed);
    zframe_destroy(&r->c->rid);
    free(r->c->key);
    free(r->c);
    zhashx_destroy(&r->b.clients);
    zsock_destroy(&r->dealer);
    zsock_destroy(&r->b.clients_sock);
    free(r);
    *r_p = NULL;
}

//  The client subscribes tags[0..n-1] (one page's worth of s_sub_t).
static void rig_subscribe(rig_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s_tag_t *t = &r->tags[i];
        assert_null(s_sub_find(t, r->c));
        if (t->nsubs == t->capsubs) {
            t->capsubs = t->capsubs ? 2 * t->capsubs : 2;
            t->subs = (s_sub_t *)realloc(t->subs, t->capsubs * sizeof *t->subs);
        }
        t->subs[t->nsubs++] = (s_sub_t){.client = r->c, .refs = 1};
    }
}

//  Every tag changes once (value v, timestamp ts), then the tick's flush.
static void rig_change_all(rig_t *r, double v, int64_t ts)
{
    int64_t now = mclock_mono_ms();
    for (size_t i = 0; i < NTAGS; i++)
        s_tag_set(&r->tags[i], true, v + (double)i, SCADA__QUALITY__GOOD, ts, NULL, now);
    r->c->next_flush = 0;
    s_client_flush(r->c, now);
}

//  Read what the client was sent; the last message in *last (caller frees).
static size_t rig_drain(rig_t *r, Scada__BrokerMsg **last, Scada__BrokerMsg **first_missed)
{
    size_t n = 0;
    zsock_set_rcvtimeo(r->dealer, 100);
    zframe_t *f;
    while ((f = zframe_recv(r->dealer)) != NULL) {
        Scada__BrokerMsg *m = scada__broker_msg__unpack(NULL, zframe_size(f), zframe_data(f));
        zframe_destroy(&f);
        assert_non_null(m);
        n++;
        if (first_missed && !*first_missed && m->has_missed) {
            *first_missed = m;
            continue;
        }
        if (last) {
            if (*last)
                scada__broker_msg__free_unpacked(*last, NULL);
            *last = m;
        } else
            scada__broker_msg__free_unpacked(m, NULL);
    }
    return n;
}

static void test_full_queue_holds_one_entry_per_tag_and_counts_missed(void **state)
{
    rig_t *r = rig_new();
    rig_subscribe(r, NTAGS);
    //  Changes until the queue is full, then many more.
    int rounds = 0;
    while (!r->c->full && rounds < 10 * CLIENT_SNDHWM)
        rounds++, rig_change_all(r, 1000 * rounds, 5000 + rounds);
    assert_true(r->c->full);
    assert_true(rounds > CLIENT_SNDHWM / 2);
    uint64_t at_full = r->c->missed;
    assert_int_equal(at_full, NTAGS); //  held back when it filled
    for (int k = 0; k < 300; k++)
        rounds++, rig_change_all(r, 1000 * rounds, 5000 + rounds);
    assert_int_equal(r->c->nowed, NTAGS); //  one entry per tag, however many changes
    assert_true(r->c->capowed <= 2 * NTAGS);
    assert_int_equal(r->c->missed, at_full + 300 * NTAGS);
    assert_true(r->b.updates_missed == r->c->missed);

    //  It reads its queue: the next flush says how many it missed, with the
    //  latest value of every tag.
    Scada__BrokerMsg *last = NULL, *told = NULL;
    size_t got = rig_drain(r, &last, &told);
    assert_true(got >= (size_t)CLIENT_SNDHWM / 2);
    assert_null(told); //  nothing queued before it filled says so
    scada__broker_msg__free_unpacked(last, NULL);
    last = NULL;
    r->c->next_flush = 0;
    s_client_flush(r->c, mclock_mono_ms());
    assert_false(r->c->full);
    assert_int_equal(r->c->missed, 0);
    assert_int_equal(r->c->nowed, 0);
    assert_int_equal(rig_drain(r, &last, &told), 1);
    assert_non_null(told);
    assert_null(last);
    assert_int_equal(told->kind, SCADA__BROKER_MSG__KIND__UPDATES);
    assert_true(told->missed == at_full + 300 * NTAGS);
    assert_int_equal(told->n_updates, NTAGS);
    for (size_t i = 0; i < NTAGS; i++) {
        Scada__Update *u = told->updates[i];
        assert_int_equal(u->tag_id, i + 1);
        assert_true(u->has_integer && u->integer == 1000 * rounds + (int64_t)i);
        assert_true(told->base_ts + (u->has_ts ? u->ts : 0) == 5000 + rounds);
    }
    scada__broker_msg__free_unpacked(told, NULL);

    //  Back to normal: no more missed.
    told = NULL;
    rig_change_all(r, 7, 9000);
    assert_int_equal(rig_drain(r, &last, &told), 1);
    assert_null(told);
    assert_false(last->has_missed);
    scada__broker_msg__free_unpacked(last, NULL);
    rig_destroy(&r);
}

//  A quality change while the queue is full is coalesced too (there is no
//  room to send it) and counted; the client gets the current quality.
static void test_quality_change_while_full_is_counted(void **state)
{
    rig_t *r = rig_new();
    rig_subscribe(r, 1);
    int rounds = 0;
    int64_t now = mclock_mono_ms();
    while (!r->c->full && rounds < 10 * CLIENT_SNDHWM) {
        rounds++;
        s_tag_set(&r->tags[0], true, rounds, SCADA__QUALITY__GOOD, rounds, NULL, now);
        r->c->next_flush = 0;
        s_client_flush(r->c, now);
    }
    assert_true(r->c->full);
    uint64_t missed = r->c->missed;
    s_tag_set(&r->tags[0], false, 0, SCADA__QUALITY__BAD_NO_COMM, 77, "gone", now);
    s_tag_set(&r->tags[0], true, 5, SCADA__QUALITY__GOOD, 78, NULL, now);
    s_tag_set(&r->tags[0], false, 0, SCADA__QUALITY__BAD_DEVICE, 79, "odd", now);
    assert_int_equal(r->c->missed, missed + 3);
    assert_int_equal(r->c->nowed, 1);
    rig_drain(r, NULL, NULL);
    r->c->next_flush = 0;
    s_client_flush(r->c, now);
    Scada__BrokerMsg *last = NULL, *told = NULL;
    assert_int_equal(rig_drain(r, &last, &told), 1);
    assert_non_null(told);
    assert_int_equal(told->n_updates, 1);
    assert_int_equal(told->updates[0]->quality, SCADA__QUALITY__BAD_DEVICE);
    assert_string_equal(told->updates[0]->reason, "odd");
    scada__broker_msg__free_unpacked(told, NULL);
    rig_destroy(&r);
}

//  A client that reads nothing and keeps subscribing and unsubscribing its
//  pages: the owed list stays one entry per tag it holds now.
static void test_page_churn_does_not_grow_the_owed_list(void **state)
{
    rig_t *r = rig_new();
    rig_subscribe(r, NTAGS);
    int rounds = 0;
    while (!r->c->full && rounds < 10 * CLIENT_SNDHWM)
        rounds++, rig_change_all(r, rounds, rounds);
    assert_true(r->c->full);
    s_page_t page = {.page = 1, .ntags = NTAGS};
    page.tags = (s_tag_t **)zmalloc(NTAGS * sizeof *page.tags);
    for (size_t i = 0; i < NTAGS; i++)
        page.tags[i] = &r->tags[i];
    for (int k = 0; k < 200; k++) {
        s_page_release(&r->b, r->c, &page); //  the page goes
        assert_int_equal(r->c->nowed, 0);
        rig_subscribe(r, NTAGS); //  and comes back, with a change of every tag
        rounds++, rig_change_all(r, rounds, rounds);
        assert_int_equal(r->c->nowed, NTAGS);
    }
    assert_true(r->c->capowed <= 2 * NTAGS);
    free(page.tags);
    rig_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_queue_holds_one_entry_per_tag_and_counts_missed),
        cmocka_unit_test(test_quality_change_while_full_is_counted),
        cmocka_unit_test(test_page_churn_does_not_grow_the_owed_list),
    };
    return cmocka_run_group_tests_name("broker_slow", tests, NULL, NULL);
}
