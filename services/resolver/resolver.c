/*  resolver: the resolver engine. See resolver.h.

    One zloop drives everything:
    - the ROUTER: one ResolverMsg per message, from I/O servers (REGISTER,
      HEARTBEAT, UNIT_STATE) and brokers (HELLO, HEARTBEAT, RESOLVE);
    - a check timer every max(10, ping_time/10) ms: an I/O server silent for
      more than 1.5 ping times is dead, so a stopped one is noticed within
      2 ping times, and the best offers that moved go to the brokers;
    - a ping timer: brokers silent for 3 ping times are forgotten, and the
      Redis keys are refreshed;
    - hiredis's connection (rzloop), fire-and-forget.
    Which I/O server is alive and which offer is best is decided by
    offer_table (pure); this file only moves messages and state around it.

    Peers: a name listed under `ioservers` in the site file is an I/O server;
    any other name that says HELLO is a broker. Replies go back to the
    routing id the message came from; best-offer changes go to the routing id
    of each broker's latest HELLO. A broker heard from another routing id
    (it reconnected and may have missed changes) is asked to say HELLO again.
*/
#include "resolver.h"

#include "mclock.h"
#include "offer_table.h"
#include "rmsg.h"
#include "rzloop.h"
#include "sec.h"
#include "slog.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>

#define MAX_BROKERS  1024               //  brokers known at once at most
#define MAX_MSG_SIZE (16 * 1024 * 1024) //  larger messages: the peer is disconnected
#define ROUTER_HWM   1000               //  messages queued per peer at most, each way
#define LOG_EVERY_MS 1000               //  rate of repeated warnings
#define LOG_CHANGES  10                 //  more changes at once: one summary line

typedef struct {
    char *name;
    uint64_t incarnation; //  of its latest HELLO
    zframe_t *rid;        //  routing id of its latest HELLO
    int64_t last_seen;    //  mono ms of its latest HELLO or HEARTBEAT
} s_broker_t;

//  A warning that may repeat: at most one line per LOG_EVERY_MS.
typedef struct {
    int64_t last;   //  mono ms of the last line (0: none yet)
    uint64_t quiet; //  occurrences since that line
} s_limit_t;

struct _resolver_t {
    site_t *site;
    char *name; //  in logs and in HEARTBEAT answers
    zloop_t *loop;
    zsock_t *router;
    sec_t *sec; //  CURVE (or plain, said at start)
    rzloop_t *redis;
    offer_table_t *table;
    ot_io_state_t *io_state; //  per site I/O server: as last logged and written to Redis
    s_broker_t *brokers;
    size_t nbrokers, brokers_cap;
    char *key;        //  scada:<site>:resolver
    char *offers_key; //  scada:<site>:resolver:offers
    char *ios_key;    //  scada:<site>:resolver:ioservers
    uint64_t incarnation;
    int64_t started_wall;
    uint32_t check_ms;
    //  After a start the table is incomplete until every live I/O server has
    //  heartbeated once and registered again (within a ping time): until
    //  then no best offer goes out, or a broker would move its tags to the
    //  first server that registers and back again.
    int64_t settle_until; //  mono ms
    bool settled;
    //  Counters
    uint64_t resolves, names_resolved, malformed, unknown_ioservers, reregisters;
    uint64_t deltas, fulls, send_dropped;
    s_limit_t malformed_log, unknown_log, error_log;
};

//  --------------------------------------------------------------------------
//  Helpers

static int64_t s_ttl_ms(resolver_t *self)
{
    return 3 * (int64_t)self->site->ping_time_ms;
}

//  True if a line may be logged now; *quiet gets the occurrences skipped
//  since the last line.
static bool s_limit(s_limit_t *l, int64_t now, uint64_t *quiet)
{
    if (l->last && now - l->last < LOG_EVERY_MS) {
        l->quiet++;
        return false;
    }
    *quiet = l->quiet;
    l->quiet = 0;
    l->last = now;
    return true;
}

//  Occurrences not logged yet, once LOG_EVERY_MS passed since the last line
//  (0: none, or too early); the caller logs them in one line.
static uint64_t s_limit_flush(s_limit_t *l, int64_t now)
{
    if (l->quiet == 0 || now - l->last < LOG_EVERY_MS)
        return 0;
    uint64_t quiet = l->quiet;
    l->quiet = 0;
    l->last = now;
    return quiet;
}

