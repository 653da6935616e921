/*  fuzz_alarmreq: libFuzzer target for the alarm service's control requests
    (scada.AlarmRequest) and what else it takes from a socket: EventBatch
    from the I/O servers, IoReply (STATE, STATUS) from them, and tag values
    from the broker, as values handed to its value callback or as BrokerMsg
    frames through its broker client. services/alarm/alarm.c, engine and
    journal, with common/src/scada_client.c compiled in (on the fuzz clock).

    Input: records (fuzz_util.h). Selector byte:
        bit 7 set      time passes: payload byte 0 x 100 ms, then the tick and
                       ping timers run (bit 0: the broker client's timer too,
                       so 15 s without a BrokerMsg loses the broker)
        bit 6 set      bit 0 clear: a tag value from the broker: payload byte 0
                       picks the tag, byte 1 the quality (mod 7), bytes 2-9 the
                       value (a double, any bits: NaN and infinities too);
                       bit 0 set: the payload is one BrokerMsg frame for the
                       service's broker client, which subscribed page 1 (id 1:
                       D1.L, D1.TRIP, D2.T) as the service does at start
        bit 5 set      an EventBatch frame from io1 or io2 (bit 0; bit 1: topic
                       "X" instead of "E")
        bit 4 set      an IoReply frame from io1 or io2 (bit 0)
        otherwise      an AlarmRequest frame on the control socket from one of
                       three DEALERs (bits 0-1 mod 3)
    One engine per input, with a fresh journal in a temporary directory, on
    a site with two I/O servers, limit, state and communication alarms in
    two areas.

    Checked: s_request_check() lets through only requests with what their
    kind needs; every reply decodes as an AlarmReply, an ERROR has its text;
    a frame that does not decode gets one ERROR with id 0; every other
    request exactly one reply with its id; a request the check refuses an
    ERROR with the check's text; LIST answers alarms that are listed, of
    known states, within its filters; HISTORY at most its limit, oldest
    first, within its filters; an action answers events of the alarms (or
    the area) it named, with the request's user and comment. Every event
    published decodes, names an alarm of the site, is numbered above the
    one before and is never out of service while shelved or not NORMAL. The
    service is blind (ALARM.BROKER.COMM's condition) exactly while its
    broker client has lost the broker. After the input the journal reads
    back: events 1..n, the published ones among them as published; and a
    second engine restored from it has every alarm in the state, shelve and
    service state the first one ended with.
*/
#include "fuzz_util.h"

//  Before alarm.c: the engine's broker client then runs on the fuzz clock.
#include "../../common/src/scada_client.c"
#include "../../services/alarm/alarm.c"

#include <ftw.h>

#define S_PEERS 3

static const char s_site_yaml[] =
    "site: fz\n"
    "security: {plain: true}\n"
    "ping_time_ms: 1000\n"
    "ioservers: [{name: io1}, {name: io2}]\n"
    "alarm: {journal: alarms.journal, sync: none, comm_delay_ms: 500}\n"
    "channels:\n"
    "  - name: plant\n"
    "    type: network\n"
    "    devices:\n"
    "      - {name: d1, address: \"127.0.0.1:1\", servers: [io1, io2], area: tanks, tags: [\n"
    "          {name: D1.L, address: \"hr:0\", alarms: {hihi: 95, hi: 80, lo: 20, lolo: 5,\n"
    "                                                   deadband: 2, on_delay_ms: 300}},\n"
    "          {name: D1.TRIP, address: \"co:0\", alarms: {state: {value: 1, message: trip},\n"
    "                                                       priority: 1, area: pumps}},\n"
    "          {name: D1.X, address: \"hr:1\"}]}\n"
    "      - {name: d2, address: \"127.0.0.1:1\", servers: [io2], tags: [\n"
    "          {name: D2.T, address: \"hr:0\", alarms: {hi: 50, comm: false}}]}\n";

static const char *s_tags[] = {"D1.L", "D1.TRIP", "D1.X", "D2.T", "NO.SUCH"};

static site_t *s_site;
static zsock_t *s_binders[5]; //  the peers' endpoints, bound for good
static rzloop_t *s_redis;     //  never connected
static zloop_t *s_loop;
static char s_dir[256];
static char s_journal[300];

//  What one input saw published, in order.
typedef struct {
    uint64_t seq;
    int kind, state;
    char *alarm;
} s_pub_t;

static s_pub_t *s_pubs;
static size_t s_npubs, s_cap;

