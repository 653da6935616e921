/*  fuzz_ioreq: libFuzzer target for the I/O server's control requests
    (scada.IoRequest) and the resolver messages it takes: the decode and
    s_request_check() on their own, then the engine (services/ioserver/
    ioserver.c) handling the same frames on its control socket.

    Input: records (fuzz_util.h). Selector byte:
        bit 7 set     time passes: payload byte 0 x 100 ms; then the ping timer
                      runs and waiting SUBSCRIBE answers are checked
        bit 6 set     a ResolverMsg frame to the engine's resolver handler
        otherwise     an IoRequest frame on the control socket from one of four
                      DEALERs (bits 0-1; routing ids b0..b3; bit 5: an empty
                      frame first, as a REQ sends it)
    One engine per input: I/O server io1 of a site with a network channel, a
    TCP gateway and a device only io2 serves. Its devices never connect (the
    loop never runs), so writes end at "device offline" and subscriptions
    wait for first readings until their deadline.

    Checked: s_request_check() lets a request through only with the fields
    its kind needs. Every frame the engine sends back decodes as an IoReply;
    a frame that does not decode gets one ERROR with id 0; a request the
    check refuses gets one ERROR with its id and the check's text; READ gets
    one value per tag (at most 10,000), in order; every other request gets
    one answer at once, but SUBSCRIBE, which may wait until the tags are read
    and is answered by its deadline (1 s) at the latest.
*/
#include "fuzz_util.h"

#include "../../services/ioserver/ioserver.c"
#include "../../services/ioserver/serial_actor.c"

#include <ftw.h>

#define S_PEERS 4
#define S_WAIT  64 //  SUBSCRIBE answers owed, at most followed

static const char s_site_yaml[] =
    "site: fz\n"
    "security: {plain: true}\n"
    "ping_time_ms: 1000\n"
    "ioservers:\n"
    "  - {name: io1, iolog_dir: iolog}\n"
    "  - {name: io2}\n"
    "channels:\n"
    "  - name: plant\n"
    "    type: network\n"
    "    devices:\n"
    "      - {name: d1, address: \"127.0.0.1:1\", servers: [io1, io2], tags: [\n"
    "          {name: D1.LEVEL, address: \"hr:0\", type: float32},\n"
    "          {name: D1.RUN, address: \"co:0\"},\n"
    "          {name: D1.SP, address: \"hr:10\", type: int16, scale: 0.1},\n"
    "          {name: D1.RO, address: \"hr:11\", writable: false},\n"
    "          {name: D1.TEMP, address: \"ir:0\", type: int32, word_order: little},\n"
    "          {name: D1.SW, address: \"di:0\", always_scan: true}]}\n"
    "      - {name: d2, address: \"127.0.0.1:1\", servers: [io2, io1], tags: [\n"
    "          {name: D2.A, address: \"hr:65535\", type: uint16}]}\n"
    "      - {name: d9, address: \"127.0.0.1:1\", servers: [io2], tags: [\n"
    "          {name: D9.A, address: \"hr:0\"}]}\n"
    "  - name: gw\n"
    "    type: tcp\n"
    "    address: \"127.0.0.1:1\"\n"
    "    iolog: true\n"
    "    devices:\n"
    "      - {name: u1, unit: 1, servers: [io1], tags: [{name: U1.A, address: \"hr:0\"},\n"
    "                                                   {name: U1.B, address: \"co:5\"}]}\n"
    "      - {name: u2, unit: 2, servers: [io1], tags: [{name: U2.A, address: \"ir:7\",\n"
    "                                                    type: float32}]}\n";

