/*  scadactl alarms, ack, shelve, unshelve: requests to the alarm service's
    control socket (AlarmRequest / AlarmReply, proto/scada.proto).
*/
#include "alarms.h"

#include "ctlsec.h"

#include "mclock.h"
#include "scada.pb-c.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *s_state_name(Scada__AlarmState s)
{
    switch (s) {
    case SCADA__ALARM_STATE__NORMAL:
        return "normal";
    case SCADA__ALARM_STATE__UNACK_ACTIVE:
        return "unack-active";
    case SCADA__ALARM_STATE__ACK_ACTIVE:
        return "ack-active";
    case SCADA__ALARM_STATE__UNACK_CLEARED:
        return "unack-cleared";
    default:
        return "?";
    }
}

static const char *s_kind_name(Scada__AlarmEvent__Kind k)
{
    static const char *names[] = {"raise",    "clear",          "ack",       "shelve",
                                  "unshelve", "out-of-service", "in-service"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static void s_ts(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

static void s_json_str(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void s_print_event(const Scada__AlarmEvent *ev, bool json, bool history)
{
    char ts[40];
    s_ts(ev->ts_ms, ts, sizeof ts);
    if (json) {
        printf("{\"seq\":%llu,\"ts\":\"%s\",\"ts_ms\":%lld,\"alarm\":", (unsigned long long)ev->seq,
               ts, (long long)ev->ts_ms);
        s_json_str(ev->alarm);
        printf(",\"event\":\"%s\",\"state\":\"%s\",\"priority\":%u,\"area\":",
               s_kind_name(ev->kind), s_state_name(ev->state), ev->has_priority ? ev->priority : 0);
        s_json_str(ev->area ? ev->area : "");
        printf(",\"shelved\":%s,\"out_of_service\":%s,\"message\":",
               ev->has_shelved && ev->shelved ? "true" : "false",
               ev->has_out_of_service && ev->out_of_service ? "true" : "false");
        s_json_str(ev->message ? ev->message : "");
        if (ev->has_value)
            printf(",\"value\":%.10g", ev->value);
        if (ev->user) {
            printf(",\"user\":");
            s_json_str(ev->user);
        }
        if (ev->comment) {
            printf(",\"comment\":");
            s_json_str(ev->comment);
        }
        if (ev->has_until_ms)
            printf(",\"until_ms\":%lld", (long long)ev->until_ms);
        printf("}\n");
        return;
    }
    char flags[64] = "";
    if (ev->has_shelved && ev->shelved)
        strcat(flags, " SHELVED");
    if (ev->has_out_of_service && ev->out_of_service)
        strcat(flags, " OUT-OF-SERVICE");
    if (history)
        printf("%s %6llu %-14s %-28s %-13s p%u %-10s %s", ts, (unsigned long long)ev->seq,
               s_kind_name(ev->kind), ev->alarm, s_state_name(ev->state),
               ev->has_priority ? ev->priority : 0, ev->area ? ev->area : "",
               ev->message ? ev->message : "");
    else
        printf("%s p%u %-10s %-28s %-13s %s", ts, ev->has_priority ? ev->priority : 0,
               ev->area ? ev->area : "", ev->alarm, s_state_name(ev->state),
               ev->message ? ev->message : "");
    if (ev->has_value)
        printf(" (%.6g)", ev->value);
    if (ev->user)
        printf(" by %s", ev->user);
    if (ev->comment && *ev->comment)
        printf(": %s", ev->comment);
    printf("%s\n", flags);
}

//  One request, one reply; NULL (message printed) when the service does not
//  answer in time.
static Scada__AlarmReply *s_call(const site_t *site, Scada__AlarmRequest *req, int timeout_ms)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    zsock_set_linger(sock, 0);
    zsock_set_rcvtimeo(sock, timeout_ms);
    zsock_set_maxmsgsize(sock, 256 * 1024 * 1024);
    Scada__AlarmReply *reply = NULL;
    if (ctlsec_client(sock, "alarm") == 0 && zsock_connect(sock, "%s", site->alarm.control) == 0) {
        req->id = (uint64_t)getpid();
        size_t len = scada__alarm_request__get_packed_size(req);
        zframe_t *frame = zframe_new(NULL, len);
        scada__alarm_request__pack(req, zframe_data(frame));
        zframe_send(&frame, sock, 0);
        zframe_t *in = zframe_recv(sock);
        if (in) {
            reply = scada__alarm_reply__unpack(NULL, zframe_size(in), zframe_data(in));
            if (!reply)
                fprintf(stderr,
                        "scadactl: the alarm service at %s sent something that is not an "
                        "AlarmReply\n",
                        site->alarm.control);
            zframe_destroy(&in);
        } else
            fprintf(stderr,
                    "scadactl: no answer from the alarm service at %s within %d ms: is "
                    "scada-alarm running?\n",
                    site->alarm.control, timeout_ms);
    }
    zsock_destroy(&sock);
    return reply;
}

int scadactl_duration_ms(const char *text, uint64_t *ms)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || !end || end == text || !(v > 0))
        return -1;
    double mult;
    if (!*end || streq(end, "s"))
        mult = 1000;
    else if (streq(end, "ms"))
        mult = 1;
    else if (streq(end, "m") || streq(end, "min"))
        mult = 60000;
    else if (streq(end, "h"))
        mult = 3600000;
    else if (streq(end, "d"))
        mult = 86400000;
    else
        return -1;
    double total = v * mult;
    if (total < 1 || total > 366.0 * 86400000)
        return -1;
    *ms = (uint64_t)total;
    return 0;
}

int scadactl_alarms(const site_t *site, const scadactl_alarm_opts_t *o)
{
    Scada__AlarmRequest req = SCADA__ALARM_REQUEST__INIT;
    req.kind = o->history ? SCADA__ALARM_REQUEST__KIND__HISTORY : SCADA__ALARM_REQUEST__KIND__LIST;
    req.area = (char *)o->area;
    if (o->max_priority) {
        req.has_max_priority = true;
        req.max_priority = o->max_priority;
    }
    if (o->limit) {
        req.has_limit = true;
        req.limit = o->limit;
    }
    req.n_alarms = o->nids;
    req.alarms = (char **)o->ids;
    Scada__AlarmReply *reply = s_call(site, &req, o->timeout_ms);
    if (!reply)
        return 1;
    int rc = 0;
    if (reply->status != SCADA__ALARM_REPLY__STATUS__OK) {
        fprintf(stderr, "scadactl alarms: %s\n", reply->error ? reply->error : "refused");
        rc = 1;
    } else {
        if (!o->json && !o->history)
            printf("%zu alarm%s%s%s\n", reply->n_alarms, reply->n_alarms == 1 ? "" : "s",
                   o->area ? " in area " : "", o->area ? o->area : "");
        for (size_t i = 0; i < reply->n_alarms; i++)
            s_print_event(reply->alarms[i], o->json, o->history);
    }
    scada__alarm_reply__free_unpacked(reply, NULL);
    return rc;
}

int scadactl_alarm_action(const site_t *site, const char *cmd, const scadactl_alarm_opts_t *o)
{
    Scada__AlarmRequest req = SCADA__ALARM_REQUEST__INIT;
    if (streq(cmd, "ack"))
        req.kind = SCADA__ALARM_REQUEST__KIND__ACK;
    else if (streq(cmd, "shelve"))
        req.kind = SCADA__ALARM_REQUEST__KIND__SHELVE;
    else if (streq(cmd, "unshelve"))
        req.kind = SCADA__ALARM_REQUEST__KIND__UNSHELVE;
    else if (streq(cmd, "disable"))
        req.kind = SCADA__ALARM_REQUEST__KIND__OUT_OF_SERVICE;
    else
        req.kind = SCADA__ALARM_REQUEST__KIND__IN_SERVICE;
    req.n_alarms = o->nids;
    req.alarms = (char **)o->ids;
    req.area = (char *)o->area;
    req.user = (char *)o->user;
    req.comment = (char *)o->comment;
    if (o->duration_ms) {
        req.has_duration_ms = true;
        req.duration_ms = o->duration_ms;
    }
    Scada__AlarmReply *reply = s_call(site, &req, o->timeout_ms);
    if (!reply)
        return 1;
    int rc = 0;
    if (reply->status != SCADA__ALARM_REPLY__STATUS__OK) {
        fprintf(stderr, "scadactl %s: %s\n", cmd, reply->error ? reply->error : "refused");
        rc = 1;
    }
    for (size_t i = 0; i < reply->n_alarms; i++)
        s_print_event(reply->alarms[i], o->json, true);
    if (rc == 0 && !o->json && reply->n_alarms == 0)
        printf("nothing to %s\n", cmd);
    scada__alarm_reply__free_unpacked(reply, NULL);
    return rc;
}

//  --------------------------------------------------------------------------
//  The alarm list of a live screen

struct _scadactl_alarm_view_t {
    const site_t *site;
    zsock_t *sock;
    Scada__AlarmReply *last; //  the newest LIST answer
    int64_t asked;           //  when the outstanding LIST went out (0: none)
    int64_t answered;        //  when the last answer came
    uint64_t id;
};

scadactl_alarm_view_t *scadactl_alarm_view_new(const site_t *site)
{
    scadactl_alarm_view_t *self = (scadactl_alarm_view_t *)zmalloc(sizeof *self);
    self->site = site;
    self->sock = zsock_new(ZMQ_DEALER);
    zsock_set_linger(self->sock, 0);
    zsock_set_maxmsgsize(self->sock, 256 * 1024 * 1024);
    zsock_set_sndhwm(self->sock, 4);
    if (ctlsec_client(self->sock, "alarm") == 0)
        zsock_connect(self->sock, "%s", site->alarm.control);
    return self;
}

void scadactl_alarm_view_destroy(scadactl_alarm_view_t **self_p)
{
    scadactl_alarm_view_t *self = *self_p;
    if (!self)
        return;
    if (self->last)
        scada__alarm_reply__free_unpacked(self->last, NULL);
    zsock_destroy(&self->sock);
    free(self);
    *self_p = NULL;
}

bool scadactl_alarm_view_poll(scadactl_alarm_view_t *self)
{
    int64_t now = mclock_mono_ms();
    bool changed = false;
    while (zsock_events(self->sock) & ZMQ_POLLIN) {
        zframe_t *in = zframe_recv(self->sock);
        if (!in)
            break;
        Scada__AlarmReply *r = scada__alarm_reply__unpack(NULL, zframe_size(in), zframe_data(in));
        zframe_destroy(&in);
        if (!r)
            continue;
        if (r->id != self->id || r->status != SCADA__ALARM_REPLY__STATUS__OK) {
            scada__alarm_reply__free_unpacked(r, NULL);
            continue;
        }
        if (self->last)
            scada__alarm_reply__free_unpacked(self->last, NULL);
        self->last = r;
        self->asked = 0;
        self->answered = now;
        changed = true;
    }
    //  Ask again 2 s after the last answer, or 2 s after an unanswered ask
    //  (a restarted service lost it: the DEALER reconnects on its own).
    if ((self->asked == 0 && now - self->answered >= 2000) ||
        (self->asked && now - self->asked >= 2000)) {
        Scada__AlarmRequest req = SCADA__ALARM_REQUEST__INIT;
        req.kind = SCADA__ALARM_REQUEST__KIND__LIST;
        req.id = ++self->id;
        size_t len = scada__alarm_request__get_packed_size(&req);
        zframe_t *frame = zframe_new(NULL, len);
        scada__alarm_request__pack(&req, zframe_data(frame));
        if (zframe_send(&frame, self->sock, ZFRAME_DONTWAIT) < 0)
            zframe_destroy(&frame);
        self->asked = now;
        if (self->asked - self->answered > 6000 && self->last) {
            //  Nothing for three asks: do not show an old list as current.
            scada__alarm_reply__free_unpacked(self->last, NULL);
            self->last = NULL;
            changed = true;
        }
    }
    return changed;
}

static int s_urgency_cmp(const void *a, const void *b)
{
    const Scada__AlarmEvent *x = *(const Scada__AlarmEvent *const *)a;
    const Scada__AlarmEvent *y = *(const Scada__AlarmEvent *const *)b;
    uint32_t px = x->has_priority ? x->priority : 99, py = y->has_priority ? y->priority : 99;
    if (px != py)
        return px < py ? -1 : 1;
    bool ux = x->state == SCADA__ALARM_STATE__UNACK_ACTIVE ||
              x->state == SCADA__ALARM_STATE__UNACK_CLEARED;
    bool uy = y->state == SCADA__ALARM_STATE__UNACK_ACTIVE ||
              y->state == SCADA__ALARM_STATE__UNACK_CLEARED;
    if (ux != uy)
        return ux ? -1 : 1;
    return x->ts_ms > y->ts_ms ? -1 : x->ts_ms < y->ts_ms ? 1 : 0;
}

void scadactl_alarm_view_print(scadactl_alarm_view_t *self, int max_rows)
{
    if (!self->last) {
        printf("alarms: no answer from the alarm service at %s (is scada-alarm running?)\n",
               self->site->alarm.control);
        return;
    }
    size_t n = self->last->n_alarms, unacked = 0;
    Scada__AlarmEvent **rows = (Scada__AlarmEvent **)zmalloc((n + 1) * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        rows[i] = self->last->alarms[i];
        unacked += rows[i]->state == SCADA__ALARM_STATE__UNACK_ACTIVE ||
                   rows[i]->state == SCADA__ALARM_STATE__UNACK_CLEARED;
    }
    qsort(rows, n, sizeof *rows, s_urgency_cmp);
    printf("alarms: %zu in the list, %zu unacknowledged", n, unacked);
    if (max_rows > 0 && (size_t)max_rows < n)
        printf(" (the %d most urgent shown; scadactl alarms lists all)", max_rows);
    printf("\n");
    for (size_t i = 0; i < n && i < (size_t)max_rows; i++)
        s_print_event(rows[i], false, false);
    free(rows);
}
