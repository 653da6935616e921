/*  alarm: the alarm service. See alarm.h and docs/alarms.md.

    Alarms are made once, from the site file, at start:
    - per tag with `alarms:`: one per limit (TAG.HIHI, TAG.HI, TAG.LO,
      TAG.LOLO) or its state alarm (TAG.STATE), and TAG.COMM (bad quality);
    - per I/O server and device it serves: IO.DEVICE.COMM (device offline);
    - per I/O server and link: IO.CHANNEL.IO_TIMEOUT (a tcp/serial channel) or
      IO.CHANNEL.DEVICE.IO_TIMEOUT (a network device's socket);
    - ALARM.BROKER.COMM: the service cannot see tag values (broker lost).
    Their lifecycle is alarm_eval's; this file feeds it and records what it
    says.
*/
#include "alarm.h"

#include "ajournal.h"
#include "alarm_eval.h"
#include "mclock.h"
#include "pubgate.h"
#include "rzloop.h"
#include "scada.pb-c.h"
#include "scada_client.h"
#include "sec.h"
#include "slog.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>

#define TICK_MS           10
#define PAGE_TAGS         10000 //  alarm tags per broker page
#define HISTORY_DEFAULT   100
#define HISTORY_MAX       100000
#define STREAM_MAXLEN     100000 //  Redis stream of events, approximately
#define STATE_EVERY_PING  5      //  ask the I/O servers for their state every 5 pings
#define ACTIVE_EVERY_PING 10     //  rewrite the Redis active list whole every 10 pings

typedef enum { SRC_TAG = 0, SRC_DEVICE, SRC_LINK, SRC_SERVICE } s_src_t;

typedef struct {
    char *id;
    al_t al;
    s_src_t src;
    char *source; //  tag name, "io1/plc1", "io1/line1"...
    int priority;
    const char *area;
    char *message;
    const char *ioserver; //  SRC_DEVICE, SRC_LINK
    //  The last event, for the active list.
    uint64_t seq;
    int64_t ts_ms;
    al_kind_t kind;
    bool has_value;
    double value;
    int64_t value_ts; //  source timestamp of the value behind the last event
    char *user, *comment;
    int64_t until_ms;
} s_alarm_t;

typedef struct {
    s_alarm_t *limits[5]; //  HIHI, HI, LO, LOLO or STATE
    size_t nlimits;
    s_alarm_t *comm;
    site_device_t *device; //  the tag's device
    bool bad;              //  its last value was not good
} s_tagal_t;

typedef struct {
    site_ioserver_t *cfg;
    zsock_t *sub;      //  events ("E")
    zsock_t *dealer;   //  STATE requests
    uint64_t last_seq; //  of its events: a gap means some were lost
    bool asked;        //  a STATE request is out
    uint64_t state_id; //  id of the latest STATE request
    int64_t answered;  //  mono ms of its latest answer (STATUS every ping)
    void *comm;        //  s_alarm_t: IO.COMM, the I/O server does not answer
} s_ios_t;

struct _alarmsvc_t {
    site_t *site;
    char *peer_user; //  the sender of the control request in hand: its certificate's name
    bool peer_curve; //  it came with a certificate (the name, not its `user`, is recorded)
    char *name;
    zloop_t *loop;
    zsock_t *pub;
    pubgate_t *gate;          //  who may subscribe to pub
    int64_t malformed_logged; //  mono ms of the last "malformed request" line
    uint64_t malformed_quiet; //  malformed requests since, not logged
    zsock_t *control;
    sec_t *sec; //  CURVE (or plain, said at start)
    rzloop_t *redis;
    ajournal_t *journal;
    char *journal_path;
    scada_client_t *client;
    bool blind;       //  the broker link is down: tag alarms frozen
    zhashx_t *alarms; //  id -> s_alarm_t (owned)
    s_alarm_t **all;  //  every alarm, in creation order
    size_t nall;
    s_tagal_t *by_tag; //  [tag id - 1]
    s_ios_t *ios;
    size_t nios;
    s_alarm_t *broker_alarm;
    uint64_t seq;
    int64_t started_wall;
    uint64_t pings;
    char *prefix;             //  scada:<site>:alarm
    char *active_key;         //  scada:<site>:alarm:active
    bool active_dirty;        //  a command to the active list was dropped
    int64_t active_refreshed; //  mono ms the active list's TTL was last set
    //  Counters
    uint64_t events, journal_errors, malformed, requests, values, ioserver_events;
    int64_t journal_error_logged;
    bool journal_dirty;
};

//  --------------------------------------------------------------------------
//  Alarms

static s_alarm_t *s_alarm_new(alarmsvc_t *self, const char *id, s_src_t src, const char *source,
                              const al_config_t *cfg, int priority, const char *area,
                              const char *message)
{
    if (zhashx_lookup(self->alarms, id)) {
        slog_warn("alarm %s defined twice: the second is ignored", id);
        return NULL;
    }
    s_alarm_t *a = (s_alarm_t *)zmalloc(sizeof *a);
    a->id = strdup(id);
    a->src = src;
    a->source = strdup(source);
    a->priority = priority;
    a->area = area;
    a->message = strdup(message);
    if (al_init(&a->al, cfg) != 0) {
        slog_error("alarm %s: bad configuration", id);
        free(a->id);
        free(a->source);
        free(a->message);
        free(a);
        return NULL;
    }
    zhashx_insert(self->alarms, id, a);
    self->all = (s_alarm_t **)realloc(self->all, (self->nall + 1) * sizeof *self->all);
    self->all[self->nall++] = a;
    return a;
}

static void s_alarm_free(void **item)
{
    s_alarm_t *a = (s_alarm_t *)*item;
    if (a) {
        free(a->id);
        free(a->source);
        free(a->message);
        free(a->user);
        free(a->comment);
        free(a);
    }
    *item = NULL;
}