static site_t *s_site;
static zloop_t *s_loop;
static rzloop_t *s_redis;   //  never connected: the loop never runs
static zsock_t *s_resolver; //  where the engine's resolver socket connects
static char s_dir[256];

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void s_cleanup(void)
{
    zsock_destroy(&s_resolver);
    rzloop_destroy(&s_redis);
    zloop_destroy(&s_loop);
    nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

//  What s_request_check() promises of a request it lets through.
static void s_check_accepted(const Scada__IoRequest *req)
{
    switch (req->kind) {
    case SCADA__IO_REQUEST__KIND__WRITE:
        fz_check(req->tag && req->has_value, "WRITE let through without tag and value");
        break;
    case SCADA__IO_REQUEST__KIND__IOLOG:
        fz_check(req->channel && req->has_enable, "IOLOG let through without channel, enable");
        break;
    case SCADA__IO_REQUEST__KIND__SUBSCRIBE:
    case SCADA__IO_REQUEST__KIND__UNSUBSCRIBE:
    case SCADA__IO_REQUEST__KIND__KEEP:
        fz_check(req->client && req->client[0], "a subscription let through without client");
        break;
    case SCADA__IO_REQUEST__KIND__STATUS:
    case SCADA__IO_REQUEST__KIND__READ:
    case SCADA__IO_REQUEST__KIND__STATE:
        break;
    default:
        fz_check(0, "a kind the I/O server does not serve let through");
    }
    for (size_t i = 0; i < req->n_tags; i++)
        fz_check(req->tags[i] != NULL, "a NULL tag name");
}

typedef struct {
    zsock_t *peer[S_PEERS];
    uint64_t owed[S_PEERS][S_WAIT]; //  SUBSCRIBE ids not answered yet
    size_t nowed[S_PEERS];
    int64_t owed_since[S_PEERS][S_WAIT];
} s_run_t;

static bool s_owed_take(s_run_t *run, int p, uint64_t id)
{
    for (size_t i = 0; i < run->nowed[p]; i++)
        if (run->owed[p][i] == id) {
            run->nowed[p]--;
            run->owed[p][i] = run->owed[p][run->nowed[p]];
            run->owed_since[p][i] = run->owed_since[p][run->nowed[p]];
            return true;
        }
    return false;
}

//  One reply frame from peer p: decoded (caller frees), or the check fails.
static Scada__IoReply *s_reply_of(zmsg_t *msg)
{
    zframe_t *f = zmsg_last(msg);
    fz_check(f != NULL, "an empty reply");
    Scada__IoReply *r = scada__io_reply__unpack(NULL, zframe_size(f), zframe_data(f));
    fz_check(r != NULL, "the I/O server sent a frame that does not decode");
    fz_check(r->status != SCADA__IO_REPLY__STATUS__ERROR || (r->error && r->error[0]),
             "ERROR without its text");
    return r;
}

//  After a request from peer `who` (raw: its frame; req: decoded or NULL;
//  bad: what the check said): everything the peers received.
static void s_drain(s_run_t *run, int who, const Scada__IoRequest *req, const char *bad)
{
    int answers = 0;
    for (int p = 0; p < S_PEERS; p++) {
        zmsg_t *msg;
        while ((msg = fz_recv(run->peer[p])) != NULL) {
            Scada__IoReply *r = s_reply_of(msg);
            zmsg_destroy(&msg);
            if (s_owed_take(run, p, r->id)) {
                scada__io_reply__free_unpacked(r, NULL);
                continue; //  a SUBSCRIBE answered late
            }
            fz_check(p == who, "an answer to a peer that asked nothing");
            answers++;
            if (!req) {
                fz_check(r->id == 0 && r->status == SCADA__IO_REPLY__STATUS__ERROR,
                         "a frame that does not decode not answered with ERROR id 0");
            } else {
                fz_check(r->id == req->id, "an answer with another id");
                if (bad)
                    fz_check(r->status == SCADA__IO_REPLY__STATUS__ERROR &&
                                 strcmp(r->error, bad) == 0,
                             "a refused request answered otherwise");
                if (!bad && req->kind == SCADA__IO_REQUEST__KIND__READ) {
                    size_t n = req->n_tags > 10000 ? 10000 : req->n_tags;
                    fz_check(r->n_values == n, "READ: not one value per tag");
                    for (size_t i = 0; i < n; i++)
                        fz_check(strcmp(r->values[i]->tag, req->tags[i]) == 0,
                                 "READ: values out of order");
                }
                if (!bad && req->kind == SCADA__IO_REQUEST__KIND__STATUS)
                    fz_check(r->status_json && r->status_json[0] == '{', "STATUS without JSON");
            }
            scada__io_reply__free_unpacked(r, NULL);
        }
    }
    if (who < 0)
        return;
    if (req && !bad && req->kind == SCADA__IO_REQUEST__KIND__SUBSCRIBE && answers == 0) {
        if (run->nowed[who] < S_WAIT) {
            run->owed[who][run->nowed[who]] = req->id;
            run->owed_since[who][run->nowed[who]++] = fz_now_ms;
        }
        return;
    }
    fz_check(answers == 1, "a request not answered exactly once");
}

//  After time passed: every SUBSCRIBE whose deadline passed was answered.
static void s_check_owed(s_run_t *run)
{
    s_drain(run, -1, NULL, NULL);
    for (int p = 0; p < S_PEERS; p++)
        for (size_t i = 0; i < run->nowed[p]; i++)
            fz_check(fz_now_ms - run->owed_since[p][i] < SUBREPLY_WAIT_MS,
                     "a SUBSCRIBE not answered by its deadline");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init(argc, argv);
    atexit(s_cleanup);
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/fuzz_ioreq.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fz_check(mkdtemp(s_dir) != NULL, "mkdtemp");
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/site.yaml", s_dir);
    s_site = site_load_string(s_site_yaml, strlen(s_site_yaml), path, err, sizeof err);
    if (!s_site) {
        fprintf(stderr, "fuzz_ioreq: %s\n", err);
        abort();
    }
    //  Bound for good: a connect to an inproc endpoint nobody binds stays
    //  pending in ZeroMQ after its socket is closed.
    free(s_site->resolver.endpoint);
    s_site->resolver.endpoint = strdup(fz_endpoint("resolver"));
    s_resolver = zsock_new(ZMQ_ROUTER);
    fz_check(s_resolver && zsock_bind(s_resolver, "%s", s_site->resolver.endpoint) == 0,
             "cannot bind the resolver's endpoint");
    s_loop = zloop_new();
    s_redis = rzloop_new(s_loop, "127.0.0.1", 1, NULL, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_settle(200);
    fz_now_ms = FZ_T0;
    site_ioserver_t *cfg = site_ioserver(s_site, "io1");
    free(cfg->publish);
    free(cfg->control);
    cfg->publish = strdup(fz_endpoint("io1-pub"));
    cfg->control = strdup(fz_endpoint("io1-control"));
    ioserver_t *self = NULL;
    //  A bind or connect interrupted by libFuzzer's timer fails with EINTR.
    for (int tries = 0; !self && tries < 100; tries++)
        self = ioserver_new(s_site, "io1");
    fz_check(self != NULL, "ioserver_new");
    self->redis = s_redis;
    s_run_t run;
    memset(&run, 0, sizeof run);
    for (int p = 0; p < S_PEERS; p++) {
        char rid[8];
        snprintf(rid, sizeof rid, "b%d", p);
        run.peer[p] = fz_dealer(cfg->control, rid);
    }
    zsock_t *to_resolver_in, *to_resolver_out;
    fz_pair(&to_resolver_in, &to_resolver_out);

    fz_records_t recs = fz_records(data, size);
    uint8_t sel;
    const uint8_t *rec;
    size_t len;
    while (fz_next(&recs, &sel, &rec, &len)) {
        if (sel & 0x80) {
            fz_now_ms += 100 * (int64_t)(len ? rec[0] : 1);
            s_on_ping(NULL, 0, self);
            s_subreplies_check(self, fz_now_ms);
            s_check_owed(&run);
            continue;
        }
        if (sel & 0x40) {
            fz_send(to_resolver_in, 0, rec, len);
            fz_deliver(s_on_resolver, to_resolver_out, self);
            s_drain(&run, -1, NULL, NULL);
            continue;
        }
        uint8_t *copy = fz_copy(rec, len);
        Scada__IoRequest *req = scada__io_request__unpack(NULL, len, copy);
        const char *bad = req ? s_request_check(req) : NULL;
        if (req && !bad)
            s_check_accepted(req);
        int who = sel & (S_PEERS - 1);
        fz_send(run.peer[who], (sel & 0x20) ? 1 : 0, rec, len);
        fz_deliver(s_on_control, self->control, self);
        s_drain(&run, who, req, bad);
        scada__io_request__free_unpacked(req, NULL);
        free(copy);
    }

    for (int p = 0; p < S_PEERS; p++)
        zsock_destroy(&run.peer[p]);
    zsock_destroy(&to_resolver_in);
    zsock_destroy(&to_resolver_out);
    self->redis = NULL;
    ioserver_destroy(&self);
    //  What the engine told the resolver: valid messages only. Reading also
    //  lets the ROUTER finish with the connections of closed engines.
    zmsg_t *msg;
    while ((msg = fz_recv(s_resolver)) != NULL) {
        zframe_t *f = zmsg_last(msg);
        Scada__ResolverMsg *m = scada__resolver_msg__unpack(NULL, zframe_size(f), zframe_data(f));
        fz_check(m != NULL, "the I/O server sent the resolver a frame that does not decode");
        scada__resolver_msg__free_unpacked(m, NULL);
        zmsg_destroy(&msg);
    }
    return 0;
}
