/*  fuzz_clientreq: libFuzzer target for the broker's client requests
    (scada.ClientRequest), and for what else the broker takes from a socket:
    ResolverMsg from the resolver, ValueBatch and IoReply from the I/O
    servers. The decode and s_request_check() on their own, then the engine
    (services/broker/broker.c) handling the same frames.

    Input: records (fuzz_util.h). Selector byte:
        bit 7 set            time passes: payload byte 0 x 10 ms, then the
                             tick runs (bit 0: and the ping timer, bit 1: and
                             the client check)
        bits 5-6 = 0         a ClientRequest from one of three DEALERs
                             (bits 0-1 mod 3; bit 4: an empty frame first)
        bits 5-6 = 1         a ResolverMsg from the resolver
        bits 5-6 = 2         a ValueBatch from I/O server io1 or io2 (bit 0),
                             topic "V" (bit 4: topic "X")
        bits 5-6 = 3         an IoReply from io1 or io2 (bit 0)
    One engine per input: broker b1 of a site with I/O servers io1 and io2
    and three devices. Its peers' endpoints are bound by this program for
    good (inproc), and the engine may connect to those only: a BEST_OFFERS
    naming other endpoints makes zsock_connect() fail here (see below).

    Checked: s_request_check() lets a request through only with what its
    kind needs; a frame that does not decode gets one ERROR with id 0; a
    request the check refuses gets one ERROR with its id (the check's text,
    or the limit of requests in progress); every frame the broker sends a
    client decodes as a BrokerMsg of a known kind whose updates name ids of
    the site, and every frame it sends the resolver or an I/O server
    decodes and names the broker.
*/
#include "fuzz_util.h"

#include "../../services/broker/broker.c"

#define S_CLIENTS 3

static const char s_site_yaml[] =
    "site: fz\n"
    "security: {plain: true}\n"
    "ping_time_ms: 1000\n"
    "resolve_retry_backoff_ms: 100\n"
    "brokers: [{name: b1, update_interval_ms: 50, initial_wait_ms: 100,\n"
    "           write_timeout_ms: 500, client_heartbeat_ms: 1000}]\n"
    "ioservers:\n"
    "  - {name: io1}\n"
    "  - {name: io2}\n"
    "channels:\n"
    "  - name: plant\n"
    "    type: network\n"
    "    devices:\n"
    "      - {name: d1, address: \"127.0.0.1:1\", servers: [io1, io2], tags: [\n"
    "          {name: T1, address: \"hr:0\"}, {name: T2, address: \"co:0\"},\n"
    "          {name: T3, address: \"ir:0\"}]}\n"
    "      - {name: d2, address: \"127.0.0.1:1\", servers: [io2], tags: [\n"
    "          {name: U1, address: \"hr:0\", type: float32}]}\n"
    "      - {name: d3, address: \"127.0.0.1:1\", servers: [io1], tags: [\n"
    "          {name: V1, address: \"di:0\"}]}\n";

static site_t *s_site;
static zloop_t *s_loop;
static rzloop_t *s_redis;        //  never connected: the loop never runs
static zsock_t *s_binders[5];    //  resolver, io1 publish and control, io2's
static const char *s_allowed[5]; //  their endpoints

//  The broker connects where the resolver tells it (BEST_OFFERS endpoints).
//  Here it may connect only to the endpoints this program binds: anything
//  else fails as a bad endpoint would, so a fuzzed message never reaches a
//  real network, and never leaves a connection pending on an inproc name
//  nobody binds (ZeroMQ keeps those after the socket is closed).
int zsock_connect(zsock_t *self, const char *format, ...)
{
    char ep[256];
    va_list ap;
    va_start(ap, format);
    vsnprintf(ep, sizeof ep, format, ap);
    va_end(ap);
    for (size_t i = 0; i < 5; i++)
        if (s_allowed[i] && strcmp(ep, s_allowed[i]) == 0)
            return zmq_connect(zsock_resolve(self), ep);
    errno = EINVAL;
    return -1;
}

int zsock_disconnect(zsock_t *self, const char *format, ...)
{
    char ep[256];
    va_list ap;
    va_start(ap, format);
    vsnprintf(ep, sizeof ep, format, ap);
    va_end(ap);
    return zmq_disconnect(zsock_resolve(self), ep);
}