//  A routing id for logs: hex, at most 32 digits. Caller frees.
static char *s_peer(zframe_t *rid)
{
    if (!rid)
        return strdup("?");
    char *hex = zframe_strhex(rid);
    if (hex && strlen(hex) > 32)
        strcpy(hex + 29, "...");
    return hex ? hex : strdup("?");
}

static void s_send(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *msg)
{
    if (rmsg_send(self->router, rid, msg) < 0)
        self->send_dropped++;
}

static void s_send_error(resolver_t *self, zframe_t *rid, const char *text)
{
    if (rmsg_send_error(self->router, rid, text) < 0)
        self->send_dropped++;
}

//  Drop a message that is not what the protocol says: count it, log it (at
//  most one line a second) and tell the peer why.
static void s_malformed(resolver_t *self, zframe_t *rid, int64_t now, const char *why)
{
    self->malformed++;
    uint64_t quiet;
    if (s_limit(&self->malformed_log, now, &quiet)) {
        char *peer = s_peer(rid);
        slog_warn("malformed message from peer %s dropped: %s (%llu in all, %llu not logged "
                  "since the last such line)",
                  peer, why, (unsigned long long)self->malformed, (unsigned long long)quiet);
        free(peer);
    }
    if (rid) {
        char text[320];
        snprintf(text, sizeof text, "malformed message: %s", why);
        s_send_error(self, rid, text);
    }
}

static void s_reregister(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m,
                         const char *why)
{
    self->reregisters++;
    slog_info("%s %s (incarnation %llu): %s; asked to register again", rmsg_kind_name(m->kind),
              m->name, (unsigned long long)m->incarnation, why);
    Scada__ResolverMsg r = SCADA__RESOLVER_MSG__INIT;
    r.kind = SCADA__RESOLVER_MSG__KIND__REREGISTER;
    r.name = self->name;
    r.has_incarnation = true;
    r.incarnation = self->incarnation;
    s_send(self, rid, &r);
}

//  --------------------------------------------------------------------------
//  Brokers

static long s_broker_find(resolver_t *self, const char *name)
{
    for (size_t b = 0; b < self->nbrokers; b++)
        if (strcmp(self->brokers[b].name, name) == 0)
            return (long)b;
    return -1;
}

static void s_broker_remove(resolver_t *self, size_t b)
{
    free(self->brokers[b].name);
    zframe_destroy(&self->brokers[b].rid);
    self->brokers[b] = self->brokers[--self->nbrokers];
}

static bool s_broker_live(resolver_t *self, s_broker_t *b, int64_t now)
{
    return now - b->last_seen <= 3 * (int64_t)self->site->ping_time_ms;
}

static void s_brokers_expire(resolver_t *self, int64_t now)
{
    for (size_t b = 0; b < self->nbrokers;) {
        if (s_broker_live(self, &self->brokers[b], now)) {
            b++;
            continue;
        }
        slog_warn("broker %s silent for %lld ms: forgotten (it says HELLO again when back)",
                  self->brokers[b].name, (long long)(now - self->brokers[b].last_seen));
        s_broker_remove(self, b);
    }
}

//  --------------------------------------------------------------------------
//  Redis state

static void s_redis_main(resolver_t *self, const char *state)
{
    ot_stats_t st;
    offer_table_stats(self->table, &st);
    rzloop_command(self->redis,
                   "HSET %s state %s pid %d started_ms %lld updated_ms %lld ioservers_alive %llu "
                   "ioservers_known %llu ioservers_total %llu brokers %llu devices %llu "
                   "devices_without_offer %llu resolves %llu names_resolved %llu malformed %llu "
                   "unknown_ioservers %llu unknown_devices %llu reregisters %llu endpoint %s",
                   self->key, state, (int)getpid(), (long long)self->started_wall,
                   (long long)mclock_wall_ms(), (unsigned long long)st.ioservers_alive,
                   (unsigned long long)st.ioservers_known, (unsigned long long)st.ioservers,
                   (unsigned long long)self->nbrokers, (unsigned long long)st.devices,
                   (unsigned long long)st.devices_without_offer, (unsigned long long)self->resolves,
                   (unsigned long long)self->names_resolved, (unsigned long long)self->malformed,
                   (unsigned long long)self->unknown_ioservers,
                   (unsigned long long)st.unknown_devices, (unsigned long long)self->reregisters,
                   self->site->resolver.endpoint);
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->key, (long long)s_ttl_ms(self));
}