static void s_make_alarms(alarmsvc_t *self)
{
    site_t *site = self->site;
    self->by_tag = (s_tagal_t *)zmalloc((site->ntags + 1) * sizeof *self->by_tag);
    char id[512], msg[512];
    for (size_t i = 0; i < site->ntags; i++) {
        site_tag_t *t = site_tag_by_id(site, (uint32_t)i + 1);
        if (!t || !t->alarms.any)
            continue;
        site_alarms_t *al = &t->alarms;
        s_tagal_t *ta = &self->by_tag[i];
        const site_limit_t *lims[4] = {&al->hihi, &al->hi, &al->lo, &al->lolo};
        static const char *const words[4] = {"high high", "high", "low", "low low"};
        for (int k = 0; k < 4; k++) {
            if (!lims[k]->set)
                continue;
            al_config_t cfg = {.type = (al_type_t)k,
                               .limit = lims[k]->limit,
                               .deadband = al->deadband,
                               .on_delay_ms = al->on_delay_ms};
            al_format_id(id, sizeof id, t->name, (al_type_t)k);
            if (lims[k]->message)
                snprintf(msg, sizeof msg, "%s", lims[k]->message);
            else
                snprintf(msg, sizeof msg, "%s %s (limit %g)", t->name, words[k], lims[k]->limit);
            s_alarm_t *a =
                s_alarm_new(self, id, SRC_TAG, t->name, &cfg, lims[k]->priority, al->area, msg);
            if (a)
                ta->limits[ta->nlimits++] = a;
        }
        if (al->has_state) {
            al_config_t cfg = {
                .type = AL_STATE, .limit = al->state, .on_delay_ms = al->on_delay_ms};
            al_format_id(id, sizeof id, t->name, AL_STATE);
            if (al->state_message)
                snprintf(msg, sizeof msg, "%s", al->state_message);
            else
                snprintf(msg, sizeof msg, "%s is %g", t->name, al->state);
            s_alarm_t *a =
                s_alarm_new(self, id, SRC_TAG, t->name, &cfg, al->state_priority, al->area, msg);
            if (a)
                ta->limits[ta->nlimits++] = a;
        }
        ta->device = t->device;
        if (al->comm) {
            //  TAG.COMM waits comm_delay_ms: a failover or a restart that
            //  brings good values back within it raises nothing.
            al_config_t cfg = {.type = AL_COMM, .on_delay_ms = site->alarm.comm_delay_ms};
            al_format_id(id, sizeof id, t->name, AL_COMM);
            snprintf(msg, sizeof msg, "%s: no good value (communication)", t->name);
            ta->comm = s_alarm_new(self, id, SRC_TAG, t->name, &cfg, site->alarm.comm_priority,
                                   al->area, msg);
        }
    }
    al_config_t comm = {.type = AL_COMM};
    if (site->alarm.device_alarms)
        for (size_t i = 0; i < site->nioservers; i++) {
            const char *io = site->ioservers[i].name;
            al_format_id(id, sizeof id, io, AL_COMM);
            snprintf(msg, sizeof msg, "I/O server %s does not answer", io);
            s_alarm_new(self, id, SRC_SERVICE, io, &comm, site->alarm.comm_priority,
                        site->alarm.comm_area, msg);
            for (size_t c = 0; c < site->nchannels; c++) {
                site_channel_t *ch = &site->channels[c];
                bool served = false;
                for (size_t d = 0; d < ch->ndevices; d++) {
                    site_device_t *dev = &ch->devices[d];
                    if (site_device_priority(dev, io) <= 0)
                        continue;
                    served = true;
                    char src[256];
                    snprintf(src, sizeof src, "%s.%s", io, dev->name);
                    al_format_id(id, sizeof id, src, AL_COMM);
                    snprintf(msg, sizeof msg, "device %s offline at %s", dev->name, io);
                    s_alarm_t *a =
                        s_alarm_new(self, id, SRC_DEVICE, src, &comm, site->alarm.comm_priority,
                                    site->alarm.comm_area, msg);
                    if (a)
                        a->ioserver = io;
                    if (ch->type == SITE_CH_NETWORK || ch->type == SITE_CH_LISTEN) {
                        snprintf(id, sizeof id, "%s.%s.%s.IO_TIMEOUT", io, ch->name, dev->name);
                        snprintf(msg, sizeof msg, "I/O Timeout on %s (channel %s) at %s", dev->name,
                                 ch->name, io);
                        a = s_alarm_new(self, id, SRC_LINK, src, &comm, site->alarm.comm_priority,
                                        site->alarm.comm_area, msg);
                        if (a)
                            a->ioserver = io;
                    }
                }
                if (served && ch->type != SITE_CH_NETWORK && ch->type != SITE_CH_LISTEN) {
                    char src[256];
                    snprintf(src, sizeof src, "%s.%s", io, ch->name);
                    snprintf(id, sizeof id, "%s.%s.IO_TIMEOUT", io, ch->name);
                    snprintf(msg, sizeof msg, "I/O Timeout on channel %s at %s", ch->name, io);
                    s_alarm_t *a =
                        s_alarm_new(self, id, SRC_LINK, src, &comm, site->alarm.comm_priority,
                                    site->alarm.comm_area, msg);
                    if (a)
                        a->ioserver = io;
                }
            }
        }
    self->broker_alarm = s_alarm_new(self, "ALARM.BROKER.COMM", SRC_SERVICE, "broker", &comm,
                                     site->alarm.comm_priority, site->alarm.comm_area,
                                     "the alarm service cannot see tag values (broker lost)");
}

//  --------------------------------------------------------------------------
//  Events: journal, subscribers, Redis

static void s_fill_event(alarmsvc_t *self, Scada__AlarmEvent *ev, const s_alarm_t *a)
{
    scada__alarm_event__init(ev);
    ev->seq = a->seq;
    ev->ts_ms = a->ts_ms;
    ev->alarm = a->id;
    ev->kind = (Scada__AlarmEvent__Kind)a->kind;
    ev->state = (Scada__AlarmState)a->al.state;
    ev->has_shelved = true;
    ev->shelved = a->al.shelved;
    ev->has_out_of_service = true;
    ev->out_of_service = a->al.out_of_service;
    ev->has_priority = true;
    ev->priority = (uint32_t)a->priority;
    ev->area = (char *)a->area;
    ev->message = a->message;
    ev->has_value = a->has_value;
    ev->value = a->value;
    ev->user = a->user;
    ev->comment = a->comment;
    if (a->al.shelved) {
        ev->has_until_ms = true;
        ev->until_ms = a->al.until_ms;
    }
    ev->source = a->source;
    if (a->has_value && a->value_ts) {
        ev->has_value_ts_ms = true;
        ev->value_ts_ms = a->value_ts;
    }
}

//  TTL of the Redis keys but the event stream: 3 ping times, at least 1 s,
//  refreshed every ping.
static int64_t s_ttl_ms(alarmsvc_t *self)
{
    int64_t ttl = 3 * (int64_t)self->site->ping_time_ms;
    return ttl < 1000 ? 1000 : ttl;
}

//  An alarm is on the active list unless it is normal, in service and not
//  shelved.
static bool s_listed(const s_alarm_t *a)
{
    return a->al.state != AL_NORMAL || a->al.shelved || a->al.out_of_service;
}

//  Its value on the active list: "STATE pPRIORITY AREA [SHELVED]
//  [OUT_OF_SERVICE] MESSAGE".
static void s_active_value(const s_alarm_t *a, char *buf, size_t size)
{
    snprintf(buf, size, "%s p%d %s%s%s %s", al_state_name(a->al.state), a->priority, a->area,
             a->al.shelved ? " SHELVED" : "", a->al.out_of_service ? " OUT_OF_SERVICE" : "",
             a->message);
}

//  One alarm's entry on the active list, after an event of it.
static void s_redis_active(alarmsvc_t *self, s_alarm_t *a)
{
    if (!rzloop_connected(self->redis))
        return;
    int rc;
    if (!s_listed(a))
        rc = rzloop_command(self->redis, "HDEL %s %s", self->active_key, a->id);
    else {
        char val[768];
        s_active_value(a, val, sizeof val);
        rc = rzloop_command(self->redis, "HSET %s %s %s", self->active_key, a->id, val);
        //  The HSET may have made the key: it has its TTL at once, not at
        //  the next ping (a kill -9 meanwhile would leave it for ever).
        if (rc == 0)
            rc = rzloop_command(self->redis, "PEXPIRE %s %lld", self->active_key,
                                (long long)s_ttl_ms(self));
    }
    if (rc != 0)
        self->active_dirty = true; //  dropped: rewritten whole at the next ping
}

//  The active list whole, in one command: a script deletes the key and
//  writes every listed alarm with the TTL, so a reader never sees it half
//  written and it never exists without its TTL. HSET takes 1,000 pairs at
//  a time (Lua's unpack has a stack limit).
static const char *s_active_script =
    "redis.call('DEL', KEYS[1]) "
    "for i = 2, #ARGV, 2000 do "
    "redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 1999, #ARGV))) "
    "end "
    "if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return (#ARGV - 1) / 2";

static void s_redis_active_all(alarmsvc_t *self)
{
    if (!rzloop_connected(self->redis))
        return;
    size_t n = 0;
    for (size_t i = 0; i < self->nall; i++)
        n += s_listed(self->all[i]);
    //  EVAL script 1 key ttl id value id value ...
    size_t argc = 5 + 2 * n;
    const char **argv = (const char **)zmalloc(argc * sizeof *argv);
    size_t *lens = (size_t *)zmalloc(argc * sizeof *lens);
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)s_ttl_ms(self));
    argv[0] = "EVAL";
    argv[1] = s_active_script;
    argv[2] = "1";
    argv[3] = self->active_key;
    argv[4] = ttl;
    size_t k = 5;
    for (size_t i = 0; i < self->nall; i++) {
        s_alarm_t *a = self->all[i];
        if (!s_listed(a))
            continue;
        char val[768];
        s_active_value(a, val, sizeof val);
        argv[k++] = a->id;
        argv[k++] = strdup(val);
    }
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    int rc = rzloop_command_argv(self->redis, (int)argc, argv, lens);
    for (size_t i = 6; i < argc; i += 2)
        free((char *)argv[i]);
    free(argv);
    free(lens);
    self->active_dirty = rc != 0;
    self->active_refreshed = mclock_mono_ms();
}