static void s_check_accepted(const Scada__ClientRequest *req)
{
    bool ids = req->kind == SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE ||
               req->kind == SCADA__CLIENT_REQUEST__KIND__WRITE;
    for (size_t i = 0; ids && i < req->n_tag_ids; i++)
        fz_check(req->tag_ids[i] != 0, "tag id 0 let through");
    switch (req->kind) {
    case SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE:
        fz_check(req->has_page && req->n_names + req->n_tag_ids <= MAX_PAGE_TAGS,
                 "SUBSCRIBE let through without page or with too many tags");
        break;
    case SCADA__CLIENT_REQUEST__KIND__UNSUBSCRIBE:
        fz_check(req->has_page, "UNSUBSCRIBE let through without page");
        break;
    case SCADA__CLIENT_REQUEST__KIND__WRITE:
        fz_check(req->n_names + req->n_tag_ids == 1 && req->has_value && isfinite(req->value),
                 "WRITE let through without one tag and a finite value");
        break;
    case SCADA__CLIENT_REQUEST__KIND__EXISTS:
    case SCADA__CLIENT_REQUEST__KIND__RESOLVE:
        fz_check(req->n_names <= MAX_PAGE_TAGS, "too many names let through");
        break;
    case SCADA__CLIENT_REQUEST__KIND__HEARTBEAT:
        break;
    default:
        fz_check(0, "a kind the broker does not serve let through");
    }
}

static void s_check_msg(const Scada__BrokerMsg *m)
{
    fz_check((unsigned)m->kind <= SCADA__BROKER_MSG__KIND__RESOLVED_REPLY,
             "a BrokerMsg of an unknown kind");
    for (size_t i = 0; i < m->n_updates; i++) {
        const Scada__Update *u = m->updates[i];
        fz_check(u->tag_id >= 1, "an update for tag id 0");
        fz_check(!(u->has_integer && u->has_number), "an update with integer and number");
        fz_check(!u->has_quality || (unsigned)u->quality <= SCADA__QUALITY__BAD_NOT_ALLOWED,
                 "an update with an unknown quality");
    }
    if (m->kind == SCADA__BROKER_MSG__KIND__RESOLVED_REPLY)
        fz_check(m->n_tag_ids == m->n_ioservers, "RESOLVED_REPLY: ids and I/O servers differ");
    if (m->kind == SCADA__BROKER_MSG__KIND__ERROR)
        fz_check(m->error && m->error[0], "ERROR without its text");
}

//  What the clients received. After a request from client `who` (-1: none)
//  that did not decode (req NULL) or that the check refused (bad): its one
//  ERROR.
static void s_drain(zsock_t **clients, int who, const Scada__ClientRequest *req, bool decoded,
                    const char *bad)
{
    int errors = 0;
    for (int k = 0; k < S_CLIENTS; k++) {
        zmsg_t *msg;
        while ((msg = fz_recv(clients[k])) != NULL) {
            zframe_t *f = zmsg_last(msg);
            Scada__BrokerMsg *m = scada__broker_msg__unpack(NULL, zframe_size(f), zframe_data(f));
            fz_check(m != NULL, "the broker sent a client a frame that does not decode");
            s_check_msg(m);
            if (k == who && m->kind == SCADA__BROKER_MSG__KIND__ERROR) {
                if (!decoded)
                    fz_check(m->id == 0 && strstr(m->error, "malformed request"),
                             "a frame that does not decode answered otherwise");
                else if (bad && m->id == (req->has_id ? req->id : 0) &&
                         (strcmp(m->error, bad) == 0 ||
                          strncmp(m->error, "too many requests in progress", 29) == 0))
                    errors++;
            }
            scada__broker_msg__free_unpacked(m, NULL);
            zmsg_destroy(&msg);
        }
    }
    if (who >= 0 && decoded && bad)
        fz_check(errors >= 1, "a refused request not answered with its ERROR");
}

//  What the engine sent its peers: valid messages, in its name.
static void s_drain_peers(void)
{
    for (int i = 0; i < 5; i++) {
        zmsg_t *msg;
        while ((msg = fz_recv(s_binders[i])) != NULL) {
            zframe_t *f = zmsg_last(msg);
            if (i == 0) {
                Scada__ResolverMsg *m =
                    scada__resolver_msg__unpack(NULL, zframe_size(f), zframe_data(f));
                fz_check(m && m->name && strcmp(m->name, "b1") == 0,
                         "the broker sent the resolver something else than its messages");
                scada__resolver_msg__free_unpacked(m, NULL);
            } else if (i % 2 == 0) {
                Scada__IoRequest *m =
                    scada__io_request__unpack(NULL, zframe_size(f), zframe_data(f));
                fz_check(m && m->client && strcmp(m->client, "b1") == 0,
                         "the broker sent an I/O server something else than its requests");
                fz_check(m->kind != SCADA__IO_REQUEST__KIND__WRITE || (m->tag && m->has_value),
                         "a WRITE to an I/O server without tag or value");
                scada__io_request__free_unpacked(m, NULL);
            }
            zmsg_destroy(&msg);
        }
        (void)zsock_events(s_binders[i]); //  let it finish with closed peers
    }
}

static char s_audit_dir[256]; //  the broker's audit file goes there