//  HSET key f1 v1 f2 v2 ... in one command (argv form).
static void s_redis_hset(resolver_t *self, const char *key, const char **fv, size_t npairs)
{
    if (npairs == 0)
        return;
    size_t argc = 2 + 2 * npairs;
    const char **argv = (const char **)malloc(argc * sizeof *argv);
    size_t *lens = (size_t *)malloc(argc * sizeof *lens);
    if (argv && lens) {
        argv[0] = "HSET";
        argv[1] = key;
        for (size_t i = 0; i < 2 * npairs; i++)
            argv[2 + i] = fv[i];
        for (size_t i = 0; i < argc; i++)
            lens[i] = strlen(argv[i]);
        rzloop_command_argv(self->redis, (int)argc, argv, lens);
    }
    free(argv);
    free(lens);
}

//  offers: device -> I/O server of its best offer ("" when none); the
//  listed changes, or every device when changes is NULL.
static void s_redis_offers(resolver_t *self, const ot_best_t *changes, size_t n)
{
    if (!rzloop_connected(self->redis))
        return;
    size_t ndev = self->site->ndevices;
    size_t count = changes ? n : ndev;
    const char **fv = (const char **)malloc((2 * count + 1) * sizeof *fv);
    if (!fv)
        return;
    for (size_t i = 0; i < count; i++) {
        ot_best_t b;
        if (changes)
            b = changes[i];
        else
            offer_table_best(self->table, i, &b);
        fv[2 * i] = b.device;
        fv[2 * i + 1] = b.ioserver ? b.ioserver : "";
    }
    s_redis_hset(self, self->offers_key, fv, count);
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->offers_key, (long long)s_ttl_ms(self));
    free(fv);
}

//  ioservers: I/O server -> alive | dead | unregistered; those whose state
//  changed since last written (all: every one).
static void s_redis_ios(resolver_t *self, bool all)
{
    size_t nios = self->site->nioservers;
    const char **fv = (const char **)malloc((2 * nios + 1) * sizeof *fv);
    if (!fv)
        return;
    size_t n = 0;
    for (size_t i = 0; i < nios; i++) {
        ot_io_state_t st = offer_table_io_state(self->table, i);
        if (!all && st == self->io_state[i])
            continue;
        fv[2 * n] = offer_table_io_name(self->table, i);
        fv[2 * n + 1] = ot_io_state_name(st);
        n++;
    }
    if (rzloop_connected(self->redis) && n) {
        s_redis_hset(self, self->ios_key, fv, n);
        rzloop_command(self->redis, "PEXPIRE %s %lld", self->ios_key, (long long)s_ttl_ms(self));
    }
    free(fv);
}

static void s_redis_refresh(resolver_t *self)
{
    if (!rzloop_connected(self->redis))
        return;
    s_redis_main(self, "running");
    long long ttl = (long long)s_ttl_ms(self);
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->offers_key, ttl);
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->ios_key, ttl);
}

static void s_on_redis_connect(rzloop_t *redis, void *arg)
{
    //  Redis (re)started or came back: rewrite everything, and nothing
    //  left over from an older run.
    resolver_t *self = (resolver_t *)arg;
    rzloop_command(self->redis, "DEL %s %s", self->offers_key, self->ios_key);
    s_redis_main(self, "running");
    s_redis_offers(self, NULL, 0);
    s_redis_ios(self, true);
}

//  --------------------------------------------------------------------------
//  Best offers

//  One BestOffer entry from b (strings borrowed).
static void s_best_entry(Scada__BestOffer *e, const ot_best_t *b, char *reason)
{
    scada__best_offer__init(e);
    e->device = (char *)b->device;
    e->ioserver = (char *)b->ioserver;
    e->publish = (char *)b->publish;
    e->control = (char *)b->control;
    e->reason = reason;
    e->has_previous_usable = true;
    e->previous_usable = b->previous_usable;
}