//  One event of alarm a: numbered, journaled, published, mirrored to Redis.
static void s_emit(alarmsvc_t *self, s_alarm_t *a, const al_event_t *e, const char *user,
                   const char *comment, int64_t now)
{
    a->seq = ++self->seq;
    a->ts_ms = now;
    a->kind = e->kind;
    a->has_value = e->has_value;
    a->value = e->value;
    a->until_ms = e->until_ms;
    free(a->user);
    free(a->comment);
    a->user = user ? strdup(user) : NULL;
    a->comment = comment ? strdup(comment) : NULL;
    self->events++;
    Scada__AlarmEvent ev;
    s_fill_event(self, &ev, a);
    if (self->journal) {
        if (ajournal_append(self->journal, &ev) != 0) {
            self->journal_errors++;
            if (now - self->journal_error_logged >= 1000) {
                slog_error("journal %s: %s (%llu events not journaled so far)", self->journal_path,
                           ajournal_error(self->journal), (unsigned long long)self->journal_errors);
                self->journal_error_logged = now;
            }
        } else
            self->journal_dirty = true;
    }
    size_t len = scada__alarm_event__get_packed_size(&ev);
    uint8_t *buf = (uint8_t *)malloc(len ? len : 1);
    scada__alarm_event__pack(&ev, buf);
    zsock_send(self->pub, "sb", "A", buf, len);
    free(buf);
    if (rzloop_connected(self->redis)) {
        rzloop_command(
            self->redis,
            "XADD %s:events MAXLEN ~ %d * seq %llu alarm %s event %s state %s ts_ms %lld "
            "priority %d area %s message %s user %s comment %s",
            self->prefix, STREAM_MAXLEN, (unsigned long long)a->seq, a->id, al_kind_name(e->kind),
            al_state_name(a->al.state), (long long)now, a->priority, a->area, a->message,
            user ? user : "", comment ? comment : "");
        s_redis_active(self, a);
    }
    slog_debug("%s %s -> %s%s", a->id, al_kind_name(e->kind), al_state_name(a->al.state),
               a->al.shelved ? " (shelved)" : "");
}

static void s_emit_all(alarmsvc_t *self, s_alarm_t *a, const al_event_t *evs, int n,
                       const char *user, const char *comment, int64_t now)
{
    for (int i = 0; i < n; i++)
        s_emit(self, a, &evs[i], user, comment, now);
}

static void s_condition(alarmsvc_t *self, s_alarm_t *a, bool met, int64_t now)
{
    if (!a)
        return;
    al_event_t evs[AL_EVENTS_MAX];
    int n = al_on_condition(&a->al, met, now, evs);
    s_emit_all(self, a, evs, n, NULL, NULL, now);
}

//  --------------------------------------------------------------------------
//  Sources: tag values (broker), I/O server events

