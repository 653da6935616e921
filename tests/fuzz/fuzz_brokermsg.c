/*  fuzz_brokermsg: libFuzzer target for the client library's handling of
    what a broker sends (scada.BrokerMsg): common/src/scada_client.c, the
    decode, s_validate() and every handler behind s_handle_frame(), between
    the calls an application makes.

    Input: records (fuzz_util.h). Selector byte:
        bit 7 set      time passes: payload byte 0 x 10 ms, then
                       scada_client_tick()
        bit 6 set      an application call (bits 0-1): 0 subscribe page
                       (payload byte 0 mod 4) to tags picked by the payload's
                       bits, 1 unsubscribe that page, 2 write a tag, 3 read
                       the stats
        otherwise      the payload is one frame from the broker
    One client per input, connected to a ROUTER this program binds (what
    the client sends is read and checked to decode as a ClientRequest).

    Checked: every value a callback gets has a known quality, a tag name
    and page the application subscribed, no value when it says none, a
    time not before the epoch, and a readable reason; tag id 0 only for a
    tag the broker does not know (BAD_NOT_FOUND, no value) or after the
    link was lost (BAD_NO_COMM); a name the broker does not know is reported
    once per page while the page holds it; each write's callback runs at
    most once, and a write is answered or pending, never past its deadline
    after a tick; SUBSCRIBED only for a subscribed page, MISSED with a
    positive count; a frame that does not decode or that s_validate()
    refuses counts as malformed and reaches no callback; the stats never go
    down.
*/
#include "fuzz_util.h"

#include "../../common/src/scada_client.c"

#define S_TAGS  6
#define S_PAGES 4

static const char *s_tag_names[S_TAGS] = {"T1", "T2", "U1", "V1", "NO.SUCH", "T1"};
static zsock_t *s_broker; //  where every client connects
static char s_endpoint[96];

typedef struct {
    bool subscribed[S_PAGES];
    uint32_t tags_of[S_PAGES];   //  bit i: s_tag_names[i] is on the page
    uint32_t not_found[S_PAGES]; //  bit i: reported as not found (by its first index)
    size_t writes, answered;
    size_t callbacks; //  value and write callbacks, any
} s_run_t;

//  The first index of a name in s_tag_names (duplicates count once).
static int s_tag_index(const char *tag)
{
    for (int i = 0; i < S_TAGS; i++)
        if (strcmp(tag, s_tag_names[i]) == 0)
            return i;
    return -1;
}

//  The names of a pick, each by its first index.
static uint32_t s_first_indexes(uint32_t pick)
{
    uint32_t out = 0;
    for (int i = 0; i < S_TAGS; i++)
        if (pick & (1u << i))
            out |= 1u << s_tag_index(s_tag_names[i]);
    return out;
}

static void s_on_value(scada_client_t *c, uint32_t page, const char *tag, uint32_t tag_id,
                       const scada_value_t *v, void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    run->callbacks++;
    fz_check(page < S_PAGES && run->subscribed[page], "a value for a page not subscribed");
    fz_check(tag != NULL && *tag, "a value without its tag");
    bool known = false;
    for (int i = 0; i < S_TAGS; i++)
        known |= (run->tags_of[page] & (1u << i)) && strcmp(tag, s_tag_names[i]) == 0;
    fz_check(known, "a value for a tag the page does not hold");
    fz_check((unsigned)v->quality <= SCADA_Q_BAD_NOT_ALLOWED, "a value of an unknown quality");
    fz_check(v->has_value || v->value == 0, "no value, yet a value");
    fz_check(v->ts_ms >= 0, "a time before the epoch");
    if (tag_id == 0) {
        fz_check(v->quality == SCADA_Q_BAD_NOT_FOUND || v->quality == SCADA_Q_BAD_NO_COMM,
                 "tag id 0 for a tag neither unknown nor lost");
        if (v->quality == SCADA_Q_BAD_NOT_FOUND) {
            uint32_t bit = 1u << s_tag_index(tag);
            fz_check(!v->has_value, "a tag not found, yet a value");
            fz_check(!(run->not_found[page] & bit), "a tag not found reported twice");
            run->not_found[page] |= bit;
        }
    }
    if (v->reason)
        (void)strlen(v->reason);
    if (fz_log)
        fprintf(stderr, "value: page %u %s #%u %g q%d %s\n", page, tag, tag_id, v->value,
                (int)v->quality, v->reason ? v->reason : "");
}

static void s_on_write(scada_client_t *c, const char *tag, const char *error, void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    run->callbacks++;
    run->answered++;
    fz_check(run->answered <= run->writes, "a write answered twice");
    fz_check(tag && *tag, "a write result without its tag");
    if (error)
        (void)strlen(error);
    if (fz_log)
        fprintf(stderr, "write: %s %s\n", tag, error ? error : "ok");
}