//  BEST_OFFERS with `full` set to one peer: the best offer of every device.
static void s_send_full(resolver_t *self, zframe_t *rid)
{
    size_t n = self->site->ndevices;
    Scada__BestOffer *entries = (Scada__BestOffer *)calloc(n + 1, sizeof *entries);
    Scada__BestOffer **ptrs = (Scada__BestOffer **)calloc(n + 1, sizeof *ptrs);
    char **reasons = (char **)calloc(n + 1, sizeof *reasons);
    if (!entries || !ptrs || !reasons) {
        slog_error("out of memory building the best-offer table");
        free(entries);
        free(ptrs);
        free(reasons);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ot_best_t b;
        offer_table_best(self->table, i, &b);
        reasons[i] = strdup(b.reason); //  the table reuses its buffer per call
        s_best_entry(&entries[i], &b, reasons[i]);
        ptrs[i] = &entries[i];
    }
    Scada__ResolverMsg m = SCADA__RESOLVER_MSG__INIT;
    m.kind = SCADA__RESOLVER_MSG__KIND__BEST_OFFERS;
    m.has_full = true;
    m.full = true;
    m.n_best = n;
    m.best = ptrs;
    s_send(self, rid, &m);
    self->fulls++;
    for (size_t i = 0; i < n; i++)
        free(reasons[i]);
    free(reasons);
    free(entries);
    free(ptrs);
}

//  Log I/O servers whose state changed, and write them to Redis.
static void s_io_transitions(resolver_t *self)
{
    s_redis_ios(self, false);
    for (size_t i = 0; i < self->site->nioservers; i++) {
        ot_io_state_t st = offer_table_io_state(self->table, i);
        if (st == self->io_state[i])
            continue;
        if (st == OT_IO_DEAD)
            slog_warn("I/O server %s stopped heartbeating (silent for more than %u ms): its "
                      "offers are unusable until it registers again",
                      offer_table_io_name(self->table, i), self->site->ping_time_ms * 3 / 2);
        self->io_state[i] = st;
    }
}

//  After any change of the table: send the best offers that moved to every
//  live broker, and keep Redis up to date.
static void s_after_change(resolver_t *self, int64_t now)
{
    s_io_transitions(self);
    const ot_best_t *c;
    size_t n = offer_table_changes(self->table, &c);
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (i < LOG_CHANGES)
            slog_info("best offer of %s: %s (%s%s)", c[i].device,
                      c[i].ioserver ? c[i].ioserver : "none", c[i].reason,
                      c[i].previous_usable ? "; the previous one still works" : "");
        else
            slog_debug("best offer of %s: %s (%s)", c[i].device,
                       c[i].ioserver ? c[i].ioserver : "none", c[i].reason);
    }
    if (n > LOG_CHANGES)
        slog_info("... best offer of %zu devices changed in all", n);
    if (!self->settled) {
        //  Brokers get the whole table when the start settles.
        s_redis_offers(self, c, n);
        return;
    }
    Scada__BestOffer *entries = (Scada__BestOffer *)calloc(n, sizeof *entries);
    Scada__BestOffer **ptrs = (Scada__BestOffer **)calloc(n, sizeof *ptrs);
    if (entries && ptrs) {
        for (size_t i = 0; i < n; i++) {
            s_best_entry(&entries[i], &c[i], (char *)c[i].reason);
            ptrs[i] = &entries[i];
        }
        Scada__ResolverMsg m = SCADA__RESOLVER_MSG__INIT;
        m.kind = SCADA__RESOLVER_MSG__KIND__BEST_OFFERS;
        m.n_best = n;
        m.best = ptrs;
        for (size_t b = 0; b < self->nbrokers; b++)
            if (s_broker_live(self, &self->brokers[b], now)) {
                s_send(self, self->brokers[b].rid, &m);
                self->deltas++;
            }
    } else
        slog_error("out of memory: %zu best-offer changes not sent to brokers", n);
    free(entries);
    free(ptrs);
    s_redis_offers(self, c, n);
}

//  --------------------------------------------------------------------------
//  Messages

//  An I/O server name the site file does not list.
static void s_unknown_io(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m, int64_t now)
{
    self->unknown_ioservers++;
    char text[512];
    snprintf(text, sizeof text, "no I/O server named \"%s\" under ioservers in the site file %s",
             m->name, self->site->path);
    uint64_t quiet;
    if (s_limit(&self->unknown_log, now, &quiet))
        slog_warn("%s from %s refused: %s (%llu refused in all)", rmsg_kind_name(m->kind), m->name,
                  text, (unsigned long long)self->unknown_ioservers);
    s_send_error(self, rid, text);
}

