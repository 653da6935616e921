/*  ioserver: the I/O server engine. See ioserver.h.

    One zloop drives everything:
    - a 10 ms tick runs the connect window (start attempts, expire them), sends
      due requests, expires replies, and flushes the value batch;
    - one poller per device socket (POLLOUT while connecting, POLLIN after);
    - the control socket (ROUTER) for writes and status;
    - hiredis's connection (rzloop), fire-and-forget;
    - a timer every ping_time refreshes Redis and checks the window's health.
    A device has at most one request outstanding. Its tags are planned into
    blocks (mbplan) per scan period; a block is read when due.

    zloop stops dispatching after a poller is added or removed and may hand a
    handler a poll result of a socket already closed, so every handler first
    checks the descriptor is still the device's.
*/
#include "ioserver.h"

#include "connect_window.h"
#include "iolog.h"
#include "link_fsm.h"
#include "mbplan.h"
#include "mbtcp.h"
#include "mclock.h"
#include "pubgate.h"
#include "reply_deadline.h"
#include "rzloop.h"
#include "scada.pb-c.h"
#include "serial_actor.h"
#include "audit.h"
#include "scada_client.h"
#include "sec.h"
#include "slog.h"
#include "tagval.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS     10
#define BATCH_MAX   512 //  values per published message
#define WRITE_QUEUE 64  //  writes waiting per device at most
#define TCP_BITS    8   //  bits per byte on a TCP link with a configured speed
#define MAX_BROKERS 64  //  brokers holding subscriptions at one I/O server
#define NO_BLOCK    ((size_t)-1)

typedef enum { DEV_DOWN = 0, DEV_CONNECTING, DEV_ONLINE } dev_conn_t;

typedef struct _s_device_t s_device_t;
typedef struct _s_link_t s_link_t;

#define ADDRS_MAX 4 //  addresses of a host name tried in turn
//  glibc's lookup threads (getaddrinfo_a) exit a second after their last
//  lookup; until then they hold memory of their own.
#define LOOKUP_LINGER_MS 1500

//  One address of a link (IPv4 or IPv6).
typedef struct {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
} s_addr_t;

//  A host name resolution in flight: what getaddrinfo_a reads and writes
//  until it is done, so it lives on the heap until then.
typedef struct {
    struct gaicb cb;
    struct addrinfo hints;
    char service[8];
} s_lookup_t;

typedef struct {
    site_tag_t *cfg;
    s_device_t *dev;
    size_t cls, blk;    //  where it is read (blk NO_BLOCK: never, address out of range)
    uint64_t subs;      //  bit b: broker slot b subscribed it
    bool active;        //  polled: subscribed, or always scanned
    bool fresh;         //  read (or its device's state known) since it became active:
                        //  only then is what we hold worth publishing
    double value;       //  last value read (engineering units)
    int64_t ts;         //  its source timestamp, wall ms
    int quality;        //  SCADA__QUALITY__*
    const char *reason; //  why quality is not good (static or interned text)
    bool have;          //  a value was ever read
    bool published;     //  something was ever published
    double pub_value;   //  what subscribers last saw
    int pub_quality;
} s_tag_t;

typedef struct {
    uint32_t scan_ms;
    mbplan_t *plan;
    int64_t *due;     //  per block: next time it is due (mono ms)
    uint32_t *active; //  per block: its active tags; a block with none is not read
    uint8_t *phased;  //  per block: its phase in the period is set (see s_link_send)
} s_class_t;

typedef struct {
    zmsg_t *envelope; //  routing frames of the requester
    uint64_t id;      //  request id to echo
    s_tag_t *tag;
    uint16_t regs[2];
    int bit;
    double value; //  engineering value asked for
    bool has_old; //  the reading before the write (in the reply, and the audit)
    double old_value;
    int old_quality;
    bool direct; //  not from a broker: audited here
    int64_t wall_ms;
    char *user, *pubkey, *client;
} s_write_t;

typedef struct {
    bool active;
    bool is_write;
    bool probe;       //  a one-register read that only shows the unit answers
    s_device_t *dev;  //  whose request it is
    size_t cls, blk;  //  read: which block
    s_write_t *write; //  write: owned while active
    mb_request_t req;
    int64_t sent, deadline;
    int64_t sent_wall; //  for the I/O log
    uint32_t req_bytes, rep_bytes;
} s_pending_t;

struct _s_device_t {
    ioserver_t *server;
    site_device_t *cfg;
    s_link_t *link; //  the connection it is reached through
    s_class_t *classes;
    size_t nclasses;
    s_tag_t *tags;
    zlist_t *writes;    //  of s_write_t, waiting
    bool answered;      //  it answered on the link's current connection: online
    bool offer_online;  //  online as last told to the resolver
    size_t nactive;     //  blocks with active tags; none: probed every unit_probe_ms
    int64_t probe_due;  //  next probe (mono ms)
    int64_t last_ok_ms; //  wall ms of the last good reply
    char last_error[160];
    const char *redis_state; //  state last written to Redis
    bool redis_dirty;        //  fields changed since last write
    uint64_t requests, replies, read_timeouts, bad_replies, exceptions;
};

struct _s_link_t {
    ioserver_t *server;
    site_channel_t *channel;
    char name[160];   //  for logs: "device plc1" or "channel gw (gateway)"
    const char *host; //  as configured
    uint16_t port;
    int cw_id;    //  its entry in the connect window
    bool addr_ok; //  it can be served: false only for a link its configuration rules out
    //  Where to connect. A numeric address is parsed once at start; a host name
    //  is resolved without blocking (getaddrinfo_a), at start and again after
    //  every failed attempt or lost connection, and its attempts go to its
    //  addresses in turn: the next one after a failed attempt.
    s_addr_t addrs[ADDRS_MAX];
    size_t naddrs; //  0: not known (name not resolved yet, or not resolvable)
    size_t addr_next;
    bool named;           //  host is a name, not a numeric address
    s_lookup_t *lookup;   //  the resolution in flight, or NULL
    int64_t lookup_since; //  when it started (mono ms)
    int resolve_rc;       //  last outcome: 0, an EAI_* error; EAI_INPROGRESS before the first
    bool wanted;          //  given to the connect window (a name: once resolved, or
                          //  resolving for longer than a connect timeout)
    int fd;
    dev_conn_t conn;
    bool answered; //  something answered on this connection
    uint8_t rx[MB_MAX_ADU_LEN * 2];
    size_t rxlen;
    uint16_t next_tid;
    s_pending_t pending;
    zactor_t *serial;   //  serial channels: the actor that owns the port
    link_fsm_t fsm;     //  timeouts and failover (link_fsm.h)
    iolog_entry_t late; //  the last timed-out request, kept a while in case its
    bool late_active;   //  reply still comes: the I/O log then shows how late
    uint16_t late_tid;
    int64_t late_until;
    uint8_t tx[MB_MAX_ADU_LEN]; //  request bytes the socket has not taken yet
    size_t txlen, txoff;
    int64_t write_deadline; //  when the OS must have taken them (write timeout)
    s_device_t **devices;   //  the devices reached through it (owned array)
    size_t ndevices;
    size_t rr; //  next device's turn
};

struct _ioserver_t {
    site_t *site;
    site_ioserver_t *cfg;
    zloop_t *loop;
    zsock_t *pub;
    pubgate_t *gate;          //  who may subscribe to pub
    int64_t malformed_logged; //  mono ms of the last "malformed request" line
    uint64_t malformed_quiet; //  malformed requests since, not logged
    zsock_t *control;
    rzloop_t *redis;
    cw_t *cw;
    s_device_t *devices;
    size_t ndevices;
    int epfd; //  the link sockets: one epoll set, whose descriptor alone is in zloop
    s_link_t *links;
    size_t nlinks;
    s_link_t **by_cw;    //  cw id -> link
    size_t lookups;      //  host name resolutions in flight
    int64_t lookup_last; //  when the last one ended (mono ms), 0 if none ever ran
    char *prefix;        //  "scada:<site>:ioserver:<name>"
    int64_t started_wall;
    bool starved;
    //  Value batch being built
    Scada__Value *batch;
    Scada__Value **batch_ptrs;
    size_t nbatch;
    uint64_t value_seq, event_seq;
    int64_t next_integrity;
    //  Counters
    uint64_t values_published, events_published, bad_frames, bad_requests, writes_ok, writes_failed;
    uint64_t requests, replies, tag_reads; //  over all devices: throughput figures
    zhashx_t *reasons;                     //  interned reason texts: tags keep pointers to them
    //  Subscriptions (brokers) and offers (resolver)
    s_tag_t **tag_by_id; //  site tag id - 1 -> our tag, NULL if not served here
    struct {
        char *name;   //  NULL: free slot
        int64_t seen; //  mono ms of its last request
        uint32_t count;
    } brokers[MAX_BROKERS];
    size_t tags_active;
    uint64_t subscribes, unsubscribes, resyncs, probes;
    zsock_t *resolver;
    sec_t *sec;      //  CURVE (or plain, said at start)
    audit_t *audit;  //  writes not from a broker (docs/security.md "Audit")
    char *peer_user; //  certificate name of the last control request's sender, or NULL
    char *peer_key;  //  its public key (Z85), or NULL
    uint64_t incarnation;
    bool units_dirty;
    zlist_t *sub_replies; //  s_subreply_t: SUBSCRIBE answers waiting for first readings
    iolog_t **iologs;     //  per site channel (index in site->channels)
    char *iolog_dir;      //  resolved against the site file's directory
    bool fatal;
};

static void s_resolver_offers(ioserver_t *self, bool all);
static void s_resolver_send(ioserver_t *self, Scada__ResolverMsg *msg);
static void s_brokers_expire(ioserver_t *self, int64_t now);
static void s_subreplies_check(ioserver_t *self, int64_t now);

//  --------------------------------------------------------------------------
//  Publishing

static void s_batch_flush(ioserver_t *self, bool integrity)
{
    if (self->nbatch == 0)
        return;
    Scada__ValueBatch msg = SCADA__VALUE_BATCH__INIT;
    msg.ioserver = self->cfg->name;
    msg.n_values = self->nbatch;
    msg.values = self->batch_ptrs;
    msg.has_integrity = integrity;
    msg.integrity = integrity;
    size_t len = scada__value_batch__get_packed_size(&msg);
    uint8_t *buf = (uint8_t *)malloc(len);
    scada__value_batch__pack(&msg, buf);
    zsock_send(self->pub, "sb", "V", buf, len);
    free(buf);
    self->values_published += self->nbatch;
    self->nbatch = 0;
}

static void s_batch_add(ioserver_t *self, s_tag_t *tag, bool integrity)
{
    if (!tag->active || !tag->fresh)
        return; //  not polled, or not read since it is: what we hold is not news
    if (self->nbatch == BATCH_MAX)
        s_batch_flush(self, integrity);
    Scada__Value *v = &self->batch[self->nbatch];
    scada__value__init(v);
    v->tag = tag->cfg->name;
    if (tag->have) {
        v->has_number = true;
        v->number = tag->value;
    }
    v->quality = (Scada__Quality)tag->quality;
    v->source_ts_ms = tag->ts;
    v->seq = ++self->value_seq;
    v->has_tag_id = true;
    v->tag_id = tag->cfg->id;
    if (tag->quality != SCADA__QUALITY__GOOD && tag->reason)
        v->reason = (char *)tag->reason;
    self->batch_ptrs[self->nbatch] = v;
    self->nbatch++;
    tag->published = true;
    tag->pub_value = tag->value;
    tag->pub_quality = tag->quality;
}

//  A stable copy of a reason text. Reasons are built in stack buffers
//  ("3 consecutive read timeouts", strerror texts) but tags keep them for as
//  long as the quality lasts; the set of distinct texts is small, so each is
//  kept once for the life of the process.
static const char *s_intern(ioserver_t *self, const char *text)
{
    if (!text)
        return NULL;
    const char *kept = (const char *)zhashx_lookup(self->reasons, text);
    if (kept)
        return kept;
    if (zhashx_size(self->reasons) >= 4096)
        return "reason not recorded (too many distinct reasons)";
    char *copy = strdup(text);
    zhashx_insert(self->reasons, text, copy);
    return copy;
}

//  Record a new reading or quality for a tag and queue it for publishing if
//  subscribers would see a difference (quality change, or a value change
//  beyond the tag's deadband).
static void s_tag_update(ioserver_t *self, s_tag_t *tag, bool has_value, double value, int quality,
                         int64_t ts, const char *reason)
{
    if (has_value) {
        tag->value = value;
        tag->ts = ts;
        tag->have = true;
    } else if (!tag->have)
        tag->ts = ts;
    tag->quality = quality;
    tag->reason = s_intern(self, reason);
    tag->fresh = true;
    bool changed = !tag->published || tag->pub_quality != quality;
    if (!changed && has_value) {
        double delta = fabs(value - tag->pub_value);
        changed = tag->cfg->deadband > 0 ? delta > tag->cfg->deadband : value != tag->pub_value;
    }
    if (changed)
        s_batch_add(self, tag, false);
}

//  Stamp and publish one event (topic "E").
static void s_send_event(ioserver_t *self, Scada__Event *event)
{
    Scada__Event ev = *event;
    ev.ioserver = self->cfg->name;
    ev.ts_ms = mclock_wall_ms();
    ev.seq = ++self->event_seq;
    Scada__Event *evs[1] = {&ev};
    Scada__EventBatch batch = SCADA__EVENT_BATCH__INIT;
    batch.n_events = 1;
    batch.events = evs;
    size_t len = scada__event_batch__get_packed_size(&batch);
    uint8_t *buf = (uint8_t *)malloc(len);
    scada__event_batch__pack(&batch, buf);
    zsock_send(self->pub, "sb", "E", buf, len);
    free(buf);
    self->events_published++;
}

static void s_publish_event(ioserver_t *self, Scada__Event__Kind kind, s_device_t *dev, int state,
                            const char *reason)
{
    Scada__Event ev = SCADA__EVENT__INIT;
    ev.kind = kind;
    if (dev) {
        ev.device = dev->cfg->name;
        ev.channel = dev->cfg->channel->name;
    }
    if (state >= 0) {
        ev.has_device_state = true;
        ev.device_state = (Scada__DeviceState)state;
    }
    ev.reason = (char *)reason;
    s_send_event(self, &ev);
}

//  --------------------------------------------------------------------------
//  Redis state

static int64_t s_ttl_ms(ioserver_t *self)
{
    int64_t ttl = 3 * (int64_t)self->site->ping_time_ms;
    return ttl < 1000 ? 1000 : ttl;
}

static const char *s_device_state(ioserver_t *self, s_device_t *dev, int64_t now)
{
    s_link_t *link = dev->link;
    if (!link->addr_ok)
        return "failed";
    if (link->conn == DEV_ONLINE)
        //  TCP is up; online once the device answered on it.
        return dev->answered ? "online" : link->answered ? "offline" : "connecting";
    if (link->fsm.state == LINK_FAILED)
        return "failed"; //  failed on timeouts, retried with back-off
    return cw_state_name(cw_state(self->cw, link->cw_id, now));
}

static void s_redis_device(ioserver_t *self, s_device_t *dev, int64_t now, bool full)
{
    const char *state = s_device_state(self, dev, now);
    char key[512];
    snprintf(key, sizeof key, "%s:device:%s", self->prefix, dev->cfg->name);
    if (full || dev->redis_dirty || state != dev->redis_state) {
        rzloop_command(
            self->redis,
            "HSET %s state %s last_ok_ms %lld last_error %s channel %s address %s:%u "
            "unit %u link_state %s connect_ms %u failures %u requests %llu timeouts %llu "
            "bad_replies %llu exceptions %llu",
            key, state, (long long)dev->last_ok_ms, dev->last_error, dev->cfg->channel->name,
            dev->link->host ? dev->link->host : "", (unsigned)dev->link->port,
            (unsigned)dev->cfg->unit, link_state_name(dev->link->fsm.state),
            cw_connect_ms(self->cw, dev->link->cw_id), cw_failures(self->cw, dev->link->cw_id),
            (unsigned long long)dev->requests, (unsigned long long)dev->read_timeouts,
            (unsigned long long)dev->bad_replies, (unsigned long long)dev->exceptions);
        dev->redis_state = state;
        dev->redis_dirty = false;
    }
    rzloop_command(self->redis, "PEXPIRE %s %lld", key, (long long)s_ttl_ms(self));
}