static s_alarm_t *s_find(alarmsvc_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

//  Is the alarm's condition met now (whatever its on-delay, shelve or
//  service state)? A missing alarm is not.
static bool s_met(const s_alarm_t *a)
{
    return a && (a->al.cond || a->al.active);
}

//  A tag of this device has no good value: is that already said by a
//  communication alarm? It is when every I/O server that may serve the
//  device is itself down (IO.COMM), has the device offline (DEVICE.COMM) or
//  its link in I/O Timeout. Then TAG.COMM stays quiet: one dead RTU is one
//  alarm per I/O server, not one more per tag (the designed suppression of
//  ISA-18.2). Where any server should have the device, a bad tag is news.
static bool s_comm_explained(alarmsvc_t *self, const site_device_t *dev)
{
    if (!dev || !self->site->alarm.device_alarms)
        return false;
    const char *ch = dev->channel ? dev->channel->name : "";
    for (size_t i = 0; i < dev->nservers; i++) {
        const char *io = dev->servers[i].ioserver;
        if (!(s_met(s_find(self, "%s.COMM", io)) ||
              s_met(s_find(self, "%s.%s.COMM", io, dev->name)) ||
              s_met(s_find(self, "%s.%s.%s.IO_TIMEOUT", io, ch, dev->name)) ||
              s_met(s_find(self, "%s.%s.IO_TIMEOUT", io, ch))))
            return false;
    }
    return dev->nservers > 0;
}

static void s_on_value(scada_client_t *client, uint32_t page, const char *tag, uint32_t tag_id,
                       const scada_value_t *v, void *arg)
{
    alarmsvc_t *self = (alarmsvc_t *)arg;
    site_tag_t *t = site_tag(self->site, tag);
    if (!t || t->id == 0 || t->id > self->site->ntags)
        return;
    s_tagal_t *ta = &self->by_tag[t->id - 1];
    int64_t now = mclock_wall_ms();
    self->values++;
    bool good = v->quality == SCADA_Q_GOOD && v->has_value;
    if (self->blind && !good) {
        //  The broker link is down: the service is blind, not the plant.
        //  Freeze the limits; ALARM.BROKER.COMM says so, once.
        for (size_t i = 0; i < ta->nlimits; i++) {
            al_event_t evs[AL_EVENTS_MAX];
            int n = al_on_value(&ta->limits[i]->al, 0, false, now, evs);
            s_emit_all(self, ta->limits[i], evs, n, NULL, NULL, now);
        }
        return;
    }
    for (size_t i = 0; i < ta->nlimits; i++) {
        al_event_t evs[AL_EVENTS_MAX];
        ta->limits[i]->value_ts = v->ts_ms;
        int n = al_on_value(&ta->limits[i]->al, v->value, good, now, evs);
        s_emit_all(self, ta->limits[i], evs, n, NULL, NULL, now);
    }
    ta->bad = !good;
    if (ta->comm)
        s_condition(self, ta->comm, !good && !s_comm_explained(self, ta->device), now);
}

static void s_on_client_event(scada_client_t *client, scada_client_event_t event, uint32_t page,
                              const char *text, void *arg)
{
    alarmsvc_t *self = (alarmsvc_t *)arg;
    int64_t now = mclock_wall_ms();
    if (event == SCADA_CLIENT_LOST) {
        if (!self->blind)
            slog_warn("broker link lost (%s): tag alarms frozen", text ? text : "");
        self->blind = true;
        s_condition(self, self->broker_alarm, true, now);
    } else if (event == SCADA_CLIENT_UP || event == SCADA_CLIENT_SUBSCRIBED) {
        if (self->blind)
            slog_info("broker link up: tag alarms evaluated again");
        self->blind = false;
        s_condition(self, self->broker_alarm, false, now);
    } else if (event == SCADA_CLIENT_ERROR)
        slog_warn("broker: %s", text ? text : "error");
}

static s_alarm_t *s_find(alarmsvc_t *self, const char *fmt, ...)
{
    char id[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(id, sizeof id, fmt, ap);
    va_end(ap);
    return (s_alarm_t *)zhashx_lookup(self->alarms, id);
}

static void s_on_io_event(alarmsvc_t *self, const char *ioserver, Scada__Event *e, int64_t now)
{
    self->ioserver_events++;
    if (!ioserver)
        return;
    switch (e->kind) {
    case SCADA__EVENT__KIND__DEVICE_STATE:
        //  Online clears, offline or failed raises. Queued and connecting
        //  say nothing yet (an I/O server that just started has not tried
        //  its devices): the alarm keeps its state until the attempt ends.
        if (e->device && e->has_device_state &&
            (e->device_state == SCADA__DEVICE_STATE__ONLINE ||
             e->device_state == SCADA__DEVICE_STATE__OFFLINE ||
             e->device_state == SCADA__DEVICE_STATE__FAILED))
            s_condition(self, s_find(self, "%s.%s.COMM", ioserver, e->device),
                        e->device_state != SCADA__DEVICE_STATE__ONLINE, now);
        break;
    case SCADA__EVENT__KIND__IO_TIMEOUT_RAISE:
    case SCADA__EVENT__KIND__IO_TIMEOUT_CLEAR: {
        bool met = e->kind == SCADA__EVENT__KIND__IO_TIMEOUT_RAISE;
        s_alarm_t *a = NULL;
        if (e->channel && e->device)
            a = s_find(self, "%s.%s.%s.IO_TIMEOUT", ioserver, e->channel, e->device);
        if (!a && e->channel)
            a = s_find(self, "%s.%s.IO_TIMEOUT", ioserver, e->channel);
        s_condition(self, a, met, now);
        break;
    }
    default:
        break;
    }
}

static void s_ask_state(alarmsvc_t *self, s_ios_t *io)
{
    Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
    req.id = ++self->requests;
    req.kind = SCADA__IO_REQUEST__KIND__STATE;
    size_t len = scada__io_request__get_packed_size(&req);
    zframe_t *f = zframe_new(NULL, len);
    scada__io_request__pack(&req, zframe_data(f));
    io->state_id = req.id;
    if (zframe_send(&f, io->dealer, ZFRAME_DONTWAIT) == 0)
        io->asked = true;
    else
        zframe_destroy(&f);
}

//  STATUS every ping: an I/O server that stops answering raises IO.COMM.
static void s_ask_status(alarmsvc_t *self, s_ios_t *io)
{
    Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
    req.id = ++self->requests;
    req.kind = SCADA__IO_REQUEST__KIND__STATUS;
    size_t len = scada__io_request__get_packed_size(&req);
    zframe_t *f = zframe_new(NULL, len);
    scada__io_request__pack(&req, zframe_data(f));
    if (zframe_send(&f, io->dealer, ZFRAME_DONTWAIT) != 0)
        zframe_destroy(&f);
}

typedef struct {
    alarmsvc_t *self;
    s_ios_t *io;
} s_ios_ref_t;

static int s_on_events(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_ios_ref_t *ref = (s_ios_ref_t *)arg;
    alarmsvc_t *self = ref->self;
    s_ios_t *io = ref->io;
    int64_t now = mclock_wall_ms();
    for (int burst = 0; burst < 64; burst++) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        zframe_t *topic = zmsg_first(msg), *body = zmsg_next(msg);
        Scada__EventBatch *b =
            zmsg_size(msg) == 2 && zframe_streq(topic, "E")
                ? scada__event_batch__unpack(NULL, zframe_size(body), zframe_data(body))
                : NULL;
        zmsg_destroy(&msg);
        if (!b) {
            self->malformed++;
            continue;
        }
        for (size_t i = 0; i < b->n_events; i++) {
            Scada__Event *e = b->events[i];
            if (io->last_seq && e->seq > io->last_seq + 1 && !io->asked) {
                slog_warn("%s: events %llu..%llu lost: asking for its state", io->cfg->name,
                          (unsigned long long)io->last_seq + 1, (unsigned long long)e->seq - 1);
                s_ask_state(self, io);
            }
            if (e->seq > io->last_seq || e->seq + 1000 < io->last_seq)
                io->last_seq = e->seq; //  (a restart numbers from 1 again)
            //  Only events of the I/O server this socket listens to.
            s_on_io_event(self,
                          e->ioserver && streq(e->ioserver, io->cfg->name) ? e->ioserver : NULL, e,
                          now);
        }
        scada__event_batch__free_unpacked(b, NULL);
    }
    return 0;
}

//  The answer to STATE: the I/O server's current truth. Alarms of it that
//  the answer does not name as failed are not failed.
static int s_on_state(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_ios_ref_t *ref = (s_ios_ref_t *)arg;
    alarmsvc_t *self = ref->self;
    s_ios_t *io = ref->io;
    zframe_t *f = zframe_recv(sock);
    if (!f)
        return 0;
    Scada__IoReply *rep = scada__io_reply__unpack(NULL, zframe_size(f), zframe_data(f));
    zframe_destroy(&f);
    if (rep) {
        //  It answers: it is there. Coming back after silence, its state is
        //  asked for at once (what changed while it was away).
        bool was_lost = io->comm && ((s_alarm_t *)io->comm)->al.active;
        io->answered = mclock_mono_ms();
        s_condition(self, (s_alarm_t *)io->comm, false, mclock_wall_ms());
        if (was_lost)
            s_ask_state(self, io);
        if (rep->id != io->state_id) {
            scada__io_reply__free_unpacked(rep, NULL);
            return 0; //  a STATUS answer
        }
    }
    io->asked = false;
    if (!rep || rep->status != SCADA__IO_REPLY__STATUS__OK) {
        self->malformed += rep ? 0 : 1;
        if (rep)
            scada__io_reply__free_unpacked(rep, NULL);
        return 0;
    }
    int64_t now = mclock_wall_ms();
    //  Links: active exactly when listed.
    for (size_t i = 0; i < self->nall; i++) {
        s_alarm_t *a = self->all[i];
        if (a->src != SRC_LINK || !a->ioserver || !streq(a->ioserver, io->cfg->name))
            continue;
        bool listed = false;
        for (size_t k = 0; k < rep->n_events && !listed; k++) {
            Scada__Event *e = rep->events[k];
            if (e->kind != SCADA__EVENT__KIND__IO_TIMEOUT_RAISE || !e->channel)
                continue;
            char id[512];
            if (e->device)
                snprintf(id, sizeof id, "%s.%s.%s.IO_TIMEOUT", io->cfg->name, e->channel,
                         e->device);
            else
                snprintf(id, sizeof id, "%s.%s.IO_TIMEOUT", io->cfg->name, e->channel);
            listed = streq(id, a->id);
        }
        s_condition(self, a, listed, now);
    }
    for (size_t k = 0; k < rep->n_events; k++) {
        Scada__Event *e = rep->events[k];
        if (e->kind != SCADA__EVENT__KIND__DEVICE_STATE)
            continue;
        //  Queued and connecting devices at start are not failures yet.
        s_on_io_event(self, io->cfg->name, e, now);
    }
    scada__io_reply__free_unpacked(rep, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  Control

static void s_reply(alarmsvc_t *self, zframe_t *rid, Scada__AlarmReply *rep)
{
    size_t len = scada__alarm_reply__get_packed_size(rep);
    zframe_t *f = zframe_new(NULL, len);
    scada__alarm_reply__pack(rep, zframe_data(f));
    zframe_send(&rid, self->control, ZFRAME_MORE);
    zframe_send(&f, self->control, 0);
}

static void s_reply_error(alarmsvc_t *self, zframe_t *rid, uint64_t id, const char *error)
{
    Scada__AlarmReply rep = SCADA__ALARM_REPLY__INIT;
    rep.id = id;
    rep.status = SCADA__ALARM_REPLY__STATUS__ERROR;
    rep.error = (char *)error;
    s_reply(self, rid, &rep);
}

//  May the sender of the request in hand read (or act on) alarms of `area`?
//  The site's roles; without roles, yes.
static bool s_may(alarmsvc_t *self, const char *area, bool act)
{
    return site_may(self->site, self->peer_user, area, act);
}

static bool s_matches(const s_alarm_t *a, const Scada__AlarmRequest *req)
{
    if (req->area && *req->area && !streq(req->area, a->area))
        return false;
    if (req->has_max_priority && req->max_priority && (uint32_t)a->priority > req->max_priority)
        return false;
    if (req->n_alarms) {
        for (size_t i = 0; i < req->n_alarms; i++)
            if (streq(req->alarms[i], a->id))
                return true;
        return false;
    }
    return true;
}

static int s_list_order(const void *pa, const void *pb)
{
    const Scada__AlarmEvent *x = *(Scada__AlarmEvent *const *)pa;
    const Scada__AlarmEvent *y = *(Scada__AlarmEvent *const *)pb;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->ts_ms != y->ts_ms)
        return x->ts_ms > y->ts_ms ? -1 : 1;
    return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static void s_list(alarmsvc_t *self, zframe_t *rid, Scada__AlarmRequest *req)
{
    Scada__AlarmReply rep = SCADA__ALARM_REPLY__INIT;
    rep.id = req->id;
    rep.status = SCADA__ALARM_REPLY__STATUS__OK;
    size_t n = 0;
    for (size_t i = 0; i < self->nall; i++)
        n += s_listed(self->all[i]) && s_matches(self->all[i], req) &&
             s_may(self, self->all[i]->area, false);
    Scada__AlarmEvent *evs = (Scada__AlarmEvent *)zmalloc((n + 1) * sizeof *evs);
    Scada__AlarmEvent **ptrs = (Scada__AlarmEvent **)zmalloc((n + 1) * sizeof *ptrs);
    size_t k = 0;
    for (size_t i = 0; i < self->nall && k < n; i++) {
        s_alarm_t *a = self->all[i];
        if (!s_listed(a) || !s_matches(a, req) || !s_may(self, a->area, false))
            continue;
        s_fill_event(self, &evs[k], a);
        ptrs[k] = &evs[k];
        k++;
    }
    //  Priority first, then newest first: what an operator reads top down.
    qsort(ptrs, k, sizeof *ptrs, s_list_order);
    rep.n_alarms = k;
    rep.alarms = ptrs;
    s_reply(self, rid, &rep);
    free(evs);
    free(ptrs);
}

static void s_history(alarmsvc_t *self, zframe_t *rid, Scada__AlarmRequest *req)
{
    if (self->journal)
        ajournal_sync(self->journal);
    size_t want = req->has_limit && req->limit ? req->limit : HISTORY_DEFAULT;
    if (want > HISTORY_MAX)
        want = HISTORY_MAX;
    bool filtered = (req->area && *req->area) || req->n_alarms || req->has_max_priority;
    Scada__AlarmEvent **evs = NULL;
    size_t count = 0;
    char err[512] = "";
    if (ajournal_history(self->journal_path, filtered ? HISTORY_MAX : want, &evs, &count, err,
                         sizeof err) != 0) {
        s_reply_error(self, rid, req->id, err);
        return;
    }
    Scada__AlarmEvent **keep = (Scada__AlarmEvent **)zmalloc((count + 1) * sizeof *keep);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        Scada__AlarmEvent *e = evs[i];
        if (req->area && *req->area && (!e->area || !streq(e->area, req->area)))
            continue;
        if (!s_may(self, e->area ? e->area : "", false))
            continue;
        if (req->has_max_priority && req->max_priority && e->has_priority &&
            e->priority > req->max_priority)
            continue;
        bool named = req->n_alarms == 0;
        for (size_t k = 0; k < req->n_alarms && !named; k++)
            named = streq(req->alarms[k], e->alarm);
        if (named)
            keep[n++] = e;
    }
    size_t first = n > want ? n - want : 0;
    Scada__AlarmReply rep = SCADA__ALARM_REPLY__INIT;
    rep.id = req->id;
    rep.status = SCADA__ALARM_REPLY__STATUS__OK;
    rep.n_alarms = n - first;
    rep.alarms = keep + first;
    if (*err)
        slog_warn("history: %s", err);
    s_reply(self, rid, &rep);
    free(keep);
    ajournal_events_free(&evs, count);
}

//  ACK, SHELVE, UNSHELVE, OUT_OF_SERVICE, IN_SERVICE. All named alarms must
//  exist and accept the request, or nothing is done (the error names them).
//  What a control request lacks whatever the alarms' state (a kind we serve,
//  the alarms an action is for, a shelve's duration): the text of its ERROR,
//  in `buf` or static, or NULL.
static const char *s_request_check(const Scada__AlarmRequest *req, char *buf, size_t len)
{
    switch (req->kind) {
    case SCADA__ALARM_REQUEST__KIND__LIST:
    case SCADA__ALARM_REQUEST__KIND__HISTORY:
        return NULL;
    case SCADA__ALARM_REQUEST__KIND__ACK:
    case SCADA__ALARM_REQUEST__KIND__SHELVE:
    case SCADA__ALARM_REQUEST__KIND__UNSHELVE:
    case SCADA__ALARM_REQUEST__KIND__OUT_OF_SERVICE:
    case SCADA__ALARM_REQUEST__KIND__IN_SERVICE:
        break;
    default:
        return "unknown request kind";
    }
    if (req->n_alarms == 0 &&
        (req->kind != SCADA__ALARM_REQUEST__KIND__ACK || !req->area || !*req->area))
        return "name alarm ids (or an area, for acknowledge)";
    if (req->kind == SCADA__ALARM_REQUEST__KIND__SHELVE &&
        (!req->has_duration_ms || req->duration_ms == 0 ||
         req->duration_ms > (uint64_t)AL_SHELVE_MAX_MS)) {
        snprintf(buf, len, "shelve needs a duration between 1 ms and %lld ms (30 days)",
                 (long long)AL_SHELVE_MAX_MS);
        return buf;
    }
    return NULL;
}

static void s_action(alarmsvc_t *self, zframe_t *rid, Scada__AlarmRequest *req)
{
    char msg[160];
    const char *bad = s_request_check(req, msg, sizeof msg);
    if (bad) {
        s_reply_error(self, rid, req->id, bad);
        return;
    }
    int64_t now = mclock_wall_ms();
    size_t cap = req->n_alarms ? req->n_alarms : self->nall;
    s_alarm_t **targets = (s_alarm_t **)zmalloc((cap + 1) * sizeof *targets);
    size_t nt = 0;
    char why[1024] = "";
    size_t wl = 0;
    bool by_area = req->n_alarms == 0;
    if (by_area) {
        for (size_t i = 0; i < self->nall; i++) {
            s_alarm_t *a = self->all[i];
            if (streq(a->area, req->area) &&
                (a->al.state == AL_UNACK_ACTIVE || a->al.state == AL_UNACK_CLEARED) &&
                !a->al.out_of_service)
                targets[nt++] = a;
        }
    } else
        for (size_t i = 0; i < req->n_alarms; i++) {
            s_alarm_t *a = (s_alarm_t *)zhashx_lookup(self->alarms, req->alarms[i]);
            if (!a) {
                wl += (size_t)snprintf(why + wl, wl < sizeof why ? sizeof why - wl : 0,
                                       "%sno such alarm: %s", wl ? "; " : "", req->alarms[i]);
                continue;
            }
            //  Would it accept? Try on a copy.
            al_t probe = a->al;
            al_event_t evs[AL_EVENTS_MAX];
            int rc = 0;
            switch (req->kind) {
            case SCADA__ALARM_REQUEST__KIND__ACK:
                rc = al_ack(&probe, now, evs);
                break;
            case SCADA__ALARM_REQUEST__KIND__SHELVE:
                rc = al_shelve(&probe, (int64_t)req->duration_ms, now, evs);
                break;
            case SCADA__ALARM_REQUEST__KIND__UNSHELVE:
                rc = al_unshelve(&probe, now, evs);
                break;
            case SCADA__ALARM_REQUEST__KIND__OUT_OF_SERVICE:
                rc = al_out_of_service(&probe, now, evs);
                break;
            default:
                rc = al_in_service(&probe, now, evs);
            }
            if (rc < 0)
                wl += (size_t)snprintf(why + wl, wl < sizeof why ? sizeof why - wl : 0,
                                       "%s%s: %s (state %s%s)", wl ? "; " : "", a->id,
                                       al_strerror(rc), al_state_name(a->al.state),
                                       a->al.shelved ? ", shelved" : "");
            else
                targets[nt++] = a;
        }
    //  Acting on an alarm takes the right to write its area.
    const char *denied = by_area ? req->area : NULL;
    for (size_t i = 0; i < nt && !denied; i++)
        if (!s_may(self, targets[i]->area, true))
            denied = targets[i]->area;
    if (!wl && denied && !s_may(self, denied, true)) {
        const site_role_t *role = site_role_of(self->site, self->peer_user);
        wl = (size_t)snprintf(why, sizeof why, "%s%s (%s%s) may not act on alarms of area %s",
                              self->peer_user ? "user " : "",
                              self->peer_user ? self->peer_user : "an unidentified client",
                              role ? "role " : "no role", role ? role->name : "", denied);
        slog_warn("alarm request refused: %s", why);
        free(targets);
        s_reply_error(self, rid, req->id, why);
        return;
    }
    if (wl) {
        free(targets);
        self->malformed++;
        s_reply_error(self, rid, req->id, why);
        return;
    }
    //  Who acted: with CURVE the certificate's name, which the client cannot
    //  choose; on a plain site the user the request names.
    const char *who = self->peer_curve ? (self->peer_user ? self->peer_user : "(unnamed key)")
                                       : (req->user ? req->user : "unknown");
    Scada__AlarmEvent *out = (Scada__AlarmEvent *)zmalloc((2 * nt + 1) * sizeof *out);
    Scada__AlarmEvent **ptrs = (Scada__AlarmEvent **)zmalloc((2 * nt + 1) * sizeof *ptrs);
    size_t nout = 0;
    for (size_t i = 0; i < nt; i++) {
        s_alarm_t *a = targets[i];
        al_event_t evs[AL_EVENTS_MAX];
        int n;
        switch (req->kind) {
        case SCADA__ALARM_REQUEST__KIND__ACK:
            n = al_ack(&a->al, now, evs);
            break;
        case SCADA__ALARM_REQUEST__KIND__SHELVE:
            n = al_shelve(&a->al, (int64_t)req->duration_ms, now, evs);
            break;
        case SCADA__ALARM_REQUEST__KIND__UNSHELVE:
            n = al_unshelve(&a->al, now, evs);
            break;
        case SCADA__ALARM_REQUEST__KIND__OUT_OF_SERVICE:
            n = al_out_of_service(&a->al, now, evs);
            break;
        default:
            n = al_in_service(&a->al, now, evs);
        }
        for (int k = 0; k < n; k++) {
            s_emit(self, a, &evs[k], who, req->comment, now);
            if (nout < 2 * nt) {
                s_fill_event(self, &out[nout], a);
                //  Not a->user and a->comment: the alarm's next event (IN_SERVICE
                //  then RAISE) frees them before the reply is packed.
                out[nout].user = (char *)who;
                out[nout].comment = req->comment;
                ptrs[nout] = &out[nout];
                nout++;
            }
        }
    }
    //  Confirmed only once it is on disk.
    if (self->journal && ajournal_sync(self->journal) == 0)
        self->journal_dirty = false;
    Scada__AlarmReply rep = SCADA__ALARM_REPLY__INIT;
    rep.id = req->id;
    rep.status = SCADA__ALARM_REPLY__STATUS__OK;
    rep.n_alarms = nout;
    rep.alarms = ptrs;
    s_reply(self, rid, &rep);
    free(out);
    free(ptrs);
    free(targets);
}

static int s_on_control(zloop_t *loop, zsock_t *sock, void *arg)
{
    alarmsvc_t *self = (alarmsvc_t *)arg;
    for (int burst = 0; burst < 64; burst++) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        zframe_t *rid = zmsg_pop(msg);
        zframe_t *body = zmsg_last(msg);
        Scada__AlarmRequest *req =
            rid && body && zmsg_size(msg) <= 2
                ? scada__alarm_request__unpack(NULL, zframe_size(body), zframe_data(body))
                : NULL;
        const char *name = body ? zframe_meta(body, "name") : NULL;
        const char *key = body ? zframe_meta(body, "User-Id") : NULL;
        free(self->peer_user);
        self->peer_user = name ? strdup(name) : NULL;
        self->peer_curve = key && *key;
        zmsg_destroy(&msg);
        if (!rid) {
            self->malformed++;
            continue;
        }
        if (!req) {
            self->malformed++;
            //  At most one line a second, whatever a hostile peer sends.
            int64_t now = mclock_mono_ms();
            if (now - self->malformed_logged >= 1000) {
                slog_warn("control: malformed request dropped (%llu so far, %llu not logged "
                          "since the last such line)",
                          (unsigned long long)self->malformed,
                          (unsigned long long)self->malformed_quiet);
                self->malformed_logged = now;
                self->malformed_quiet = 0;
            } else
                self->malformed_quiet++;
            s_reply_error(self, rid, 0, "malformed request: not a scada.AlarmRequest");
            continue;
        }
        switch (req->kind) {
        case SCADA__ALARM_REQUEST__KIND__LIST:
            s_list(self, rid, req);
            break;
        case SCADA__ALARM_REQUEST__KIND__HISTORY:
            s_history(self, rid, req);
            break;
        case SCADA__ALARM_REQUEST__KIND__ACK:
        case SCADA__ALARM_REQUEST__KIND__SHELVE:
        case SCADA__ALARM_REQUEST__KIND__UNSHELVE:
        case SCADA__ALARM_REQUEST__KIND__OUT_OF_SERVICE:
        case SCADA__ALARM_REQUEST__KIND__IN_SERVICE:
            s_action(self, rid, req);
            break;
        default:
            self->malformed++;
            s_reply_error(self, rid, req->id, "unknown request kind");
        }
        scada__alarm_request__free_unpacked(req, NULL);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Timers and Redis

static void s_redis_state(alarmsvc_t *self, const char *state)
{
    size_t active = 0, unacked = 0, shelved = 0, oos = 0;
    for (size_t i = 0; i < self->nall; i++) {
        al_t *al = &self->all[i]->al;
        active += al->state == AL_UNACK_ACTIVE || al->state == AL_ACK_ACTIVE;
        unacked += al->state == AL_UNACK_ACTIVE || al->state == AL_UNACK_CLEARED;
        shelved += al->shelved;
        oos += al->out_of_service;
    }
    rzloop_command(
        self->redis,
        "HSET %s state %s pid %d started_ms %lld updated_ms %lld alarms %llu active "
        "%llu unacked %llu shelved %llu out_of_service %llu events %llu seq %llu "
        "journal %s journal_errors %llu malformed %llu broker %s subscribers_refused %llu",
        self->prefix, state, (int)getpid(), (long long)self->started_wall,
        (long long)mclock_wall_ms(), (unsigned long long)self->nall, (unsigned long long)active,
        (unsigned long long)unacked, (unsigned long long)shelved, (unsigned long long)oos,
        (unsigned long long)self->events, (unsigned long long)self->seq, self->journal_path,
        (unsigned long long)self->journal_errors, (unsigned long long)self->malformed,
        self->blind ? "lost" : "up", (unsigned long long)pubgate_refused(self->gate));
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->prefix, (long long)s_ttl_ms(self));
}

//  Every ping: the summary, and the active list's TTL. The list is
//  rewritten whole when it may be wrong or gone: a command to it was
//  dropped, or this refresh comes late (the key may have expired meanwhile),
//  and every ACTIVE_EVERY_PING pings, since a key deleted or evicted behind
//  our back cannot be asked about (rzloop reads no replies).
static void s_redis_refresh(alarmsvc_t *self)
{
    if (!rzloop_connected(self->redis))
        return;
    int64_t now = mclock_mono_ms();
    int64_t ttl = s_ttl_ms(self);
    if (self->active_dirty || 2 * (now - self->active_refreshed) >= ttl ||
        self->pings % ACTIVE_EVERY_PING == 0)
        s_redis_active_all(self);
    else {
        rzloop_command(self->redis, "PEXPIRE %s %lld", self->active_key, (long long)ttl);
        self->active_refreshed = now;
    }
    s_redis_state(self, "running");
}

static void s_on_redis_connect(rzloop_t *redis, void *arg)
{
    //  Redis (re)started or came back: everything, the active list whole.
    alarmsvc_t *self = (alarmsvc_t *)arg;
    s_redis_active_all(self);
    s_redis_state(self, "running");
}

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    alarmsvc_t *self = (alarmsvc_t *)arg;
    int64_t now = mclock_wall_ms();
    for (size_t i = 0; i < self->nall; i++) {
        s_alarm_t *a = self->all[i];
        if (al_next_due(&a->al) > now)
            continue;
        al_event_t evs[AL_EVENTS_MAX];
        int n = al_tick(&a->al, now, evs);
        s_emit_all(self, a, evs, n, n ? "system" : NULL, NULL, now);
    }
    //  Group commit: what this turn journaled is made durable now.
    if (self->journal_dirty && self->journal && self->site->alarm.sync == SITE_SYNC_BATCH) {
        if (ajournal_sync(self->journal) != 0)
            slog_error("journal %s: %s", self->journal_path, ajournal_error(self->journal));
        self->journal_dirty = false;
    }
    return 0;
}

static int s_on_ping(zloop_t *loop, int timer_id, void *arg)
{
    alarmsvc_t *self = (alarmsvc_t *)arg;
    self->pings++;
    //  Reconcile with the I/O servers now and then (a restart of theirs, an
    //  event lost on the way): STATE is their current truth.
    for (size_t i = 0; i < self->nios; i++)
        if (!self->ios[i].asked || self->pings % STATE_EVERY_PING == 0)
            if (self->pings % STATE_EVERY_PING == 1 || !self->ios[i].last_seq)
                s_ask_state(self, &self->ios[i]);
    int64_t mono = mclock_mono_ms();
    for (size_t i = 0; i < self->nios; i++) {
        s_ios_t *io = &self->ios[i];
        s_ask_status(self, io);
        if (io->comm && mono - io->answered > 3 * (int64_t)self->site->ping_time_ms)
            s_condition(self, (s_alarm_t *)io->comm, true, mclock_wall_ms());
    }
    //  TAG.COMM of tags still bad: a communication alarm that explained
    //  them may have cleared (or one raised) since their last value.
    if (!self->blind)
        for (size_t i = 0; i < self->site->ntags; i++) {
            s_tagal_t *ta = &self->by_tag[i];
            if (ta->comm && (ta->bad || s_met(ta->comm)))
                s_condition(self, ta->comm, ta->bad && !s_comm_explained(self, ta->device),
                            mclock_wall_ms());
        }
    s_redis_refresh(self);
    return 0;
}

static int s_on_pipe(zloop_t *loop, zsock_t *pipe, void *arg)
{
    char *cmd = zstr_recv(pipe);
    int rc = cmd && streq(cmd, "$TERM") ? -1 : 0;
    zstr_free(&cmd);
    return rc;
}

//  --------------------------------------------------------------------------
//  Construction

//  The state the journal holds: every alarm it names is restored (alarms
//  the site file no longer has are counted and left).
static void s_restore(alarmsvc_t *self)
{
    ajournal_state_t *st = ajournal_state(self->journal);
    size_t n = ajournal_state_size(st), unknown = 0, restored = 0;
    int64_t now = mclock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        const Scada__AlarmEvent *ev = ajournal_state_at(st, i);
        s_alarm_t *a = (s_alarm_t *)zhashx_lookup(self->alarms, ev->alarm);
        if (!a) {
            unknown++;
            continue;
        }
        al_saved_t saved = {.state = (al_state_t)ev->state,
                            .shelved = ev->has_shelved && ev->shelved,
                            .until_ms = ev->has_until_ms ? ev->until_ms : 0,
                            .out_of_service = ev->has_out_of_service && ev->out_of_service};
        if (al_restore(&a->al, &saved, now) != 0) {
            slog_warn("journal: alarm %s: state %d cannot be restored: starts normal", a->id,
                      (int)ev->state);
            continue;
        }
        a->seq = ev->seq;
        a->ts_ms = ev->ts_ms;
        a->kind = (al_kind_t)ev->kind;
        a->has_value = ev->has_value;
        a->value = ev->value;
        a->user = ev->user ? strdup(ev->user) : NULL;
        a->comment = ev->comment ? strdup(ev->comment) : NULL;
        restored++;
    }
    self->seq = ajournal_last_seq(self->journal);
    slog_info("journal %s: %zu alarms restored, last event %llu%s", self->journal_path, restored,
              (unsigned long long)self->seq, unknown ? " (some alarms no longer in the site)" : "");
    if (unknown)
        slog_warn("journal names %zu alarms the site file no longer has: left as they were",
                  unknown);
}

