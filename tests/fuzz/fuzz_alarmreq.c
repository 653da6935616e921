/*  fuzz_alarmreq: libFuzzer target for the alarm service's control requests
    (scada.AlarmRequest) and what else it takes from a socket: EventBatch
    from the I/O servers, IoReply (STATE, STATUS) from them, and tag values
    from the broker. services/alarm/alarm.c, engine and journal.

    Input: records (fuzz_util.h). Selector byte:
        bit 7 set      time passes: payload byte 0 x 100 ms, then the tick and
                       ping timers run
        bit 6 set      a tag value from the broker: payload byte 0 picks the
                       tag, byte 1 the quality (mod 7), bytes 2-9 the value (a
                       double, any bits: NaN and infinities too)
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
    known states; the journal, read back after the input, decodes.
*/
#include "fuzz_util.h"

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

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void s_cleanup(void)
{
    for (int i = 0; i < 5; i++)
        zsock_destroy(&s_binders[i]);
    rzloop_destroy(&s_redis);
    zloop_destroy(&s_loop);
    site_destroy(&s_site);
    nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
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

//  What the peers received after a request from `who` (-1: none).
static void s_drain(zsock_t **peers, int who, const Scada__AlarmRequest *req, const char *bad)
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
    free(s_site->alarm.control);
    s_site->alarm.control = strdup(fz_endpoint("alarm-control"));
    free(s_site->alarm.publish);
    s_site->alarm.publish = strdup(fz_endpoint("alarm-publish"));
    alarmsvc_t *self = NULL;
    for (int tries = 0; !self && tries < 100; tries++) //  EINTR: libFuzzer's timer
        self = alarmsvc_new(s_site, "alarm");
    fz_check(self != NULL, "alarmsvc_new");
    self->redis = s_redis;
    zsock_t *peers[S_PEERS];
    for (int p = 0; p < S_PEERS; p++) {
        char rid[8];
        snprintf(rid, sizeof rid, "p%d", p);
        peers[p] = fz_dealer(s_site->alarm.control, rid);
    }
    zsock_t *in, *out;
    fz_pair(&in, &out);
    s_ios_ref_t refs[2] = {{self, &self->ios[0]}, {self, &self->ios[1]}};

    fz_records_t recs = fz_records(data, size);
    uint8_t sel;
    const uint8_t *rec;
    size_t len;
    while (fz_next(&recs, &sel, &rec, &len)) {
        if (sel & 0x80) {
            fz_now_ms += 100 * (int64_t)(len ? rec[0] : 1);
            s_on_tick(NULL, 0, self);
            s_on_ping(NULL, 0, self);
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
            s_drain(peers, who, req, bad);
            scada__alarm_request__free_unpacked(req, NULL);
            free(copy);
            continue;
        }
        s_drain(peers, -1, NULL, NULL);
    }

    for (int p = 0; p < S_PEERS; p++)
        zsock_destroy(&peers[p]);
    zsock_destroy(&in);
    zsock_destroy(&out);
    self->redis = NULL;
    alarmsvc_destroy(&self);
    for (int i = 0; i < 5; i++) {
        zmsg_t *msg;
        while ((msg = fz_recv(s_binders[i])) != NULL)
            zmsg_destroy(&msg);
        (void)zsock_events(s_binders[i]); //  let it finish with closed peers
    }
    //  What it journaled reads back.
    Scada__AlarmEvent **evs = NULL;
    size_t count = 0;
    char err[512];
    if (ajournal_history(s_journal, 1000, &evs, &count, err, sizeof err) == 0) {
        ajournal_events_free(&evs, count);
    } else
        fz_check(errno == ENOENT, "the journal the engine wrote does not read back");
    return 0;
}