//  Devices that answered on their current connection.
static size_t s_online_count(ioserver_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->ndevices; i++)
        n += self->devices[i].link->conn == DEV_ONLINE && self->devices[i].answered;
    return n;
}

static size_t s_broker_count(ioserver_t *self)
{
    size_t n = 0;
    for (int b = 0; b < MAX_BROKERS; b++)
        n += self->brokers[b].name != NULL;
    return n;
}

static void s_redis_server(ioserver_t *self, const char *state, int64_t now)
{
    cw_stats_t st;
    cw_stats(self->cw, now, &st);
    rzloop_command(self->redis,
                   "HSET %s state %s pid %d devices_online %llu devices_total %llu "
                   "connect_in_flight %llu connect_queued %llu connect_window %u "
                   "connect_starved %d "
                   "dead_probe_lag_ms %lld connect_attempts %llu connect_timeouts %llu "
                   "values_published %llu bad_frames %llu started_ms %lld updated_ms %lld "
                   "tags_active %llu brokers %llu",
                   self->prefix, state, (int)getpid(), (unsigned long long)s_online_count(self),
                   (unsigned long long)self->ndevices, (unsigned long long)st.in_flight,
                   (unsigned long long)st.queued, self->cfg->connect_window, st.starved ? 1 : 0,
                   (long long)st.dead_lag_ms, (unsigned long long)st.attempts,
                   (unsigned long long)st.timeouts, (unsigned long long)self->values_published,
                   (unsigned long long)self->bad_frames, (long long)self->started_wall,
                   (long long)mclock_wall_ms(), (unsigned long long)self->tags_active,
                   (unsigned long long)s_broker_count(self));
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->prefix, (long long)s_ttl_ms(self));
}

//  ioserver:<io>:channel:<ch>: a `tcp` channel's state is its link's; a
//  `network` channel stays healthy while it can serve, and counts its
//  failed sockets.
static void s_redis_channels(ioserver_t *self)
{
    for (size_t c = 0; c < self->site->nchannels; c++) {
        site_channel_t *ch = &self->site->channels[c];
        size_t sockets = 0, failed = 0, alarms = 0;
        uint32_t reads = 0, writes = 0;
        uint64_t failures = 0;
        int64_t last_timeout = -1;
        const char *state = "healthy";
        for (size_t i = 0; i < self->nlinks; i++) {
            s_link_t *link = &self->links[i];
            if (link->channel != ch)
                continue;
            link_fsm_t *f = &link->fsm;
            sockets++;
            failed += f->state == LINK_FAILED || f->state == LINK_RECOVERING;
            alarms += f->alarm_active;
            reads = f->consecutive_read_timeouts > reads ? f->consecutive_read_timeouts : reads;
            writes =
                f->consecutive_write_timeouts > writes ? f->consecutive_write_timeouts : writes;
            failures += f->failures;
            if (f->last_timeout_ms > last_timeout)
                last_timeout = f->last_timeout_ms;
            if (f->cfg.kind == LINK_CHANNEL)
                state = link_state_name(f->state);
        }
        if (sockets == 0)
            continue;
        //  last_timeout_ms is on the monotonic clock inside; report its age.
        long long age = last_timeout < 0 ? -1 : (long long)(mclock_mono_ms() - last_timeout);
        char key[512];
        snprintf(key, sizeof key, "%s:channel:%s", self->prefix, ch->name);
        rzloop_command(self->redis,
                       "HSET %s state %s type %s consecutive_read_timeouts %u "
                       "consecutive_write_timeouts %u max_read_timeouts %u max_write_timeouts %u "
                       "io_timeout_alarms %llu failures %llu last_timeout_age_ms %lld "
                       "sockets %llu sockets_failed %llu standard_reply_delay_ms %u baud %u",
                       key, state, site_chtype_name(ch->type), reads, writes, ch->max_read_timeouts,
                       ch->max_write_timeouts, (unsigned long long)alarms,
                       (unsigned long long)failures, age, (unsigned long long)sockets,
                       (unsigned long long)failed, ch->standard_reply_delay_ms, ch->baud);
        rzloop_command(self->redis, "PEXPIRE %s %lld", key, (long long)s_ttl_ms(self));
    }
}

static void s_redis_refresh(ioserver_t *self, bool full)
{
    if (!rzloop_connected(self->redis))
        return;
    int64_t now = mclock_mono_ms();
    s_redis_server(self, "running", now);
    s_redis_channels(self);
    for (size_t i = 0; i < self->ndevices; i++)
        s_redis_device(self, &self->devices[i], now, full);
}

static void s_on_redis_connect(rzloop_t *redis, void *arg)
{
    //  Redis (re)started or came back: rewrite everything.
    s_redis_refresh((ioserver_t *)arg, true);
}

//  --------------------------------------------------------------------------
//  Links and devices
//
//  A link is one connection to the field: on a `network` channel one per
//  device (its own socket), on a `tcp` channel one per channel (the gateway,
//  with the channel's devices behind it by unit id). A link has at most one
//  request outstanding; its devices take turns. A device is online once it
//  answered on the current connection.

static void s_device_error(s_device_t *dev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_device_error(s_device_t *dev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dev->last_error, sizeof dev->last_error, fmt, ap);
    va_end(ap);
    dev->redis_dirty = true;
}

//  Set the same last error on every device of a link.
static void s_link_error(s_link_t *link, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_link_error(s_link_t *link, const char *fmt, ...)
{
    char text[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < link->ndevices; i++)
        s_device_error(link->devices[i], "%s", text);
}

//  Mark every tag of a device with a bad quality (keeping its last value).
static void s_device_tags_bad(s_device_t *dev, int quality, const char *reason)
{
    int64_t now = mclock_wall_ms();
    for (size_t i = 0; i < dev->cfg->ntags; i++)
        s_tag_update(dev->server, &dev->tags[i], false, 0, quality, now, reason);
}

//  --------------------------------------------------------------------------
//  Host names
//
//  A name never blocks the loop: getaddrinfo_a resolves it on glibc's own
//  thread and the tick polls for the outcome (s_lookups_poll). It is looked
//  up again after every failed attempt and lost connection, so a device that
//  came back at a new address (a restarted container) is found; the connect
//  window's back-off spaces the lookups as it spaces the attempts.

//  "a, b": the addresses of a link, for logs.
static void s_addrs_text(const s_addr_t *addrs, size_t n, char *text, size_t size)
{
    size_t len = 0;
    text[0] = 0;
    for (size_t i = 0; i < n && len + 2 < size; i++) {
        char one[INET6_ADDRSTRLEN] = "?";
        if (addrs[i].u.sa.sa_family == AF_INET)
            inet_ntop(AF_INET, &addrs[i].u.in.sin_addr, one, sizeof one);
        else if (addrs[i].u.sa.sa_family == AF_INET6)
            inet_ntop(AF_INET6, &addrs[i].u.in6.sin6_addr, one, sizeof one);
        int k = snprintf(text + len, size - len, "%s%s", i ? ", " : "", one);
        if (k < 0)
            break;
        len += (size_t)k;
    }
}

//  Start resolving a named link's host, unless a resolution is in flight.
static void s_lookup_start(s_link_t *link)
{
    if (!link->named || link->lookup)
        return;
    s_lookup_t *lk = (s_lookup_t *)zmalloc(sizeof *lk);
    lk->hints.ai_family = AF_UNSPEC;
    lk->hints.ai_socktype = SOCK_STREAM;
    lk->hints.ai_flags = AI_NUMERICSERV;
    snprintf(lk->service, sizeof lk->service, "%u", (unsigned)link->port);
    lk->cb.ar_name = link->host;
    lk->cb.ar_service = lk->service;
    lk->cb.ar_request = &lk->hints;
    struct gaicb *list[1] = {&lk->cb};
    //  No notification: the tick polls gai_error.
    int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (rc != 0) {
        //  Not even queued (no memory, no thread): the next failed attempt tries again.
        if (link->resolve_rc != rc)
            slog_warn("%s: cannot resolve %s: %s", link->name, link->host, gai_strerror(rc));
        link->resolve_rc = rc;
        link->naddrs = 0;
        free(lk);
        return;
    }
    link->lookup = lk;
    link->lookup_since = mclock_mono_ms();
    link->server->lookups++;
}

//  The resolution of a link is done with `rc`: take its addresses (or forget
//  the old ones: the name is gone), free it, log what changed.
static void s_lookup_done(s_link_t *link, int rc)
{
    s_lookup_t *lk = link->lookup;
    s_addr_t addrs[ADDRS_MAX];
    size_t n = 0;
    for (struct addrinfo *ai = rc == 0 ? lk->cb.ar_result : NULL; ai && n < ADDRS_MAX;
         ai = ai->ai_next)
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof addrs[n].u) {
            memset(&addrs[n], 0, sizeof addrs[n]);
            memcpy(&addrs[n].u, ai->ai_addr, ai->ai_addrlen);
            addrs[n].len = ai->ai_addrlen;
            n++;
        }
    if (rc == 0 && lk->cb.ar_result)
        freeaddrinfo(lk->cb.ar_result);
    free(lk);
    link->lookup = NULL;
    link->server->lookups--;
    link->server->lookup_last = mclock_mono_ms();
    if (rc == 0 && n == 0)
        rc = EAI_NODATA; //  only addresses we cannot connect to
    int was = link->resolve_rc;
    link->resolve_rc = rc;
    if (rc != 0) {
        //  A name that is gone (no such host, no address) is forgotten. A
        //  lookup that could not be answered (the DNS server is away) says
        //  nothing about the device: the last addresses are kept and tried.
        bool keep = link->naddrs > 0 &&
                    (rc == EAI_AGAIN || rc == EAI_SYSTEM || rc == EAI_MEMORY || rc == EAI_FAIL);
        if (!keep)
            link->naddrs = 0;
        if (was != rc)
            slog_warn("%s: cannot resolve %s: %s (looked up again at every connect "
                      "attempt%s)",
                      link->name, link->host, gai_strerror(rc),
                      keep ? "; the last known addresses are tried meanwhile" : "");
        return;
    }
    //  The same addresses in another order (round-robin DNS) are no change:
    //  the turn goes on where it was.
    bool changed = n != link->naddrs;
    for (size_t i = 0; i < n && !changed; i++) {
        bool known = false;
        for (size_t j = 0; j < link->naddrs && !known; j++)
            known = addrs[i].len == link->addrs[j].len &&
                    memcmp(&addrs[i].u, &link->addrs[j].u, addrs[i].len) == 0;
        changed = !known;
    }
    if (!changed)
        return;
    char text[256];
    s_addrs_text(addrs, n, text, sizeof text);
    if (was != 0 && was != EAI_INPROGRESS)
        slog_info("%s: %s resolves again, to %s", link->name, link->host, text);
    else
        slog_info("%s: %s resolves to %s", link->name, link->host, text);
    memcpy(link->addrs, addrs, n * sizeof addrs[0]);
    link->naddrs = n;
    link->addr_next = 0;
}

//  Tick: collect the resolutions that are done. A named link is given to
//  the connect window once its first resolution is done, or once it takes
//  longer than a connect timeout (its attempts then fail as "resolving").
static void s_lookups_poll(ioserver_t *self, int64_t now)
{
    for (size_t i = 0; i < self->nlinks && self->lookups; i++) {
        s_link_t *link = &self->links[i];
        if (!link->lookup)
            continue;
        int rc = gai_error(&link->lookup->cb);
        if (rc != EAI_INPROGRESS)
            s_lookup_done(link, rc);
        else if (now - link->lookup_since < self->cfg->connect_timeout_ms)
            continue;
        if (!link->wanted) {
            link->wanted = true;
            cw_want(self->cw, link->cw_id, now);
        }
    }
}

//  A link that cannot be reached: its devices' tags go bad-no-comm with the
//  reason, and a new reason is published even if the quality is the same.
static void s_link_tags_unreachable(s_link_t *link, const char *why)
{
    ioserver_t *self = link->server;
    const char *reason = s_intern(self, why);
    int64_t wall = mclock_wall_ms();
    for (size_t d = 0; d < link->ndevices; d++) {
        s_device_t *dev = link->devices[d];
        for (size_t i = 0; i < dev->cfg->ntags; i++) {
            s_tag_t *tag = &dev->tags[i];
            if (tag->quality == SCADA__QUALITY__BAD_NO_COMM && tag->reason == reason)
                continue;
            //  s_tag_update publishes a change of quality only.
            bool same = tag->published && tag->pub_quality == SCADA__QUALITY__BAD_NO_COMM;
            s_tag_update(self, tag, false, 0, SCADA__QUALITY__BAD_NO_COMM, wall, reason);
            if (same)
                s_batch_add(self, tag, false);
        }
    }
}

//  An attempt of a named link failed (`what`): its tags say which address
//  the name gave, which may be an old one.
static void s_link_named_failed(s_link_t *link, const char *what)
{
    if (!link->named || link->naddrs == 0)
        return;
    char addr[INET6_ADDRSTRLEN + 8];
    s_addrs_text(&link->addrs[link->addr_next % link->naddrs], 1, addr, sizeof addr);
    char why[160];
    snprintf(why, sizeof why, "cannot connect to %s (%s): %s", link->host, addr, what);
    s_link_tags_unreachable(link, why);
}

//  An attempt failed (`failed`) or the connection was lost: a named link
//  looks its host up again before the next attempt, which after a failure
//  goes to the next of its addresses.
static void s_link_reresolve(s_link_t *link, bool failed)
{
    if (!link->named)
        return;
    if (failed && link->naddrs > 1)
        link->addr_next = (link->addr_next + 1) % link->naddrs;
    s_lookup_start(link);
}

//  Stopping: cancel a resolution in flight, or wait for it to end (glibc's
//  thread writes into it until then), and free it.
static void s_lookup_destroy(s_link_t *link)
{
    s_lookup_t *lk = link->lookup;
    if (!lk)
        return;
    link->lookup = NULL;
    if (gai_cancel(&lk->cb) == EAI_NOTCANCELED) {
        const struct gaicb *list[1] = {&lk->cb};
        int64_t until = mclock_mono_ms() + 30000;
        while (gai_error(&lk->cb) == EAI_INPROGRESS && mclock_mono_ms() < until) {
            struct timespec step = {0, 100 * 1000000L};
            gai_suspend(list, 1, &step);
        }
        if (gai_error(&lk->cb) == EAI_INPROGRESS) {
            //  Freeing it now would let that thread write into freed memory.
            slog_warn("%s: the lookup of %s does not end; left to the process exit", link->name,
                      link->host);
            return;
        }
    }
    if (gai_error(&lk->cb) == 0 && lk->cb.ar_result)
        freeaddrinfo(lk->cb.ar_result);
    free(lk);
}

//  The audit record of a write that did not come through a broker (a broker
//  keeps its own): `tag` as asked, `area` NULL when there is no such tag.
static void s_audit_direct(ioserver_t *self, const s_write_t *w, const char *tag, const char *area,
                           bool refused, const char *error)
{
    audit_rec_t rec = {
        .ts_ms = w->wall_ms,
        .via = self->cfg->name,
        .user = w->user,
        .key = w->pubkey,
        .client = w->client,
        .tag = tag,
        .area = area,
        .has_old = w->has_old,
        .old_value = w->old_value,
        .old_quality = w->has_old ? scada_quality_name(w->old_quality) : NULL,
        .new_value = w->value,
        .result = !error    ? "ok"
                  : refused ? "refused"
                            : "failed",
        .error = error,
    };
    if (self->audit)
        audit_write(self->audit, &rec);
}

