/*  fuzz_rmsg: libFuzzer target for the resolver's wire messages
    (scada.ResolverMsg): rmsg_decode() on its own, then the resolver engine
    (services/resolver/resolver.c) handling the same frames from its ROUTER.

    Input: records (fuzz_util.h). Selector byte:
        bit 7 clear  a frame from peer (bits 0-1: one of four DEALERs, routing
                     ids peer0..peer3; bit 6: an empty frame first, as a REQ
                     sends it). The payload is the frame.
        bit 7 set    time passes: payload byte 0 x 100 ms (bit 0 of the
                     selector: the start settles at once), then the resolver's
                     check and ping timers run.
    One engine per input, on a site with two I/O servers (io1, io2) and three
    devices (d3 served by io2 only).

    rmsg_decode(): a message comes back exactly when the frame decodes and
    carries what its kind needs (rmsg.h); otherwise a reason, terminated,
    and the kind when it decoded (-1 when not); a small reason buffer cuts
    the same reason. The engine: every message it sends decodes and is of a
    kind the resolver sends; a frame rmsg_decode() refuses gets one ERROR
    "malformed message: <reason>"; a RESOLVE gets RESOLVED with its id and
    one TagInfo per name, in order, as the site file has them.
*/
#include "fuzz_util.h"

#include "../../services/resolver/resolver.c"
#include "../../services/resolver/rmsg.c"

#define S_PEERS 4

static const char s_site_yaml[] =
    "site: fz\n"
    "security: {plain: true}\n"
    "ping_time_ms: 1000\n"
    "ioservers:\n"
    "  - {name: io1, publish: \"tcp://127.0.0.1:5600\",\n"
    "     control: \"tcp://127.0.0.1:5601\"}\n"
    "  - {name: io2}\n"
    "channels:\n"
    "  - name: ch1\n"
    "    type: network\n"
    "    devices:\n"
    "      - {name: d1, address: \"127.0.0.1:502\", servers: [io1, io2],\n"
    "         tags: [{name: D1.A, address: \"hr:0\"},\n"
    "                {name: D1.B, address: \"ir:0\"}]}\n"
    "      - {name: d2, address: \"127.0.0.1:503\", servers: [io2, io1],\n"
    "         tags: [{name: D2.A, address: \"co:0\"}]}\n"
    "      - {name: d3, address: \"127.0.0.1:504\", servers: [io2],\n"
    "         tags: [{name: D3.A, address: \"di:0\"}]}\n";

static site_t *s_site;
static zloop_t *s_loop;
static rzloop_t *s_redis; //  never connected: the loop never runs

//  What rmsg.h promises of a message rmsg_decode() lets through.
static void s_check_accepted(const Scada__ResolverMsg *m)
{
    bool peer = m->name && m->name[0] && strlen(m->name) <= RMSG_NAME_MAX && m->has_incarnation;
    switch (m->kind) {
    case SCADA__RESOLVER_MSG__KIND__REGISTER:
        fz_check(peer && m->publish && m->publish[0] && m->control && m->control[0],
                 "REGISTER let through without what it needs");
        /* fall through */
    case SCADA__RESOLVER_MSG__KIND__UNIT_STATE:
        for (size_t i = 0; i < m->n_offers; i++)
            fz_check(m->offers[i]->device && m->offers[i]->device[0] &&
                         strlen(m->offers[i]->device) <= RMSG_NAME_MAX,
                     "an offer without a valid device let through");
        /* fall through */
    case SCADA__RESOLVER_MSG__KIND__HEARTBEAT:
    case SCADA__RESOLVER_MSG__KIND__HELLO:
        fz_check(peer, "a peer message without name and incarnation let through");
        break;
    case SCADA__RESOLVER_MSG__KIND__RESOLVE:
        fz_check(m->has_id, "RESOLVE without id let through");
        for (size_t i = 0; i < m->n_names; i++)
            fz_check(m->names[i] != NULL, "RESOLVE with a NULL name");
        break;
    case SCADA__RESOLVER_MSG__KIND__ERROR:
        break;
    default:
        fz_check(0, "a kind the resolver does not serve let through");
    }
}

//  rmsg_decode() on its own. Returns the decoded message (or NULL) and its
//  reason in why.
static Scada__ResolverMsg *s_decode(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    uint8_t *copy = fz_copy(data, size);
    memset(why, 'x', whylen);
    int kind = -2;
    Scada__ResolverMsg *m = rmsg_decode(copy, size, &kind, why, whylen);
    Scada__ResolverMsg *raw = scada__resolver_msg__unpack(NULL, size, copy);
    fz_check(kind == (raw ? (int)raw->kind : -1), "kind out");
    if (m) {
        s_check_accepted(m);
        fz_check(raw && raw->kind == m->kind, "accepted a frame that does not unpack");
    } else {
        fz_check(memchr(why, 0, whylen) != NULL, "reason not terminated");
        fz_check(why[0] != 0, "refused without a reason");
        char small[12];
        int k2;
        Scada__ResolverMsg *again = rmsg_decode(copy, size, &k2, small, sizeof small);
        fz_check(again == NULL && k2 == kind, "the reason buffer changed the verdict");
        fz_check(strncmp(small, why, strlen(small)) == 0, "a cut reason is not a prefix");
    }
    scada__resolver_msg__free_unpacked(raw, NULL);
    free(copy);
    return m;
}

typedef struct {
    zsock_t *peer[S_PEERS];
    //  What the frame just sent asks for.
    int who;
    const Scada__ResolverMsg *sent; //  NULL: refused by rmsg_decode
    const char *why;
} s_run_t;