//  An alarm's state at the end of an input, to compare with its restore.
typedef struct {
    al_state_t state;
    bool shelved, out_of_service;
} s_end_t;

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void s_pubs_clear(void)
{
    for (size_t i = 0; i < s_npubs; i++)
        free(s_pubs[i].alarm);
    s_npubs = 0;
}

static void s_cleanup(void)
{
    s_pubs_clear();
    free(s_pubs);
    for (int i = 0; i < 5; i++)
        zsock_destroy(&s_binders[i]);
    rzloop_destroy(&s_redis);
    zloop_destroy(&s_loop);
    site_destroy(&s_site);
    nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static bool s_str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

//  What s_request_check() promises of a request it lets through.
static void s_check_accepted(const Scada__AlarmRequest *req)
{
    switch (req->kind) {
    case SCADA__ALARM_REQUEST__KIND__LIST:
    case SCADA__ALARM_REQUEST__KIND__HISTORY:
        return;
    case SCADA__ALARM_REQUEST__KIND__SHELVE:
        fz_check(req->has_duration_ms && req->duration_ms > 0 &&
                     req->duration_ms <= (uint64_t)AL_SHELVE_MAX_MS,
                 "SHELVE let through without a duration in range");
        //  fall through
    case SCADA__ALARM_REQUEST__KIND__ACK:
    case SCADA__ALARM_REQUEST__KIND__UNSHELVE:
    case SCADA__ALARM_REQUEST__KIND__OUT_OF_SERVICE:
    case SCADA__ALARM_REQUEST__KIND__IN_SERVICE:
        fz_check(req->n_alarms > 0 ||
                     (req->kind == SCADA__ALARM_REQUEST__KIND__ACK && req->area && req->area[0]),
                 "an action let through without alarms");
        return;
    default:
        fz_check(0, "a kind the alarm service does not serve let through");
    }
}

static bool s_named(const Scada__AlarmRequest *req, const char *alarm)
{
    for (size_t k = 0; k < req->n_alarms; k++)
        if (strcmp(req->alarms[k], alarm) == 0)
            return true;
    return false;
}

//  The events of an OK reply to `req`.
static void s_check_answer(const Scada__AlarmRequest *req, const Scada__AlarmReply *r, size_t nall)
{
    bool list = req->kind == SCADA__ALARM_REQUEST__KIND__LIST;
    bool history = req->kind == SCADA__ALARM_REQUEST__KIND__HISTORY;
    bool area = req->area && req->area[0];
    bool prio = req->has_max_priority && req->max_priority;
    if (history) {
        size_t want = req->has_limit && req->limit ? req->limit : HISTORY_DEFAULT;
        fz_check(r->n_alarms <= want, "HISTORY answered more events than its limit");
    } else
        fz_check(r->n_alarms <= (list ? 1 : 2) * (req->n_alarms ? req->n_alarms : nall),
                 "more events than the alarms asked for");
    for (size_t i = 0; i < r->n_alarms; i++) {
        const Scada__AlarmEvent *e = r->alarms[i];
        if (history && i)
            fz_check(e->seq > r->alarms[i - 1]->seq, "HISTORY not oldest first");
        if (list || history) {
            fz_check(!area || (e->area && strcmp(e->area, req->area) == 0),
                     "LIST or HISTORY answered an alarm of another area");
            fz_check(!prio || !e->has_priority || e->priority <= req->max_priority,
                     "LIST or HISTORY answered an alarm above max_priority");
            fz_check(!req->n_alarms || s_named(req, e->alarm),
                     "LIST or HISTORY answered an alarm not asked for");
            continue;
        }
        //  An action: its alarms, with who asked and why.
        if (req->n_alarms)
            fz_check(s_named(req, e->alarm), "an action answered an alarm it did not name");
        else
            fz_check(e->area && strcmp(e->area, req->area) == 0,
                     "an acknowledge by area answered an alarm of another area");
        fz_check(s_str_eq(e->user, req->user ? req->user : "unknown"),
                 "an action's event with another user");
        fz_check(s_str_eq(e->comment, req->comment), "an action's event with another comment");
    }
}

//  What the peers received after a request from `who` (-1: none).
static void s_drain(zsock_t **peers, int who, const Scada__AlarmRequest *req, const char *bad,
                    size_t nall)
{
    int replies = 0;
    for (int p = 0; p < S_PEERS; p++) {
        zmsg_t *msg;
        while ((msg = fz_recv(peers[p])) != NULL) {
            zframe_t *f = zmsg_last(msg);
            Scada__AlarmReply *r = scada__alarm_reply__unpack(NULL, zframe_size(f), zframe_data(f));
            fz_check(r != NULL, "the alarm service sent a frame that does not decode");
            fz_check(r->status != SCADA__ALARM_REPLY__STATUS__ERROR || (r->error && r->error[0]),
                     "ERROR without its text");
            fz_check(p == who, "a reply to a peer that asked nothing");
            replies++;
            if (!req)
                fz_check(r->id == 0 && r->status == SCADA__ALARM_REPLY__STATUS__ERROR &&
                             strstr(r->error, "malformed"),
                         "a frame that does not decode answered otherwise");
            else {
                fz_check(r->id == req->id, "a reply with another id");
                if (bad)
                    fz_check(r->status == SCADA__ALARM_REPLY__STATUS__ERROR &&
                                 strcmp(r->error, bad) == 0,
                             "a refused request answered otherwise");
                if (r->status == SCADA__ALARM_REPLY__STATUS__OK)
                    s_check_answer(req, r, nall);
            }
            for (size_t i = 0; i < r->n_alarms; i++) {
                const Scada__AlarmEvent *e = r->alarms[i];
                fz_check(e->alarm && e->alarm[0], "an alarm event without its alarm");
                fz_check((unsigned)e->state <= SCADA__ALARM_STATE__UNACK_CLEARED,
                         "an alarm event of an unknown state");
                if (req && req->kind == SCADA__ALARM_REQUEST__KIND__LIST)
                    fz_check(e->state != SCADA__ALARM_STATE__NORMAL ||
                                 (e->has_shelved && e->shelved) ||
                                 (e->has_out_of_service && e->out_of_service),
                             "LIST answered an alarm that is not listed");
            }
            scada__alarm_reply__free_unpacked(r, NULL);
            zmsg_destroy(&msg);
        }
    }
    if (who >= 0)
        fz_check(replies == 1, "a request not answered exactly once");
}

//  What the engine published since the last call: AlarmEvents under "A".
static void s_drain_published(alarmsvc_t *self, zsock_t *sub)
{
    zmsg_t *msg;
    while ((msg = fz_recv(sub)) != NULL) {
        fz_check(zmsg_size(msg) == 2 && zframe_streq(zmsg_first(msg), "A"),
                 "published: not a topic \"A\" and an event");
        zframe_t *f = zmsg_last(msg);
        Scada__AlarmEvent *e = scada__alarm_event__unpack(NULL, zframe_size(f), zframe_data(f));
        fz_check(e != NULL, "published: an event that does not decode");
        fz_check(zhashx_lookup(self->alarms, e->alarm) != NULL, "published: an unknown alarm");
        fz_check((unsigned)e->state < AL_STATE_COUNT && (unsigned)e->kind < AL_EV_COUNT,
                 "published: an unknown state or kind");
        fz_check(!s_npubs || e->seq > s_pubs[s_npubs - 1].seq, "published: seq not increasing");
        fz_check(e->seq > 0 && e->seq <= self->seq, "published: a seq not given yet");
        fz_check(!(e->has_out_of_service && e->out_of_service) ||
                     (e->state == SCADA__ALARM_STATE__NORMAL && !(e->has_shelved && e->shelved)),
                 "published: out of service, yet shelved or not NORMAL");
        if (s_npubs == s_cap) {
            s_cap = s_cap ? 2 * s_cap : 64;
            s_pubs = (s_pub_t *)realloc(s_pubs, s_cap * sizeof *s_pubs);
            fz_check(s_pubs != NULL, "out of memory");
        }
        s_pubs[s_npubs++] = (s_pub_t){e->seq, (int)e->kind, (int)e->state, strdup(e->alarm)};
        scada__alarm_event__free_unpacked(e, NULL);
        zmsg_destroy(&msg);
    }
}

//  After the input: the journal holds events 1..nevents, what was published
//  among them as it was published.
static void s_check_journal(uint64_t nevents)
{
    Scada__AlarmEvent **evs = NULL;
    size_t count = 0;
    char err[512];
    if (ajournal_history(s_journal, HISTORY_MAX, &evs, &count, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_alarmreq: %s\n", err);
        fz_check(0, "the journal the engine wrote does not read back");
    }
    fz_check(count == nevents, "the journal does not hold every event");
    for (size_t i = 0; i < count; i++)
        fz_check(evs[i]->seq == i + 1, "the journal's events not numbered 1..n");
    for (size_t i = 0; i < s_npubs; i++) {
        const s_pub_t *p = &s_pubs[i];
        fz_check(p->seq >= 1 && p->seq <= count, "published an event the journal lacks");
        const Scada__AlarmEvent *e = evs[p->seq - 1];
        fz_check(strcmp(e->alarm, p->alarm) == 0 && (int)e->kind == p->kind &&
                     (int)e->state == p->state,
                 "the journal and the publish socket tell different events");
    }
    ajournal_events_free(&evs, count);
}

//  A new engine on this input's fresh endpoints (the journal as it is).
static alarmsvc_t *s_engine(void)
{
    free(s_site->alarm.control);
    s_site->alarm.control = strdup(fz_endpoint("alarm-control"));
    free(s_site->alarm.publish);
    s_site->alarm.publish = strdup(fz_endpoint("alarm-publish"));
    alarmsvc_t *self = NULL;
    for (int tries = 0; !self && tries < 100; tries++) //  EINTR: libFuzzer's timer
        self = alarmsvc_new(s_site, "alarm");
    fz_check(self != NULL, "alarmsvc_new");
    self->redis = s_redis;
    return self;
}

static void s_engine_destroy(alarmsvc_t **self_p)
{
    (*self_p)->redis = NULL;
    alarmsvc_destroy(self_p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init(argc, argv);
    atexit(s_cleanup);
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/fuzz_alarmreq.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fz_check(mkdtemp(s_dir) != NULL, "mkdtemp");
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/site.yaml", s_dir);
    FILE *f = fopen(path, "w");
    fz_check(f && fwrite(s_site_yaml, 1, strlen(s_site_yaml), f) == strlen(s_site_yaml),
             "cannot write the site file");
    fclose(f);
    s_site = site_load(path, err, sizeof err);
    if (!s_site) {
        fprintf(stderr, "fuzz_alarmreq: %s\n", err);
        abort();
    }
    snprintf(s_journal, sizeof s_journal, "%s/alarms.journal", s_dir);
    //  The peers the engine connects to, bound here for good (ZeroMQ keeps
    //  a connection to an inproc name nobody binds after its socket closes):
    //  what the engine sends them is read and dropped.
    char **eps[5] = {&s_site->ioservers[0].publish, &s_site->ioservers[0].control,
                     &s_site->ioservers[1].publish, &s_site->ioservers[1].control,
                     &s_site->default_broker.endpoint};
    for (int i = 0; i < 5; i++) {
        free(*eps[i]);
        *eps[i] = strdup(fz_endpoint("peer"));
        s_binders[i] = zsock_new(i % 2 == 0 && i < 4 ? ZMQ_XPUB : ZMQ_ROUTER);
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
    unlink(s_journal); //  every input from an empty journal
    s_pubs_clear();
    alarmsvc_t *self = s_engine();
    zsock_t *peers[S_PEERS];
    for (int p = 0; p < S_PEERS; p++) {
        char rid[8];
        snprintf(rid, sizeof rid, "p%d", p);
        peers[p] = fz_dealer(s_site->alarm.control, rid);
    }
    //  A subscriber of everything the engine publishes, its queue unbounded.
    zsock_t *sub = zsock_new(ZMQ_SUB);
    fz_check(sub != NULL, "cannot make a SUB");
    zsock_set_rcvhwm(sub, 0);
    zsock_set_linger(sub, 0);
    zsock_set_subscribe(sub, "");
    int rc;
    do //  EINTR: libFuzzer's timer
        rc = zmq_connect(zsock_resolve(sub), s_site->alarm.publish);
    while (rc != 0 && errno == EINTR);
    fz_check(rc == 0, "cannot connect a SUB");
    //  ZMQ_EVENTS makes the engine's socket take the subscription now.
    for (int tries = 0; tries < 1000 && zsock_events(self->pub) < 0; tries++)
        ;
    zsock_t *in, *out;
    fz_pair(&in, &out);
    s_ios_ref_t refs[2] = {{self, &self->ios[0]}, {self, &self->ios[1]}};
    //  The tags with alarms on page 1, as alarmsvc_actor subscribes them.
    const char *names[8];
    size_t nnames = 0;
    for (size_t i = 0; i < s_site->ntags && nnames < 8; i++) {
        site_tag_t *t = site_tag_by_id(s_site, (uint32_t)i + 1);
        if (t && t->alarms.any)
            names[nnames++] = t->name;
    }
    scada_client_subscribe(self->client, 1, names, nnames, s_on_value, self);

    fz_records_t recs = fz_records(data, size);
    uint8_t sel;
    const uint8_t *rec;
    size_t len;
    while (fz_next(&recs, &sel, &rec, &len)) {
        if (sel & 0x80) {
            fz_now_ms += 100 * (int64_t)(len ? rec[0] : 1);
            if (sel & 1)
                scada_client_tick(self->client, fz_now_ms);
            s_on_tick(NULL, 0, self);
            s_on_ping(NULL, 0, self);
        } else if ((sel & 0x41) == 0x41) {
            uint8_t *copy = fz_copy(rec, len);
            s_handle_frame(self->client, copy, len);
            free(copy);
        } else if (sel & 0x40) {
            const char *tag = s_tags[(len ? rec[0] : 0) % (sizeof s_tags / sizeof s_tags[0])];
            scada_value_t v = {.quality = (scada_quality_t)((len > 1 ? rec[1] : 0) % 7),
                               .ts_ms = fz_wall_ms()};
            if (len >= 10) {
                memcpy(&v.value, rec + 2, sizeof v.value);
                v.has_value = true;
            }
            const site_tag_t *st = site_tag(s_site, tag);
            s_on_value(self->client, 1, tag, st ? st->id : 0, &v, self);
        } else if (sel & 0x20) {
            fz_send_frames(in, 0, (sel & 2) ? "X" : "E", rec, len);
            fz_deliver(s_on_events, out, &refs[sel & 1]);
        } else if (sel & 0x10) {
            fz_send(in, 0, rec, len);
            fz_deliver(s_on_state, out, &refs[sel & 1]);
        } else {
            uint8_t *copy = fz_copy(rec, len);
            Scada__AlarmRequest *req = scada__alarm_request__unpack(NULL, len, copy);
            char buf[160];
            const char *bad = req ? s_request_check(req, buf, sizeof buf) : NULL;
            if (req && !bad)
                s_check_accepted(req);
            int who = (sel & 3) % S_PEERS;
            fz_send(peers[who], 0, rec, len);
            fz_deliver(s_on_control, self->control, self);
            s_drain(peers, who, req, bad, self->nall);
            scada__alarm_request__free_unpacked(req, NULL);
            free(copy);
            s_drain_published(self, sub);
            continue;
        }
        s_drain(peers, -1, NULL, NULL, self->nall);
        s_drain_published(self, sub);
        fz_check(self->blind == (self->client->link == S_LINK_LOST),
                 "blind, yet the broker is not lost (or the other way round)");
        fz_check(self->broker_alarm->al.cond == self->blind,
                 "ALARM.BROKER.COMM's condition is not the broker link's state");
    }
    s_drain_published(self, sub);

    //  What each alarm ended with, and how many events there were.
    size_t nall = self->nall;
    s_end_t *end = (s_end_t *)calloc(nall + 1, sizeof *end);
    fz_check(end != NULL, "out of memory");
    for (size_t i = 0; i < nall; i++)
        end[i] = (s_end_t){self->all[i]->al.state, self->all[i]->al.shelved,
                           self->all[i]->al.out_of_service};
    uint64_t nevents = self->seq;
    bool journaled = self->journal_errors == 0;

    for (int p = 0; p < S_PEERS; p++)
        zsock_destroy(&peers[p]);
    zsock_destroy(&sub);
    zsock_destroy(&in);
    zsock_destroy(&out);
    s_engine_destroy(&self);
    if (journaled)
        s_check_journal(nevents);

    //  A restart on that journal restores what the alarms were.
    alarmsvc_t *again = s_engine();
    fz_check(again->nall == nall, "another set of alarms after a restart");
    fz_check(!journaled || again->seq == nevents, "a restart numbers events from elsewhere");
    for (size_t i = 0; journaled && i < nall; i++) {
        const al_t *al = &again->all[i]->al;
        if (fz_log && (al->state != end[i].state || al->shelved != end[i].shelved ||
                       al->out_of_service != end[i].out_of_service))
            fprintf(stderr, "restore: %s: state %d/%d shelved %d/%d out of service %d/%d\n",
                    again->all[i]->id, (int)end[i].state, (int)al->state, end[i].shelved,
                    al->shelved, end[i].out_of_service, al->out_of_service);
        fz_check(al->state == end[i].state && al->shelved == end[i].shelved &&
                     al->out_of_service == end[i].out_of_service,
                 "an alarm restored from the journal is not what it was");
    }
    free(end);
    s_engine_destroy(&again);

    for (int i = 0; i < 5; i++) {
        zmsg_t *msg;
        while ((msg = fz_recv(s_binders[i])) != NULL)
            zmsg_destroy(&msg);
        (void)zsock_events(s_binders[i]); //  let it finish with closed peers
    }
    return 0;
}