//  The gate of the event stream: the brokers are trusted; anyone else
//  needs read on every area of the site's alarms.
static void s_gate_new(alarmsvc_t *self)
{
    self->gate = pubgate_new(self->site, "alarm publish socket", NULL);
    for (size_t i = 0; i < self->nall; i++)
        pubgate_add_area(self->gate, self->all[i]->area);
}

alarmsvc_t *alarmsvc_new(site_t *site, const char *name)
{
    alarmsvc_t *self = (alarmsvc_t *)zmalloc(sizeof *self);
    self->site = site;
    self->name = strdup(name);
    self->prefix = zsys_sprintf("scada:%s:alarm", site->site);
    self->active_key = zsys_sprintf("scada:%s:alarm:active", site->site);
    self->started_wall = mclock_wall_ms();
    self->alarms = zhashx_new();
    zhashx_set_destructor(self->alarms, s_alarm_free);
    s_make_alarms(self);
    self->journal_path = site_path(site, site->alarm.journal);
    char err[1024] = "";
    ajournal_sync_t pol = site->alarm.sync == SITE_SYNC_EACH   ? AJ_SYNC_EACH
                          : site->alarm.sync == SITE_SYNC_NONE ? AJ_SYNC_NONE
                                                               : AJ_SYNC_BATCH;
    self->journal = ajournal_open(self->journal_path, pol, err, sizeof err);
    if (!self->journal && errno != ENOENT && errno != EACCES) {
        //  Damage before the tail: keep every valid record, move the damaged
        //  file aside (nothing is guessed at, nothing deleted), go on.
        slog_error("%s", err);
        char rerr[1024] = "";
        if (ajournal_repair(self->journal_path, rerr, sizeof rerr) == 1) {
            slog_warn("journal repaired: %s", rerr);
            self->journal = ajournal_open(self->journal_path, pol, err, sizeof err);
        } else if (*rerr)
            slog_error("journal repair: %s", rerr);
    }
    if (!self->journal) {
        slog_error("%s (repair it with the ajournal tools, or move it aside to start afresh)", err);
        alarmsvc_destroy(&self);
        return NULL;
    }
    if (*err)
        slog_warn("%s", err);
    ajournal_set_rotation(self->journal, (uint64_t)site->alarm.journal_max_kb * 1024,
                          AJ_KEEP_DEFAULT);
    s_restore(self);

    //  Limits (docs/alarms.md): a subscriber may fall a whole site's alarms
    //  behind (100,000 events of a few hundred bytes), then loses events; it
    //  sends nothing but subscriptions.
    if (!(self->sec = sec_new(site, name, NULL, err, sizeof err))) {
        slog_error("%s", err);
        alarmsvc_destroy(&self);
        return NULL;
    }
    self->pub = zsock_new(ZMQ_PUB);
    zsock_set_sndhwm(self->pub, 100000);
    zsock_set_rcvhwm(self->pub, 100);
    zsock_set_maxmsgsize(self->pub, 1024);
    s_gate_new(self);
    if (sec_server_gated(self->sec, self->pub, "alarm publish socket", self->gate, err,
                         sizeof err) != 0 ||
        site_bind(self->pub, site->alarm.publish, err, sizeof err) < 0) {
        slog_error("alarm publish endpoint: %s", err);
        alarmsvc_destroy(&self);
        return NULL;
    }
    self->control = zsock_new(ZMQ_ROUTER);
    zsock_set_maxmsgsize(self->control, 1024 * 1024);
    zsock_set_sndhwm(self->control, 100); //  a client waits for each answer
    zsock_set_rcvhwm(self->control, 100);
    if (sec_server(self->sec, self->control, "alarm control socket", err, sizeof err) != 0 ||
        site_bind(self->control, site->alarm.control, err, sizeof err) < 0) {
        slog_error("alarm control endpoint: %s", err);
        alarmsvc_destroy(&self);
        return NULL;
    }
    self->ios = (s_ios_t *)zmalloc((site->nioservers + 1) * sizeof *self->ios);
    for (size_t i = 0; i < site->nioservers; i++) {
        s_ios_t *io = &self->ios[self->nios++];
        io->cfg = &site->ioservers[i];
        io->sub = zsock_new(ZMQ_SUB);
        zsock_set_rcvhwm(io->sub, 100000);    //  every device of a big I/O server, 5 times
        zsock_set_maxmsgsize(io->sub, 16384); //  one event: at most about 1.2 KB
        zsock_set_subscribe(io->sub, "E");
        char what[96];
        snprintf(what, sizeof what, "events from %s", io->cfg->name);
        if (sec_client(self->sec, io->sub, io->cfg->name, what, err, sizeof err) != 0)
            slog_error("%s", err);
        zsock_connect(io->sub, "%s", io->cfg->publish);
        io->answered = mclock_mono_ms();
        char id[300];
        al_format_id(id, sizeof id, io->cfg->name, AL_COMM);
        io->comm = zhashx_lookup(self->alarms, id); //  made by s_make_alarms
        io->dealer = zsock_new(ZMQ_DEALER);
        zsock_set_linger(io->dealer, 0);
        zsock_set_immediate(io->dealer, 1);
        //  STATE of 20,000 devices with 255-byte names: about 45 MB.
        zsock_set_maxmsgsize(io->dealer, 64 * 1024 * 1024);
        zsock_set_sndhwm(io->dealer, 100);
        zsock_set_rcvhwm(io->dealer, 100);
        snprintf(what, sizeof what, "requests to %s", io->cfg->name);
        if (sec_client(self->sec, io->dealer, io->cfg->name, what, err, sizeof err) != 0)
            slog_error("%s", err);
        zsock_connect(io->dealer, "%s", io->cfg->control);
    }
    const site_broker_t *b = site_broker(site, site->alarm.broker);
    scada_client_opts_t opts = {.name = "scada-alarm",
                                .heartbeat_ms = b->client_heartbeat_ms,
                                .sec = self->sec,
                                .sec_peer = b->name};
    self->client = scada_client_new(b->endpoint, &opts);
    if (!self->client) {
        slog_error("cannot make a client of broker %s at %s", b->name, b->endpoint);
        alarmsvc_destroy(&self);
        return NULL;
    }
    scada_client_set_event_handler(self->client, s_on_client_event, self);
    slog_info("%zu alarms; journal %s (sync %s); events on %s, control on %s; tag values "
              "through broker %s at %s",
              self->nall, self->journal_path, site_sync_name(site->alarm.sync), site->alarm.publish,
              site->alarm.control, b->name, b->endpoint);
    return self;
}