static void s_cleanup(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/audit-b1.log", s_audit_dir);
    unlink(path);
    rmdir(s_audit_dir);
    for (int i = 0; i < 5; i++)
        zsock_destroy(&s_binders[i]);
    rzloop_destroy(&s_redis);
    zloop_destroy(&s_loop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init(argc, argv);
    atexit(s_cleanup);
    char err[512];
    s_site =
        site_load_string(s_site_yaml, strlen(s_site_yaml), "fuzz_clientreq.yaml", err, sizeof err);
    if (!s_site) {
        fprintf(stderr, "fuzz_clientreq: %s\n", err);
        abort();
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(s_audit_dir, sizeof s_audit_dir, "%s/fuzz_clientreq.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    fz_check(mkdtemp(s_audit_dir) != NULL, "mkdtemp");
    free(s_site->security_audit_dir);
    s_site->security_audit_dir = strdup(s_audit_dir);
    char **eps[5] = {&s_site->resolver.endpoint, &s_site->ioservers[0].publish,
                     &s_site->ioservers[0].control, &s_site->ioservers[1].publish,
                     &s_site->ioservers[1].control};
    const char *what[5] = {"resolver", "io1-pub", "io1-control", "io2-pub", "io2-control"};
    for (int i = 0; i < 5; i++) {
        free(*eps[i]);
        *eps[i] = strdup(fz_endpoint(what[i]));
        s_allowed[i] = *eps[i];
        s_binders[i] = zsock_new(i % 2 ? ZMQ_XPUB : ZMQ_ROUTER);
        fz_check(s_binders[i] && zsock_bind(s_binders[i], "%s", *eps[i]) == 0,
                 "cannot bind a peer's endpoint");
    }
    s_loop = zloop_new();
    s_redis = rzloop_new(s_loop, "127.0.0.1", 1, NULL, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_settle(200);
    fz_now_ms = FZ_T0;
    site_broker_t *cfg = &s_site->brokers[0];
    free(cfg->endpoint);
    cfg->endpoint = strdup(fz_endpoint("b1"));
    broker_t *self = NULL;
    //  A bind or connect interrupted by libFuzzer's timer fails with EINTR.
    for (int tries = 0; !self && tries < 100; tries++)
        self = broker_new(s_site, "b1");
    fz_check(self != NULL, "broker_new");
    self->redis = s_redis;
    zsock_t *clients[S_CLIENTS];
    for (int k = 0; k < S_CLIENTS; k++) {
        char rid[8];
        snprintf(rid, sizeof rid, "c%d", k);
        clients[k] = fz_dealer(cfg->endpoint, rid);
    }
    zsock_t *in, *out;
    fz_pair(&in, &out);
    s_ios_t *ios[2] = {zhashx_lookup(self->ioservers, "io1"),
                       zhashx_lookup(self->ioservers, "io2")};
    fz_check(ios[0] && ios[1], "the broker has not made its I/O servers");

    fz_records_t recs = fz_records(data, size);
    uint8_t sel;
    const uint8_t *rec;
    size_t len;
    while (fz_next(&recs, &sel, &rec, &len)) {
        if (sel & 0x80) {
            fz_now_ms += 10 * (int64_t)(len ? rec[0] : 1);
            s_on_tick(NULL, 0, self);
            if (sel & 1)
                s_on_ping(NULL, 0, self);
            if (sel & 2)
                s_on_clients_check(NULL, 0, self);
            s_drain(clients, -1, NULL, false, NULL);
            continue;
        }
        switch ((sel >> 5) & 3) {
        case 0: {
            uint8_t *copy = fz_copy(rec, len);
            Scada__ClientRequest *req = scada__client_request__unpack(NULL, len, copy);
            char buf[96];
            const char *bad = req ? s_request_check(req, buf, sizeof buf) : NULL;
            if (req && !bad)
                s_check_accepted(req);
            int who = (sel & 3) % S_CLIENTS;
            fz_send(clients[who], (sel & 0x10) ? 1 : 0, rec, len);
            fz_deliver(s_on_clients, self->clients_sock, self);
            s_drain(clients, who, req, req != NULL, bad);
            scada__client_request__free_unpacked(req, NULL);
            free(copy);
            break;
        }
        case 1:
            fz_send(in, 0, rec, len);
            fz_deliver(s_on_resolver, out, self);
            s_drain(clients, -1, NULL, false, NULL);
            break;
        case 2: {
            fz_send_frames(in, 0, (sel & 0x10) ? "X" : "V", rec, len);
            fz_deliver(s_on_ios_values, out, ios[sel & 1]);
            s_drain(clients, -1, NULL, false, NULL);
            break;
        }
        default:
            fz_send(in, 0, rec, len);
            fz_deliver(s_on_ios_reply, out, ios[sel & 1]);
            s_drain(clients, -1, NULL, false, NULL);
        }
    }

    for (int k = 0; k < S_CLIENTS; k++)
        zsock_destroy(&clients[k]);
    zsock_destroy(&in);
    zsock_destroy(&out);
    self->redis = NULL;
    broker_destroy(&self);
    s_drain_peers();
    return 0;
}