static void s_reply_write(ioserver_t *self, s_write_t *w, const char *error)
{
    Scada__IoReply reply = SCADA__IO_REPLY__INIT;
    reply.id = w->id;
    reply.status = error ? SCADA__IO_REPLY__STATUS__ERROR : SCADA__IO_REPLY__STATUS__OK;
    reply.error = (char *)error;
    //  The reading before the write, for the broker's audit.
    Scada__Value old = SCADA__VALUE__INIT;
    Scada__Value *olds[1] = {&old};
    if (w->has_old) {
        old.tag = w->tag->cfg->name;
        old.has_number = true;
        old.number = w->old_value;
        old.quality = (Scada__Quality)w->old_quality;
        reply.n_values = 1;
        reply.values = olds;
    }
    if (w->direct)
        s_audit_direct(self, w, w->tag->cfg->name, w->tag->cfg->plant_area, false, error);
    size_t len = scada__io_reply__get_packed_size(&reply);
    zmsg_t *msg = w->envelope;
    w->envelope = NULL;
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_reply__pack(&reply, zframe_data(frame));
    zmsg_append(msg, &frame);
    zmsg_send(&msg, self->control);
    if (error)
        self->writes_failed++;
    else
        self->writes_ok++;
}

static void s_write_destroy(s_write_t **w_p)
{
    if (*w_p) {
        zmsg_destroy(&(*w_p)->envelope);
        free((*w_p)->user);
        free((*w_p)->pubkey);
        free((*w_p)->client);
        free(*w_p);
        *w_p = NULL;
    }
}

static void s_fail_writes(s_device_t *dev, const char *error)
{
    s_write_t *w;
    while ((w = (s_write_t *)zlist_pop(dev->writes))) {
        s_reply_write(dev->server, w, error);
        s_write_destroy(&w);
    }
}

//  The device stops being online (its link closed, or the gateway says the
//  unit does not answer): its tags go bad-no-comm, keeping their values.
static void s_device_offline(s_device_t *dev, const char *why)
{
    s_fail_writes(dev, "device offline");
    if (!dev->answered)
        return;
    dev->answered = false;
    dev->server->units_dirty = true;
    slog_warn("device %s offline: %s", dev->cfg->name, why);
    s_device_error(dev, "%s", why);
    s_device_tags_bad(dev, SCADA__QUALITY__BAD_NO_COMM, why);
    s_publish_event(dev->server, SCADA__EVENT__KIND__DEVICE_STATE, dev,
                    SCADA__DEVICE_STATE__OFFLINE, why);
}

//  The device answered: it is online.
static void s_device_answered(s_device_t *dev)
{
    ioserver_t *self = dev->server;
    s_link_t *link = dev->link;
    dev->answered = true;
    self->units_dirty = true;
    if (!link->answered) {
        link->answered = true;
        cw_answered(self->cw, link->cw_id);
    }
    if (link->serial)
        slog_info("device %s online (unit %u on %s)", dev->cfg->name, (unsigned)dev->cfg->unit,
                  link->host);
    else if (link->channel->type == SITE_CH_NETWORK)
        slog_info("device %s online (%s:%u, connect %u ms)", dev->cfg->name, link->host,
                  (unsigned)link->port, cw_connect_ms(self->cw, link->cw_id));
    else
        slog_info("device %s online (unit %u behind %s:%u)", dev->cfg->name,
                  (unsigned)dev->cfg->unit, link->host, (unsigned)link->port);
    s_publish_event(self, SCADA__EVENT__KIND__DEVICE_STATE, dev, SCADA__DEVICE_STATE__ONLINE, NULL);
    dev->last_error[0] = 0;
    dev->redis_dirty = true;
}

static void s_link_close_fd(s_link_t *link)
{
    if (link->serial && link->conn != DEV_DOWN)
        zstr_send(link->serial, "CLOSE");
    if (link->fd >= 0) {
        epoll_ctl(link->server->epfd, EPOLL_CTL_DEL, link->fd, NULL);
        close(link->fd);
        link->fd = -1;
    }
}

static void s_iolog_late_flush(s_link_t *link);

typedef enum {
    CLOSE_FINAL = 0, //  the I/O server stops: no retry
    CLOSE_RETRY,     //  retried through the connect window: soon if the link was in use,
                     //  with back-off if nothing ever answered on it
    CLOSE_REASSIGN   //  de-assigned to be re-assigned once, soon
} close_mode_t;

//  Close a link's connection; its devices go offline.
static void s_link_close(s_link_t *link, const char *why, close_mode_t mode)
{
    ioserver_t *self = link->server;
    s_link_close_fd(link);
    if (link->pending.active && link->pending.is_write) {
        s_reply_write(self, link->pending.write, "connection to the device lost");
        s_write_destroy(&link->pending.write);
    }
    s_iolog_late_flush(link);
    link->pending.active = false;
    link->rxlen = 0;
    link->txlen = link->txoff = 0;
    bool lost = mode != CLOSE_FINAL;
    bool connected = link->conn == DEV_ONLINE;
    bool was_useful = connected && link->answered;
    link->conn = DEV_DOWN;
    link->answered = false;
    for (size_t i = 0; i < link->ndevices; i++)
        s_device_offline(link->devices[i], why);
    if (connected && !was_useful) {
        //  TCP connected, but nothing ever answered: a failed attempt.
        slog_debug("%s: connection dropped before any answer: %s", link->name, why);
        s_link_error(link, "connects but does not answer: %s", why);
    }
    if (!connected || !lost)
        return;
    s_link_reresolve(link, !was_useful);
    if (was_useful || mode == CLOSE_REASSIGN)
        cw_lost(self->cw, link->cw_id, mclock_mono_ms());
    else
        cw_dropped(self->cw, link->cw_id, mclock_mono_ms());
}

static void s_publish_link_event(s_link_t *link, Scada__Event__Kind kind, const char *reason)
{
    Scada__Event ev = SCADA__EVENT__INIT;
    ev.kind = kind;
    ev.channel = link->channel->name;
    if (link->fsm.cfg.kind == LINK_SOCKET)
        ev.device = link->devices[0]->cfg->name;
    ev.state = (char *)link_state_detail(link->fsm.state);
    ev.reason = (char *)reason;
    s_send_event(link->server, &ev);
}

//  Carry out what the link's state machine asks for, in its order.
static void s_link_act(s_link_t *link, unsigned acts, const char *why)
{
    if (acts & LINK_ACT_RAISE_ALARM) {
        slog_warn("I/O Timeout on %s: %s", link->name, why);
        s_publish_link_event(link, SCADA__EVENT__KIND__IO_TIMEOUT_RAISE, why);
    }
    if (acts & LINK_ACT_CLOSE)
        s_link_close(link, why, (acts & LINK_ACT_REASSIGN) ? CLOSE_REASSIGN : CLOSE_RETRY);
    else if (acts & LINK_ACT_MARK_BAD)
        for (size_t i = 0; i < link->ndevices; i++)
            s_device_offline(link->devices[i], why);
    if (acts & LINK_ACT_CLEAR_ALARM) {
        slog_info("I/O Timeout on %s cleared", link->name);
        s_publish_link_event(link, SCADA__EVENT__KIND__IO_TIMEOUT_CLEAR, NULL);
    }
    if (acts & LINK_ACT_STATE_CHANGED) {
        slog_info("%s: %s", link->name, link_state_detail(link->fsm.state));
        s_publish_link_event(link, SCADA__EVENT__KIND__CHANNEL_STATE, why);
    }
}

//  The connection broke under us (peer closed, I/O error, garbage stream).
static void s_link_down(s_link_t *link, const char *why)
{
    s_link_close(link, why, CLOSE_RETRY);
    s_link_act(link, link_closed(&link->fsm, mclock_mono_ms()) & ~LINK_ACT_CLOSE, why);
}

static int s_on_link_io(zloop_t *loop, zmq_pollitem_t *item, void *arg);

//  Watch a link's socket for `events` (ZMQ_POLLIN, ZMQ_POLLOUT). The sockets
//  are in one epoll set rather than each a zloop poller: zloop polls every
//  poller on every turn, which with a thousand devices costs more than all
//  the Modbus work. The event carries the link's index and the descriptor,
//  so a result for a descriptor already closed is recognised.
static void s_link_set_poller(s_link_t *link, short events)
{
    struct epoll_event ev = {0};
    ev.events = ((events & ZMQ_POLLIN) ? EPOLLIN : 0u) | ((events & ZMQ_POLLOUT) ? EPOLLOUT : 0u);
    ev.data.u64 = (uint64_t)(uint32_t)(link - link->server->links) << 32 | (uint32_t)link->fd;
    if (epoll_ctl(link->server->epfd, EPOLL_CTL_MOD, link->fd, &ev) != 0 &&
        epoll_ctl(link->server->epfd, EPOLL_CTL_ADD, link->fd, &ev) != 0)
        slog_error("%s: cannot watch its socket: %s", link->name, strerror(errno));
}

//  The epoll set has events: hand each to its link.
static int s_on_links(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    ioserver_t *self = (ioserver_t *)arg;
    struct epoll_event evs[256];
    int n = epoll_wait(self->epfd, evs, 256, 0);
    for (int i = 0; i < n; i++) {
        size_t index = (size_t)(evs[i].data.u64 >> 32);
        if (index >= self->nlinks)
            continue;
        zmq_pollitem_t it = {NULL, (int)(uint32_t)evs[i].data.u64, 0, 0};
        it.revents = (short)(((evs[i].events & EPOLLIN) ? ZMQ_POLLIN : 0) |
                             ((evs[i].events & EPOLLOUT) ? ZMQ_POLLOUT : 0) |
                             ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? ZMQ_POLLERR : 0));
        s_on_link_io(loop, &it, &self->links[index]);
    }
    //  Values read in this turn go out now, not at the next tick.
    s_batch_flush(self, false);
    return 0;
}

//  TCP connected: poll everything now. Devices become online as they answer.
static void s_link_connected(s_link_t *link, int64_t now)
{
    cw_connected(link->server->cw, link->cw_id, now);
    link->conn = DEV_ONLINE;
    link->answered = false;
    link->rxlen = 0;
    link->txlen = link->txoff = 0;
    if (!link->serial)
        s_link_set_poller(link, ZMQ_POLLIN);
    s_link_act(link, link_opened(&link->fsm, now), "connected");
    for (size_t i = 0; i < link->ndevices; i++) {
        s_device_t *dev = link->devices[i];
        dev->redis_dirty = true;
        dev->probe_due = now;
        for (size_t c = 0; c < dev->nclasses; c++)
            for (size_t b = 0; b < dev->classes[c].plan->nblocks; b++) {
                dev->classes[c].due[b] = now;
                dev->classes[c].phased[b] = 0;
            }
    }
}

static void s_connect_failed(s_link_t *link, int err)
{
    s_link_error(link, "connect: %s", strerror(err));
    slog_debug("%s: connect failed: %s", link->name, strerror(err));
    s_link_close_fd(link);
    link->conn = DEV_DOWN;
    cw_failed(link->server->cw, link->cw_id, mclock_mono_ms());
    s_link_act(link, link_open_failed(&link->fsm, mclock_mono_ms()), strerror(err));
    s_link_named_failed(link, strerror(err));
    s_link_reresolve(link, true);
}

static void s_connect_start(s_link_t *link, int64_t now)
{
    if (link->serial) {
        //  The actor opens the port and answers OPENED or OPEN_FAILED.
        link->conn = DEV_CONNECTING;
        zstr_send(link->serial, "OPEN");
        return;
    }
    if (link->naddrs == 0) {
        //  A host name not resolved (yet): a failed attempt, backed off as a
        //  dead device's; its tags say why.
        char why[160];
        if (link->resolve_rc == EAI_INPROGRESS)
            snprintf(why, sizeof why, "resolving %s", link->host);
        else
            snprintf(why, sizeof why, "cannot resolve %s: %s", link->host,
                     gai_strerror(link->resolve_rc));
        slog_debug("%s: connect attempt failed: %s", link->name, why);
        s_link_error(link, "%s", why);
        s_link_tags_unreachable(link, why);
        link->conn = DEV_DOWN;
        cw_failed(link->server->cw, link->cw_id, now);
        s_link_act(link, link_open_failed(&link->fsm, now), why);
        s_link_reresolve(link, true);
        return;
    }
    s_addr_t *addr = &link->addrs[link->addr_next % link->naddrs];
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_link_error(link, "socket: %s", strerror(errno));
        cw_failed(link->server->cw, link->cw_id, now);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    link->fd = fd;
    link->conn = DEV_CONNECTING;
    if (connect(fd, &addr->u.sa, addr->len) == 0) {
        s_link_connected(link, now);
        return;
    }
    if (errno != EINPROGRESS) {
        s_connect_failed(link, errno);
        return;
    }
    s_link_set_poller(link, ZMQ_POLLOUT);
}

//  --------------------------------------------------------------------------
//  I/O log

static iolog_t *s_iolog(s_link_t *link)
{
    iolog_t *log = link->server->iologs[link->channel - link->server->site->channels];
    return log && iolog_enabled(log) ? log : NULL;
}

//  The I/O log line of the outstanding request.
static void s_iolog_fill(s_link_t *link, iolog_entry_t *e, iolog_outcome_t outcome, int64_t now,
                         bool replied, uint8_t exception)
{
    s_pending_t *p = &link->pending;
    memset(e, 0, sizeof *e);
    e->sent_ms = p->sent_wall;
    snprintf(e->device, sizeof e->device, "%s", p->dev->cfg->name);
    e->unit = p->req.unit;
    e->fc = p->req.fc;
    e->addr = p->req.addr;
    e->count = p->req.count;
    e->request_bytes = p->req_bytes;
    e->reply_bytes = p->rep_bytes;
    e->deadline_ms = p->deadline - p->sent;
    e->reply_ms = replied ? now - p->sent : -1;
    e->outcome = outcome;
    e->exception = exception;
}

static void s_iolog_late_flush(s_link_t *link)
{
    iolog_t *log = s_iolog(link);
    if (link->late_active && log)
        iolog_request(log, &link->late);
    link->late_active = false;
}

//  The most overdue block of a device at `now`; false if none is due. A
//  device none of whose tags is polled is probed instead (*blk NO_BLOCK):
//  one register every unit_probe_ms, so that it is known online or not.
static bool s_device_due(s_device_t *dev, int64_t now, size_t *cls, size_t *blk, int64_t *due)
{
    int64_t best = INT64_MAX;
    if (dev->nactive == 0) {
        if (dev->nclasses == 0 || dev->classes[0].plan->nblocks == 0 || now < dev->probe_due)
            return false;
        *cls = 0;
        *blk = NO_BLOCK;
        *due = dev->probe_due;
        return true;
    }
    for (size_t c = 0; c < dev->nclasses; c++)
        for (size_t b = 0; b < dev->classes[c].plan->nblocks; b++)
            if (dev->classes[c].active[b] && dev->classes[c].due[b] <= now &&
                dev->classes[c].due[b] < best) {
                best = dev->classes[c].due[b];
                *cls = c;
                *blk = b;
            }
    *due = best;
    return best != INT64_MAX;
}