static void s_on_event(scada_client_t *c, scada_client_event_t ev, uint32_t page, const char *text,
                       void *arg)
{
    s_run_t *run = (s_run_t *)arg;
    fz_check((unsigned)ev <= SCADA_CLIENT_MISSED, "an unknown event");
    if (ev == SCADA_CLIENT_SUBSCRIBED)
        fz_check(page < S_PAGES && run->subscribed[page], "SUBSCRIBED for a page not subscribed");
    if (ev == SCADA_CLIENT_MISSED)
        fz_check(text && strtoull(text, NULL, 10) > 0 && strspn(text, "0123456789") == strlen(text),
                 "MISSED without its count");
    if (text)
        (void)strlen(text);
    if (fz_log)
        fprintf(stderr, "event: %d page %u %s\n", (int)ev, page, text ? text : "");
}

//  What the client sent: ClientRequests only.
static void s_drain(void)
{
    zmsg_t *msg;
    while ((msg = fz_recv(s_broker)) != NULL) {
        zframe_t *f = zmsg_last(msg);
        Scada__ClientRequest *r =
            scada__client_request__unpack(NULL, zframe_size(f), zframe_data(f));
        fz_check(r != NULL, "the client sent something else than a ClientRequest");
        scada__client_request__free_unpacked(r, NULL);
        zmsg_destroy(&msg);
    }
}

static void s_cleanup(void)
{
    zsock_destroy(&s_broker);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init(argc, argv);
    atexit(s_cleanup);
    snprintf(s_endpoint, sizeof s_endpoint, "%s", fz_endpoint("broker"));
    s_broker = zsock_new(ZMQ_ROUTER);
    fz_check(s_broker && zsock_bind(s_broker, "%s", s_endpoint) == 0, "cannot bind the broker");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_settle(200);
    fz_now_ms = FZ_T0;
    s_run_t run;
    memset(&run, 0, sizeof run);
    scada_client_opts_t opts = {.name = "fuzz", .heartbeat_ms = 1000, .write_timeout_ms = 500};
    scada_client_t *c = NULL;
    for (int tries = 0; !c && tries < 100; tries++) //  EINTR: libFuzzer's timer
        c = scada_client_new(s_endpoint, &opts);
    fz_check(c != NULL, "scada_client_new");
    scada_client_set_event_handler(c, s_on_event, &run);

    fz_records_t recs = fz_records(data, size);
    uint8_t sel;
    const uint8_t *rec;
    size_t len;
    scada_client_stats_t before = c->stats;
    while (fz_next(&recs, &sel, &rec, &len)) {
        if (sel & 0x80) {
            fz_now_ms += 10 * (int64_t)(len ? rec[0] : 1);
            scada_client_tick(c, fz_now_ms);
            for (s_write_t *w = (s_write_t *)zlistx_first(c->writes); w;
                 w = (s_write_t *)zlistx_next(c->writes))
                fz_check(w->deadline > fz_now_ms, "a write past its deadline not failed");
        } else if (sel & 0x40) {
            uint32_t page = len ? rec[0] % S_PAGES : 0;
            switch (sel & 3) {
            case 0: {
                const char *names[S_TAGS];
                size_t n = 0;
                uint8_t pick = len > 1 ? rec[1] : 0x3f;
                run.tags_of[page] = 0;
                for (int i = 0; i < S_TAGS; i++)
                    if (pick & (1u << i)) {
                        names[n++] = s_tag_names[i];
                        run.tags_of[page] |= 1u << i;
                    }
                //  A name the page keeps keeps its "not found".
                run.not_found[page] &= s_first_indexes(run.tags_of[page]);
                run.subscribed[page] = true;
                scada_client_subscribe(c, page, names, n, s_on_value, &run);
                break;
            }
            case 1:
                if (scada_client_unsubscribe(c, page) == 0) {
                    run.subscribed[page] = false;
                    run.tags_of[page] = run.not_found[page] = 0;
                }
                break;
            case 2:
                if (scada_client_write(c, s_tag_names[page], len > 1 ? rec[1] : 1, s_on_write,
                                       &run) == 0)
                    run.writes++;
                break;
            default:
                break;
            }
        } else {
            uint8_t *copy = fz_copy(rec, len);
            Scada__BrokerMsg *m = scada__broker_msg__unpack(NULL, len, copy);
            bool bad = !m || s_validate(c, m) != NULL;
            uint64_t malformed = c->stats.malformed;
            size_t calls = run.callbacks;
            s_handle_frame(c, copy, len);
            if (bad) {
                fz_check(c->stats.malformed == malformed + 1, "a bad frame not counted");
                fz_check(run.callbacks == calls, "a bad frame reached a callback");
            }
            scada__broker_msg__free_unpacked(m, NULL);
            free(copy);
        }
        fz_check(run.answered + zlistx_size(c->writes) == run.writes,
                 "a write neither answered nor pending (or both)");
        scada_client_stats_t now = c->stats;
        fz_check(now.received >= before.received && now.malformed >= before.malformed &&
                     now.errors >= before.errors && now.missed >= before.missed,
                 "a statistic went down");
        before = now;
        s_drain();
    }
    scada_client_destroy(&c);
    s_drain();
    return 0;
}