static void s_check_reply(s_run_t *run, int p, const Scada__ResolverMsg *r, int *errors,
                          int *resolved)
{
    switch (r->kind) {
    case SCADA__RESOLVER_MSG__KIND__REREGISTER:
    case SCADA__RESOLVER_MSG__KIND__HEARTBEAT:
    case SCADA__RESOLVER_MSG__KIND__BEST_OFFERS:
        break;
    case SCADA__RESOLVER_MSG__KIND__ERROR:
        fz_check(r->error && r->error[0], "ERROR without its text");
        if (p == run->who && !run->sent) {
            char want[320];
            snprintf(want, sizeof want, "malformed message: %s", run->why);
            fz_check(strcmp(r->error, want) == 0, "ERROR for a refused frame with another text");
        }
        *errors += p == run->who;
        break;
    case SCADA__RESOLVER_MSG__KIND__RESOLVED: {
        const Scada__ResolverMsg *q = run->sent;
        fz_check(p == run->who && q && q->kind == SCADA__RESOLVER_MSG__KIND__RESOLVE,
                 "RESOLVED for no RESOLVE");
        fz_check(r->has_id && r->id == q->id, "RESOLVED with another id");
        fz_check(r->n_tags == q->n_names, "RESOLVED: not one TagInfo per name");
        for (size_t i = 0; i < r->n_tags; i++) {
            const Scada__TagInfo *t = r->tags[i];
            site_tag_t *st = site_tag(s_site, q->names[i]);
            fz_check(strcmp(t->name, q->names[i]) == 0, "RESOLVED: names out of order");
            fz_check(t->found == (st != NULL), "RESOLVED: found disagrees with the site");
            fz_check(!st || (t->has_tag_id && t->tag_id == st->id && t->device &&
                             strcmp(t->device, st->device->name) == 0),
                     "RESOLVED: id or device disagrees with the site");
        }
        (*resolved)++;
        break;
    }
    default:
        fz_check(0, "the resolver sent a kind it does not send");
    }
}

//  Everything the peers received since the last call.
static void s_drain(s_run_t *run)
{
    int errors = 0, resolved = 0;
    for (int p = 0; p < S_PEERS; p++) {
        zmsg_t *msg;
        while ((msg = fz_recv(run->peer[p])) != NULL) {
            fz_check(zmsg_size(msg) == 1, "a reply of more than one frame");
            zframe_t *f = zmsg_first(msg);
            Scada__ResolverMsg *r =
                scada__resolver_msg__unpack(NULL, zframe_size(f), zframe_data(f));
            fz_check(r != NULL, "the resolver sent a frame that does not decode");
            s_check_reply(run, p, r, &errors, &resolved);
            scada__resolver_msg__free_unpacked(r, NULL);
            zmsg_destroy(&msg);
        }
    }
    if (run->who >= 0 && !run->sent)
        fz_check(errors == 1, "a refused frame not answered with one ERROR");
    if (run->who >= 0 && run->sent && run->sent->kind == SCADA__RESOLVER_MSG__KIND__RESOLVE)
        fz_check(resolved == 1, "a RESOLVE not answered with one RESOLVED");
}

static void s_cleanup(void)
{
    rzloop_destroy(&s_redis);
    zloop_destroy(&s_loop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init(argc, argv);
    atexit(s_cleanup);
    char err[512];
    s_site = site_load_string(s_site_yaml, strlen(s_site_yaml), "fuzz_rmsg.yaml", err, sizeof err);
    if (!s_site) {
        fprintf(stderr, "fuzz_rmsg: %s\n", err);
        abort();
    }
    s_loop = zloop_new();
    s_redis = rzloop_new(s_loop, "127.0.0.1", 1, NULL, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_settle(200);
    fz_now_ms = FZ_T0;
    free(s_site->resolver.endpoint);
    s_site->resolver.endpoint = strdup(fz_endpoint("resolver"));
    resolver_t *self = NULL;
    //  A bind or connect interrupted by libFuzzer's timer fails with EINTR.
    for (int tries = 0; !self && tries < 100; tries++)
        self = resolver_new(s_site, "res");
    fz_check(self != NULL, "resolver_new");
    self->redis = s_redis;
    s_run_t run = {.who = -1};
    for (int p = 0; p < S_PEERS; p++) {
        char rid[8];
        snprintf(rid, sizeof rid, "peer%d", p);
        run.peer[p] = fz_dealer(s_site->resolver.endpoint, rid);
    }

    fz_records_t recs = fz_records(data, size);
    uint8_t sel;
    const uint8_t *rec;
    size_t len;
    while (fz_next(&recs, &sel, &rec, &len)) {
        if (sel & 0x80) {
            fz_now_ms += 100 * (int64_t)(len ? rec[0] : 1);
            if (sel & 1)
                self->settle_until = fz_now_ms;
            s_on_check(NULL, 0, self);
            s_on_ping(NULL, 0, self);
            run.who = -1;
            s_drain(&run);
            continue;
        }
        char why[256];
        Scada__ResolverMsg *m = s_decode(rec, len, why, sizeof why);
        run.who = sel & (S_PEERS - 1);
        run.sent = m;
        run.why = why;
        fz_send(run.peer[run.who], (sel & 0x40) ? 1 : 0, rec, len);
        if (sel & 0x40) {
            //  Two frames after the routing id: refused whatever they hold.
            run.sent = NULL;
            snprintf(why, sizeof why, "2 frames after the routing id (expected 1)");
        }
        fz_deliver(s_on_router, self->router, self);
        s_drain(&run);
        rmsg_free(&m);
    }

    for (int p = 0; p < S_PEERS; p++)
        zsock_destroy(&run.peer[p]);
    self->redis = NULL;
    resolver_destroy(&self);
    return 0;
}