//  The offers of m as the table takes them; a priority not stated is the
//  site file's. Caller frees.
static ot_offer_t *s_offers(resolver_t *self, const Scada__ResolverMsg *m)
{
    ot_offer_t *offers = (ot_offer_t *)calloc(m->n_offers + 1, sizeof *offers);
    if (!offers)
        return NULL;
    for (size_t i = 0; i < m->n_offers; i++) {
        const Scada__Offer *o = m->offers[i];
        offers[i].device = o->device;
        offers[i].online = o->online;
        if (o->has_priority)
            offers[i].priority = o->priority > INT_MAX ? INT_MAX : (int)o->priority;
        else if (m->kind == SCADA__RESOLVER_MSG__KIND__REGISTER) {
            site_device_t *dev = site_device(self->site, o->device);
            offers[i].priority = dev ? site_device_priority(dev, m->name) : 0;
        }
    }
    return offers;
}

static void s_on_register(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m, int64_t now)
{
    if (!site_ioserver(self->site, m->name)) {
        s_unknown_io(self, rid, m, now);
        return;
    }
    ot_offer_t *offers = s_offers(self, m);
    if (!offers) {
        slog_error("out of memory: REGISTER of %s dropped", m->name);
        return;
    }
    size_t ignored = 0, online = 0;
    const char *first = NULL;
    offer_table_register(self->table, m->name, m->incarnation, m->publish, m->control, offers,
                         m->n_offers, now, &ignored, &first);
    for (size_t i = 0; i < m->n_offers; i++)
        online += offers[i].online;
    slog_info("I/O server %s registered: incarnation %llu, %zu offers (%zu online), publish %s, "
              "control %s",
              m->name, (unsigned long long)m->incarnation, m->n_offers, online, m->publish,
              m->control);
    if (ignored)
        slog_warn("I/O server %s: %zu offers ignored, for devices the site file does not list "
                  "or without a priority (the first: \"%s\")",
                  m->name, ignored, first);
    free(offers);
    s_after_change(self, now);
}

static void s_on_unit_state(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m,
                            int64_t now)
{
    if (!site_ioserver(self->site, m->name)) {
        s_unknown_io(self, rid, m, now);
        return;
    }
    ot_offer_t *offers = s_offers(self, m);
    if (!offers) {
        slog_error("out of memory: UNIT_STATE of %s dropped", m->name);
        return;
    }
    size_t ignored = 0;
    const char *first = NULL;
    ot_result_t rc = offer_table_unit_state(self->table, m->name, m->incarnation, offers,
                                            m->n_offers, now, &ignored, &first);
    if (rc == OT_REREGISTER)
        s_reregister(self, rid, m, "not registered with this incarnation");
    else {
        for (size_t i = 0; i < m->n_offers; i++)
            slog_debug("unit %s %s at %s", offers[i].device,
                       offers[i].online ? "online" : "offline", m->name);
        if (ignored)
            slog_warn("I/O server %s: unit state of %zu devices it did not offer, or the site "
                      "file does not list, ignored (the first: \"%s\")",
                      m->name, ignored, first);
    }
    free(offers);
    s_after_change(self, now);
}

static void s_on_heartbeat(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m,
                           int64_t now)
{
    if (site_ioserver(self->site, m->name)) {
        if (offer_table_heartbeat(self->table, m->name, m->incarnation, now) == OT_REREGISTER)
            s_reregister(self, rid, m, "not registered with this incarnation");
        return;
    }
    long b = s_broker_find(self, m->name);
    if (b < 0) {
        s_reregister(self, rid, m, "no HELLO from this broker");
        return;
    }
    s_broker_t *br = &self->brokers[b];
    if (br->incarnation != m->incarnation) {
        s_reregister(self, rid, m, "HELLO came from another incarnation");
        return;
    }
    if (!zframe_eq(br->rid, rid)) {
        //  It reconnected: changes sent meanwhile went nowhere.
        s_reregister(self, rid, m, "reconnected since its HELLO");
        return;
    }
    br->last_seen = now;
    Scada__ResolverMsg r = SCADA__RESOLVER_MSG__INIT;
    r.kind = SCADA__RESOLVER_MSG__KIND__HEARTBEAT;
    r.name = self->name;
    r.has_incarnation = true;
    r.incarnation = self->incarnation;
    s_send(self, rid, &r);
}