//  Send the next request of an idle online link, if a device of it has one:
//  writes first, then the most overdue block; devices behind one gateway
//  take turns.
static void s_link_send(s_link_t *link, int64_t now)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    int len = -1;
    s_pending_t *p = &link->pending;
    s_device_t *dev = NULL;
    s_write_t *w = NULL;
    size_t bc = 0, bb = 0;
    for (size_t k = 0; k < link->ndevices && !dev; k++) {
        s_device_t *d = link->devices[(link->rr + k) % link->ndevices];
        int64_t due;
        if ((w = (s_write_t *)zlist_first(d->writes)) || s_device_due(d, now, &bc, &bb, &due)) {
            dev = d;
            link->rr = (link->rr + k + 1) % link->ndevices;
        }
    }
    if (!dev)
        return;
    uint8_t unit = dev->cfg->unit;
    if (w) {
        zlist_pop(dev->writes);
        site_tag_t *t = w->tag->cfg;
        uint16_t tid = link->next_tid++;
        if (t->area == SITE_AREA_CO)
            len = mb_encode_write_single_coil(buf, sizeof buf, &p->req, tid, unit, t->address,
                                              w->bit != 0);
        else if (site_type_width(t->type) == 1)
            len = mb_encode_write_single_register(buf, sizeof buf, &p->req, tid, unit, t->address,
                                                  w->regs[0]);
        else
            len = mb_encode_write_multiple_registers(buf, sizeof buf, &p->req, tid, unit,
                                                     t->address, w->regs, 2);
        p->is_write = true;
        p->probe = false;
        p->write = w;
    } else if (bb == NO_BLOCK) {
        mbplan_block_t *blk = &dev->classes[0].plan->blocks[0];
        static const uint8_t fcs[] = {MB_FC_READ_COILS, MB_FC_READ_DISCRETE_INPUTS,
                                      MB_FC_READ_HOLDING, MB_FC_READ_INPUT};
        len = mb_encode_read(buf, sizeof buf, &p->req, link->next_tid++, unit, fcs[blk->area],
                             blk->start, 1);
        p->is_write = false;
        p->probe = true;
        p->cls = 0;
        p->blk = 0;
        dev->probe_due = now + link->server->cfg->unit_probe_ms;
        link->server->probes++;
    } else {
        mbplan_block_t *blk = &dev->classes[bc].plan->blocks[bb];
        static const uint8_t fcs[] = {MB_FC_READ_COILS, MB_FC_READ_DISCRETE_INPUTS,
                                      MB_FC_READ_HOLDING, MB_FC_READ_INPUT};
        len = mb_encode_read(buf, sizeof buf, &p->req, link->next_tid++, unit, fcs[blk->area],
                             blk->start, blk->count);
        p->is_write = false;
        p->probe = false;
        p->cls = bc;
        p->blk = bb;
        //  Next due one period after this one was due, but never in the past:
        //  a slow device skips scans instead of bursting to catch up.
        s_class_t *cls = &dev->classes[bc];
        int64_t next = cls->due[bb] + cls->scan_ms;
        if (!cls->phased[bb]) {
            //  The first read after connecting or subscribing goes at once.
            //  From then on each block keeps its own phase in the period, by
            //  a hash of device and block: devices that came online together
            //  do not all ask at the same instant every period, so the values
            //  (and what follows them: broker, alarms) come as a steady flow
            //  instead of one burst per period.
            cls->phased[bb] = 1;
            uint64_t h = (uint64_t)(dev - link->server->devices) * 2654435761u + bb * 40503u;
            next = now + 1 + (int64_t)(h % cls->scan_ms);
        }
        cls->due[bb] = next > now ? next : now + cls->scan_ms;
    }
    assert(len > 0);
    //  Expected reply size, for the transmission-time term of the deadline.
    size_t reply_len = 12;
    if (!p->is_write) {
        bool bits = p->req.fc == MB_FC_READ_COILS || p->req.fc == MB_FC_READ_DISCRETE_INPUTS;
        reply_len = 9 + (bits ? (p->req.count + 7u) / 8u : 2u * p->req.count);
    }
    site_channel_t *ch = link->channel;
    p->active = true;
    p->dev = dev;
    p->sent = now;
    p->sent_wall = mclock_wall_ms();
    p->req_bytes = (uint32_t)len;
    p->rep_bytes = (uint32_t)reply_len;
    p->deadline = reply_deadline(now, ch->standard_reply_delay_ms, ch->baud, TCP_BITS, (size_t)len,
                                 reply_len);
    dev->requests++;
    link->server->requests++;
    if (link->serial) {
        //  RTU frames: unit + PDU + CRC, the TCP ADU less its 7-byte header plus 3.
        p->req_bytes = (uint32_t)len - 4;
        p->rep_bytes = (uint32_t)reply_len - 4;
        p->deadline = reply_deadline(now, ch->standard_reply_delay_ms, ch->baud,
                                     serial_bits_per_char(ch), p->req_bytes, p->rep_bytes);
        serial_req_t r = {
            .tid = p->req.tid,
            .unit = p->req.unit,
            .fc = p->req.fc,
            .addr = p->req.addr,
            .count = p->req.count,
            .timeout_ms = (uint32_t)(p->deadline - now),
            .write_timeout_ms =
                (uint32_t)(ch->standard_reply_delay_ms +
                           reply_tx_ms(p->req_bytes, serial_bits_per_char(ch), ch->baud))};
        if (p->is_write) {
            if (p->req.fc == MB_FC_WRITE_SINGLE_COIL)
                r.data[r.dlen++] = p->write->bit ? 1 : 0;
            else
                for (int i = 0; i < p->req.count && i < 2; i++) {
                    r.data[r.dlen++] = (uint8_t)(p->write->regs[i] >> 8);
                    r.data[r.dlen++] = (uint8_t)p->write->regs[i];
                }
        }
        zmsg_t *m = zmsg_new();
        zmsg_addstr(m, "REQ");
        zmsg_addmem(m, &r, sizeof r);
        zmsg_send(&m, link->serial);
        return;
    }
    ssize_t n = send(link->fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        s_link_down(link, strerror(errno));
        return;
    }
    if (n < len) {
        //  The socket did not take the whole request (send buffer full: the
        //  peer is not reading or the path is stalled). The rest goes out when
        //  it becomes writable; if not all of it by the write deadline, that is
        //  a write timeout.
        link->txoff = n > 0 ? (size_t)n : 0;
        link->txlen = (size_t)len;
        memcpy(link->tx, buf, (size_t)len);
        link->write_deadline =
            now + ch->standard_reply_delay_ms + reply_tx_ms((size_t)len, TCP_BITS, ch->baud);
        s_link_set_poller(link, ZMQ_POLLIN | ZMQ_POLLOUT);
    }
}

//  The socket is writable again: send what is left of the request.
static void s_link_flush(s_link_t *link)
{
    ssize_t n = send(link->fd, link->tx + link->txoff, link->txlen - link->txoff, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            s_link_down(link, strerror(errno));
        return;
    }
    link->txoff += (size_t)n;
    if (link->txoff == link->txlen) {
        link->txlen = link->txoff = 0;
        s_link_set_poller(link, ZMQ_POLLIN);
    }
}

//  Gateway exceptions: the gateway answered, the unit behind it did not.
static bool s_gateway_exception(uint8_t code)
{
    return code == 0x0A || code == 0x0B;
}

//  The tags of the block the link's last read asked for take a bad quality
//  (its reply was unusable), keeping their values. Callers know that request
//  is the one answered.
static void s_pending_block_bad(s_link_t *link, int quality, const char *reason)
{
    s_pending_t *p = &link->pending;
    if (p->is_write || p->probe)
        return;
    s_device_t *dev = p->dev;
    mbplan_t *plan = dev->classes[p->cls].plan;
    mbplan_block_t *blk = &plan->blocks[p->blk];
    int64_t wall = mclock_wall_ms();
    for (size_t i = 0; i < blk->ntags; i++) {
        site_tag_t *t = plan->tags[blk->first + i];
        s_tag_update(link->server, &dev->tags[t - dev->cfg->tags], false, 0, quality, wall, reason);
    }
}

//  A complete ADU arrived for the outstanding request.
static void s_link_reply(s_link_t *link, const uint8_t *adu, size_t len)
{
    ioserver_t *self = link->server;
    s_pending_t *p = &link->pending;
    uint16_t tid = (uint16_t)(adu[0] << 8 | adu[1]); //  len >= MB_HEADER_LEN
    if (link->late_active && tid == link->late_tid && (!p->active || tid != p->req.tid)) {
        //  The reply of a request that timed out: the I/O log shows how late.
        link->late.reply_ms = mclock_mono_ms() - (link->late_until - 10000);
        s_iolog_late_flush(link);
        self->bad_frames++;
        return;
    }
    if (!p->active) {
        self->bad_frames++;
        slog_debug("%s: reply with no request outstanding, dropped", link->name);
        return;
    }
    s_device_t *dev = p->dev;
    mb_reply_t reply;
    const char *why = NULL;
    int rc = mb_decode_reply(adu, len, &p->req, &reply, &why);
    if (rc == MB_EMISMATCH && len >= 2 && (uint16_t)(adu[0] << 8 | adu[1]) != p->req.tid) {
        //  Most often a late reply to a request that already timed out: drop
        //  it and keep waiting for the right one.
        self->bad_frames++;
        dev->bad_replies++;
        slog_debug("%s: reply with transaction id %u, waiting for %u: dropped", link->name,
                   (unsigned)(adu[0] << 8 | adu[1]), (unsigned)p->req.tid);
        return;
    }
    int64_t wall = mclock_wall_ms();
    if (s_iolog(link)) {
        iolog_entry_t e;
        iolog_outcome_t out = rc == MB_OK          ? IOLOG_OUT_OK
                              : rc == MB_EXCEPTION ? IOLOG_OUT_EXCEPTION
                              : rc == MB_EMISMATCH ? IOLOG_OUT_MISMATCH
                                                   : IOLOG_OUT_MALFORMED;
        s_iolog_fill(link, &e, out, mclock_mono_ms(), true,
                     rc == MB_EXCEPTION ? reply.exception : 0);
        iolog_request(s_iolog(link), &e);
    }
    p->active = false;
    s_link_act(link, link_good_reply(&link->fsm, mclock_mono_ms()), "good reply");
    if (rc == MB_EXCEPTION && s_gateway_exception(reply.exception) && link->ndevices > 1) {
        //  The gateway is fine; this unit is not answering behind it.
        if (!link->answered) {
            link->answered = true;
            cw_answered(self->cw, link->cw_id);
        }
        dev->exceptions++;
        if (p->is_write) {
            s_reply_write(self, p->write, "device offline (gateway: no answer from the unit)");
            s_write_destroy(&p->write);
        }
        if (dev->answered)
            s_device_offline(dev, mb_exception_text(reply.exception));
        else
            s_device_error(dev, "gateway: %s", mb_exception_text(reply.exception));
        return;
    }
    //  Any reply to this request, even an unusable one, shows the device is
    //  there: it is online (its tags say what is wrong with the reply).
    if (!dev->answered)
        s_device_answered(dev);
    if (rc == MB_OK || rc == MB_EXCEPTION) {
        dev->replies++;
        self->replies++;
        dev->last_ok_ms = wall;
        dev->redis_dirty = true;
    }
    if (p->is_write) {
        s_write_t *w = p->write;
        p->write = NULL;
        if (rc == MB_OK) {
            s_reply_write(self, w, NULL);
            //  Read the written tag back soon.
            for (size_t c = 0; c < dev->nclasses; c++)
                for (size_t b = 0; b < dev->classes[c].plan->nblocks; b++) {
                    mbplan_block_t *blk = &dev->classes[c].plan->blocks[b];
                    if (blk->area == w->tag->cfg->area && w->tag->cfg->address >= blk->start &&
                        w->tag->cfg->address < blk->start + blk->count)
                        dev->classes[c].due[b] = mclock_mono_ms();
                }
        } else {
            char msg[200];
            snprintf(msg, sizeof msg, "device refused the write: %s",
                     rc == MB_EXCEPTION ? mb_exception_text(reply.exception) : why);
            s_reply_write(self, w, msg);
        }
        s_write_destroy(&w);
        return;
    }
    if (p->probe) {
        if (rc != MB_OK && rc != MB_EXCEPTION) {
            dev->bad_replies++;
            self->bad_frames++;
        }
        return; //  it answered: that is all a probe asks
    }
    mbplan_t *plan = dev->classes[p->cls].plan;
    mbplan_block_t *blk = &plan->blocks[p->blk];
    if (rc != MB_OK) {
        int quality = rc == MB_EXCEPTION ? SCADA__QUALITY__BAD_CONFIG : SCADA__QUALITY__BAD_DEVICE;
        const char *reason = rc == MB_EXCEPTION ? mb_exception_text(reply.exception) : why;
        if (rc == MB_EXCEPTION)
            dev->exceptions++;
        else {
            dev->bad_replies++;
            self->bad_frames++;
        }
        s_device_error(dev, "%s %u+%u: %s", site_area_name(blk->area), (unsigned)blk->start,
                       (unsigned)blk->count, reason);
        slog_warn("device %s: %s %u+%u: %s", dev->cfg->name, site_area_name(blk->area),
                  (unsigned)blk->start, (unsigned)blk->count, reason);
        s_pending_block_bad(link, quality, reason);
        return;
    }
    for (size_t i = 0; i < blk->ntags; i++) {
        site_tag_t *t = plan->tags[blk->first + i];
        s_tag_t *tag = &dev->tags[t - dev->cfg->tags];
        if (!tag->active)
            continue; //  its registers came along in a merged read; nobody wants it
        size_t off = t->address - blk->start;
        double v;
        if (t->area == SITE_AREA_CO || t->area == SITE_AREA_DI)
            v = tagval_from_bit(t, mb_reply_bit(&reply, off));
        else {
            uint16_t regs[2] = {mb_reply_register(&reply, off), 0};
            if (site_type_width(t->type) == 2)
                regs[1] = mb_reply_register(&reply, off + 1);
            v = tagval_from_registers(t, regs);
        }
        self->tag_reads++;
        if (tagval_is_finite(v))
            s_tag_update(self, tag, true, v, SCADA__QUALITY__GOOD, wall, NULL);
        else
            s_tag_update(self, tag, false, 0, SCADA__QUALITY__BAD_DEVICE, wall,
                         "value is not a finite number");
    }
}