void alarmsvc_destroy(alarmsvc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    alarmsvc_t *self = *self_p;
    scada_client_destroy(&self->client);
    for (size_t i = 0; i < self->nios; i++) {
        zsock_destroy(&self->ios[i].sub);
        zsock_destroy(&self->ios[i].dealer);
    }
    free(self->ios);
    sec_destroy(&self->sec);
    pubgate_destroy(&self->gate); //  after the authenticator that asks it
    if (self->journal) {
        ajournal_sync(self->journal);
        ajournal_close(&self->journal);
    }
    zsock_destroy(&self->pub);
    zsock_destroy(&self->control);
    zhashx_destroy(&self->alarms);
    free(self->all);
    free(self->by_tag);
    free(self->journal_path);
    free(self->peer_user);
    zstr_free(&self->prefix);
    zstr_free(&self->active_key);
    free(self->name);
    free(self);
    *self_p = NULL;
}

void alarmsvc_actor(zsock_t *pipe, void *engine)
{
    alarmsvc_t *self = (alarmsvc_t *)engine;
    self->loop = zloop_new();
    zloop_set_nonstop(self->loop, true);
    zloop_reader(self->loop, pipe, s_on_pipe, self);
    zloop_reader(self->loop, self->control, s_on_control, self);
    zloop_reader_set_tolerant(self->loop, self->control);
    sec_attach(self->sec, self->loop);
    s_ios_ref_t *refs = (s_ios_ref_t *)zmalloc((self->nios + 1) * sizeof *refs);
    for (size_t i = 0; i < self->nios; i++) {
        refs[i] = (s_ios_ref_t){self, &self->ios[i]};
        zloop_reader(self->loop, self->ios[i].sub, s_on_events, &refs[i]);
        zloop_reader_set_tolerant(self->loop, self->ios[i].sub);
        zloop_reader(self->loop, self->ios[i].dealer, s_on_state, &refs[i]);
        zloop_reader_set_tolerant(self->loop, self->ios[i].dealer);
    }
    zloop_timer(self->loop, TICK_MS, 0, s_on_tick, self);
    zloop_timer(self->loop, self->site->ping_time_ms, 0, s_on_ping, self);
    self->redis = rzloop_new(self->loop, self->site->redis_host, self->site->redis_port,
                             s_on_redis_connect, self);
    rzloop_set_auth(self->redis, self->site->redis_user, self->site->redis_password);
    scada_client_attach(self->client, self->loop);
    //  The tags with alarms: a permanent subscription, in pages.
    const char **names = (const char **)zmalloc((PAGE_TAGS + 1) * sizeof *names);
    size_t n = 0;
    uint32_t page = 1;
    for (size_t i = 0; i < self->site->ntags; i++) {
        site_tag_t *t = site_tag_by_id(self->site, (uint32_t)i + 1);
        if (!t || !t->alarms.any)
            continue;
        names[n++] = t->name;
        if (n == PAGE_TAGS) {
            scada_client_subscribe(self->client, page++, names, n, s_on_value, self);
            n = 0;
        }
    }
    if (n)
        scada_client_subscribe(self->client, page++, names, n, s_on_value, self);
    free(names);
    for (size_t i = 0; i < self->nios; i++)
        s_ask_state(self, &self->ios[i]);
    zsock_signal(pipe, 0);
    zloop_start(self->loop);
    if (self->journal)
        ajournal_sync(self->journal);
    if (rzloop_connected(self->redis)) {
        s_redis_state(self, "stopped");
        rzloop_flush(self->redis, 1000);
    }
    rzloop_destroy(&self->redis);
    scada_client_destroy(&self->client);
    zloop_destroy(&self->loop);
    free(refs);
}