static void s_on_hello(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m, int64_t now)
{
    if (site_ioserver(self->site, m->name)) {
        char why[400];
        snprintf(why, sizeof why,
                 "HELLO is for brokers, and \"%s\" is an I/O server of the site file", m->name);
        s_malformed(self, rid, now, why);
        return;
    }
    long b = s_broker_find(self, m->name);
    if (b < 0) {
        if (self->nbrokers >= MAX_BROKERS) {
            slog_warn("HELLO from broker %s refused: %d brokers already", m->name, MAX_BROKERS);
            s_send_error(self, rid, "too many brokers");
            return;
        }
        if (self->nbrokers == self->brokers_cap) {
            size_t cap = self->brokers_cap ? self->brokers_cap * 2 : 8;
            s_broker_t *nb = (s_broker_t *)realloc(self->brokers, cap * sizeof *nb);
            if (!nb) {
                slog_error("out of memory: HELLO of %s dropped", m->name);
                return;
            }
            self->brokers = nb;
            self->brokers_cap = cap;
        }
        b = (long)self->nbrokers++;
        self->brokers[b] = (s_broker_t){.name = strdup(m->name)};
        slog_info("broker %s said HELLO (incarnation %llu)", m->name,
                  (unsigned long long)m->incarnation);
    } else
        slog_info("broker %s said HELLO again (incarnation %llu%s)", m->name,
                  (unsigned long long)m->incarnation,
                  self->brokers[b].incarnation != m->incarnation ? ", restarted" : "");
    s_broker_t *br = &self->brokers[b];
    br->incarnation = m->incarnation;
    zframe_destroy(&br->rid);
    br->rid = zframe_dup(rid);
    br->last_seen = now;
    if (self->settled)
        s_send_full(self, rid);
}

static void s_on_resolve(resolver_t *self, zframe_t *rid, const Scada__ResolverMsg *m)
{
    size_t n = m->n_names;
    Scada__TagInfo *infos = (Scada__TagInfo *)calloc(n + 1, sizeof *infos);
    Scada__TagInfo **ptrs = (Scada__TagInfo **)calloc(n + 1, sizeof *ptrs);
    if (!infos || !ptrs) {
        slog_error("out of memory: RESOLVE of %zu names dropped", n);
        free(infos);
        free(ptrs);
        return;
    }
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        Scada__TagInfo *t = &infos[i];
        scada__tag_info__init(t);
        t->name = m->names[i];
        site_tag_t *tag = site_tag(self->site, m->names[i]);
        t->found = tag != NULL;
        if (tag) {
            found++;
            t->has_tag_id = true;
            t->tag_id = tag->id;
            t->device = tag->device->name;
            t->has_writable = true;
            t->writable = tag->writable;
        }
        ptrs[i] = t;
    }
    Scada__ResolverMsg r = SCADA__RESOLVER_MSG__INIT;
    r.kind = SCADA__RESOLVER_MSG__KIND__RESOLVED;
    r.has_id = true;
    r.id = m->id;
    r.n_tags = n;
    r.tags = ptrs;
    s_send(self, rid, &r);
    self->resolves++;
    self->names_resolved += n;
    slog_debug("RESOLVE %llu from %s: %zu names, %zu found", (unsigned long long)m->id,
               m->name ? m->name : "a peer", n, found);
    free(infos);
    free(ptrs);
}

//  One message from the ROUTER: routing id, then the ResolverMsg frame.
static void s_on_message(resolver_t *self, zmsg_t *msg, int64_t now)
{
    zframe_t *rid = zmsg_pop(msg);
    if (!rid || zmsg_size(msg) != 1) {
        char why[80];
        snprintf(why, sizeof why, "%zu frames after the routing id (expected 1)", zmsg_size(msg));
        s_malformed(self, rid, now, why);
        zframe_destroy(&rid);
        zmsg_destroy(&msg);
        return;
    }
    zframe_t *body = zmsg_first(msg);
    char why[256];
    int kind;
    Scada__ResolverMsg *m =
        rmsg_decode(zframe_data(body), zframe_size(body), &kind, why, sizeof why);
    zmsg_destroy(&msg);
    if (!m) {
        s_malformed(self, rid, now, why);
        zframe_destroy(&rid);
        return;
    }
    switch (m->kind) {
    case SCADA__RESOLVER_MSG__KIND__REGISTER:
        s_on_register(self, rid, m, now);
        break;
    case SCADA__RESOLVER_MSG__KIND__UNIT_STATE:
        s_on_unit_state(self, rid, m, now);
        break;
    case SCADA__RESOLVER_MSG__KIND__HEARTBEAT:
        s_on_heartbeat(self, rid, m, now);
        break;
    case SCADA__RESOLVER_MSG__KIND__HELLO:
        s_on_hello(self, rid, m, now);
        break;
    case SCADA__RESOLVER_MSG__KIND__RESOLVE:
        s_on_resolve(self, rid, m);
        break;
    case SCADA__RESOLVER_MSG__KIND__ERROR: {
        //  Never answered: two peers must not trade errors forever.
        uint64_t quiet;
        if (s_limit(&self->error_log, now, &quiet)) {
            char *peer = s_peer(rid);
            slog_warn("peer %s%s%s reports an error: %s", m->name ? m->name : "",
                      m->name ? " " : "", peer, m->error ? m->error : "(no reason)");
            free(peer);
        }
        break;
    }
    default: //  rmsg_decode lets no other kind through
        break;
    }
    rmsg_free(&m);
    zframe_destroy(&rid);
}

