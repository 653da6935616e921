/*  Unit tests of scada_client against a broker of our own: a ROUTER on an
    inproc endpoint in the same process, driven step by step, so every
    message the client sends is checked and every answer is exactly the
    one a test wants (ids, updates, malformed frames, silence).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mclock.h"
#include "scada.pb-c.h"
#include "scada_client.h"
#include "slog.h"

#include <czmq.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  The fake broker

typedef struct {
    zsock_t *router;
    zframe_t *peer; //  routing id of the last client message
    char endpoint[64];
} fake_t;

//  A fake on an inproc endpoint of its own, or on TCP `port` (0: any free
//  port).
static fake_t *fake_new_at(bool tcp, int port)
{
    static int n = 0;
    fake_t *f = (fake_t *)calloc(1, sizeof *f);
    f->router = zsock_new(ZMQ_ROUTER);
    assert_non_null(f->router);
    zsock_set_linger(f->router, 0);
    if (tcp) {
        int got = port ? zsock_bind(f->router, "tcp://127.0.0.1:%d", port)
                       : zsock_bind(f->router, "tcp://127.0.0.1:*");
        assert_true(got > 0);
        snprintf(f->endpoint, sizeof f->endpoint, "tcp://127.0.0.1:%d", got);
    } else {
        snprintf(f->endpoint, sizeof f->endpoint, "inproc://scada-client-test-%d", ++n);
        assert_int_equal(zsock_bind(f->router, "%s", f->endpoint), 0);
    }
    return f;
}

static fake_t *fake_new(void)
{
    return fake_new_at(false, 0);
}

static void fake_destroy(fake_t **f_p)
{
    fake_t *f = *f_p;
    zframe_destroy(&f->peer);
    zsock_destroy(&f->router);
    free(f);
    *f_p = NULL;
}

//  The next request within timeout_ms, or NULL. Caller frees it.
static Scada__ClientRequest *fake_recv(fake_t *f, int timeout_ms)
{
    zsock_set_rcvtimeo(f->router, timeout_ms);
    zmsg_t *msg = zmsg_recv(f->router);
    if (!msg)
        return NULL;
    assert_int_equal(zmsg_size(msg), 2);
    zframe_destroy(&f->peer);
    f->peer = zmsg_pop(msg);
    zframe_t *body = zmsg_pop(msg);
    Scada__ClientRequest *req =
        scada__client_request__unpack(NULL, zframe_size(body), zframe_data(body));
    assert_non_null(req);
    zframe_destroy(&body);
    zmsg_destroy(&msg);
    return req;
}

//  The next request that is not a HEARTBEAT.
static Scada__ClientRequest *fake_recv_request(fake_t *f, int timeout_ms)
{
    Scada__ClientRequest *req;
    while ((req = fake_recv(f, timeout_ms)) != NULL &&
           req->kind == SCADA__CLIENT_REQUEST__KIND__HEARTBEAT)
        scada__client_request__free_unpacked(req, NULL);
    return req;
}

static void fake_send_raw(fake_t *f, const void *data, size_t len, bool two_frames)
{
    zmsg_t *msg = zmsg_new();
    zmsg_append(msg, &(zframe_t *){zframe_dup(f->peer)});
    zmsg_addmem(msg, data, len);
    if (two_frames)
        zmsg_addmem(msg, data, len);
    assert_int_equal(zmsg_send(&msg, f->router), 0);
}

static void fake_send(fake_t *f, const Scada__BrokerMsg *m)
{
    size_t len = scada__broker_msg__get_packed_size(m);
    uint8_t *buf = (uint8_t *)malloc(len + 1);
    scada__broker_msg__pack(m, buf);
    fake_send_raw(f, buf, len, false);
    free(buf);
}

static Scada__Update upd(uint32_t id)
{
    Scada__Update u = SCADA__UPDATE__INIT;
    u.tag_id = id;
    return u;
}

static void fake_send_updates(fake_t *f, Scada__BrokerMsg__Kind kind, uint32_t id, uint32_t page,
                              const uint32_t *ids, size_t nids, Scada__Update *ups, size_t nups,
                              int64_t base)
{
    Scada__BrokerMsg m = SCADA__BROKER_MSG__INIT;
    Scada__Update *ptrs[16];
    m.kind = kind;
    if (id) {
        m.has_id = true;
        m.id = id;
    }
    if (page) {
        m.has_page = true;
        m.page = page;
    }
    m.n_tag_ids = nids;
    m.tag_ids = (uint32_t *)ids;
    for (size_t i = 0; i < nups; i++)
        ptrs[i] = &ups[i];
    m.n_updates = nups;
    m.updates = ptrs;
    if (base) {
        m.has_base_ts = true;
        m.base_ts = base;
    }
    fake_send(f, &m);
}

//  --------------------------------------------------------------------------
//  What the client reported

typedef struct {
    uint32_t page;
    char tag[32];
    uint32_t id;
    scada_value_t v;
    char reason[64];
} seen_t;

typedef struct {
    seen_t values[64];
    size_t nvalues;
    int events[16];
    uint32_t event_pages[16];
    char event_text[16][200];
    size_t nevents;
    char write_tag[8][32];
    char write_error[8][300]; //  "" for ok
    size_t nwrites;
} log_t;

static void on_value(scada_client_t *c, uint32_t page, const char *tag, uint32_t tag_id,
                     const scada_value_t *v, void *arg)
{
    log_t *log = (log_t *)arg;
    assert_true(log->nvalues < 64);
    seen_t *s = &log->values[log->nvalues++];
    s->page = page;
    snprintf(s->tag, sizeof s->tag, "%s", tag);
    s->id = tag_id;
    s->v = *v;
    snprintf(s->reason, sizeof s->reason, "%s", v->reason ? v->reason : "");
    s->v.reason = NULL;
}

static void on_event(scada_client_t *c, scada_client_event_t event, uint32_t page, const char *text,
                     void *arg)
{
    log_t *log = (log_t *)arg;
    assert_true(log->nevents < 16);
    log->events[log->nevents] = event;
    log->event_pages[log->nevents] = page;
    snprintf(log->event_text[log->nevents], 200, "%s", text ? text : "");
    log->nevents++;
}

static void on_write(scada_client_t *c, const char *tag, const char *error, void *arg)
{
    log_t *log = (log_t *)arg;
    assert_true(log->nwrites < 8);
    snprintf(log->write_tag[log->nwrites], 32, "%s", tag);
    snprintf(log->write_error[log->nwrites], 300, "%s", error ? error : "");
    log->nwrites++;
}

//  Run the client until it has reported `n` values in all (or 1 s passed).
static void pump_values(scada_client_t *c, log_t *log, size_t n)
{
    int64_t end = mclock_mono_ms() + 1000;
    while (log->nvalues < n && mclock_mono_ms() < end)
        scada_client_wait(c, 50);
    assert_int_equal(log->nvalues, n);
}

static void pump(scada_client_t *c, int ms)
{
    int64_t end = mclock_mono_ms() + ms;
    while (mclock_mono_ms() < end)
        scada_client_wait(c, (int)(end - mclock_mono_ms()) + 1);
}

static bool has_name(const Scada__ClientRequest *req, const char *name)
{
    for (size_t i = 0; i < req->n_names; i++)
        if (streq(req->names[i], name))
            return true;
    return false;
}

static const int64_t BASE = 1700000000000LL;

//  Subscribe page 7 to A, B, C and answer: A=11, B=12, C unknown.
static scada_client_t *setup_page7(fake_t *f, log_t *log, uint32_t hb_ms)
{
    scada_client_opts_t opts = {.name = "unit-client", .heartbeat_ms = hb_ms};
    scada_client_t *c = scada_client_new(f->endpoint, &opts);
    assert_non_null(c);
    scada_client_set_event_handler(c, on_event, log);
    const char *tags[] = {"A", "B", "C", "A"};
    assert_int_equal(scada_client_subscribe(c, 7, tags, 4, on_value, log), 0);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE);
    assert_true(req->has_page && req->page == 7);
    assert_true(req->has_id && req->id != 0);
    assert_int_equal(req->n_names, 3); //  the duplicate counts once
    assert_string_equal(req->names[0], "A");
    assert_string_equal(req->names[1], "B");
    assert_string_equal(req->names[2], "C");
    assert_int_equal(req->n_tag_ids, 0);
    assert_non_null(req->client);
    assert_string_equal(req->client, "unit-client");
    uint32_t ids[] = {11, 12, 0};
    Scada__Update ups[2] = {upd(11), upd(12)};
    ups[0].has_integer = true;
    ups[0].integer = 42;
    ups[0].has_ts = true;
    ups[0].ts = 5;
    ups[1].has_number = true;
    ups[1].number = 3.25;
    ups[1].has_quality = true;
    ups[1].quality = SCADA__QUALITY__BAD_DEVICE;
    ups[1].reason = "short reply";
    ups[1].has_ts = true;
    ups[1].ts = -3;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 7, ids, 3, ups, 2, BASE);
    scada__client_request__free_unpacked(req, NULL);
    pump_values(c, log, 3);
    return c;
}

//  --------------------------------------------------------------------------
//  Tests

static void test_subscribe_and_decode(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_t *c = setup_page7(f, &log, 1000);
    //  Values in update order, then the unknown name.
    assert_string_equal(log.values[0].tag, "A");
    assert_int_equal(log.values[0].id, 11);
    assert_true(log.values[0].v.has_value);
    assert_true(log.values[0].v.value == 42.0);
    assert_int_equal(log.values[0].v.quality, SCADA_Q_GOOD);
    assert_true(log.values[0].v.ts_ms == BASE + 5);
    assert_string_equal(log.values[0].reason, "");
    assert_string_equal(log.values[1].tag, "B");
    assert_true(log.values[1].v.value == 3.25);
    assert_int_equal(log.values[1].v.quality, SCADA_Q_BAD_DEVICE);
    assert_true(log.values[1].v.ts_ms == BASE - 3);
    assert_string_equal(log.values[1].reason, "short reply");
    assert_string_equal(log.values[2].tag, "C");
    assert_int_equal(log.values[2].id, 0);
    assert_false(log.values[2].v.has_value);
    assert_int_equal(log.values[2].v.quality, SCADA_Q_BAD_NOT_FOUND);
    assert_int_equal(log.values[2].page, 7);
    //  Events: the link came up, then the page was answered.
    assert_int_equal(log.nevents, 2);
    assert_int_equal(log.events[0], SCADA_CLIENT_UP);
    assert_int_equal(log.events[1], SCADA_CLIENT_SUBSCRIBED);
    assert_int_equal(log.event_pages[1], 7);
    assert_true(scada_client_connected(c));

    //  A quality change without a value keeps the value; the time is base_ts.
    Scada__Update u = upd(11);
    u.has_quality = true;
    u.quality = SCADA__QUALITY__BAD_NO_COMM;
    u.reason = "device offline";
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &u, 1, BASE + 100);
    pump_values(c, &log, 4);
    assert_true(log.values[3].v.has_value && log.values[3].v.value == 42.0);
    assert_int_equal(log.values[3].v.quality, SCADA_Q_BAD_NO_COMM);
    assert_true(log.values[3].v.ts_ms == BASE + 100);
    assert_string_equal(log.values[3].reason, "device offline");

    //  An id no page holds is counted, not reported.
    Scada__Update stray = upd(99);
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &stray, 1, BASE);
    pump(c, 100);
    assert_int_equal(log.nvalues, 4);
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_int_equal(st.unknown_ids, 1);
    assert_int_equal(st.malformed, 0);
    assert_int_equal(st.received, 3);

    //  The unknown name is reported once, even when the page is sent again.
    const char *again[] = {"A", "B", "C"};
    assert_int_equal(scada_client_subscribe(c, 7, again, 3, on_value, &log), 0);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->n_tag_ids, 2);
    assert_int_equal(req->n_names, 1);
    assert_string_equal(req->names[0], "C");
    uint32_t zero = 0;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 7, &zero, 1, NULL, 0, 0);
    scada__client_request__free_unpacked(req, NULL);
    pump(c, 100);
    assert_int_equal(log.nvalues, 4);

    scada_client_destroy(&c);
    assert_null(c);
    scada_client_destroy(&c); //  tolerates NULL
    fake_destroy(&f);
}

//  For test_missed: where the values stood when MISSED was raised.
typedef struct {
    log_t *log;
    size_t values_at_missed;
} missed_log_t;

static void on_event_missed(scada_client_t *c, scada_client_event_t event, uint32_t page,
                            const char *text, void *arg)
{
    missed_log_t *ml = (missed_log_t *)arg;
    if (event == SCADA_CLIENT_MISSED)
        ml->values_at_missed = ml->log->nvalues;
    on_event(c, event, page, text, ml->log);
}

//  BrokerMsg.missed: the broker's queue to us was full. One MISSED event
//  with the count, raised before the values of that message (they are the
//  current ones); counted in the stats; on any kind of message; absent or 0
//  is nothing.
static void test_missed_updates_are_told(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_t *c = setup_page7(f, &log, 1000);
    missed_log_t ml = {&log, 0};
    scada_client_set_event_handler(c, on_event_missed, &ml);
    size_t events = log.nevents;

    Scada__BrokerMsg m = SCADA__BROKER_MSG__INIT;
    Scada__Update ups[2] = {upd(11), upd(12)};
    Scada__Update *ptrs[2] = {&ups[0], &ups[1]};
    ups[0].has_integer = true;
    ups[0].integer = 7;
    ups[1].has_integer = true;
    ups[1].integer = 8;
    m.kind = SCADA__BROKER_MSG__KIND__UPDATES;
    m.has_base_ts = true;
    m.base_ts = BASE + 60000;
    m.n_updates = 2;
    m.updates = ptrs;
    m.has_missed = true;
    m.missed = 123456789012ULL;
    fake_send(f, &m);
    pump_values(c, &log, 5);
    assert_int_equal(log.nevents, events + 1);
    assert_int_equal(log.events[events], SCADA_CLIENT_MISSED);
    assert_int_equal(log.event_pages[events], 0);
    assert_string_equal(log.event_text[events], "123456789012");
    assert_int_equal(ml.values_at_missed, 3); //  before this message's values
    assert_true(log.values[3].v.value == 7.0 && log.values[3].v.ts_ms == BASE + 60000);
    assert_true(log.values[4].v.value == 8.0);
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_true(st.missed == 123456789012ULL);
    assert_int_equal(st.missed_events, 1);

    //  On a HEARTBEAT too; 0 and absent say nothing.
    Scada__BrokerMsg hb = SCADA__BROKER_MSG__INIT;
    hb.kind = SCADA__BROKER_MSG__KIND__HEARTBEAT;
    hb.has_missed = true;
    hb.missed = 0;
    fake_send(f, &hb);
    hb.has_missed = false;
    fake_send(f, &hb);
    hb.has_missed = true;
    hb.missed = 5;
    fake_send(f, &hb);
    int64_t end = mclock_mono_ms() + 1000;
    while (log.nevents < events + 2 && mclock_mono_ms() < end)
        scada_client_wait(c, 50);
    assert_int_equal(log.nevents, events + 2);
    assert_int_equal(log.events[events + 1], SCADA_CLIENT_MISSED);
    assert_string_equal(log.event_text[events + 1], "5");
    scada_client_stats(c, &st);
    assert_true(st.missed == 123456789017ULL);
    assert_int_equal(st.missed_events, 2);
    assert_int_equal(st.malformed, 0);

    scada_client_destroy(&c);
    fake_destroy(&f);
}

static void test_known_names_travel_as_ids(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_t *c = setup_page7(f, &log, 1000);
    size_t base_n = log.nvalues;

    //  Page 7 becomes B, D: B as its id, D as a name.
    const char *p7[] = {"B", "D"};
    assert_int_equal(scada_client_subscribe(c, 7, p7, 2, on_value, &log), 0);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->n_tag_ids, 1);
    assert_int_equal(req->tag_ids[0], 12);
    assert_int_equal(req->n_names, 1);
    assert_string_equal(req->names[0], "D");
    uint32_t d_id = 13;
    Scada__Update ud = upd(13);
    ud.has_integer = true;
    ud.integer = -7;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 7, &d_id, 1, &ud, 1, BASE);
    scada__client_request__free_unpacked(req, NULL);
    pump_values(c, &log, base_n + 1);
    assert_string_equal(log.values[base_n].tag, "D");
    assert_true(log.values[base_n].v.value == -7.0);

    //  Page 8 with B: sent as an id, and it gets B's value known on page 7
    //  as soon as the broker confirms (even without a value in the answer).
    const char *p8[] = {"B"};
    assert_int_equal(scada_client_subscribe(c, 8, p8, 1, on_value, &log), 0);
    req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->page, 8);
    assert_int_equal(req->n_names, 0);
    assert_int_equal(req->n_tag_ids, 1);
    assert_int_equal(req->tag_ids[0], 12);
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 8, NULL, 0, NULL, 0, 0);
    scada__client_request__free_unpacked(req, NULL);
    pump_values(c, &log, base_n + 2);
    assert_int_equal(log.values[base_n + 1].page, 8);
    assert_string_equal(log.values[base_n + 1].tag, "B");
    assert_true(log.values[base_n + 1].v.value == 3.25);
    assert_int_equal(log.values[base_n + 1].v.quality, SCADA_Q_BAD_DEVICE);

    //  A value of B reaches both pages.
    Scada__Update ub = upd(12);
    ub.has_number = true;
    ub.number = 0.5;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &ub, 1, BASE);
    pump_values(c, &log, base_n + 4);
    assert_int_not_equal(log.values[base_n + 2].page, log.values[base_n + 3].page);

    //  Unsubscribe page 8: UNSUBSCRIBE, and page 8 hears nothing more.
    assert_int_equal(scada_client_unsubscribe(c, 8), 0);
    assert_int_equal(scada_client_unsubscribe(c, 8), -1);
    req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__UNSUBSCRIBE);
    assert_int_equal(req->page, 8);
    scada__client_request__free_unpacked(req, NULL);
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &ub, 1, BASE);
    pump_values(c, &log, base_n + 5);
    assert_int_equal(log.values[base_n + 4].page, 7);

    //  Writes: a numbered tag by id, another by name.
    assert_int_equal(scada_client_write(c, "B", 1.5, on_write, &log), 0);
    req = fake_recv_request(f, 1000);
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__WRITE);
    assert_int_equal(req->n_tag_ids, 1);
    assert_int_equal(req->tag_ids[0], 12);
    assert_int_equal(req->n_names, 0);
    assert_true(req->has_value && req->value == 1.5);
    scada__client_request__free_unpacked(req, NULL);
    assert_int_equal(scada_client_write(c, "Z.Q", 2, on_write, &log), 0);
    req = fake_recv_request(f, 1000);
    assert_int_equal(req->n_tag_ids, 0);
    assert_int_equal(req->n_names, 1);
    assert_string_equal(req->names[0], "Z.Q");
    scada__client_request__free_unpacked(req, NULL);

    scada_client_destroy(&c);
    fake_destroy(&f);
}

static void test_malformed_frames_are_counted_and_dropped(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_t *c = setup_page7(f, &log, 1000);
    size_t n0 = log.nvalues;

    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    fake_send_raw(f, garbage, sizeof garbage, false);
    Scada__BrokerMsg hb = SCADA__BROKER_MSG__INIT;
    hb.kind = SCADA__BROKER_MSG__KIND__HEARTBEAT;
    uint8_t buf[16];
    size_t len = scada__broker_msg__pack(&hb, buf);
    fake_send_raw(f, buf, len, true); //  two frames
    Scada__Update bad = upd(11);
    bad.has_quality = true;
    bad.quality = (Scada__Quality)9;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &bad, 1, BASE);
    Scada__Update both = upd(11);
    both.has_integer = both.has_number = true;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &both, 1, BASE);
    Scada__Update zero = upd(0);
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &zero, 1, BASE);
    Scada__Update overflow = upd(11);
    overflow.has_ts = true;
    overflow.ts = INT64_MAX;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__UPDATES, 0, 0, NULL, 0, &overflow, 1, BASE);
    Scada__BrokerMsg written = SCADA__BROKER_MSG__INIT;
    written.kind = SCADA__BROKER_MSG__KIND__WRITTEN; //  without id
    fake_send(f, &written);
    Scada__BrokerMsg odd = SCADA__BROKER_MSG__INIT;
    odd.kind = (Scada__BrokerMsg__Kind)77;
    fake_send(f, &odd);
    fake_send_raw(f, "", 0, false); //  empty: a BrokerMsg without its kind

    //  A SUBSCRIBED whose ids do not fit the request.
    const char *p9[] = {"E", "F"};
    assert_int_equal(scada_client_subscribe(c, 9, p9, 2, on_value, &log), 0);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    uint32_t three[] = {1, 2, 3};
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 9, three, 3, NULL, 0, 0);

    pump(c, 200);
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_int_equal(st.malformed, 10);
    assert_int_equal(log.nvalues, n0);

    //  The client still works: the right answer to page 9 and a value.
    uint32_t two[] = {21, 22};
    Scada__Update ue = upd(21);
    ue.has_integer = true;
    ue.integer = 1;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 9, two, 2, &ue, 1, BASE);
    scada__client_request__free_unpacked(req, NULL);
    pump_values(c, &log, n0 + 1);
    assert_string_equal(log.values[n0].tag, "E");
    scada_client_stats(c, &st);
    assert_int_equal(st.malformed, 10);

    //  An ERROR about a frame of ours reaches the event handler.
    Scada__BrokerMsg err = SCADA__BROKER_MSG__INIT;
    err.kind = SCADA__BROKER_MSG__KIND__ERROR;
    err.has_id = true;
    err.id = 0;
    err.error = "cannot decode ClientRequest";
    size_t ev0 = log.nevents;
    fake_send(f, &err);
    pump(c, 100);
    assert_int_equal(log.nevents, ev0 + 1);
    assert_int_equal(log.events[ev0], SCADA_CLIENT_ERROR);
    assert_string_equal(log.event_text[ev0], "cannot decode ClientRequest");
    scada_client_destroy(&c);
    fake_destroy(&f);
}

static void test_write_results(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_opts_t opts = {.heartbeat_ms = 1000, .write_timeout_ms = 150};
    scada_client_t *c = scada_client_new(f->endpoint, &opts);
    scada_client_set_event_handler(c, on_event, &log);

    //  ok, refused (WRITTEN with error), ERROR with the write's id
    const char *errors[] = {NULL, "read-only tag", "no such tag"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(scada_client_write(c, "W", k, on_write, &log), 0);
        Scada__ClientRequest *req = fake_recv_request(f, 1000);
        assert_non_null(req);
        assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__WRITE);
        assert_string_equal(req->names[0], "W");
        Scada__BrokerMsg m = SCADA__BROKER_MSG__INIT;
        m.kind = k == 2 ? SCADA__BROKER_MSG__KIND__ERROR : SCADA__BROKER_MSG__KIND__WRITTEN;
        m.has_id = true;
        m.id = req->id;
        m.error = (char *)errors[k];
        fake_send(f, &m);
        scada__client_request__free_unpacked(req, NULL);
        int64_t end = mclock_mono_ms() + 1000;
        while (log.nwrites < (size_t)k + 1 && mclock_mono_ms() < end)
            scada_client_wait(c, 50);
        assert_int_equal(log.nwrites, k + 1);
        assert_string_equal(log.write_tag[k], "W");
        assert_string_equal(log.write_error[k], errors[k] ? errors[k] : "");
    }
    //  Nothing answers: the write fails on its own after write_timeout_ms.
    assert_int_equal(scada_client_write(c, "W", 9, on_write, &log), 0);
    int64_t t0 = mclock_mono_ms();
    while (log.nwrites < 4 && mclock_mono_ms() < t0 + 1000)
        scada_client_wait(c, 50);
    assert_int_equal(log.nwrites, 4);
    assert_true(mclock_mono_ms() - t0 >= 140);
    assert_non_null(strstr(log.write_error[3], "no answer from broker"));
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_int_equal(st.write_timeouts, 1);

    //  The blocking form.
    char why[256];
    assert_int_equal(scada_client_write_wait(c, "W", 1, 100, why, sizeof why), -1);
    assert_non_null(strstr(why, "no answer from broker"));
    assert_non_null(strstr(why, f->endpoint));
    scada_client_destroy(&c);
    fake_destroy(&f);
}

//  Requests of `kind` waiting at the fake now (after `ms` for them to arrive);
//  others are counted in *others.
static int count_kind(fake_t *f, int ms, Scada__ClientRequest__Kind kind, int *others)
{
    int n = 0;
    Scada__ClientRequest *req;
    while ((req = fake_recv(f, ms)) != NULL) {
        if (req->kind == kind)
            n++;
        else if (others)
            (*others)++;
        scada__client_request__free_unpacked(req, NULL);
        ms = 0;
    }
    return n;
}

static void test_heartbeats_only_on_an_idle_link(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_opts_t opts = {.heartbeat_ms = 200};
    scada_client_t *c = scada_client_new(f->endpoint, &opts);
    scada_client_set_event_handler(c, on_event, &log);

    //  Just after a send, the link is not idle.
    assert_int_equal(scada_client_write(c, "W", 1, NULL, NULL), 0);
    int64_t now = mclock_mono_ms();
    scada_client_tick(c, now + 100);
    assert_true(scada_client_next_timeout_ms(c) <= 200);
    Scada__ClientRequest *req = fake_recv(f, 200);
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__WRITE);
    scada__client_request__free_unpacked(req, NULL);
    assert_null(fake_recv(f, 50));
    //  Idle for heartbeat_ms: one HEARTBEAT, with our name (first message
    //  was the write, so the name went with it already).
    scada_client_tick(c, mclock_mono_ms() + 200);
    req = fake_recv(f, 200);
    assert_non_null(req);
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__HEARTBEAT);
    assert_null(req->client);
    scada__client_request__free_unpacked(req, NULL);

    //  Requests every 50 ms for 800 ms: no heartbeat. The broker answers
    //  each, so the link stays up.
    int writes = 0;
    int64_t end = mclock_mono_ms() + 800;
    while (mclock_mono_ms() < end) {
        scada_client_write(c, "W", 2, NULL, NULL);
        int others = 0;
        assert_int_equal(count_kind(f, 10, SCADA__CLIENT_REQUEST__KIND__HEARTBEAT, &others), 0);
        writes += others;
        Scada__BrokerMsg m = SCADA__BROKER_MSG__INIT;
        m.kind = SCADA__BROKER_MSG__KIND__HEARTBEAT;
        fake_send(f, &m);
        pump(c, 50);
    }
    assert_true(writes >= 10);
    assert_int_equal(count_kind(f, 10, SCADA__CLIENT_REQUEST__KIND__HEARTBEAT, NULL), 0);

    //  Idle again (the broker keeps heartbeating): about one per 200 ms.
    int beats = 0;
    end = mclock_mono_ms() + 1000;
    while (mclock_mono_ms() < end) {
        Scada__BrokerMsg m = SCADA__BROKER_MSG__INIT;
        m.kind = SCADA__BROKER_MSG__KIND__HEARTBEAT;
        fake_send(f, &m);
        pump(c, 100);
        beats += count_kind(f, 0, SCADA__CLIENT_REQUEST__KIND__HEARTBEAT, NULL);
    }
    assert_true(beats >= 3 && beats <= 6);
    assert_true(scada_client_connected(c));
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_int_equal(st.links_lost, 0);
    scada_client_destroy(&c);
    fake_destroy(&f);
}

static void test_link_lost_resubscribes(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_t *c = setup_page7(f, &log, 1000);
    size_t n0 = log.nvalues;
    assert_int_equal(scada_client_write(c, "A", 1, on_write, &log), 0);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    scada__client_request__free_unpacked(req, NULL);
    zframe_t *old_peer = zframe_dup(f->peer);
    zsock_t *old_sock = scada_client_socket(c);

    //  3 x heartbeat of silence.
    int64_t now = mclock_mono_ms() + 3000;
    scada_client_tick(c, now);
    assert_false(scada_client_connected(c));
    assert_ptr_not_equal(scada_client_socket(c), old_sock);
    size_t ev = log.nevents;
    assert_int_equal(log.events[ev - 1], SCADA_CLIENT_LOST);
    //  A and B once each, bad-no-comm with their last value; C was not found.
    assert_int_equal(log.nvalues, n0 + 2);
    for (size_t i = n0; i < n0 + 2; i++) {
        assert_int_equal(log.values[i].v.quality, SCADA_Q_BAD_NO_COMM);
        assert_string_equal(log.values[i].reason, "broker lost");
        assert_true(log.values[i].v.has_value);
    }
    assert_true(log.values[n0].v.value == 42.0 || log.values[n0 + 1].v.value == 42.0);
    //  The pending write failed with a clear reason.
    assert_int_equal(log.nwrites, 1);
    assert_non_null(strstr(log.write_error[0], "broker lost"));

    //  A new connection carries the page again, by name.
    req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_false(zframe_eq(old_peer, f->peer));
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE);
    assert_int_equal(req->page, 7);
    assert_int_equal(req->n_tag_ids, 0);
    assert_int_equal(req->n_names, 3);
    assert_true(has_name(req, "A") && has_name(req, "B") && has_name(req, "C"));
    assert_string_equal(req->client, "unit-client");
    scada__client_request__free_unpacked(req, NULL);

    //  Silence again: a new socket and SUBSCRIBE, but no second report.
    scada_client_tick(c, now + 3000);
    assert_int_equal(log.nvalues, n0 + 2);
    req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->kind, SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE);

    //  The broker answers: values flow, the link is up again.
    uint32_t ids[] = {31, 32, 0};
    Scada__Update ua = upd(31);
    ua.has_integer = true;
    ua.integer = 5;
    uint32_t order[3];
    for (size_t i = 0; i < 3; i++)
        order[i] = streq(req->names[i], "A") ? ids[0] : streq(req->names[i], "B") ? ids[1] : 0;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 7, order, 3, &ua, 1, BASE);
    scada__client_request__free_unpacked(req, NULL);
    pump_values(c, &log, n0 + 3);
    assert_string_equal(log.values[n0 + 2].tag, "A");
    assert_int_equal(log.values[n0 + 2].id, 31);
    assert_true(scada_client_connected(c));
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_int_equal(st.links_lost, 1);
    zframe_destroy(&old_peer);
    scada_client_destroy(&c);
    fake_destroy(&f);
}

static void test_closed_connection_starts_over(void **state)
{
    //  Over TCP the client hears the connection close (a broker that
    //  stopped or restarted has forgotten it) and starts over at once,
    //  without waiting for 3 x heartbeat of silence.
    fake_t *f = fake_new_at(true, 0);
    int port = atoi(strrchr(f->endpoint, ':') + 1);
    log_t log = {0};
    scada_client_t *c = setup_page7(f, &log, 1000);
    size_t n0 = log.nvalues;
    fake_destroy(&f);
    int64_t t0 = mclock_mono_ms();
    while (log.nevents < 3 && mclock_mono_ms() < t0 + 2000)
        scada_client_wait(c, 50);
    assert_true(mclock_mono_ms() - t0 < 1000);
    assert_int_equal(log.events[2], SCADA_CLIENT_LOST);
    assert_non_null(strstr(log.event_text[2], "closed"));
    assert_int_equal(log.nvalues, n0 + 2); //  A and B: bad-no-comm
    assert_int_equal(log.values[n0].v.quality, SCADA_Q_BAD_NO_COMM);

    //  A broker back on the same port gets the page, by name.
    f = fake_new_at(true, port);
    Scada__ClientRequest *req = NULL;
    t0 = mclock_mono_ms();
    while (!req && mclock_mono_ms() < t0 + 3000) {
        scada_client_wait(c, 50);
        req = fake_recv(f, 0);
        if (req && req->kind != SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE) {
            scada__client_request__free_unpacked(req, NULL);
            req = NULL;
        }
    }
    assert_non_null(req);
    assert_int_equal(req->page, 7);
    assert_int_equal(req->n_names, 3);
    assert_int_equal(req->n_tag_ids, 0);
    scada__client_request__free_unpacked(req, NULL);
    scada_client_destroy(&c);
    fake_destroy(&f);
}

static void test_no_broker_at_all(void **state)
{
    //  Nothing bound: the lost report says there was never an answer.
    log_t log = {0};
    scada_client_opts_t opts = {.heartbeat_ms = 100};
    scada_client_t *c = scada_client_new("tcp://127.0.0.1:9", &opts);
    assert_non_null(c);
    scada_client_set_event_handler(c, on_event, &log);
    const char *tags[] = {"A"};
    scada_client_subscribe(c, 1, tags, 1, on_value, &log);
    pump(c, 450);
    assert_int_equal(log.nvalues, 1);
    assert_int_equal(log.values[0].v.quality, SCADA_Q_BAD_NO_COMM);
    assert_false(log.values[0].v.has_value);
    assert_string_equal(log.values[0].reason, "no answer from broker");
    assert_false(scada_client_connected(c));
    scada_client_destroy(&c);
    assert_null(scada_client_new("not an endpoint", NULL));
    assert_null(scada_client_new(NULL, NULL));
}

//  A callback that changes the page it is told about.
static void on_value_resubscribe(scada_client_t *c, uint32_t page, const char *tag, uint32_t tag_id,
                                 const scada_value_t *v, void *arg)
{
    log_t *log = (log_t *)arg;
    on_value(c, page, tag, tag_id, v, arg);
    const char *tags[] = {"X"};
    if (log->nvalues == 1)
        scada_client_subscribe(c, page, tags, 1, on_value_resubscribe, arg);
    assert_non_null(tag); //  still readable
    assert_true(strlen(tag) > 0);
}

static void test_callbacks_may_change_pages(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_t *c = scada_client_new(f->endpoint, NULL);
    const char *tags[] = {"A", "B"};
    scada_client_subscribe(c, 1, tags, 2, on_value_resubscribe, &log);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    uint32_t ids[] = {1, 2};
    Scada__Update ups[2] = {upd(1), upd(2)};
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 1, ids, 2, ups, 2, BASE);
    scada__client_request__free_unpacked(req, NULL);
    pump(c, 200);
    //  A was reported; the page then became X, so B is not reported to it.
    assert_int_equal(log.nvalues, 1);
    req = fake_recv_request(f, 1000);
    assert_non_null(req);
    assert_int_equal(req->n_names, 1);
    assert_string_equal(req->names[0], "X");
    scada__client_request__free_unpacked(req, NULL);
    scada_client_destroy(&c);
    fake_destroy(&f);
}

static int s_stop_loop(zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

static void test_zloop_attach(void **state)
{
    fake_t *f = fake_new();
    log_t log = {0};
    scada_client_opts_t opts = {.heartbeat_ms = 100};
    scada_client_t *c = scada_client_new(f->endpoint, &opts);
    zloop_t *loop = zloop_new();
    assert_int_equal(scada_client_attach(c, loop), 0);
    assert_int_equal(scada_client_attach(c, loop), -1);
    const char *tags[] = {"A"};
    scada_client_subscribe(c, 1, tags, 1, on_value, &log);
    Scada__ClientRequest *req = fake_recv_request(f, 1000);
    uint32_t id = 5;
    Scada__Update u = upd(5);
    u.has_number = true;
    u.number = 1.5;
    fake_send_updates(f, SCADA__BROKER_MSG__KIND__SUBSCRIBED, req->id, 1, &id, 1, &u, 1, BASE);
    scada__client_request__free_unpacked(req, NULL);
    //  The broker then says nothing: the loop sees heartbeats go out, the
    //  link lost after 300 ms and the socket re-created under it.
    zloop_timer(loop, 700, 1, s_stop_loop, NULL);
    zloop_start(loop);
    assert_true(log.nvalues >= 2);
    assert_true(log.values[0].v.value == 1.5);
    assert_int_equal(log.values[1].v.quality, SCADA_Q_BAD_NO_COMM);
    int beats = count_kind(f, 0, SCADA__CLIENT_REQUEST__KIND__HEARTBEAT, NULL);
    assert_true(beats >= 1);
    //  After the loss the page went out again on the new socket.
    scada_client_stats_t st;
    scada_client_stats(c, &st);
    assert_true(st.links_lost == 1);
    scada_client_destroy(&c);
    zloop_destroy(&loop);
    fake_destroy(&f);
}

static void test_quality_names(void **state)
{
    assert_string_equal(scada_quality_name(SCADA_Q_GOOD), "good");
    assert_string_equal(scada_quality_name(SCADA_Q_UNCERTAIN), "uncertain");
    assert_string_equal(scada_quality_name(SCADA_Q_BAD_NO_COMM), "bad-no-comm");
    assert_string_equal(scada_quality_name(SCADA_Q_BAD_CONFIG), "bad-config");
    assert_string_equal(scada_quality_name(SCADA_Q_BAD_NOT_FOUND), "bad-not-found");
    assert_string_equal(scada_quality_name(SCADA_Q_BAD_DEVICE), "bad-device");
    assert_string_equal(scada_quality_name(42), "bad");
}

int main(void)
{
    slog_init("test_scada_client", SLOG_ERROR);
    zsys_init();
    zsys_handler_set(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_and_decode),
        cmocka_unit_test(test_missed_updates_are_told),
        cmocka_unit_test(test_known_names_travel_as_ids),
        cmocka_unit_test(test_malformed_frames_are_counted_and_dropped),
        cmocka_unit_test(test_write_results),
        cmocka_unit_test(test_heartbeats_only_on_an_idle_link),
        cmocka_unit_test(test_link_lost_resubscribes),
        cmocka_unit_test(test_closed_connection_starts_over),
        cmocka_unit_test(test_no_broker_at_all),
        cmocka_unit_test(test_callbacks_may_change_pages),
        cmocka_unit_test(test_zloop_attach),
        cmocka_unit_test(test_quality_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