static int s_on_link_io(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    s_link_t *link = (s_link_t *)arg;
    if (link->fd < 0 || link->fd != item->fd)
        return 0; //  stale poll result
    int64_t now = mclock_mono_ms();
    if (link->conn == DEV_CONNECTING) {
        if (!(item->revents & (ZMQ_POLLOUT | ZMQ_POLLERR)))
            return 0;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(link->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (err == 0 && getpeername(link->fd, (struct sockaddr *)&peer, &plen) != 0)
            err = errno == ENOTCONN ? 0 : errno; //  still in progress: wait
        if (err == 0 && plen > 0 && getpeername(link->fd, (struct sockaddr *)&peer, &plen) == 0)
            s_link_connected(link, now);
        else if (err)
            s_connect_failed(link, err);
        return 0;
    }
    if (link->conn != DEV_ONLINE)
        return 0;
    if ((item->revents & ZMQ_POLLOUT) && link->txlen) {
        s_link_flush(link);
        if (link->fd < 0)
            return 0;
    }
    if (!(item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        return 0;
    ssize_t n = recv(link->fd, link->rx + link->rxlen, sizeof link->rx - link->rxlen, 0);
    if (n == 0) {
        s_link_down(link, "connection closed by the device");
        return 0;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            s_link_down(link, strerror(errno));
        return 0;
    }
    link->rxlen += (size_t)n;
    for (;;) {
        int flen = mb_frame_length(link->rx, link->rxlen);
        if (flen == 0)
            break;
        if (flen < 0) {
            //  The stream cannot be resynchronised: start a new connection.
            link->server->bad_frames++;
            s_pending_t *p = &link->pending;
            if (p->active && !p->is_write) {
                p->dev->bad_replies++;
                s_pending_block_bad(link, SCADA__QUALITY__BAD_DEVICE,
                                    "malformed Modbus TCP header");
            }
            slog_warn("%s: malformed Modbus TCP header, reconnecting", link->name);
            s_link_down(link, "malformed Modbus TCP header");
            return 0;
        }
        s_link_reply(link, link->rx, (size_t)flen);
        if (link->fd < 0)
            return 0;
        memmove(link->rx, link->rx + flen, link->rxlen - (size_t)flen);
        link->rxlen -= (size_t)flen;
    }
    if (!link->pending.active)
        s_link_send(link, now);
    return 0;
}

//  The OS did not take the whole request in time (a full socket send
//  buffer, a stalled serial port): a write timeout.
static void s_link_write_timeout(s_link_t *link, int64_t now)
{
    ioserver_t *self = link->server;
    s_pending_t *p = &link->pending;
    bool half_sent = link->txoff > 0;
    if (p->active && s_iolog(link)) {
        iolog_entry_t e;
        s_iolog_fill(link, &e, IOLOG_OUT_WRITE_TIMEOUT, now, false, 0);
        iolog_request(s_iolog(link), &e);
    }
    if (link->txlen) {
        link->txlen = link->txoff = 0;
        s_link_set_poller(link, ZMQ_POLLIN);
    }
    if (p->active && p->is_write) {
        s_reply_write(self, p->write, "request could not be sent (write timeout)");
        s_write_destroy(&p->write);
    }
    p->active = false;
    char why[96];
    snprintf(why, sizeof why, "write timeout (%u in a row)",
             link->fsm.consecutive_write_timeouts + 1);
    s_link_error(link, "%s", why);
    s_link_act(link, link_write_timeout(&link->fsm, now), why);
    //  Half a frame on the wire desynchronises the stream.
    if (link->conn == DEV_ONLINE && half_sent)
        s_link_down(link, "request half sent (write timeout)");
}

//  A result from a serial channel's actor.
static int s_on_serial(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_link_t *link = (s_link_t *)arg;
    zmsg_t *msg = zmsg_recv(sock);
    if (!msg)
        return 0;
    int64_t now = mclock_mono_ms();
    char *kind = zmsg_popstr(msg);
    zframe_t *tidf = zmsg_pop(msg);
    uint16_t tid = 0;
    if (tidf && zframe_size(tidf) == sizeof tid)
        memcpy(&tid, zframe_data(tidf), sizeof tid);
    s_pending_t *p = &link->pending;
    bool current = p->active && tid == p->req.tid;
    if (!kind)
        ;
    else if (streq(kind, "OPENED")) {
        if (link->conn == DEV_CONNECTING)
            s_link_connected(link, now);
        else
            zstr_send(link->serial, "CLOSE"); //  the attempt had expired
    } else if (streq(kind, "OPEN_FAILED")) {
        char *why = tidf ? strndup((char *)zframe_data(tidf), zframe_size(tidf)) : NULL;
        if (link->conn == DEV_CONNECTING) {
            s_link_error(link, "cannot open %s: %s", link->host, why ? why : "?");
            link->conn = DEV_DOWN;
            cw_failed(link->server->cw, link->cw_id, now);
            s_link_act(link, link_open_failed(&link->fsm, now), "cannot open the port");
        }
        free(why);
    } else if (streq(kind, "REPLY") && link->conn == DEV_ONLINE) {
        zframe_t *adu = zmsg_pop(msg);
        if (adu && zframe_size(adu) >= MB_HEADER_LEN)
            s_link_reply(link, zframe_data(adu), zframe_size(adu));
        zframe_destroy(&adu);
    } else if (streq(kind, "BAD") && current && link->conn == DEV_ONLINE) {
        //  A garbled reply (CRC, length): counted; the request's tags go bad.
        char *why = zmsg_popstr(msg);
        s_device_t *dev = p->dev;
        link->server->bad_frames++;
        dev->bad_replies++;
        s_device_error(dev, "%s", why ? why : "bad reply");
        if (!p->is_write)
            s_pending_block_bad(link, SCADA__QUALITY__BAD_DEVICE, why ? why : "bad reply");
        else {
            s_reply_write(link->server, p->write, why ? why : "bad reply");
            s_write_destroy(&p->write);
        }
        p->active = false;
        zstr_free(&why);
    } else if (streq(kind, "ERROR") && current) {
        //  The port failed under the request: it times out now.
        char *why = zmsg_popstr(msg);
        s_device_error(p->dev, "%s", why ? why : "port error");
        p->deadline = now;
        zstr_free(&why);
    } else if (streq(kind, "WTIMEOUT") && current && link->conn == DEV_ONLINE)
        s_link_write_timeout(link, now);
    //  TIMEOUT needs nothing: the tick sees the deadline pass.
    if (link->conn == DEV_ONLINE && !p->active)
        s_link_send(link, now);
    zstr_free(&kind);
    zframe_destroy(&tidf);
    zmsg_destroy(&msg);
    return 0;
}

//  --------------------------------------------------------------------------
//  Tick: connect window, requests, deadlines, batch flush.

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    ioserver_t *self = (ioserver_t *)arg;
    int64_t now = mclock_mono_ms();
    int id;
    uint32_t timeout;
    if (self->lookups)
        s_lookups_poll(self, now);
    while (cw_expired(self->cw, now, &id)) {
        s_link_t *link = self->by_cw[id];
        s_link_error(link, "connect timed out");
        s_link_close_fd(link);
        link->conn = DEV_DOWN;
        s_link_act(link, link_open_failed(&link->fsm, now), "connect timed out");
        s_link_named_failed(link, "connect timed out");
        s_link_reresolve(link, true);
    }
    while (cw_start(self->cw, now, &id, &timeout))
        s_connect_start(self->by_cw[id], now);
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = &self->links[i];
        if (link->conn != DEV_ONLINE)
            continue;
        s_pending_t *p = &link->pending;
        if (link->txlen && now >= link->write_deadline) {
            s_link_write_timeout(link, now);
            continue;
        }
        if (p->active && now >= p->deadline) {
            s_device_t *dev = p->dev;
            dev->read_timeouts++;
            if (s_iolog(link)) {
                s_iolog_late_flush(link);
                s_iolog_fill(link, &link->late, IOLOG_OUT_TIMEOUT, now, false, 0);
                link->late_active = true;
                link->late_tid = p->req.tid;
                //  Kept 10 s for a late reply; late_until - 10000 is its send time.
                link->late_until = p->sent + 10000;
            }
            p->active = false;
            if (p->is_write) {
                s_reply_write(self, p->write, "no reply from the device by the deadline");
                s_write_destroy(&p->write);
            }
            uint32_t n = link->fsm.consecutive_read_timeouts + 1;
            s_device_error(dev, "no reply within %lld ms (%u in a row)",
                           (long long)(p->deadline - p->sent), n);
            char why[96];
            snprintf(why, sizeof why, "%u consecutive read timeouts", n);
            s_link_act(link, link_read_timeout(&link->fsm, now), why);
            if (link->conn != DEV_ONLINE)
                continue;
        }
        if (!p->active)
            s_link_send(link, now);
    }
    for (size_t i = 0; i < self->nlinks; i++)
        if (self->links[i].late_active && now >= self->links[i].late_until)
            s_iolog_late_flush(&self->links[i]);
    for (size_t c = 0; c < self->site->nchannels; c++)
        if (self->iologs[c] && iolog_enabled(self->iologs[c]))
            iolog_flush(self->iologs[c]);
    if (now >= self->next_integrity) {
        s_batch_flush(self, false);
        for (size_t i = 0; i < self->ndevices; i++)
            for (size_t t = 0; t < self->devices[i].cfg->ntags; t++)
                s_batch_add(self, &self->devices[i].tags[t], true);
        s_batch_flush(self, true);
        self->next_integrity = now + self->cfg->integrity_ms;
    }
    s_batch_flush(self, false);
    if (self->units_dirty)
        s_resolver_offers(self, false);
    if (zlist_size(self->sub_replies))
        s_subreplies_check(self, now);
    return 0;
}

static int s_on_ping(zloop_t *loop, int timer_id, void *arg)
{
    ioserver_t *self = (ioserver_t *)arg;
    int64_t now = mclock_mono_ms();
    audit_flush(self->audit); //  stream entries that waited for Redis
    cw_stats_t st;
    cw_stats(self->cw, now, &st);
    if (st.starved != self->starved) {
        self->starved = st.starved;
        if (st.starved)
            slog_warn("connect window %u cannot probe the %zu dead devices every %u ms: the "
                      "longest-waiting one is %lld ms overdue (raise connect_window or "
                      "reconnect_max_ms, or lower connect_timeout_ms)",
                      self->cfg->connect_window, st.dead, self->cfg->reconnect_max_ms,
                      (long long)st.dead_lag_ms);
        else
            slog_info("connect window keeps up with the dead devices again");
        s_publish_event(self, SCADA__EVENT__KIND__CONNECT_STARVED, NULL, -1,
                        st.starved ? "starved" : "recovered");
    }
    s_brokers_expire(self, now);
    Scada__ResolverMsg hb = SCADA__RESOLVER_MSG__INIT;
    hb.kind = SCADA__RESOLVER_MSG__KIND__HEARTBEAT;
    s_resolver_send(self, &hb);
    s_resolver_offers(self, false); //  catches any change a path did not flag
    s_redis_refresh(self, false);
    return 0;
}

//  --------------------------------------------------------------------------
//  Subscriptions: a tag is polled while a broker subscribes it or it is
//  always scanned (the tag's always_scan, or the I/O server's). A block of
//  a device is read while it holds an active tag; a tag that becomes active
//  is read at once and its first reading is published even if unchanged.

static void s_tag_refresh(ioserver_t *self, s_tag_t *tag, int64_t now)
{
    bool want = self->cfg->always_scan || tag->cfg->always_scan || tag->subs != 0;
    if (want == tag->active)
        return;
    tag->active = want;
    s_device_t *dev = tag->dev;
    if (want) {
        self->tags_active++;
        tag->published = false;
        //  A device that is not online: its tags' bad quality is current.
        tag->fresh = !(dev->answered && dev->link->conn == DEV_ONLINE);
        if (tag->blk != NO_BLOCK) {
            s_class_t *cls = &dev->classes[tag->cls];
            if (cls->active[tag->blk]++ == 0)
                dev->nactive++;
            //  Read it at once, even if its block is read already.
            cls->due[tag->blk] = now;
            cls->phased[tag->blk] = 0;
        }
    } else {
        self->tags_active--;
        if (tag->blk != NO_BLOCK) {
            s_class_t *cls = &dev->classes[tag->cls];
            if (--cls->active[tag->blk] == 0 && --dev->nactive == 0)
                dev->probe_due = now + self->cfg->unit_probe_ms;
        }
    }
}

//  The slot of broker `name`, made if new; -1 if every slot is taken.
static int s_broker_slot(ioserver_t *self, const char *name, bool make)
{
    int free_slot = -1;
    for (int b = 0; b < MAX_BROKERS; b++) {
        if (self->brokers[b].name && strcmp(self->brokers[b].name, name) == 0)
            return b;
        if (!self->brokers[b].name && free_slot < 0)
            free_slot = b;
    }
    if (!make || free_slot < 0)
        return -1;
    self->brokers[free_slot].name = strdup(name);
    self->brokers[free_slot].count = 0;
    slog_info("broker %s subscribes here", name);
    return free_slot;
}

//  Drop every subscription of broker slot b.
static void s_broker_clear(ioserver_t *self, int b, int64_t now)
{
    uint64_t bit = (uint64_t)1 << b;
    for (size_t i = 0; i < self->ndevices; i++)
        for (size_t t = 0; t < self->devices[i].cfg->ntags; t++) {
            s_tag_t *tag = &self->devices[i].tags[t];
            if (tag->subs & bit) {
                tag->subs &= ~bit;
                s_tag_refresh(self, tag, now);
            }
        }
    self->brokers[b].count = 0;
}

//  Brokers that stopped renewing (3 x ping_time) lose their subscriptions.
static void s_brokers_expire(ioserver_t *self, int64_t now)
{
    int64_t limit = 3 * (int64_t)self->site->ping_time_ms;
    for (int b = 0; b < MAX_BROKERS; b++)
        if (self->brokers[b].name && now - self->brokers[b].seen > limit) {
            slog_warn("broker %s silent for %lld ms: its %u subscriptions are dropped",
                      self->brokers[b].name, (long long)(now - self->brokers[b].seen),
                      self->brokers[b].count);
            s_broker_clear(self, b, now);
            zstr_free(&self->brokers[b].name);
        }
}

static bool s_unit_online(s_device_t *dev)
{
    return dev->answered && dev->link->conn == DEV_ONLINE;
}

//  Tell the resolver (fire-and-forget: a resolver that is away asks for a
//  REGISTER when it is back).
static void s_resolver_send(ioserver_t *self, Scada__ResolverMsg *msg)
{
    msg->name = self->cfg->name;
    msg->has_incarnation = true;
    msg->incarnation = self->incarnation;
    size_t len = scada__resolver_msg__get_packed_size(msg);
    zmq_msg_t frame;
    zmq_msg_init_size(&frame, len);
    scada__resolver_msg__pack(msg, (uint8_t *)zmq_msg_data(&frame));
    if (zmq_msg_send(&frame, zsock_resolve(self->resolver), ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&frame);
}

//  REGISTER (all = every device) or UNIT_STATE (the devices whose online
//  state changed since last told).
static void s_resolver_offers(ioserver_t *self, bool all)
{
    Scada__Offer *offers = (Scada__Offer *)zmalloc((self->ndevices + 1) * sizeof *offers);
    Scada__Offer **ptrs = (Scada__Offer **)zmalloc((self->ndevices + 1) * sizeof *ptrs);
    size_t n = 0;
    for (size_t i = 0; i < self->ndevices; i++) {
        s_device_t *dev = &self->devices[i];
        bool online = s_unit_online(dev);
        if (!all && online == dev->offer_online)
            continue;
        dev->offer_online = online;
        Scada__Offer *o = &offers[n];
        scada__offer__init(o);
        o->device = dev->cfg->name;
        o->has_priority = true;
        o->priority = (uint32_t)site_device_priority(dev->cfg, self->cfg->name);
        o->online = online;
        ptrs[n++] = o;
    }
    self->units_dirty = false;
    if (all || n) {
        Scada__ResolverMsg msg = SCADA__RESOLVER_MSG__INIT;
        msg.kind =
            all ? SCADA__RESOLVER_MSG__KIND__REGISTER : SCADA__RESOLVER_MSG__KIND__UNIT_STATE;
        msg.publish = self->cfg->publish;
        msg.control = self->cfg->control;
        msg.n_offers = n;
        msg.offers = ptrs;
        s_resolver_send(self, &msg);
        if (all)
            slog_info("registered %zu offers with the resolver", n);
    }
    free(offers);
    free(ptrs);
}

static int s_on_resolver(zloop_t *loop, zsock_t *sock, void *arg)
{
    ioserver_t *self = (ioserver_t *)arg;
    zmsg_t *msg = zmsg_recv(sock);
    if (!msg)
        return 0;
    zframe_t *f = zmsg_first(msg);
    Scada__ResolverMsg *m = zmsg_size(msg) == 1
                                ? scada__resolver_msg__unpack(NULL, zframe_size(f), zframe_data(f))
                                : NULL;
    zmsg_destroy(&msg);
    if (!m) {
        self->bad_requests++;
        slog_warn("resolver: malformed message dropped");
        return 0;
    }
    if (m->kind == SCADA__RESOLVER_MSG__KIND__REREGISTER)
        s_resolver_offers(self, true);
    else if (m->kind == SCADA__RESOLVER_MSG__KIND__ERROR)
        slog_warn("resolver says: %s", m->error ? m->error : "(no reason)");
    scada__resolver_msg__free_unpacked(m, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  Control socket

static s_device_t *s_find_tag(ioserver_t *self, const char *name, s_tag_t **tag_p)
{
    site_tag_t *t = site_tag(self->site, name);
    if (!t || t->id == 0 || t->id > self->site->ntags || !self->tag_by_id[t->id - 1])
        return NULL;
    *tag_p = self->tag_by_id[t->id - 1];
    return (*tag_p)->dev;
}

//  A SUBSCRIBE answer that waits (at most SUBREPLY_WAIT_MS) until every tag
//  it made active was read once, so the broker gets the first values over
//  the control socket, which loses nothing, and not only on the PUB stream,
//  where a subscriber that is still (re)connecting misses them.
#define SUBREPLY_WAIT_MS 1000

typedef struct {
    zmsg_t *envelope;
    uint64_t id;
    int broker;
    s_tag_t **tags; //  the requested tags it serves
    size_t ntags;
    char **missing; //  the requested names it does not serve (owned)
    size_t nmissing;
    int64_t deadline;
} s_subreply_t;

static void s_subreply_send(ioserver_t *self, s_subreply_t *sr)
{
    Scada__IoReply reply = SCADA__IO_REPLY__INIT;
    reply.id = sr->id;
    reply.status = SCADA__IO_REPLY__STATUS__OK;
    size_t cap = sr->ntags + sr->nmissing + 1;
    Scada__Value *values = (Scada__Value *)zmalloc(cap * sizeof *values);
    Scada__Value **ptrs = (Scada__Value **)zmalloc(cap * sizeof *ptrs);
    int64_t wall = mclock_wall_ms();
    for (size_t i = 0; i < sr->ntags; i++) {
        s_tag_t *tag = sr->tags[i];
        if (!tag->fresh || !tag->active)
            continue; //  its first reading follows on the PUB stream
        Scada__Value *v = &values[reply.n_values];
        scada__value__init(v);
        v->tag = tag->cfg->name;
        v->has_tag_id = true;
        v->tag_id = tag->cfg->id;
        v->has_number = tag->have;
        v->number = tag->value;
        v->quality = (Scada__Quality)tag->quality;
        v->source_ts_ms = tag->ts;
        v->seq = self->value_seq;
        if (tag->quality != SCADA__QUALITY__GOOD)
            v->reason = (char *)tag->reason;
        ptrs[reply.n_values++] = v;
    }
    for (size_t i = 0; i < sr->nmissing; i++) {
        Scada__Value *v = &values[reply.n_values];
        scada__value__init(v);
        v->tag = sr->missing[i];
        v->quality = SCADA__QUALITY__BAD_NOT_FOUND;
        v->source_ts_ms = wall;
        v->reason = (char *)"not served by this I/O server";
        ptrs[reply.n_values++] = v;
    }
    reply.values = ptrs;
    reply.has_count = true;
    reply.count = self->brokers[sr->broker].name ? self->brokers[sr->broker].count : 0;
    size_t len = scada__io_reply__get_packed_size(&reply);
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_reply__pack(&reply, zframe_data(frame));
    zmsg_append(sr->envelope, &frame);
    zmsg_send(&sr->envelope, self->control);
    free(values);
    free(ptrs);
}

static void s_subreply_destroy(s_subreply_t **sr_p)
{
    s_subreply_t *sr = *sr_p;
    zmsg_destroy(&sr->envelope);
    for (size_t i = 0; i < sr->nmissing; i++)
        free(sr->missing[i]);
    free(sr->missing);
    free(sr->tags);
    free(sr);
    *sr_p = NULL;
}

//  Send the answers whose tags were all read, or whose time is up.
static void s_subreplies_check(ioserver_t *self, int64_t now)
{
    zlist_t *ready = zlist_new();
    for (s_subreply_t *sr = (s_subreply_t *)zlist_first(self->sub_replies); sr;
         sr = (s_subreply_t *)zlist_next(self->sub_replies)) {
        bool all = true;
        for (size_t i = 0; i < sr->ntags && all && now < sr->deadline; i++)
            all = !sr->tags[i]->active || sr->tags[i]->fresh;
        if (all)
            zlist_append(ready, sr);
    }
    for (s_subreply_t *sr = (s_subreply_t *)zlist_first(ready); sr;
         sr = (s_subreply_t *)zlist_next(ready)) {
        zlist_remove(self->sub_replies, sr);
        s_subreply_send(self, sr);
        s_subreply_destroy(&sr);
    }
    zlist_destroy(&ready);
}

//  SUBSCRIBE, UNSUBSCRIBE, KEEP from a broker.
static void s_on_subscription(ioserver_t *self, zmsg_t *envelope, Scada__IoRequest *req)
{
    if (req->kind == SCADA__IO_REQUEST__KIND__SUBSCRIBE && req->client && *req->client &&
        s_broker_slot(self, req->client, true) >= 0) {
        //  Subscribe now, answer when the tags were read (s_subreplies_check).
        int64_t now = mclock_mono_ms();
        int b = s_broker_slot(self, req->client, true);
        uint64_t bit = (uint64_t)1 << b;
        self->brokers[b].seen = now;
        if (req->has_replace && req->replace)
            s_broker_clear(self, b, now);
        s_subreply_t *sr = (s_subreply_t *)zmalloc(sizeof *sr);
        sr->envelope = envelope;
        sr->id = req->id;
        sr->broker = b;
        sr->tags = (s_tag_t **)zmalloc((req->n_tags + 1) * sizeof *sr->tags);
        sr->missing = (char **)zmalloc((req->n_tags + 1) * sizeof *sr->missing);
        sr->deadline = now + SUBREPLY_WAIT_MS;
        for (size_t i = 0; i < req->n_tags; i++) {
            s_tag_t *tag = NULL;
            s_find_tag(self, req->tags[i], &tag);
            if (!tag) {
                sr->missing[sr->nmissing++] = strdup(req->tags[i]);
                continue;
            }
            if (!(tag->subs & bit)) {
                tag->subs |= bit;
                self->brokers[b].count++;
                self->subscribes++;
                s_tag_refresh(self, tag, now);
            }
            sr->tags[sr->ntags++] = tag;
        }
        for (size_t i = 0; i < self->nlinks; i++)
            if (self->links[i].conn == DEV_ONLINE && !self->links[i].pending.active)
                s_link_send(&self->links[i], now);
        zlist_append(self->sub_replies, sr);
        s_subreplies_check(self, now);
        return;
    }
    Scada__IoReply reply = SCADA__IO_REPLY__INIT;
    reply.id = req->id;
    reply.status = SCADA__IO_REPLY__STATUS__OK;
    int64_t now = mclock_mono_ms();
    bool sub = req->kind == SCADA__IO_REQUEST__KIND__SUBSCRIBE;
    int b =
        req->client && *req->client
            ? s_broker_slot(self, req->client, req->kind != SCADA__IO_REQUEST__KIND__UNSUBSCRIBE)
            : -1;
    size_t n = req->n_tags;
    Scada__Value *values = (Scada__Value *)zmalloc((n + 1) * sizeof *values);
    Scada__Value **ptrs = (Scada__Value **)zmalloc((n + 1) * sizeof *ptrs);
    if (b < 0 && req->kind != SCADA__IO_REQUEST__KIND__UNSUBSCRIBE) {
        reply.status = SCADA__IO_REPLY__STATUS__ERROR;
        reply.error = (char *)"too many brokers subscribe at this I/O server";
        self->bad_requests++;
    } else if (b >= 0) {
        uint64_t bit = (uint64_t)1 << b;
        self->brokers[b].seen = now;
        if (req->kind == SCADA__IO_REQUEST__KIND__KEEP) {
            if (!req->has_count || req->count != self->brokers[b].count) {
                reply.status = SCADA__IO_REPLY__STATUS__ERROR;
                reply.error = (char *)"resync";
                self->resyncs++;
                slog_info("broker %s believes it holds %u subscriptions here, we hold %u: resync",
                          req->client, req->count, self->brokers[b].count);
            }
        } else {
            if (sub && req->has_replace && req->replace)
                s_broker_clear(self, b, now);
            for (size_t i = 0; i < n; i++) {
                s_tag_t *tag = NULL;
                s_find_tag(self, req->tags[i], &tag);
                if (!tag) {
                    if (sub) {
                        Scada__Value *v = &values[reply.n_values];
                        scada__value__init(v);
                        v->tag = req->tags[i];
                        v->quality = SCADA__QUALITY__BAD_NOT_FOUND;
                        v->source_ts_ms = mclock_wall_ms();
                        v->reason = (char *)"not served by this I/O server";
                        ptrs[reply.n_values++] = v;
                    }
                    continue;
                }
                if (sub && !(tag->subs & bit)) {
                    tag->subs |= bit;
                    self->brokers[b].count++;
                    self->subscribes++;
                    s_tag_refresh(self, tag, now);
                    //  Polled already: its current value is news to the broker.
                    //  Otherwise the first reading is published soon.
                    if (!tag->fresh)
                        continue;
                } else if (!sub && (tag->subs & bit)) {
                    tag->subs &= ~bit;
                    self->brokers[b].count--;
                    self->unsubscribes++;
                    s_tag_refresh(self, tag, now);
                    continue;
                } else if (!sub || !tag->fresh)
                    continue;
                Scada__Value *v = &values[reply.n_values];
                scada__value__init(v);
                v->tag = tag->cfg->name;
                v->has_tag_id = true;
                v->tag_id = tag->cfg->id;
                v->has_number = tag->have;
                v->number = tag->value;
                v->quality = (Scada__Quality)tag->quality;
                v->source_ts_ms = tag->ts;
                v->seq = self->value_seq;
                if (tag->quality != SCADA__QUALITY__GOOD)
                    v->reason = (char *)tag->reason;
                ptrs[reply.n_values++] = v;
            }
            //  Newly active blocks are due now: read them without waiting a tick.
            for (size_t i = 0; i < self->nlinks; i++)
                if (self->links[i].conn == DEV_ONLINE && !self->links[i].pending.active)
                    s_link_send(&self->links[i], now);
        }
        reply.has_count = true;
        reply.count = self->brokers[b].count;
    } else {
        reply.has_count = true; //  unsubscribe from a broker we do not know: nothing held
    }
    reply.values = ptrs;
    size_t len = scada__io_reply__get_packed_size(&reply);
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_reply__pack(&reply, zframe_data(frame));
    zmsg_append(envelope, &frame);
    zmsg_send(&envelope, self->control);
    free(values);
    free(ptrs);
}

static void s_reply(ioserver_t *self, zmsg_t *envelope, uint64_t id, const char *error,
                    const char *json)
{
    Scada__IoReply reply = SCADA__IO_REPLY__INIT;
    reply.id = id;
    reply.status = error ? SCADA__IO_REPLY__STATUS__ERROR : SCADA__IO_REPLY__STATUS__OK;
    reply.error = (char *)error;
    reply.status_json = (char *)json;
    size_t len = scada__io_reply__get_packed_size(&reply);
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_reply__pack(&reply, zframe_data(frame));
    zmsg_append(envelope, &frame);
    zmsg_send(&envelope, self->control);
}

//  READ: the current value of each requested tag; tags this I/O server does
//  not serve come back bad-not-found.
static bool s_from_broker(ioserver_t *self, const Scada__IoRequest *req);

static void s_reply_read(ioserver_t *self, zmsg_t *envelope, Scada__IoRequest *req)
{
    bool broker = s_from_broker(self, req); //  else the roles apply here
    Scada__IoReply reply = SCADA__IO_REPLY__INIT;
    reply.id = req->id;
    reply.status = SCADA__IO_REPLY__STATUS__OK;
    size_t n = req->n_tags > 10000 ? 10000 : req->n_tags;
    Scada__Value *values = (Scada__Value *)zmalloc((n + 1) * sizeof *values);
    Scada__Value **ptrs = (Scada__Value **)zmalloc((n + 1) * sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        Scada__Value *v = &values[i];
        scada__value__init(v);
        v->tag = req->tags[i];
        s_tag_t *tag = NULL;
        if (s_find_tag(self, req->tags[i], &tag) && !broker &&
            !site_may(self->site, self->peer_user, tag->cfg->plant_area, false)) {
            v->quality = SCADA__QUALITY__BAD_NOT_ALLOWED;
            v->reason = (char *)"the role of this certificate may not read the tag's area";
        } else if (tag) {
            v->has_number = tag->have;
            v->number = tag->value;
            v->quality = (Scada__Quality)tag->quality;
            v->source_ts_ms = tag->ts;
            if (tag->quality != SCADA__QUALITY__GOOD)
                v->reason = (char *)tag->reason;
        } else {
            v->quality = SCADA__QUALITY__BAD_NOT_FOUND;
            v->reason = (char *)"not served by this I/O server";
        }
        ptrs[i] = v;
    }
    reply.n_values = n;
    reply.values = ptrs;
    size_t len = scada__io_reply__get_packed_size(&reply);
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_reply__pack(&reply, zframe_data(frame));
    zmsg_append(envelope, &frame);
    zmsg_send(&envelope, self->control);
    free(values);
    free(ptrs);
}

//  STATE: the current state as events, for a consumer that was away (the
//  alarm service at start): DEVICE_STATE of every device, IO_TIMEOUT_RAISE
//  of every socket or channel whose I/O Timeout alarm is active now.
static void s_reply_state(ioserver_t *self, zmsg_t *envelope, uint64_t id)
{
    Scada__IoReply reply = SCADA__IO_REPLY__INIT;
    reply.id = id;
    reply.status = SCADA__IO_REPLY__STATUS__OK;
    size_t cap = self->ndevices + self->nlinks + 1;
    Scada__Event *evs = (Scada__Event *)zmalloc(cap * sizeof *evs);
    Scada__Event **ptrs = (Scada__Event **)zmalloc(cap * sizeof *ptrs);
    int64_t now = mclock_mono_ms(), wall = mclock_wall_ms();
    size_t n = 0;
    for (size_t i = 0; i < self->ndevices; i++) {
        s_device_t *dev = &self->devices[i];
        Scada__Event *ev = &evs[n];
        scada__event__init(ev);
        ev->kind = SCADA__EVENT__KIND__DEVICE_STATE;
        ev->ioserver = self->cfg->name;
        ev->device = dev->cfg->name;
        ev->channel = dev->cfg->channel->name;
        ev->has_device_state = true;
        const char *st = s_device_state(self, dev, now);
        ev->device_state = streq(st, "online")       ? SCADA__DEVICE_STATE__ONLINE
                           : streq(st, "queued")     ? SCADA__DEVICE_STATE__QUEUED
                           : streq(st, "connecting") ? SCADA__DEVICE_STATE__CONNECTING
                           : streq(st, "failed")     ? SCADA__DEVICE_STATE__FAILED
                                                     : SCADA__DEVICE_STATE__OFFLINE;
        if (dev->last_error[0] && ev->device_state != SCADA__DEVICE_STATE__ONLINE)
            ev->reason = dev->last_error;
        ev->ts_ms = wall;
        ev->seq = self->event_seq;
        ptrs[n++] = ev;
    }
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = &self->links[i];
        if (!link->fsm.alarm_active)
            continue;
        Scada__Event *ev = &evs[n];
        scada__event__init(ev);
        ev->kind = SCADA__EVENT__KIND__IO_TIMEOUT_RAISE;
        ev->ioserver = self->cfg->name;
        ev->channel = link->channel->name;
        if (link->fsm.cfg.kind == LINK_SOCKET)
            ev->device = link->devices[0]->cfg->name;
        ev->state = (char *)link_state_detail(link->fsm.state);
        ev->reason = (char *)"active";
        ev->ts_ms = wall;
        ev->seq = self->event_seq;
        ptrs[n++] = ev;
    }
    reply.n_events = n;
    reply.events = ptrs;
    size_t len = scada__io_reply__get_packed_size(&reply);
    zframe_t *frame = zframe_new(NULL, len);
    scada__io_reply__pack(&reply, zframe_data(frame));
    zmsg_append(envelope, &frame);
    zmsg_send(&envelope, self->control);
    free(evs);
    free(ptrs);
}

//  The gate of the publish socket: trusted are the brokers and the alarm
//  service; anyone else needs read on every plant area of our tags.
static void s_gate_new(ioserver_t *self)
{
    self->gate = pubgate_new(self->site, "publish socket", "alarm");
    for (size_t i = 0; i < self->ndevices; i++)
        for (size_t t = 0; t < self->devices[i].cfg->ntags; t++)
            pubgate_add_area(self->gate, self->devices[i].cfg->tags[t].plant_area);
}

static char *s_status_json(ioserver_t *self)
{
    int64_t now = mclock_mono_ms();
    cw_stats_t st;
    cw_stats(self->cw, now, &st);
    return zsys_sprintf(
        "{\"ioserver\":\"%s\",\"devices_total\":%zu,\"devices_online\":%zu,"
        "\"connect_in_flight\":%zu,\"connect_queued\":%zu,\"connect_starved\":%s,"
        "\"dead_probe_lag_ms\":%lld,\"connect_attempts\":%llu,\"connect_timeouts\":%llu,"
        "\"values_published\":%llu,\"events_published\":%llu,\"bad_frames\":%llu,"
        "\"bad_requests\":%llu,\"writes_ok\":%llu,\"writes_failed\":%llu,\"redis_dropped\":%llu,"
        "\"requests\":%llu,\"replies\":%llu,\"tag_reads\":%llu,\"tags_active\":%llu,"
        "\"brokers\":%llu,\"subscribes\":%llu,\"unsubscribes\":%llu,\"resyncs\":%llu,"
        "\"probes\":%llu,\"subscribers_refused\":%llu}",
        self->cfg->name, self->ndevices, s_online_count(self), st.in_flight, st.queued,
        st.starved ? "true" : "false", (long long)st.dead_lag_ms, (unsigned long long)st.attempts,
        (unsigned long long)st.timeouts, (unsigned long long)self->values_published,
        (unsigned long long)self->events_published, (unsigned long long)self->bad_frames,
        (unsigned long long)self->bad_requests, (unsigned long long)self->writes_ok,
        (unsigned long long)self->writes_failed, (unsigned long long)rzloop_dropped(self->redis),
        (unsigned long long)self->requests, (unsigned long long)self->replies,
        (unsigned long long)self->tag_reads, (unsigned long long)self->tags_active,
        (unsigned long long)s_broker_count(self), (unsigned long long)self->subscribes,
        (unsigned long long)self->unsubscribes, (unsigned long long)self->resyncs,
        (unsigned long long)self->probes, (unsigned long long)pubgate_refused(self->gate));
}

//  What a control request lacks whatever the engine's state (the fields its
//  kind needs, a kind we serve): the text of its ERROR reply, or NULL.
//  Did a broker of the site send this (it checks roles and audits itself)?
//  With CURVE its certificate says so; on a plain site nothing can, and the
//  request's `client` is taken at its word.
static bool s_from_broker(ioserver_t *self, const Scada__IoRequest *req)
{
    const char *who = self->peer_key ? self->peer_user : req->client;
    if (!who)
        return false;
    if (self->site->nbrokers == 0)
        return strcmp(who, self->site->default_broker.name) == 0;
    for (size_t i = 0; i < self->site->nbrokers; i++)
        if (strcmp(who, self->site->brokers[i].name) == 0)
            return true;
    return false;
}

static const char *s_request_check(const Scada__IoRequest *req)
{
    switch (req->kind) {
    case SCADA__IO_REQUEST__KIND__WRITE:
        return req->tag && req->has_value ? NULL : "write needs tag and value";
    case SCADA__IO_REQUEST__KIND__IOLOG:
        return req->channel && req->has_enable ? NULL : "iolog needs channel and enable";
    case SCADA__IO_REQUEST__KIND__SUBSCRIBE:
    case SCADA__IO_REQUEST__KIND__UNSUBSCRIBE:
    case SCADA__IO_REQUEST__KIND__KEEP:
        return req->client && *req->client ? NULL : "subscriptions need client (the broker's name)";
    case SCADA__IO_REQUEST__KIND__STATUS:
    case SCADA__IO_REQUEST__KIND__READ:
    case SCADA__IO_REQUEST__KIND__STATE:
        return NULL;
    default:
        return "unknown request kind";
    }
}

static int s_on_control(zloop_t *loop, zsock_t *sock, void *arg)
{
    ioserver_t *self = (ioserver_t *)arg;
    zmsg_t *msg = zmsg_recv(sock);
    if (!msg)
        return 0;
    //  Envelope: routing id, an empty delimiter if the peer is a REQ, then
    //  one frame with the request.
    zframe_t *body = zmsg_last(msg);
    if (zmsg_size(msg) < 2) {
        self->bad_requests++;
        zmsg_destroy(&msg);
        return 0;
    }
    body = zmsg_pop(msg); //  routing id
    zmsg_t *envelope = zmsg_new();
    zmsg_append(envelope, &body);
    while (zmsg_size(msg) > 1) {
        zframe_t *f = zmsg_pop(msg);
        zmsg_append(envelope, &f);
    }
    body = zmsg_pop(msg);
    zmsg_destroy(&msg);
    //  Who sent it: the `name` of its certificate in the key directory, and
    //  the key (NULL on a plain site).
    const char *meta = zframe_meta(body, "name");
    free(self->peer_user);
    self->peer_user = meta ? strdup(meta) : NULL;
    meta = zframe_meta(body, "User-Id");
    free(self->peer_key);
    self->peer_key = meta && *meta ? strdup(meta) : NULL;
    Scada__IoRequest *req = scada__io_request__unpack(NULL, zframe_size(body), zframe_data(body));
    zframe_destroy(&body);
    if (!req) {
        self->bad_requests++;
        //  At most one line a second, whatever a hostile peer sends.
        int64_t now = mclock_mono_ms();
        if (now - self->malformed_logged >= 1000) {
            slog_warn("control: malformed request dropped (not an IoRequest; %llu so far, %llu "
                      "not logged since the last such line)",
                      (unsigned long long)self->bad_requests,
                      (unsigned long long)self->malformed_quiet);
            self->malformed_logged = now;
            self->malformed_quiet = 0;
        } else
            self->malformed_quiet++;
        s_reply(self, envelope, 0, "malformed request: not a scada.IoRequest", NULL);
        return 0;
    }
    const char *bad = s_request_check(req);
    if (bad) {
        //  A write that cannot be made counts as a failed write; an I/O log
        //  switch is not counted.
        if (req->kind == SCADA__IO_REQUEST__KIND__WRITE)
            self->writes_failed++;
        else if (req->kind != SCADA__IO_REQUEST__KIND__IOLOG)
            self->bad_requests++;
        s_reply(self, envelope, req->id, bad, NULL);
    } else if (req->kind == SCADA__IO_REQUEST__KIND__STATUS) {
        char *json = s_status_json(self);
        s_reply(self, envelope, req->id, NULL, json);
        zstr_free(&json);
    } else if (req->kind == SCADA__IO_REQUEST__KIND__WRITE) {
        s_tag_t *tag = NULL;
        s_device_t *dev = s_find_tag(self, req->tag, &tag);
        const char *why = NULL;
        s_write_t w = {0};
        w.value = req->value;
        w.wall_ms = mclock_wall_ms();
        w.direct = !s_from_broker(self, req);
        bool refused = false;
        char why_buf[200];
        const site_tag_t *st = site_tag(self->site, req->tag);
        if (w.direct) {
            w.user = self->peer_user ? strdup(self->peer_user) : NULL;
            w.pubkey = self->peer_key ? strdup(self->peer_key) : NULL;
            w.client = req->client ? strdup(req->client) : NULL;
        }
        if (tag && tag->have) {
            w.has_old = true;
            w.old_value = tag->value;
            w.old_quality = tag->quality;
        }
        if (!dev)
            why = st ? "tag not served by this I/O server" : "no such tag";
        else if (w.direct && !site_may(self->site, w.user, tag->cfg->plant_area, true)) {
            const site_role_t *role = site_role_of(self->site, w.user);
            snprintf(why_buf, sizeof why_buf, "%s%s (%s%s) may not write area %s",
                     w.user ? "user " : "", w.user ? w.user : "an unidentified client",
                     role ? "role " : "no role", role ? role->name : "", tag->cfg->plant_area);
            why = why_buf;
            refused = true;
        } else if (!tag->cfg->writable)
            why = "tag is read-only";
        else if (dev->link->conn != DEV_ONLINE || !dev->answered)
            why = "device offline";
        else if (zlist_size(dev->writes) >= WRITE_QUEUE)
            why = "too many writes waiting for this device";
        else if (tag->cfg->area == SITE_AREA_CO) {
            if (tagval_to_bit(tag->cfg, req->value, &w.bit, &why) != 0 && !why)
                why = "bad value";
        } else if (tagval_to_registers(tag->cfg, req->value, w.regs, &why) != 0 && !why)
            why = "bad value";
        if (why) {
            s_reply(self, envelope, req->id, why, NULL);
            self->writes_failed++;
            if (w.direct) {
                s_audit_direct(self, &w, req->tag, st ? st->plant_area : NULL, refused, why);
                if (refused)
                    slog_warn("write %s = %g refused: %s", req->tag, req->value, why);
            }
            free(w.user);
            free(w.pubkey);
            free(w.client);
        } else {
            s_write_t *pw = (s_write_t *)malloc(sizeof *pw);
            *pw = w;
            pw->envelope = envelope;
            pw->id = req->id;
            pw->tag = tag;
            zlist_append(dev->writes, pw);
            slog_info("write %s = %g queued", tag->cfg->name, req->value);
            if (!dev->link->pending.active)
                s_link_send(dev->link, mclock_mono_ms());
        }
    } else if (req->kind == SCADA__IO_REQUEST__KIND__READ) {
        s_reply_read(self, envelope, req);
    } else if (req->kind == SCADA__IO_REQUEST__KIND__STATE) {
        s_reply_state(self, envelope, req->id);
    } else if (req->kind == SCADA__IO_REQUEST__KIND__SUBSCRIBE ||
               req->kind == SCADA__IO_REQUEST__KIND__UNSUBSCRIBE ||
               req->kind == SCADA__IO_REQUEST__KIND__KEEP) {
        s_on_subscription(self, envelope, req);
    } else if (req->kind == SCADA__IO_REQUEST__KIND__IOLOG) {
        size_t c = 0;
        while (c < self->site->nchannels && strcmp(self->site->channels[c].name, req->channel) != 0)
            c++;
        if (c == self->site->nchannels || !self->iologs[c])
            s_reply(self, envelope, req->id, "no such channel served by this I/O server", NULL);
        else {
            if (req->enable)
                zsys_dir_create("%s", self->iolog_dir);
            iolog_set_enabled(self->iologs[c], req->enable);
            slog_info("I/O log of channel %s %s", req->channel, req->enable ? "on" : "off");
            s_reply(self, envelope, req->id, NULL, NULL);
        }
    } else {
        self->bad_requests++;
        s_reply(self, envelope, req->id, "unknown request kind", NULL);
    }
    scada__io_request__free_unpacked(req, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  Construction

//  Take the link's host as a numeric address (which never blocks: no lookup
//  is made); false if it is a name.
static bool s_numeric_address(s_link_t *link)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)link->port);
    if (getaddrinfo(link->host, port, &hints, &res) != 0 || !res)
        return false;
    bool ok = res->ai_addrlen <= sizeof link->addrs[0].u;
    if (ok) {
        memcpy(&link->addrs[0].u, res->ai_addr, res->ai_addrlen);
        link->addrs[0].len = res->ai_addrlen;
        link->naddrs = 1;
    }
    freeaddrinfo(res);
    return ok;
}

static void s_device_init(ioserver_t *self, s_device_t *dev, site_device_t *cfg)
{
    dev->server = self;
    dev->cfg = cfg;
    dev->writes = zlist_new();
    dev->tags = (s_tag_t *)zmalloc(cfg->ntags * sizeof *dev->tags + 1);
    for (size_t i = 0; i < cfg->ntags; i++) {
        dev->tags[i].cfg = &cfg->tags[i];
        dev->tags[i].dev = dev;
        dev->tags[i].blk = NO_BLOCK;
        dev->tags[i].quality = SCADA__QUALITY__BAD_NO_COMM;
        dev->tags[i].reason = "not read yet";
        if (cfg->tags[i].id >= 1 && cfg->tags[i].id <= self->site->ntags)
            self->tag_by_id[cfg->tags[i].id - 1] = &dev->tags[i];
    }
    //  One plan per distinct scan period.
    site_tag_t **group = (site_tag_t **)zmalloc((cfg->ntags + 1) * sizeof *group);
    dev->classes = (s_class_t *)zmalloc((cfg->ntags + 1) * sizeof *dev->classes);
    for (size_t i = 0; i < cfg->ntags; i++) {
        uint32_t scan = cfg->tags[i].scan_ms;
        bool seen = false;
        for (size_t c = 0; c < dev->nclasses; c++)
            seen = seen || dev->classes[c].scan_ms == scan;
        if (seen)
            continue;
        size_t n = 0;
        for (size_t j = i; j < cfg->ntags; j++)
            if (cfg->tags[j].scan_ms == scan)
                group[n++] = &cfg->tags[j];
        size_t rejected = 0;
        s_class_t *cls = &dev->classes[dev->nclasses++];
        cls->scan_ms = scan;
        cls->plan = mbplan_new(group, n, cfg->channel->max_gap, &rejected);
        cls->due = (int64_t *)zmalloc((cls->plan->nblocks + 1) * sizeof *cls->due);
        cls->active = (uint32_t *)zmalloc((cls->plan->nblocks + 1) * sizeof *cls->active);
        cls->phased = (uint8_t *)zmalloc(cls->plan->nblocks + 1);
        for (size_t b = 0; b < cls->plan->nblocks; b++)
            for (size_t k = 0; k < cls->plan->blocks[b].ntags; k++) {
                site_tag_t *t = cls->plan->tags[cls->plan->blocks[b].first + k];
                dev->tags[t - cfg->tags].cls = (size_t)(cls - dev->classes);
                dev->tags[t - cfg->tags].blk = b;
            }
        if (rejected)
            slog_warn("device %s: %zu tags cannot be read (address range)", cfg->name, rejected);
    }
    free(group);
}

//  Set up the link of `dev`: its own for a network device, the channel's
//  shared one for a device behind a gateway.
static void s_link_attach(ioserver_t *self, s_device_t *dev)
{
    site_channel_t *ch = dev->cfg->channel;
    s_link_t *link = NULL;
    bool shared = ch->type == SITE_CH_TCP || ch->type == SITE_CH_SERIAL;
    if (shared)
        for (size_t i = 0; i < self->nlinks && !link; i++)
            if (self->links[i].channel == ch)
                link = &self->links[i];
    if (!link) {
        link = &self->links[self->nlinks++];
        link->server = self;
        link->channel = ch;
        link->fd = -1;
        link->next_tid = (uint16_t)(self->nlinks * 7919);
        link->devices = (s_device_t **)zmalloc((ch->ndevices + 1) * sizeof *link->devices);
        link->cw_id = cw_add(self->cw);
        self->by_cw[link->cw_id] = link;
        link_config_t lc = {.kind = (ch->type == SITE_CH_NETWORK || ch->type == SITE_CH_LISTEN)
                                        ? LINK_SOCKET
                                        : LINK_CHANNEL,
                            .max_read_timeouts = ch->max_read_timeouts,
                            .max_write_timeouts = ch->max_write_timeouts};
        link_fsm_init(&link->fsm, &lc, mclock_mono_ms());
        if (ch->type == SITE_CH_SERIAL) {
            snprintf(link->name, sizeof link->name, "channel %s (serial %s)", ch->name,
                     ch->serial_port ? ch->serial_port : "?");
            link->host = ch->serial_port;
            link->port = 0;
        } else if (ch->type == SITE_CH_TCP) {
            snprintf(link->name, sizeof link->name, "channel %s (gateway %s:%u)", ch->name,
                     ch->host, (unsigned)ch->port);
            link->host = ch->host;
            link->port = ch->port;
        } else {
            snprintf(link->name, sizeof link->name, "device %s", dev->cfg->name);
            link->host = dev->cfg->host;
            link->port = dev->cfg->port;
        }
    }
    link->devices[link->ndevices++] = dev;
    dev->link = link;
}

//  After every device is attached: resolve addresses, mark what cannot be served.
static void s_link_prepare(s_link_t *link)
{
    site_channel_t *ch = link->channel;
    if (ch->type == SITE_CH_SERIAL) {
        link->addr_ok = ch->serial_port != NULL;
        link->serial = zactor_new(serial_actor, ch);
    } else if (ch->type != SITE_CH_NETWORK && ch->type != SITE_CH_TCP) {
        s_link_error(link, "channel type %s is not served yet", site_chtype_name(ch->type));
        slog_warn("channel %s of type %s is not served by this version", ch->name,
                  site_chtype_name(ch->type));
        link->addr_ok = false;
    } else if (!link->host)
        link->addr_ok = false;
    else {
        //  A name is resolved without blocking; until then its attempts fail.
        link->addr_ok = true;
        link->named = !s_numeric_address(link);
        link->resolve_rc = link->named ? EAI_INPROGRESS : 0;
        s_lookup_start(link);
    }
    if (!link->addr_ok)
        for (size_t d = 0; d < link->ndevices; d++)
            for (size_t i = 0; i < link->devices[d]->cfg->ntags; i++) {
                link->devices[d]->tags[i].quality = SCADA__QUALITY__BAD_CONFIG;
                link->devices[d]->tags[i].reason = "device address not usable";
            }
}

ioserver_t *ioserver_new(site_t *site, const char *name)
{
    ioserver_t *self = (ioserver_t *)zmalloc(sizeof *self);
    self->epfd = -1;
    self->site = site;
    self->cfg = site_ioserver(site, name);
    assert(self->cfg);
    self->prefix = zsys_sprintf("scada:%s:ioserver:%s", site->site, name);
    self->started_wall = mclock_wall_ms();
    cw_config_t cwc = {.window = self->cfg->connect_window,
                       .timeout_ms = self->cfg->connect_timeout_ms,
                       .timeout_min_ms = self->cfg->connect_timeout_min_ms,
                       .reconnect_min_ms = self->cfg->reconnect_min_ms,
                       .reconnect_max_ms = self->cfg->reconnect_max_ms,
                       .recent_ms = self->cfg->recent_ms,
                       .reserve = -1,
                       .seed = (uint64_t)getpid() * 2654435761u ^ (uint64_t)self->started_wall};
    if (cwc.timeout_min_ms > cwc.timeout_ms)
        cwc.timeout_min_ms = cwc.timeout_ms;
    self->cw = cw_new(&cwc);
    if (!self->cw) {
        slog_error("connect window settings are inconsistent");
        ioserver_destroy(&self);
        return NULL;
    }
    //  Writes that do not come through a broker are audited here: no audit
    //  file, no I/O server.
    char *adir = site_path(site, site->security_audit_dir);
    char *apath = zsys_sprintf("%s/audit-%s.log", adir, name);
    char *astream = zsys_sprintf("scada:%s:audit", site->site);
    self->audit = audit_new(apath, astream, NULL);
    if (!self->audit)
        slog_error("cannot open the audit file %s: %s (security.audit_dir)", apath,
                   strerror(errno));
    free(adir);
    zstr_free(&apath);
    zstr_free(&astream);
    if (!self->audit) {
        ioserver_destroy(&self);
        return NULL;
    }
    self->tag_by_id = (s_tag_t **)zmalloc((site->ntags + 1) * sizeof *self->tag_by_id);
    self->sub_replies = zlist_new();
    self->incarnation = (uint64_t)self->started_wall * 1000003u ^ (uint64_t)getpid() << 40;
    //  The devices this I/O server offers.
    size_t n = 0;
    for (size_t c = 0; c < site->nchannels; c++)
        for (size_t d = 0; d < site->channels[c].ndevices; d++)
            if (site_device_priority(&site->channels[c].devices[d], name) > 0)
                n++;
    self->devices = (s_device_t *)zmalloc((n + 1) * sizeof *self->devices);
    self->links = (s_link_t *)zmalloc((n + 1) * sizeof *self->links);
    self->by_cw = (s_link_t **)zmalloc((n + 1) * sizeof *self->by_cw);
    for (size_t c = 0; c < site->nchannels; c++)
        for (size_t d = 0; d < site->channels[c].ndevices; d++) {
            site_device_t *cfg = &site->channels[c].devices[d];
            if (site_device_priority(cfg, name) <= 0)
                continue;
            s_device_t *dev = &self->devices[self->ndevices++];
            s_device_init(self, dev, cfg);
            s_link_attach(self, dev);
        }
    for (size_t i = 0; i < self->nlinks; i++)
        s_link_prepare(&self->links[i]);
    int64_t now0 = mclock_mono_ms();
    for (size_t i = 0; i < self->ndevices; i++)
        for (size_t t = 0; t < self->devices[i].cfg->ntags; t++)
            s_tag_refresh(self, &self->devices[i].tags[t], now0);
    //  One I/O log per channel served; written only while switched on.
    self->iolog_dir = site_path(site, self->cfg->iolog_dir);
    self->iologs = (iolog_t **)zmalloc((site->nchannels + 1) * sizeof *self->iologs);
    for (size_t i = 0; i < self->nlinks; i++) {
        site_channel_t *ch = self->links[i].channel;
        size_t c = (size_t)(ch - site->channels);
        if (self->iologs[c])
            continue;
        char *path = zsys_sprintf("%s/%s-%s.log", self->iolog_dir, name, ch->name);
        self->iologs[c] =
            iolog_new(path, (size_t)self->cfg->iolog_max_kb * 1024, (int)self->cfg->iolog_keep);
        if (ch->iolog) {
            zsys_dir_create("%s", self->iolog_dir);
            iolog_set_enabled(self->iologs[c], true);
        }
        zstr_free(&path);
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0) {
        slog_error("epoll_create1: %s", strerror(errno));
        ioserver_destroy(&self);
        return NULL;
    }
    self->reasons = zhashx_new(); //  text -> owned copy of it
    zhashx_set_destructor(self->reasons, (zhashx_destructor_fn *)zstr_free);
    self->batch = (Scada__Value *)zmalloc(BATCH_MAX * sizeof *self->batch);
    self->batch_ptrs = (Scada__Value **)zmalloc(BATCH_MAX * sizeof *self->batch_ptrs);

    //  Limits (README, scada-ioserver, Limits): a subscriber that stops
    //  reading loses messages past SNDHWM instead of growing our memory; it
    //  sends nothing but subscriptions (a topic of a byte or two).
    char err[512];
    if (!(self->sec = sec_new(site, name, NULL, err, sizeof err))) {
        slog_error("%s", err);
        ioserver_destroy(&self);
        return NULL;
    }
    //  Behind a gate (pubgate.h): the brokers and the alarm service always,
    //  anyone else only when their role reads every plant area of this I/O
    //  server's tags.
    self->pub = zsock_new(ZMQ_PUB);
    zsock_set_sndhwm(self->pub, 1000);
    zsock_set_rcvhwm(self->pub, 100);
    zsock_set_maxmsgsize(self->pub, 1024);
    s_gate_new(self);
    if (sec_server_gated(self->sec, self->pub, "publish socket", self->gate, err, sizeof err) !=
            0 ||
        site_bind(self->pub, self->cfg->publish, err, sizeof err) < 0) {
        slog_error("publish endpoint: %s", err);
        ioserver_destroy(&self);
        return NULL;
    }
    //  The largest request: 20,000 tag names of 255 bytes (5.2 MB); a peer
    //  that announces more is disconnected before anything is allocated.
    self->control = zsock_new(ZMQ_ROUTER);
    zsock_set_maxmsgsize(self->control, 8 * 1024 * 1024);
    zsock_set_sndhwm(self->control, 1000);
    zsock_set_rcvhwm(self->control, 1000);
    if (sec_server(self->sec, self->control, "control socket", err, sizeof err) != 0 ||
        site_bind(self->control, self->cfg->control, err, sizeof err) < 0) {
        slog_error("control endpoint: %s", err);
        ioserver_destroy(&self);
        return NULL;
    }
    //  The resolver: offers and heartbeats. Nothing waits on it; messages
    //  are dropped while it cannot take them, and it asks for a REGISTER
    //  when it hears from an I/O server it does not know.
    self->resolver = zsock_new(ZMQ_DEALER);
    zsock_set_sndhwm(self->resolver, 1000);
    zsock_set_rcvhwm(self->resolver, 100);
    zsock_set_linger(self->resolver, 0);
    zsock_set_maxmsgsize(self->resolver, 64 * 1024); //  it sends REREGISTER and ERROR only
    if (sec_client(self->sec, self->resolver, "resolver", "resolver link", err, sizeof err) != 0) {
        slog_error("%s", err);
        ioserver_destroy(&self);
        return NULL;
    }
    if (zsock_connect(self->resolver, "%s", site->resolver.endpoint) < 0) {
        slog_error("cannot connect to the resolver at %s: %s", site->resolver.endpoint,
                   zmq_strerror(errno));
        ioserver_destroy(&self);
        return NULL;
    }
    slog_info("serving %zu devices; publishing on %s, control on %s, connect window %u, "
              "%s; resolver %s",
              self->ndevices, self->cfg->publish, self->cfg->control, self->cfg->connect_window,
              self->cfg->always_scan ? "polling every tag" : "polling subscribed tags",
              site->resolver.endpoint);
    return self;
}

void ioserver_destroy(ioserver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ioserver_t *self = *self_p;
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = &self->links[i];
        if (link->lookup) {
            s_lookup_destroy(link);
            self->lookup_last = mclock_mono_ms();
        }
        if (link->fd >= 0)
            close(link->fd);
        if (link->pending.active && link->pending.is_write)
            s_write_destroy(&link->pending.write);
        zactor_destroy(&link->serial);
        free(link->devices);
    }
    free(self->links);
    //  Let glibc's lookup threads end, so that nothing of them is left when
    //  the process exits (valgrind would count their memory as lost).
    int64_t linger =
        self->lookup_last ? self->lookup_last + LOOKUP_LINGER_MS - mclock_mono_ms() : 0;
    if (linger > 0)
        zclock_sleep((int)linger);
    for (size_t i = 0; i < self->ndevices; i++) {
        s_device_t *dev = &self->devices[i];
        s_write_t *w;
        while (dev->writes && (w = (s_write_t *)zlist_pop(dev->writes)))
            s_write_destroy(&w);
        zlist_destroy(&dev->writes);
        for (size_t c = 0; c < dev->nclasses; c++) {
            mbplan_destroy(&dev->classes[c].plan);
            free(dev->classes[c].due);
            free(dev->classes[c].active);
            free(dev->classes[c].phased);
        }
        free(dev->classes);
        free(dev->tags);
    }
    free(self->devices);
    free(self->by_cw);
    free(self->batch);
    free(self->batch_ptrs);
    cw_destroy(&self->cw);
    zsock_destroy(&self->pub);
    zsock_destroy(&self->control);
    zsock_destroy(&self->resolver);
    sec_destroy(&self->sec);
    pubgate_destroy(&self->gate); //  after the authenticator that asks it
    audit_destroy(&self->audit);
    free(self->peer_user);
    free(self->peer_key);
    s_subreply_t *sr;
    while (self->sub_replies && (sr = (s_subreply_t *)zlist_pop(self->sub_replies)))
        s_subreply_destroy(&sr);
    zlist_destroy(&self->sub_replies);
    for (int b = 0; b < MAX_BROKERS; b++)
        zstr_free(&self->brokers[b].name);
    free(self->tag_by_id);
    zstr_free(&self->prefix);
    zhashx_destroy(&self->reasons);
    if (self->epfd >= 0)
        close(self->epfd);
    for (size_t c = 0; self->iologs && c < self->site->nchannels; c++)
        iolog_destroy(&self->iologs[c]);
    free(self->iologs);
    free(self->iolog_dir);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Actor

static int s_on_pipe(zloop_t *loop, zsock_t *pipe, void *arg)
{
    char *cmd = zstr_recv(pipe);
    int rc = (!cmd || streq(cmd, "$TERM")) ? -1 : 0;
    zstr_free(&cmd);
    return rc;
}

void ioserver_actor(zsock_t *pipe, void *engine)
{
    ioserver_t *self = (ioserver_t *)engine;
    self->loop = zloop_new();
    //  Signals are main()'s business: the loop ends only on $TERM.
    zloop_set_nonstop(self->loop, true);
    zloop_reader(self->loop, pipe, s_on_pipe, self);
    zloop_reader(self->loop, self->control, s_on_control, self);
    zloop_reader_set_tolerant(self->loop, self->control);
    zloop_reader(self->loop, self->resolver, s_on_resolver, self);
    zloop_reader_set_tolerant(self->loop, self->resolver);
    sec_attach(self->sec, self->loop);
    s_resolver_offers(self, true);
    for (size_t i = 0; i < self->nlinks; i++)
        if (self->links[i].serial)
            zloop_reader(self->loop, zactor_sock(self->links[i].serial), s_on_serial,
                         &self->links[i]);
    zloop_timer(self->loop, TICK_MS, 0, s_on_tick, self);
    zmq_pollitem_t links_item = {NULL, self->epfd, ZMQ_POLLIN, 0};
    zloop_poller(self->loop, &links_item, s_on_links, self);
    zloop_poller_set_tolerant(self->loop, &links_item);
    zloop_timer(self->loop, self->site->ping_time_ms, 0, s_on_ping, self);
    self->redis = rzloop_new(self->loop, self->site->redis_host, self->site->redis_port,
                             s_on_redis_connect, self);
    rzloop_set_auth(self->redis, self->site->redis_user, self->site->redis_password);
    audit_set_redis(self->audit, self->redis);
    int64_t now = mclock_mono_ms();
    //  The first tick publishes every tag with its quality ("not read yet"),
    //  so subscribers know of devices that never answer.
    self->next_integrity = now;
    //  A host name waits for its first resolution (s_lookups_poll).
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = &self->links[i];
        if (link->addr_ok && !(link->named && link->resolve_rc == EAI_INPROGRESS)) {
            link->wanted = true;
            cw_want(self->cw, link->cw_id, now);
        }
    }
    zsock_signal(pipe, 0);
    zloop_start(self->loop);

    //  Stopping: tell subscribers and Redis.
    for (size_t i = 0; i < self->nlinks; i++)
        if (self->links[i].conn == DEV_ONLINE)
            s_link_close(&self->links[i], "I/O server stopped", CLOSE_FINAL);
    for (size_t i = 0; i < self->ndevices; i++)
        s_fail_writes(&self->devices[i], "I/O server stopped");
    s_batch_flush(self, false);
    if (rzloop_connected(self->redis)) {
        int64_t t = mclock_mono_ms();
        s_redis_server(self, "stopped", t);
        for (size_t i = 0; i < self->ndevices; i++) {
            s_device_t *dev = &self->devices[i];
            char key[512];
            snprintf(key, sizeof key, "%s:device:%s", self->prefix, dev->cfg->name);
            rzloop_command(self->redis, "HSET %s state offline last_error %s", key,
                           "I/O server stopped");
            //  A key that had gone is made again by the HSET: it expires too.
            rzloop_command(self->redis, "PEXPIRE %s %lld", key, (long long)s_ttl_ms(self));
        }
        audit_flush(self->audit);
        rzloop_flush(self->redis, 1000);
    }
    audit_set_redis(self->audit, NULL);
    rzloop_destroy(&self->redis);
    zloop_destroy(&self->loop);
}