//  Messages waiting on the ROUTER, a burst at a time so timers still run.
static int s_on_router(zloop_t *loop, zsock_t *sock, void *arg)
{
    resolver_t *self = (resolver_t *)arg;
    for (int burst = 0; burst < 256 && (zsock_events(sock) & ZMQ_POLLIN); burst++) {
        zmsg_t *msg = zmsg_recv(sock);
        if (!msg)
            break;
        s_on_message(self, msg, mclock_mono_ms());
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Timers

static int s_on_check(zloop_t *loop, int timer_id, void *arg)
{
    resolver_t *self = (resolver_t *)arg;
    int64_t now = mclock_mono_ms();
    if (offer_table_expire(self->table, now) > 0)
        s_after_change(self, now);
    if (!self->settled && now >= self->settle_until) {
        self->settled = true;
        s_after_change(self, now); //  drain what changed meanwhile (not sent)
        size_t sent = 0;
        for (size_t b = 0; b < self->nbrokers; b++)
            if (s_broker_live(self, &self->brokers[b], now)) {
                s_send_full(self, self->brokers[b].rid);
                sent++;
            }
        slog_info("settled: I/O servers have registered; full table sent to %zu brokers", sent);
    }
    return 0;
}

static int s_on_ping(zloop_t *loop, int timer_id, void *arg)
{
    resolver_t *self = (resolver_t *)arg;
    int64_t now = mclock_mono_ms();
    s_brokers_expire(self, now);
    //  The tail of a burst of rate-limited warnings.
    uint64_t quiet;
    if ((quiet = s_limit_flush(&self->malformed_log, now)))
        slog_warn("%llu more malformed messages dropped (%llu in all)", (unsigned long long)quiet,
                  (unsigned long long)self->malformed);
    if ((quiet = s_limit_flush(&self->unknown_log, now)))
        slog_warn("%llu more messages from I/O servers the site file does not list refused "
                  "(%llu in all)",
                  (unsigned long long)quiet, (unsigned long long)self->unknown_ioservers);
    if ((quiet = s_limit_flush(&self->error_log, now)))
        slog_warn("%llu more errors reported by peers", (unsigned long long)quiet);
    s_redis_refresh(self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Life cycle

resolver_t *resolver_new(site_t *site, const char *name)
{
    resolver_t *self = (resolver_t *)zmalloc(sizeof *self);
    self->site = site;
    self->name = strdup(name ? name : "resolver");
    self->started_wall = mclock_wall_ms();
    self->incarnation = (uint64_t)self->started_wall * 1000003u ^ (uint64_t)getpid() << 40;
    self->check_ms = site->ping_time_ms / 10 > 10 ? site->ping_time_ms / 10 : 10;
    self->settle_until = mclock_mono_ms() + site->ping_time_ms * 3 / 2;
    //  Devices in site order (the order of the full table), I/O servers as listed.
    const char **devs = (const char **)zmalloc((site->ndevices + 1) * sizeof *devs);
    const char **ios = (const char **)zmalloc((site->nioservers + 1) * sizeof *ios);
    size_t nd = 0;
    for (size_t c = 0; c < site->nchannels; c++)
        for (size_t d = 0; d < site->channels[c].ndevices; d++)
            devs[nd++] = site->channels[c].devices[d].name;
    assert(nd == site->ndevices);
    for (size_t i = 0; i < site->nioservers; i++)
        ios[i] = site->ioservers[i].name;
    self->table =
        offer_table_new(devs, nd, ios, site->nioservers, (int64_t)site->ping_time_ms * 3 / 2);
    free(devs);
    free(ios);
    self->io_state = (ot_io_state_t *)zmalloc((site->nioservers + 1) * sizeof *self->io_state);
    self->key = zsys_sprintf("scada:%s:resolver", site->site);
    self->offers_key = zsys_sprintf("scada:%s:resolver:offers", site->site);
    self->ios_key = zsys_sprintf("scada:%s:resolver:ioservers", site->site);
    if (!self->table || !self->name || !self->key || !self->offers_key || !self->ios_key) {
        slog_error("out of memory");
        resolver_destroy(&self);
        return NULL;
    }
    char err[512];
    if (!(self->sec = sec_new(site, name, NULL, err, sizeof err))) {
        slog_error("%s", err);
        resolver_destroy(&self);
        return NULL;
    }
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router) {
        slog_error("cannot create the resolver socket: %s", zmq_strerror(errno));
        resolver_destroy(&self);
        return NULL;
    }
    zsock_set_maxmsgsize(self->router, MAX_MSG_SIZE);
    zsock_set_sndhwm(self->router, ROUTER_HWM);
    zsock_set_rcvhwm(self->router, ROUTER_HWM);
    zsock_set_linger(self->router, 0);
    zsock_set_router_handover(self->router, 1);
    if (sec_server(self->sec, self->router, "resolver socket", err, sizeof err) != 0 ||
        site_bind(self->router, site->resolver.endpoint, err, sizeof err) < 0) {
        slog_error("%s (resolver.endpoint of %s)", err, site->path);
        resolver_destroy(&self);
        return NULL;
    }
    slog_info("resolving on %s for site %s: %zu I/O servers, %zu devices, %zu tags; an I/O "
              "server silent for %u ms is dead (checked every %u ms)",
              site->resolver.endpoint, site->site, site->nioservers, site->ndevices, site->ntags,
              site->ping_time_ms * 3 / 2, self->check_ms);
    return self;
}

void resolver_destroy(resolver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    resolver_t *self = *self_p;
    zsock_destroy(&self->router);
    sec_destroy(&self->sec);
    while (self->nbrokers)
        s_broker_remove(self, self->nbrokers - 1);
    free(self->brokers);
    offer_table_destroy(&self->table);
    free(self->io_state);
    zstr_free(&self->key);
    zstr_free(&self->offers_key);
    zstr_free(&self->ios_key);
    free(self->name);
    free(self);
    *self_p = NULL;
}

static int s_on_pipe(zloop_t *loop, zsock_t *pipe, void *arg)
{
    char *cmd = zstr_recv(pipe);
    int rc = (!cmd || streq(cmd, "$TERM")) ? -1 : 0;
    zstr_free(&cmd);
    return rc;
}

void resolver_actor(zsock_t *pipe, void *engine)
{
    resolver_t *self = (resolver_t *)engine;
    self->loop = zloop_new();
    //  Signals are main()'s business: the loop ends only on $TERM.
    zloop_set_nonstop(self->loop, true);
    zloop_reader(self->loop, pipe, s_on_pipe, self);
    zloop_reader(self->loop, self->router, s_on_router, self);
    zloop_reader_set_tolerant(self->loop, self->router);
    sec_attach(self->sec, self->loop);
    zloop_timer(self->loop, self->check_ms, 0, s_on_check, self);
    zloop_timer(self->loop, self->site->ping_time_ms, 0, s_on_ping, self);
    self->redis = rzloop_new(self->loop, self->site->redis_host, self->site->redis_port,
                             s_on_redis_connect, self);
    rzloop_set_auth(self->redis, self->site->redis_user, self->site->redis_password);
    zsock_signal(pipe, 0);
    zloop_start(self->loop);

    //  Stopping: the last state must reach Redis; the keys then expire.
    if (rzloop_connected(self->redis)) {
        s_redis_main(self, "stopped");
        rzloop_flush(self->redis, 1000);
    }
    slog_info("stopping: %llu resolves (%llu names), %llu malformed messages, %llu best-offer "
              "deltas and %llu full tables sent, %llu sends dropped",
              (unsigned long long)self->resolves, (unsigned long long)self->names_resolved,
              (unsigned long long)self->malformed, (unsigned long long)self->deltas,
              (unsigned long long)self->fulls, (unsigned long long)self->send_dropped);
    rzloop_destroy(&self->redis);
    zloop_destroy(&self->loop);
}
