/*  broker: the subscription broker. See broker.h and README "Broker".

    Objects:
    - s_tag_t: a tag the broker has resolved (name, id, device), with the
      clients that want it (fan-out), where it is subscribed, and the last
      value and quality from there (the cache).
    - s_device_t: a device and its best offer, as the resolver says, with
      the tags of it that are subscribed (moved together on failover).
    - s_ios_t: an I/O server the broker talks to: a SUB for its values and a
      DEALER for subscribe, unsubscribe, keep and write requests.
    - s_client_t: a client (ROUTER routing id) with its pages and the tags
      whose update it has not been sent yet (coalescing: the update sent is
      the tag's value at send time, so the latest value wins). That list
      holds each tag at most once (s_sub_t.queued), so what a slow client
      costs is bounded by the tags it subscribed, however long it is slow;
      the messages queued to it are bounded by CLIENT_SNDHWM.
    - s_waiter_t: a client request waiting for the resolver or for first
      values (SUBSCRIBE) or for an I/O server (WRITE).
*/
#include "broker.h"

#include "best_offer.h"
#include "mclock.h"
#include "rzloop.h"
#include "scada.pb-c.h"
#include "audit.h"
#include "scada_client.h"
#include "sec.h"
#include "slog.h"

#include <math.h>
#include <unistd.h>

#define TICK_MS       5
#define RESOLVE_CHUNK 2000 //  names per RESOLVE message
#define SUB_CHUNK     2000 //  tags per SUBSCRIBE to an I/O server
#define UPDATE_CHUNK  4000 //  updates per UPDATES message
#define RESOLVE_TRIES 6    //  attempts before a resolve is given up
#define MAX_PAGE_TAGS 20000
#define FULL_RETRY_MS 50    //  a client whose queue is full: the next try not sooner
#define FULL_LOG_MS   10000 //  a slow client is logged at most this often

//  Limits on the sockets, so that a slow or hostile peer cannot grow our
//  memory (docs/broker.md "Limits").
#define CLIENT_SNDHWM   100                //  messages queued to a client; then EAGAIN
#define CLIENT_SNDBUF   (128 * 1024)       //  kernel send buffer per client (SO_SNDBUF)
#define CLIENT_RCVHWM   100                //  requests queued from a client; then TCP waits
#define MAX_CLIENT_MSG  (1024 * 1024)      //  a larger request closes the connection
#define MAX_CLIENT_REQS 256                //  requests of a client in progress at most
#define PEER_MAX_MSG    (16 * 1024 * 1024) //  from an I/O server or the resolver
#define IOS_RCVHWM      10000              //  value messages queued from an I/O server
#define IOS_SNDHWM      10000              //  requests queued to its control socket
#define IOS_RCVHWM_REP  1000               //  replies queued from it
#define RESOLVER_HWM    1000               //  messages queued to or from the resolver

typedef struct _s_client_t s_client_t;
typedef struct _s_tag_t s_tag_t;
typedef struct _s_device_t s_device_t;
typedef struct _s_ios_t s_ios_t;
typedef struct _broker_t broker_t;

typedef struct {
    s_client_t *client;
    uint32_t refs;    //  pages of the client holding the tag
    bool pending;     //  an update is owed to the client
    bool queued;      //  the tag is in the client's owed list (once at most)
    int pend_quality; //  the quality when it became owed
} s_sub_t;

struct _s_tag_t {
    uint32_t id;
    char *name;
    s_device_t *dev;
    bool writable;
    const char *area; //  its plant area (site file), for roles
    uint32_t refs;    //  (client, page) holders, plus 1 if subscribed on startup
    s_sub_t *subs;    //  fan-out: one per client
    size_t nsubs, capsubs;
    size_t dev_pos;     //  index in dev->tags while refs > 0
    s_ios_t *at;        //  subscribed there (values accepted from it)
    s_ios_t *moving_to; //  make-before-break: subscribed there too, switch on its
                        //  first value
    bool known;         //  the cache holds the current state from the current source
    bool have;          //  a value was ever received
    double value;
    int quality;
    int64_t ts;
    const char *reason; //  interned
};

struct _s_device_t {
    char *name;
    bool offered;  //  the resolver told us its best offer (maybe none)
    s_ios_t *best; //  NULL: none
    const char *reason;
    s_tag_t **tags; //  its tags with refs > 0
    size_t ntags, captags;
};

struct _s_ios_t {
    broker_t *broker;
    char *name;
    char *publish, *control;
    zsock_t *sub;
    zsock_t *dealer;
    uint32_t count;     //  subscriptions we hold there, as we count them
    uint32_t inflight;  //  requests not answered yet
    zlistx_t *want_sub; //  tag names to subscribe (char *, owned), flushed every tick
    zlistx_t *want_unsub;
    bool resync;         //  send the whole list with replace
    int64_t next_resync; //  not more often than once per ping_time
};

typedef struct {
    uint32_t page;
    s_tag_t **tags;
    size_t ntags;
} s_page_t;

struct _s_client_t {
    broker_t *broker;
    char *key; //  routing id in hex
    zframe_t *rid;
    char *name;
    char *user;   //  certificate name (the `name` of its public key file), NULL: none
    char *pubkey; //  its public key (Z85), NULL on a plain site
    int64_t last_rx, last_tx;
    zhashx_t *pages; //  "page number" -> s_page_t
    s_tag_t **owed;  //  tags whose s_sub_t is queued (each once; s_sub_t.pending rules)
    size_t nowed, capowed;
    int64_t next_flush;
    uint32_t waiting;  //  subscribe requests not answered yet: updates held back
    uint32_t requests; //  requests in progress (waiters)
    bool full;         //  the last send found its queue full; cleared by a send that works
    int64_t full_since;
    int64_t full_logged;
    uint64_t missed; //  updates held back or coalesced away while full, not told yet
    uint64_t sent, dropped;
};

typedef enum { W_SUBSCRIBE, W_WRITE, W_EXISTS, W_RESOLVE } s_wkind_t;

typedef struct {
    broker_t *broker;
    s_wkind_t kind;
    char *client_key; //  the client may go away meanwhile
    uint32_t id;
    uint32_t page;
    char **names; //  as requested (owned)
    size_t nnames;
    uint32_t *ids; //  requested by id
    size_t nids;
    s_tag_t **tags; //  resolved: per name, then per id (NULL: not found)
    bool *done;     //  per name: resolved or known not found
    size_t unresolved;
    bool attached;    //  SUBSCRIBE: the page holds its tags now
    int64_t deadline; //  SUBSCRIBE: reply by then, with what is known
    double value;     //  WRITE
    uint64_t io_id;   //  WRITE: request id at the I/O server
    int64_t write_deadline;
    int64_t wall_ms;             //  WRITE: when it came, for the audit
    char *user, *pubkey, *cname; //  WRITE: who asked (the client may be gone at the end)
    bool refused;                //  WRITE: not allowed (the audit's result)
    bool has_old;                //  WRITE: the value before, from the I/O server or cache
    double old_value;
    int old_quality;
} s_waiter_t;

typedef struct {
    uint64_t id;
    char **names;
    size_t nnames;
    uint32_t attempt;
    int64_t retry_at;
    int64_t first_sent;
} s_resolve_t;

struct _broker_t {
    site_t *site;
    const site_broker_t *cfg;
    char *name;
    zloop_t *loop;
    zsock_t *clients_sock;
    zsock_t *resolver;
    sec_t *sec;     //  CURVE (or plain, said at start)
    audit_t *audit; //  every write attempt (docs/security.md "Audit")
    rzloop_t *redis;
    char *prefix; //  scada:<site>:broker:<name>
    uint64_t incarnation;
    int64_t started_wall;
    int64_t resolver_seen; //  mono ms of the last message from the resolver
    bool resolver_up;
    zhashx_t *tags_by_name; //  name -> s_tag_t (owned)
    s_tag_t **tags_by_id;   //  [id - 1], site->ntags entries
    zhashx_t *devices;      //  name -> s_device_t (owned)
    zhashx_t *ioservers;    //  name -> s_ios_t (owned)
    zhashx_t *clients;      //  key -> s_client_t (owned)
    zlistx_t *waiters;      //  s_waiter_t (owned)
    zlistx_t *resolves;     //  s_resolve_t in flight (owned)
    zlistx_t *to_resolve;   //  names (owned) not sent yet
    zhashx_t *resolving;    //  names sent or queued -> (void *) 1
    zhashx_t *reasons;      //  interned texts
    uint64_t next_id;
    bool startup_done; //  resolve/subscribe_on_startup handled
    bool held_all;     //  subscribe_on_startup: every tag held
    //  Counters
    uint64_t malformed, resolves_sent, resolve_retries, names_resolved, not_found;
    uint64_t updates_sent, messages_sent, send_dropped, writes_ok, writes_failed, failovers;
    uint64_t writes_refused, reads_refused; //  not allowed by the client's role
    uint64_t clients_gone;
    uint64_t updates_missed; //  held back or coalesced away for clients whose queue was full
    uint64_t clients_full;   //  times a client's queue was found full
    int64_t malformed_logged;
    uint64_t malformed_unlogged;
};

//  --------------------------------------------------------------------------
//  Small things

static const char *s_intern(broker_t *self, const char *text)
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

static void s_malformed(broker_t *self, const char *what, const char *who)
{
    self->malformed++;
    int64_t now = mclock_mono_ms();
    if (now - self->malformed_logged >= 1000) {
        slog_warn("malformed message from %s dropped: %s (%llu so far)", who, what,
                  (unsigned long long)self->malformed);
        self->malformed_logged = now;
        self->malformed_unlogged = 0;
    } else
        self->malformed_unlogged++;
}

static char *s_hex(const uint8_t *data, size_t size)
{
    char *out = (char *)malloc(size * 2 + 1);
    for (size_t i = 0; i < size; i++)
        snprintf(out + 2 * i, 3, "%02x", data[i]);
    out[size * 2] = 0;
    return out;
}

//  May client c read (or write) the tag? Roles of the site file; a site
//  without roles allows every client everything.
static bool s_may(broker_t *self, const char *user, const s_tag_t *tag, bool write)
{
    //  The site's alarm service (certificate "alarm") watches the alarm tags
    //  of every area, whatever the roles say.
    if (!write && user && strcmp(user, "alarm") == 0)
        return true;
    return site_may(self->site, user, tag->area, write);
}

//  "user alice (role viewer) may not write area pumps"
static void s_not_allowed(broker_t *self, const char *user, const s_tag_t *tag, bool write,
                          char *buf, size_t len)
{
    const site_role_t *role = site_role_of(self->site, user);
    snprintf(buf, len, "%s%s (%s%s) may not %s area %s", user ? "user " : "",
             user ? user : "an unidentified client", role ? "role " : "no role",
             role ? role->name : "", write ? "write" : "read", tag->area);
}

//  --------------------------------------------------------------------------
//  Sending to clients

static s_sub_t *s_sub_find(s_tag_t *tag, s_client_t *c);

//  The client's queue is full (CLIENT_SNDHWM messages wait for it): from now
//  on what it is owed is held back, and every update it would have got
//  counts as missed until a message goes through again.
static void s_client_full(s_client_t *c, int64_t now)
{
    if (c->full)
        return;
    broker_t *self = c->broker;
    c->full = true;
    c->full_since = now;
    self->clients_full++;
    for (size_t i = 0; i < c->nowed; i++) {
        s_sub_t *sub = s_sub_find(c->owed[i], c);
        if (sub && sub->pending) {
            c->missed++;
            self->updates_missed++;
        }
    }
    if (now - c->full_logged >= FULL_LOG_MS)
        slog_info("client %s is slow: its queue is full (%d messages), updates held back",
                  c->name ? c->name : c->key, CLIENT_SNDHWM);
}

//  Send one BrokerMsg to a client. ROUTER_MANDATORY: a client whose queue is
//  full makes this fail with EAGAIN (false: the caller keeps what it owes,
//  the client is marked full); a client that is gone fails with
//  EHOSTUNREACH. The first message that goes after a full queue carries
//  `missed`.
static bool s_client_send(s_client_t *c, Scada__BrokerMsg *msg)
{
    broker_t *self = c->broker;
    if (c->missed) {
        msg->has_missed = true;
        msg->missed = c->missed;
    }
    size_t len = scada__broker_msg__get_packed_size(msg);
    void *sock = zsock_resolve(self->clients_sock);
    if (zmq_send(sock, zframe_data(c->rid), zframe_size(c->rid), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int err = errno;
        self->send_dropped++;
        c->dropped++;
        if (err == EAGAIN)
            s_client_full(c, mclock_mono_ms());
        errno = err;
        return false;
    }
    zmq_msg_t frame;
    zmq_msg_init_size(&frame, len);
    scada__broker_msg__pack(msg, (uint8_t *)zmq_msg_data(&frame));
    if (zmq_msg_send(&frame, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        self->send_dropped++;
        c->dropped++;
        return false;
    }
    int64_t now = mclock_mono_ms();
    if (c->full) {
        if (now - c->full_logged >= FULL_LOG_MS) {
            slog_info("client %s caught up after %lld ms with a full queue: %llu updates held "
                      "back or coalesced away, current values sent",
                      c->name ? c->name : c->key, (long long)(now - c->full_since),
                      (unsigned long long)c->missed);
            c->full_logged = now;
        }
        c->full = false;
    }
    c->missed = 0;
    c->last_tx = now;
    c->sent++;
    self->messages_sent++;
    return true;
}

static void s_client_error(s_client_t *c, uint32_t id, const char *error)
{
    Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
    msg.kind = SCADA__BROKER_MSG__KIND__ERROR;
    msg.has_id = true;
    msg.id = id;
    msg.error = (char *)error;
    s_client_send(c, &msg);
}

//  Fill an Update from a tag's cache; ts relative to base.
static void s_fill_update(Scada__Update *u, const s_tag_t *tag, int64_t base, const char **prev)
{
    scada__update__init(u);
    u->tag_id = tag->id;
    if (tag->have) {
        double v = tag->value;
        if (v == floor(v) && fabs(v) < 9.0e15) {
            u->has_integer = true;
            u->integer = (int64_t)v;
        } else {
            u->has_number = true;
            u->number = v;
        }
    }
    if (tag->quality != SCADA__QUALITY__GOOD) {
        u->has_quality = true;
        u->quality = (Scada__Quality)tag->quality;
        //  A failover makes every tag of a device bad for one reason: say it once.
        if (tag->reason && *prev == tag->reason)
            u->has_same_reason = u->same_reason = true;
        else
            u->reason = (char *)tag->reason;
        *prev = tag->reason;
    } else
        *prev = NULL; //  "the previous update's reason": a good one has none
    if (tag->ts != base) {
        u->has_ts = true;
        u->ts = tag->ts - base;
    }
}

static s_sub_t *s_sub_find(s_tag_t *tag, s_client_t *c)
{
    for (size_t i = 0; i < tag->nsubs; i++)
        if (tag->subs[i].client == c)
            return &tag->subs[i];
    return NULL;
}

//  Send a client every update it is owed, as few messages as it takes. If its
//  queue is full the rest stays owed and goes next time, with the values
//  the tags have then.
static void s_client_flush(s_client_t *c, int64_t now)
{
    if (c->nowed == 0 || c->waiting)
        return;
    size_t done = 0;
    bool ok = true;
    while (done < c->nowed) {
        size_t cap = c->nowed - done < UPDATE_CHUNK ? c->nowed - done : UPDATE_CHUNK;
        Scada__Update *ups = (Scada__Update *)zmalloc(cap * sizeof *ups);
        Scada__Update **ptrs = (Scada__Update **)zmalloc(cap * sizeof *ptrs);
        size_t n = 0, k = done;
        int64_t base = 0;
        const char *prev = NULL; //  reason of the previous update in this message
        for (; k < c->nowed && n < cap; k++) {
            s_tag_t *tag = c->owed[k];
            s_sub_t *sub = s_sub_find(tag, c);
            if (!sub || !sub->pending)
                continue;
            if (n == 0)
                base = tag->ts;
            s_fill_update(&ups[n], tag, base, &prev);
            ptrs[n] = &ups[n];
            n++;
        }
        if (n) {
            Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
            msg.kind = SCADA__BROKER_MSG__KIND__UPDATES;
            msg.has_base_ts = true;
            msg.base_ts = base;
            msg.n_updates = n;
            msg.updates = ptrs;
            ok = s_client_send(c, &msg);
            if (ok)
                c->broker->updates_sent += n;
        }
        free(ups);
        free(ptrs);
        if (!ok)
            break;
        //  Sent, or no longer owed (the SUBSCRIBED reply carried it, or the
        //  page went): off the list.
        for (size_t j = done; j < k; j++) {
            s_sub_t *sub = s_sub_find(c->owed[j], c);
            if (sub)
                sub->pending = sub->queued = false;
        }
        done = k;
    }
    //  Keep what is still owed (a full queue), drop what went out.
    size_t w = 0;
    for (size_t j = done; j < c->nowed; j++)
        c->owed[w++] = c->owed[j];
    c->nowed = w;
    uint32_t every = c->broker->cfg->update_interval_ms;
    if (!ok && every < FULL_RETRY_MS)
        every = FULL_RETRY_MS;
    c->next_flush = now + every;
}

//  Drop the owed entries of tags the client no longer holds (its page went),
//  so the list stays one entry per subscribed tag at most.
static void s_client_owed_prune(s_client_t *c)
{
    size_t w = 0;
    for (size_t j = 0; j < c->nowed; j++)
        if (s_sub_find(c->owed[j], c))
            c->owed[w++] = c->owed[j];
    c->nowed = w;
    if (w == 0 && c->capowed > 1024) {
        free(c->owed);
        c->owed = NULL;
        c->capowed = 0;
    }
}

//  The tag's cache is about to change to `quality`: clients owed an update
//  with another quality get it now (a quality change is never coalesced
//  away, unless the client's queue is full: then it counts as missed),
//  then every client of the tag is owed the new state.
static void s_tag_before_change(s_tag_t *tag, int quality, int64_t now)
{
    for (size_t i = 0; i < tag->nsubs; i++) {
        s_sub_t *sub = &tag->subs[i];
        if (sub->pending && sub->pend_quality != quality && !sub->client->full)
            s_client_flush(sub->client, now);
    }
}

//  The client of `sub` is owed the tag's current state. While its queue is
//  full every such update is counted as missed (held back, or replacing one
//  held back).
static void s_sub_owe(s_tag_t *tag, s_sub_t *sub)
{
    s_client_t *c = sub->client;
    if (c->full) {
        c->missed++;
        c->broker->updates_missed++;
    }
    if (sub->pending)
        return;
    sub->pending = true;
    sub->pend_quality = tag->quality;
    if (sub->queued)
        return;
    if (c->nowed == c->capowed) {
        c->capowed = c->capowed ? 2 * c->capowed : 64;
        c->owed = (s_tag_t **)realloc(c->owed, c->capowed * sizeof *c->owed);
    }
    c->owed[c->nowed++] = tag;
    sub->queued = true;
}

static void s_tag_owe(s_tag_t *tag)
{
    for (size_t i = 0; i < tag->nsubs; i++)
        s_sub_owe(tag, &tag->subs[i]);
}

//  A new state for a tag from its source (or the broker's own verdict, such
//  as "no I/O server offers it"). Clients see it if anything they would show
//  changed.
static void s_tag_set(s_tag_t *tag, bool has_value, double value, int quality, int64_t ts,
                      const char *reason, int64_t now)
{
    bool changed = !tag->known || tag->quality != quality ||
                   (has_value && (!tag->have || value != tag->value));
    if (changed)
        s_tag_before_change(tag, quality, now);
    if (has_value) {
        tag->have = true;
        tag->value = value;
        tag->ts = ts;
    } else if (!tag->have)
        tag->ts = ts;
    tag->quality = quality;
    tag->reason = quality == SCADA__QUALITY__GOOD ? NULL : reason;
    tag->known = true;
    if (changed)
        s_tag_owe(tag);
}

//  --------------------------------------------------------------------------
//  I/O servers

static void s_ios_send(s_ios_t *ios, Scada__IoRequest *req)
{
    size_t len = scada__io_request__get_packed_size(req);
    zmq_msg_t frame;
    zmq_msg_init_size(&frame, len);
    scada__io_request__pack(req, (uint8_t *)zmq_msg_data(&frame));
    if (zmq_msg_send(&frame, zsock_resolve(ios->dealer), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        ios->resync = true; //  lost: the whole list goes again
    } else
        ios->inflight++;
}

static int s_on_ios_values(zloop_t *loop, zsock_t *sock, void *arg);
static int s_on_ios_reply(zloop_t *loop, zsock_t *sock, void *arg);

static s_ios_t *s_ios_get(broker_t *self, const char *name, const char *publish,
                          const char *control)
{
    s_ios_t *ios = (s_ios_t *)zhashx_lookup(self->ioservers, name);
    if (ios && publish && control &&
        (strcmp(ios->publish, publish) != 0 || strcmp(ios->control, control) != 0)) {
        //  Moved to other endpoints (a restart with another site file).
        zsock_disconnect(ios->sub, "%s", ios->publish);
        zsock_disconnect(ios->dealer, "%s", ios->control);
        zstr_free(&ios->publish);
        zstr_free(&ios->control);
        ios->publish = strdup(publish);
        ios->control = strdup(control);
        zsock_connect(ios->sub, "%s", publish);
        zsock_connect(ios->dealer, "%s", control);
        ios->resync = true;
    }
    if (ios || !publish || !control)
        return ios;
    ios = (s_ios_t *)zmalloc(sizeof *ios);
    ios->broker = self;
    ios->name = strdup(name);
    ios->publish = strdup(publish);
    ios->control = strdup(control);
    ios->sub = zsock_new(ZMQ_SUB);
    zsock_set_rcvhwm(ios->sub, IOS_RCVHWM);
    zsock_set_maxmsgsize(ios->sub, PEER_MAX_MSG);
    zsock_set_subscribe(ios->sub, "V");
    ios->dealer = zsock_new(ZMQ_DEALER);
    zsock_set_linger(ios->dealer, 0);
    zsock_set_sndhwm(ios->dealer, IOS_SNDHWM);
    zsock_set_rcvhwm(ios->dealer, IOS_RCVHWM_REP);
    zsock_set_maxmsgsize(ios->dealer, PEER_MAX_MSG);
    zsock_set_immediate(ios->dealer, 1);
    char err[512], what[96];
    snprintf(what, sizeof what, "values from %s", name);
    if (sec_client(self->sec, ios->sub, name, what, err, sizeof err) != 0)
        slog_error("I/O server %s: %s", name, err);
    snprintf(what, sizeof what, "requests to %s", name);
    if (sec_client(self->sec, ios->dealer, name, what, err, sizeof err) != 0)
        slog_error("I/O server %s: %s", name, err);
    if (zsock_connect(ios->sub, "%s", publish) < 0 || zsock_connect(ios->dealer, "%s", control) < 0)
        slog_error("I/O server %s: cannot connect to %s / %s: %s", name, publish, control,
                   zmq_strerror(errno));
    ios->want_sub = zlistx_new();
    zlistx_set_destructor(ios->want_sub, (zlistx_destructor_fn *)zstr_free);
    ios->want_unsub = zlistx_new();
    zlistx_set_destructor(ios->want_unsub, (zlistx_destructor_fn *)zstr_free);
    zloop_reader(self->loop, ios->sub, s_on_ios_values, ios);
    zloop_reader_set_tolerant(self->loop, ios->sub);
    zloop_reader(self->loop, ios->dealer, s_on_ios_reply, ios);
    zloop_reader_set_tolerant(self->loop, ios->dealer);
    zhashx_insert(self->ioservers, name, ios);
    slog_info("I/O server %s: values from %s, requests to %s", name, publish, control);
    return ios;
}

static void s_ios_destroy(s_ios_t **ios_p)
{
    s_ios_t *ios = *ios_p;
    if (!ios)
        return;
    if (ios->broker->loop) {
        zloop_reader_end(ios->broker->loop, ios->sub);
        zloop_reader_end(ios->broker->loop, ios->dealer);
    }
    zsock_destroy(&ios->sub);
    zsock_destroy(&ios->dealer);
    zlistx_destroy(&ios->want_sub);
    zlistx_destroy(&ios->want_unsub);
    free(ios->name);
    free(ios->publish);
    free(ios->control);
    free(ios);
    *ios_p = NULL;
}

static void s_ios_want(s_ios_t *ios, s_tag_t *tag, bool subscribe)
{
    if (!ios)
        return;
    zlistx_add_end(subscribe ? ios->want_sub : ios->want_unsub, strdup(tag->name));
    if (subscribe)
        ios->count++;
    else if (ios->count)
        ios->count--;
}

//  Send one request with `names` (a list) of `kind`.
static void s_ios_send_names(s_ios_t *ios, Scada__IoRequest__Kind kind, zlistx_t *names,
                             bool replace)
{
    broker_t *self = ios->broker;
    size_t total = zlistx_size(names);
    char **arr = (char **)zmalloc((total + 1) * sizeof *arr);
    size_t n = 0;
    for (char *name = (char *)zlistx_first(names); name; name = (char *)zlistx_next(names))
        arr[n++] = name;
    size_t off = 0;
    do {
        size_t chunk = total - off < SUB_CHUNK ? total - off : SUB_CHUNK;
        Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
        req.id = ++self->next_id;
        req.kind = kind;
        req.client = self->name;
        req.n_tags = chunk;
        req.tags = arr + off;
        req.has_replace = replace && off == 0;
        req.replace = req.has_replace;
        s_ios_send(ios, &req);
        off += chunk;
    } while (off < total);
    free(arr);
    zlistx_purge(names);
}

//  Everything an I/O server should hold for us: the tags subscribed at it,
//  or moving to it.
static void s_ios_resync(broker_t *self, s_ios_t *ios)
{
    zlistx_purge(ios->want_sub);
    zlistx_purge(ios->want_unsub);
    ios->count = 0;
    for (s_tag_t *tag = (s_tag_t *)zhashx_first(self->tags_by_name); tag;
         tag = (s_tag_t *)zhashx_next(self->tags_by_name))
        if (tag->refs && (tag->at == ios || tag->moving_to == ios)) {
            zlistx_add_end(ios->want_sub, strdup(tag->name));
            ios->count++;
        }
    slog_info("I/O server %s: resync, %u subscriptions", ios->name, ios->count);
    s_ios_send_names(ios, SCADA__IO_REQUEST__KIND__SUBSCRIBE, ios->want_sub, true);
    ios->resync = false;
}

static void s_ios_flush(broker_t *self, s_ios_t *ios, int64_t now)
{
    if (ios->resync) {
        if (now < ios->next_resync)
            return;
        ios->next_resync = now + self->site->ping_time_ms;
        s_ios_resync(self, ios);
        return;
    }
    if (zlistx_size(ios->want_unsub))
        s_ios_send_names(ios, SCADA__IO_REQUEST__KIND__UNSUBSCRIBE, ios->want_unsub, false);
    if (zlistx_size(ios->want_sub))
        s_ios_send_names(ios, SCADA__IO_REQUEST__KIND__SUBSCRIBE, ios->want_sub, false);
}

static void s_on_value(broker_t *self, s_ios_t *ios, Scada__Value *v, int64_t now)
{
    //  Clients take a known quality only, and times as differences in an
    //  int64: a value with another quality, or a time before 1970 or after
    //  the year 9999, is malformed.
    const int64_t ts_max = 253402300799999;
    if ((unsigned)v->quality > SCADA__QUALITY__BAD_DEVICE || v->source_ts_ms < 0 ||
        v->source_ts_ms > ts_max) {
        s_malformed(self, "a Value with an unknown quality or an impossible time", ios->name);
        return;
    }
    s_tag_t *tag = NULL;
    if (v->has_tag_id && v->tag_id >= 1 && v->tag_id <= self->site->ntags)
        tag = self->tags_by_id[v->tag_id - 1];
    if (!tag && v->tag)
        tag = (s_tag_t *)zhashx_lookup(self->tags_by_name, v->tag);
    if (!tag || tag->refs == 0)
        return;
    if (tag->moving_to == ios) {
        //  The new best offer delivers: switch, release the old one.
        s_ios_want(tag->at, tag, false);
        tag->at = ios;
        tag->moving_to = NULL;
    } else if (tag->at != ios)
        return; //  not (or no longer) its source
    if (v->quality == SCADA__QUALITY__BAD_NOT_FOUND) {
        //  The I/O server does not serve it: the site files disagree.
        s_tag_set(tag, false, 0, SCADA__QUALITY__BAD_CONFIG, v->source_ts_ms,
                  s_intern(self, "the best offer's I/O server does not serve this tag"), now);
        return;
    }
    s_tag_set(tag, v->has_number, v->number, (int)v->quality, v->source_ts_ms,
              s_intern(self, v->reason), now);
}

static int s_on_ios_values(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_ios_t *ios = (s_ios_t *)arg;
    broker_t *self = ios->broker;
    int64_t now = mclock_mono_ms();
    for (int burst = 0; burst < 64; burst++) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        zframe_t *topic = zmsg_first(msg);
        zframe_t *body = zmsg_next(msg);
        if (zmsg_size(msg) != 2 || !zframe_streq(topic, "V")) {
            s_malformed(self, "not a two-frame \"V\" message", ios->name);
            zmsg_destroy(&msg);
            continue;
        }
        Scada__ValueBatch *batch =
            scada__value_batch__unpack(NULL, zframe_size(body), zframe_data(body));
        zmsg_destroy(&msg);
        if (!batch) {
            s_malformed(self, "not a ValueBatch", ios->name);
            continue;
        }
        for (size_t i = 0; i < batch->n_values; i++)
            s_on_value(self, ios, batch->values[i], now);
        scada__value_batch__free_unpacked(batch, NULL);
    }
    return 0;
}

static void s_write_done(broker_t *self, s_waiter_t *w, const char *error);

static int s_on_ios_reply(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_ios_t *ios = (s_ios_t *)arg;
    broker_t *self = ios->broker;
    zmsg_t *msg = zmsg_recv(sock);
    if (!msg)
        return 0;
    zframe_t *body = zmsg_last(msg);
    Scada__IoReply *rep = scada__io_reply__unpack(NULL, zframe_size(body), zframe_data(body));
    zmsg_destroy(&msg);
    if (!rep) {
        s_malformed(self, "not an IoReply", ios->name);
        return 0;
    }
    if (ios->inflight)
        ios->inflight--;
    int64_t now = mclock_mono_ms();
    //  A write's answer?
    for (s_waiter_t *w = (s_waiter_t *)zlistx_first(self->waiters); w;
         w = (s_waiter_t *)zlistx_next(self->waiters))
        if (w->kind == W_WRITE && w->io_id == rep->id) {
            const char *err = rep->status == SCADA__IO_REPLY__STATUS__OK
                                  ? NULL
                                  : (rep->error ? rep->error : "refused");
            //  The I/O server's reading before the write, for the audit.
            if (rep->n_values == 1 && rep->values[0]->has_number &&
                (unsigned)rep->values[0]->quality <= SCADA__QUALITY__BAD_DEVICE) {
                w->has_old = true;
                w->old_value = rep->values[0]->number;
                w->old_quality = rep->values[0]->quality;
            }
            s_write_done(self, w, err);
            zlistx_delete(self->waiters, zlistx_cursor(self->waiters));
            scada__io_reply__free_unpacked(rep, NULL);
            return 0;
        }
    if (rep->status == SCADA__IO_REPLY__STATUS__ERROR && rep->error && streq(rep->error, "resync"))
        ios->resync = true;
    else if (rep->status == SCADA__IO_REPLY__STATUS__ERROR)
        slog_warn("I/O server %s refused a request: %s", ios->name,
                  rep->error ? rep->error : "(no reason)");
    for (size_t i = 0; i < rep->n_values; i++)
        s_on_value(self, ios, rep->values[i], now);
    if (rep->has_count && ios->inflight == 0 && !ios->resync && rep->count != ios->count) {
        //  Tags it does not serve are not counted there: believe its count.
        ios->count = rep->count;
    }
    scada__io_reply__free_unpacked(rep, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  Tags and devices

static s_device_t *s_device_get(broker_t *self, const char *name)
{
    s_device_t *dev = (s_device_t *)zhashx_lookup(self->devices, name);
    if (!dev) {
        dev = (s_device_t *)zmalloc(sizeof *dev);
        dev->name = strdup(name);
        zhashx_insert(self->devices, name, dev);
    }
    return dev;
}

static void s_device_destroy(s_device_t **dev_p)
{
    s_device_t *dev = *dev_p;
    if (!dev)
        return;
    free(dev->name);
    free(dev->tags);
    free(dev);
    *dev_p = NULL;
}

//  Point a subscribed tag at its device's best offer, now.
static void s_tag_place(broker_t *self, s_tag_t *tag, int64_t now)
{
    s_device_t *dev = tag->dev;
    if (!dev->offered)
        return; //  the resolver has not said yet: placed when it does
    if (!dev->best) {
        s_ios_want(tag->at, tag, false);
        s_ios_want(tag->moving_to, tag, false);
        tag->at = tag->moving_to = NULL;
        s_tag_set(tag, false, 0, SCADA__QUALITY__BAD_NO_COMM, mclock_wall_ms(),
                  dev->reason ? dev->reason : "no I/O server has the device online", now);
        return;
    }
    if (tag->at == dev->best) {
        if (tag->moving_to) {
            s_ios_want(tag->moving_to, tag, false);
            tag->moving_to = NULL;
        }
        return;
    }
    tag->at = dev->best;
    tag->known = false;
    s_ios_want(dev->best, tag, true);
}

static void s_tag_want(broker_t *self, s_tag_t *tag, int64_t now)
{
    if (tag->refs++ > 0)
        return;
    s_device_t *dev = tag->dev;
    if (dev->ntags == dev->captags) {
        dev->captags = dev->captags ? 2 * dev->captags : 16;
        dev->tags = (s_tag_t **)realloc(dev->tags, dev->captags * sizeof *dev->tags);
    }
    tag->dev_pos = dev->ntags;
    dev->tags[dev->ntags++] = tag;
    tag->known = false;
    s_tag_place(self, tag, now);
}

static void s_tag_release(broker_t *self, s_tag_t *tag)
{
    assert(tag->refs > 0);
    if (--tag->refs > 0)
        return;
    s_device_t *dev = tag->dev;
    dev->tags[tag->dev_pos] = dev->tags[--dev->ntags];
    dev->tags[tag->dev_pos]->dev_pos = tag->dev_pos;
    s_ios_want(tag->at, tag, false);
    s_ios_want(tag->moving_to, tag, false);
    tag->at = tag->moving_to = NULL;
    tag->known = false;
}

//  The resolver's word on a device's best offer.
static void s_device_offer(broker_t *self, Scada__BestOffer *bo, int64_t now)
{
    s_device_t *dev = s_device_get(self, bo->device);
    s_ios_t *best = bo->ioserver && *bo->ioserver
                        ? s_ios_get(self, bo->ioserver, bo->publish, bo->control)
                        : NULL;
    dev->reason = s_intern(self, bo->reason);
    bool first = !dev->offered;
    dev->offered = true;
    if (!first && best == dev->best)
        return;
    s_ios_t *old = dev->best;
    dev->best = best;
    if (!first) {
        self->failovers++;
        slog_info("device %s: best offer %s -> %s (%s)", dev->name, old ? old->name : "none",
                  best ? best->name : "none", bo->reason ? bo->reason : "no reason given");
    }
    bool smooth = bo->has_previous_usable && bo->previous_usable;
    char why[256];
    snprintf(why, sizeof why, "moving to %s: %s", best ? best->name : "no I/O server",
             bo->reason ? bo->reason : "best offer changed");
    const char *reason = s_intern(self, why);
    for (size_t i = 0; i < dev->ntags; i++) {
        s_tag_t *tag = dev->tags[i];
        if (!best || !tag->at) {
            s_tag_place(self, tag, now);
            continue;
        }
        if (smooth) {
            //  The old source still works: keep its values until the new one
            //  delivers, no quality dip.
            if (tag->moving_to && tag->moving_to != best)
                s_ios_want(tag->moving_to, tag, false);
            if (tag->at == best) {
                tag->moving_to = NULL;
                continue;
            }
            if (tag->moving_to != best) {
                tag->moving_to = best;
                s_ios_want(best, tag, true);
            }
            continue;
        }
        //  The old source is lost: what we hold is stale, say so at once.
        s_ios_want(tag->at, tag, false);
        s_ios_want(tag->moving_to, tag, false);
        tag->at = tag->moving_to = NULL;
        s_tag_set(tag, false, 0, SCADA__QUALITY__BAD_NO_COMM, mclock_wall_ms(), reason, now);
        tag->at = best;
        s_ios_want(best, tag, true);
    }
}

static s_tag_t *s_tag_learn(broker_t *self, Scada__TagInfo *info)
{
    s_tag_t *tag = (s_tag_t *)zhashx_lookup(self->tags_by_name, info->name);
    if (tag)
        return tag;
    if (!info->has_tag_id || info->tag_id == 0 || info->tag_id > self->site->ntags ||
        !info->device) {
        s_malformed(self, "TagInfo found without a usable tag_id or device", "resolver");
        return NULL;
    }
    tag = (s_tag_t *)zmalloc(sizeof *tag);
    tag->id = info->tag_id;
    tag->name = strdup(info->name);
    tag->dev = s_device_get(self, info->device);
    tag->writable = info->has_writable && info->writable;
    const site_tag_t *st = site_tag(self->site, info->name);
    tag->area = st ? st->plant_area : "default";
    tag->quality = SCADA__QUALITY__BAD_NO_COMM;
    zhashx_insert(self->tags_by_name, tag->name, tag);
    self->tags_by_id[tag->id - 1] = tag;
    return tag;
}

static void s_tag_destroy(s_tag_t **tag_p)
{
    s_tag_t *tag = *tag_p;
    if (!tag)
        return;
    free(tag->name);
    free(tag->subs);
    free(tag);
    *tag_p = NULL;
}

//  --------------------------------------------------------------------------
//  Resolving

static void s_resolver_send(broker_t *self, Scada__ResolverMsg *msg)
{
    msg->name = self->name;
    msg->has_incarnation = true;
    msg->incarnation = self->incarnation;
    size_t len = scada__resolver_msg__get_packed_size(msg);
    zmq_msg_t frame;
    zmq_msg_init_size(&frame, len);
    scada__resolver_msg__pack(msg, (uint8_t *)zmq_msg_data(&frame));
    if (zmq_msg_send(&frame, zsock_resolve(self->resolver), ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&frame);
}

static void s_resolve_send(broker_t *self, s_resolve_t *r, int64_t now)
{
    Scada__ResolverMsg msg = SCADA__RESOLVER_MSG__INIT;
    msg.kind = SCADA__RESOLVER_MSG__KIND__RESOLVE;
    msg.has_id = true;
    msg.id = r->id;
    msg.n_names = r->nnames;
    msg.names = r->names;
    s_resolver_send(self, &msg);
    r->attempt++;
    r->retry_at = now + (int64_t)resolve_retry_ms(self->site->resolve_retry_backoff_ms, r->attempt);
    self->resolves_sent++;
}

//  Ask the resolver about `name` (once, however many requests wait for it).
static void s_resolve_queue(broker_t *self, const char *name)
{
    if (zhashx_lookup(self->resolving, name))
        return;
    zhashx_insert(self->resolving, name, (void *)1);
    zlistx_add_end(self->to_resolve, strdup(name));
}

static void s_resolve_flush(broker_t *self, int64_t now)
{
    while (zlistx_size(self->to_resolve)) {
        s_resolve_t *r = (s_resolve_t *)zmalloc(sizeof *r);
        r->id = ++self->next_id;
        size_t n = zlistx_size(self->to_resolve);
        if (n > RESOLVE_CHUNK)
            n = RESOLVE_CHUNK;
        r->names = (char **)zmalloc(n * sizeof *r->names);
        for (size_t i = 0; i < n; i++)
            r->names[r->nnames++] = (char *)zlistx_detach(self->to_resolve, NULL);
        r->first_sent = now;
        s_resolve_send(self, r, now);
        zlistx_add_end(self->resolves, r);
    }
}

static void s_resolve_destroy(s_resolve_t **r_p)
{
    s_resolve_t *r = *r_p;
    if (!r)
        return;
    for (size_t i = 0; i < r->nnames; i++)
        free(r->names[i]);
    free(r->names);
    free(r);
    *r_p = NULL;
}

//  --------------------------------------------------------------------------
//  Waiters: client requests in progress

static void s_waiter_destroy(s_waiter_t **w_p)
{
    s_waiter_t *w = *w_p;
    if (!w)
        return;
    s_client_t *c =
        w->broker->clients ? (s_client_t *)zhashx_lookup(w->broker->clients, w->client_key) : NULL;
    if (c && c->requests)
        c->requests--;
    for (size_t i = 0; i < w->nnames; i++)
        free(w->names[i]);
    free(w->names);
    free(w->ids);
    free(w->tags);
    free(w->done);
    free(w->client_key);
    free(w->user);
    free(w->pubkey);
    free(w->cname);
    free(w);
    *w_p = NULL;
}

static s_client_t *s_waiter_client(broker_t *self, s_waiter_t *w)
{
    return (s_client_t *)zhashx_lookup(self->clients, w->client_key);
}

//  The audit record of a write's attempt, now that its result is known.
static void s_write_audit(broker_t *self, s_waiter_t *w, const char *error)
{
    const s_tag_t *tag = w->tags ? w->tags[0] : NULL;
    char idname[24];
    const char *name = tag ? tag->name : NULL;
    if (!name && w->nnames)
        name = w->names[0];
    if (!name && w->nids) {
        snprintf(idname, sizeof idname, "#%u", w->ids[0]);
        name = idname;
    }
    audit_rec_t rec = {
        .ts_ms = w->wall_ms,
        .via = self->name,
        .user = w->user,
        .key = w->pubkey,
        .client = w->cname,
        .tag = name,
        .area = tag ? tag->area : NULL,
        .new_value = w->value,
        .result = !error       ? "ok"
                  : w->refused ? "refused"
                               : "failed",
        .error = error,
    };
    if (w->has_old) {
        rec.has_old = true;
        rec.old_value = w->old_value;
        rec.old_quality = scada_quality_name(w->old_quality);
    } else if (tag && tag->known && tag->have) {
        rec.has_old = true;
        rec.old_value = tag->value;
        rec.old_quality = scada_quality_name(tag->quality);
    }
    if (self->audit)
        audit_write(self->audit, &rec);
}

static void s_write_done(broker_t *self, s_waiter_t *w, const char *error)
{
    if (!error)
        self->writes_ok++;
    else if (w->refused)
        self->writes_refused++;
    else
        self->writes_failed++;
    s_write_audit(self, w, error);
    s_client_t *c = s_waiter_client(self, w);
    const char *tag = w->tags && w->tags[0] ? w->tags[0]->name : "?";
    if (w->refused)
        slog_warn("write %s = %g from %s refused: %s", tag, w->value,
                  c && c->name ? c->name : "a client", error);
    else
        slog_info("write %s = %g from %s: %s", tag, w->value, c && c->name ? c->name : "a client",
                  error ? error : "ok");
    if (!c)
        return;
    Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
    msg.kind = SCADA__BROKER_MSG__KIND__WRITTEN;
    msg.has_id = true;
    msg.id = w->id;
    msg.error = (char *)error;
    s_client_send(c, &msg);
}

static void s_page_drop(broker_t *self, s_client_t *c, const char *key);

//  SUBSCRIBE, resolved: the page now holds its tags (adds first, so tags on
//  both the old and the new page stay subscribed).
static void s_subscribe_attach(broker_t *self, s_client_t *c, s_waiter_t *w, int64_t now)
{
    char key[16];
    snprintf(key, sizeof key, "%u", w->page);
    bool old = zhashx_lookup(c->pages, key) != NULL;
    s_page_t *page = (s_page_t *)zmalloc(sizeof *page);
    page->page = w->page;
    size_t total = w->nnames + w->nids;
    page->tags = (s_tag_t **)zmalloc((total + 1) * sizeof *page->tags);
    for (size_t i = 0; i < total; i++) {
        s_tag_t *tag = w->tags[i];
        if (!tag || !s_may(self, c->user, tag, false))
            continue; //  not found, or not allowed (the reply says which)
        bool dup = false;
        for (size_t k = 0; k < page->ntags && !dup; k++)
            dup = page->tags[k] == tag;
        if (dup)
            continue;
        page->tags[page->ntags++] = tag;
        s_sub_t *sub = s_sub_find(tag, c);
        if (!sub) {
            if (tag->nsubs == tag->capsubs) {
                tag->capsubs = tag->capsubs ? 2 * tag->capsubs : 2;
                tag->subs = (s_sub_t *)realloc(tag->subs, tag->capsubs * sizeof *tag->subs);
            }
            sub = &tag->subs[tag->nsubs++];
            *sub = (s_sub_t){.client = c};
        }
        sub->refs++;
        s_tag_want(self, tag, now);
    }
    if (old)
        s_page_drop(self, c, key);
    zhashx_insert(c->pages, key, page);
    w->attached = true;
    w->deadline = now + self->cfg->initial_wait_ms;
}

//  Reply SUBSCRIBED with the ids and every first value known.
static void s_subscribe_reply(broker_t *self, s_client_t *c, s_waiter_t *w)
{
    size_t total = w->nnames + w->nids;
    Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
    msg.kind = SCADA__BROKER_MSG__KIND__SUBSCRIBED;
    msg.has_id = true;
    msg.id = w->id;
    msg.has_page = true;
    msg.page = w->page;
    uint32_t *ids = (uint32_t *)zmalloc((w->nnames + 1) * sizeof *ids);
    for (size_t i = 0; i < w->nnames; i++)
        ids[i] = w->tags[i] ? w->tags[i]->id : 0;
    msg.n_tag_ids = w->nnames;
    msg.tag_ids = ids;
    Scada__Update *ups = (Scada__Update *)zmalloc((total + 1) * sizeof *ups);
    Scada__Update **ptrs = (Scada__Update **)zmalloc((total + 1) * sizeof *ptrs);
    size_t n = 0;
    int64_t base = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < total; i++) {
        s_tag_t *tag = w->tags[i];
        if (!tag) {
            if (i >= w->nnames) {
                //  An id the site does not have.
                scada__update__init(&ups[n]);
                ups[n].tag_id = w->ids[i - w->nnames];
                ups[n].has_quality = true;
                ups[n].quality = SCADA__QUALITY__BAD_NOT_FOUND;
                ups[n].reason = (char *)"no such tag id";
                ptrs[n] = &ups[n];
                n++;
            }
            continue;
        }
        if (!s_may(self, c->user, tag, false)) {
            bool dup = false;
            for (size_t k = 0; k < n && !dup; k++)
                dup = ptrs[k]->tag_id == tag->id;
            if (dup)
                continue;
            if (n == 0)
                base = 0;
            char why[200];
            s_not_allowed(self, c->user, tag, false, why, sizeof why);
            self->reads_refused++;
            scada__update__init(&ups[n]);
            ups[n].tag_id = tag->id;
            ups[n].has_quality = true;
            ups[n].quality = SCADA__QUALITY__BAD_NOT_ALLOWED;
            ups[n].reason = (char *)s_intern(self, why);
            ptrs[n] = &ups[n];
            n++;
            prev = NULL;
            continue;
        }
        if (!tag->known)
            continue;
        s_sub_t *sub = s_sub_find(tag, c);
        if (sub && sub->pending)
            sub->pending = false; //  the reply carries it
        else if (!sub)
            continue;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = ptrs[k]->tag_id == tag->id;
        if (dup)
            continue;
        if (n == 0)
            base = tag->ts;
        s_fill_update(&ups[n], tag, base, &prev);
        ptrs[n] = &ups[n];
        n++;
    }
    msg.has_base_ts = n > 0;
    msg.base_ts = base;
    msg.n_updates = n;
    msg.updates = ptrs;
    if (s_client_send(c, &msg))
        self->updates_sent += n;
    else {
        //  Its queue is full: the values stay owed and go with the next updates.
        for (size_t i = 0; i < total; i++)
            if (w->tags[i] && w->tags[i]->known) {
                s_sub_t *sub = s_sub_find(w->tags[i], c);
                if (sub && !sub->pending)
                    s_sub_owe(w->tags[i], sub);
            }
    }
    free(ids);
    free(ups);
    free(ptrs);
}

static void s_waiter_resolved(broker_t *self, s_waiter_t *w, int64_t now)
{
    s_client_t *c = s_waiter_client(self, w);
    if (!c)
        return;
    if (w->kind == W_SUBSCRIBE) {
        s_subscribe_attach(self, c, w, now);
    } else if (w->kind == W_EXISTS) {
        Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
        msg.kind = SCADA__BROKER_MSG__KIND__EXISTS_REPLY;
        msg.has_id = true;
        msg.id = w->id;
        protobuf_c_boolean *found = (protobuf_c_boolean *)zmalloc((w->nnames + 1) * sizeof *found);
        for (size_t i = 0; i < w->nnames; i++)
            found[i] = w->tags[i] != NULL;
        msg.n_found = w->nnames;
        msg.found = found;
        s_client_send(c, &msg);
        free(found);
    } else if (w->kind == W_RESOLVE) {
        Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
        msg.kind = SCADA__BROKER_MSG__KIND__RESOLVED_REPLY;
        msg.has_id = true;
        msg.id = w->id;
        uint32_t *ids = (uint32_t *)zmalloc((w->nnames + 1) * sizeof *ids);
        char **ios = (char **)zmalloc((w->nnames + 1) * sizeof *ios);
        for (size_t i = 0; i < w->nnames; i++) {
            s_tag_t *tag = w->tags[i];
            ids[i] = tag ? tag->id : 0;
            ios[i] = tag && tag->dev->best ? tag->dev->best->name : (char *)"";
        }
        msg.n_tag_ids = msg.n_ioservers = w->nnames;
        msg.tag_ids = ids;
        msg.ioservers = ios;
        s_client_send(c, &msg);
        free(ids);
        free(ios);
    } else if (w->kind == W_WRITE) {
        s_tag_t *tag = w->tags[0];
        char why[256] = "";
        if (!tag)
            snprintf(why, sizeof why, "no such tag");
        else if (!s_may(self, w->user, tag, true)) {
            w->refused = true;
            s_not_allowed(self, w->user, tag, true, why, sizeof why);
        } else if (!tag->writable)
            snprintf(why, sizeof why, "tag %s is read-only", tag->name);
        else if (!tag->dev->best)
            snprintf(why, sizeof why, "no I/O server has device %s online%s%s", tag->dev->name,
                     tag->dev->reason ? ": " : "", tag->dev->reason ? tag->dev->reason : "");
        if (*why) {
            s_write_done(self, w, why);
            return;
        }
        s_ios_t *ios = tag->dev->best;
        Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
        req.id = w->io_id = ++self->next_id;
        req.kind = SCADA__IO_REQUEST__KIND__WRITE;
        req.tag = tag->name;
        req.has_value = true;
        req.value = w->value;
        req.client = self->name;
        s_ios_send(ios, &req);
        w->write_deadline = now + self->cfg->write_timeout_ms;
    }
}

//  True when a waiter is finished and can go.
static bool s_waiter_step(broker_t *self, s_waiter_t *w, int64_t now)
{
    s_client_t *c = s_waiter_client(self, w);
    if (!c)
        return true;
    if (w->unresolved)
        return false;
    if (w->kind == W_SUBSCRIBE) {
        if (!w->attached)
            s_waiter_resolved(self, w, now);
        bool all = true;
        for (size_t i = 0; i < w->nnames + w->nids && all; i++)
            all = !w->tags[i] || w->tags[i]->known;
        if (!all && now < w->deadline)
            return false;
        s_subscribe_reply(self, c, w);
        if (c->waiting)
            c->waiting--;
        return true;
    }
    if (w->kind == W_WRITE) {
        if (w->io_id == 0 && w->write_deadline == 0) {
            s_waiter_resolved(self, w, now);
            return w->io_id == 0; //  answered at once (an error)
        }
        if (now >= w->write_deadline) {
            char why[200];
            snprintf(why, sizeof why, "I/O server %s did not answer within %u ms",
                     w->tags[0]->dev->best ? w->tags[0]->dev->best->name : "?",
                     self->cfg->write_timeout_ms);
            s_write_done(self, w, why);
            return true;
        }
        return false;
    }
    s_waiter_resolved(self, w, now);
    return true;
}

//  Names came back from the resolver (found: tag, or NULL).
static void s_resolved_name(broker_t *self, const char *name, s_tag_t *tag)
{
    zhashx_delete(self->resolving, name);
    for (s_waiter_t *w = (s_waiter_t *)zlistx_first(self->waiters); w;
         w = (s_waiter_t *)zlistx_next(self->waiters))
        for (size_t i = 0; i < w->nnames + w->nids && w->unresolved; i++) {
            if (w->done[i])
                continue;
            const char *want = i < w->nnames ? w->names[i] : NULL;
            if (!want) {
                site_tag_t *st = site_tag_by_id(self->site, w->ids[i - w->nnames]);
                want = st ? st->name : NULL;
            }
            if (want && streq(want, name)) {
                w->tags[i] = tag;
                w->done[i] = true;
                w->unresolved--;
            }
        }
}

//  --------------------------------------------------------------------------
//  Clients

static void s_page_release(broker_t *self, s_client_t *c, s_page_t *page)
{
    bool gone = false;
    for (size_t i = 0; i < page->ntags; i++) {
        s_tag_t *tag = page->tags[i];
        s_sub_t *sub = s_sub_find(tag, c);
        if (sub && --sub->refs == 0) {
            gone = gone || sub->queued;
            *sub = tag->subs[--tag->nsubs];
        }
        s_tag_release(self, tag);
    }
    if (gone)
        s_client_owed_prune(c);
}

//  Take page `key` off a client, releasing its tags.
static void s_page_drop(broker_t *self, s_client_t *c, const char *key)
{
    s_page_t *page = (s_page_t *)zhashx_lookup(c->pages, key);
    if (!page)
        return;
    zhashx_delete(c->pages, key);
    s_page_release(self, c, page);
    free(page->tags);
    free(page);
}

//  Who the client is: the `name` of its certificate's public key file in the
//  key directory (metadata the handshake attached, which the client cannot
//  set), and the key itself (ZAP User-Id). Read from every message, so a
//  routing id taken over by another connection gets that one's identity.
static void s_client_identity(s_client_t *c, zframe_t *frame)
{
    const char *user = zframe_meta(frame, "name");
    const char *key = zframe_meta(frame, "User-Id");
    if (key && !*key)
        key = NULL;
    if (!user && key)
        user = "(unnamed key)";
    if ((user == NULL) != (c->user == NULL) || (user && strcmp(user, c->user) != 0)) {
        free(c->user);
        c->user = user ? strdup(user) : NULL;
    }
    if ((key == NULL) != (c->pubkey == NULL) || (key && strcmp(key, c->pubkey) != 0)) {
        free(c->pubkey);
        c->pubkey = key ? strdup(key) : NULL;
    }
}

static s_client_t *s_client_get(broker_t *self, zframe_t *rid, int64_t now)
{
    char *key = s_hex(zframe_data(rid), zframe_size(rid));
    s_client_t *c = (s_client_t *)zhashx_lookup(self->clients, key);
    if (c) {
        free(key);
        return c;
    }
    c = (s_client_t *)zmalloc(sizeof *c);
    c->broker = self;
    c->key = key;
    c->rid = zframe_dup(rid);
    c->last_rx = c->last_tx = now;
    c->pages = zhashx_new();
    zhashx_insert(self->clients, key, c);
    return c;
}

static void s_client_destroy(broker_t *self, s_client_t *c)
{
    zlistx_t *keys = zhashx_keys(c->pages);
    for (const char *key = (const char *)zlistx_first(keys); key;
         key = (const char *)zlistx_next(keys))
        s_page_drop(self, c, key);
    zlistx_destroy(&keys);
    zhashx_destroy(&c->pages);
    free(c->owed);
    zframe_destroy(&c->rid);
    free(c->name);
    free(c->user);
    free(c->pubkey);
    free(c->key);
    free(c);
}

static void s_client_drop(broker_t *self, s_client_t *c, const char *why)
{
    slog_info("client %s gone (%s): %zu pages released", c->name ? c->name : c->key, why,
              zhashx_size(c->pages));
    self->clients_gone++;
    char *key = strdup(c->key);
    s_client_destroy(self, c);
    zhashx_delete(self->clients, key);
    free(key);
}

static s_waiter_t *s_waiter_new(broker_t *self, s_client_t *c, Scada__ClientRequest *req,
                                s_wkind_t kind)
{
    s_waiter_t *w = (s_waiter_t *)zmalloc(sizeof *w);
    w->broker = self;
    w->kind = kind;
    w->client_key = strdup(c->key);
    c->requests++;
    w->id = req->has_id ? req->id : 0;
    w->page = req->has_page ? req->page : 0;
    w->nnames = req->n_names;
    w->names = (char **)zmalloc((w->nnames + 1) * sizeof *w->names);
    for (size_t i = 0; i < w->nnames; i++)
        w->names[i] = strdup(req->names[i]);
    w->nids = kind == W_SUBSCRIBE || kind == W_WRITE ? req->n_tag_ids : 0;
    w->ids = (uint32_t *)zmalloc((w->nids + 1) * sizeof *w->ids);
    if (w->nids)
        memcpy(w->ids, req->tag_ids, w->nids * sizeof *w->ids);
    size_t total = w->nnames + w->nids;
    w->tags = (s_tag_t **)zmalloc((total + 1) * sizeof *w->tags);
    w->done = (bool *)zmalloc((total + 1) * sizeof *w->done);
    for (size_t i = 0; i < total; i++) {
        const char *name = i < w->nnames ? w->names[i] : NULL;
        if (!name) {
            uint32_t id = w->ids[i - w->nnames];
            if (id >= 1 && id <= self->site->ntags && self->tags_by_id[id - 1]) {
                w->tags[i] = self->tags_by_id[id - 1];
                w->done[i] = true;
                continue;
            }
            //  An id from before a restart of ours: the site knows its name.
            site_tag_t *st = site_tag_by_id(self->site, id);
            if (!st) {
                w->done[i] = true;
                continue;
            }
            name = st->name;
        }
        s_tag_t *tag = (s_tag_t *)zhashx_lookup(self->tags_by_name, name);
        if (tag) {
            w->tags[i] = tag;
            w->done[i] = true;
        } else {
            w->unresolved++;
            s_resolve_queue(self, name);
        }
    }
    zlistx_add_end(self->waiters, w);
    return w;
}

//  What a client request lacks whatever the broker's state (the fields its
//  kind needs, sizes, a kind we serve): the text of its ERROR, in `buf` or
//  static, or NULL.
static const char *s_request_check(const Scada__ClientRequest *req, char *buf, size_t len)
{
    switch (req->kind) {
    case SCADA__CLIENT_REQUEST__KIND__HEARTBEAT:
        return NULL;
    case SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE:
        if (!req->has_page)
            return "SUBSCRIBE needs page";
        if (req->n_names + req->n_tag_ids > MAX_PAGE_TAGS) {
            snprintf(buf, len, "a page holds at most %d tags", MAX_PAGE_TAGS);
            return buf;
        }
        break;
    case SCADA__CLIENT_REQUEST__KIND__UNSUBSCRIBE:
        return req->has_page ? NULL : "UNSUBSCRIBE needs page";
    case SCADA__CLIENT_REQUEST__KIND__WRITE:
        if (req->n_names + req->n_tag_ids != 1 || !req->has_value || !isfinite(req->value))
            return "WRITE needs one tag (names or tag_ids) and a finite value";
        break;
    case SCADA__CLIENT_REQUEST__KIND__EXISTS:
    case SCADA__CLIENT_REQUEST__KIND__RESOLVE:
        return req->n_names > MAX_PAGE_TAGS ? "too many names" : NULL;
    default:
        return "unknown request kind";
    }
    //  SUBSCRIBE, WRITE: id 0 means "no such tag" in answers, and no update
    //  can carry it.
    for (size_t i = 0; i < req->n_tag_ids; i++)
        if (req->tag_ids[i] == 0)
            return "tag id 0 names no tag";
    return NULL;
}

static void s_on_client_request(broker_t *self, s_client_t *c, Scada__ClientRequest *req,
                                int64_t now)
{
    uint32_t id = req->has_id ? req->id : 0;
    if (req->client && !c->name)
        c->name = strdup(req->client);
    if (req->kind != SCADA__CLIENT_REQUEST__KIND__HEARTBEAT &&
        req->kind != SCADA__CLIENT_REQUEST__KIND__UNSUBSCRIBE && c->requests >= MAX_CLIENT_REQS) {
        //  Each request in progress holds memory until it is answered.
        char why[96];
        snprintf(why, sizeof why, "too many requests in progress (at most %d per client)",
                 MAX_CLIENT_REQS);
        s_client_error(c, id, why);
        return;
    }
    char buf[96];
    const char *bad = s_request_check(req, buf, sizeof buf);
    if (bad) {
        self->malformed++;
        if (req->kind == SCADA__CLIENT_REQUEST__KIND__WRITE) {
            //  A write that cannot be made is a write attempt all the same.
            char idname[24] = "";
            if (req->n_tag_ids)
                snprintf(idname, sizeof idname, "#%u", req->tag_ids[0]);
            audit_rec_t rec = {.ts_ms = mclock_wall_ms(),
                               .via = self->name,
                               .user = c->user,
                               .key = c->pubkey,
                               .client = c->name,
                               .tag = req->n_names ? req->names[0]
                                      : *idname    ? idname
                                                   : NULL,
                               .new_value = req->has_value ? req->value : NAN,
                               .result = "failed",
                               .error = bad};
            if (self->audit)
                audit_write(self->audit, &rec);
            self->writes_failed++;
        }
        s_client_error(c, id, bad);
        return;
    }
    switch (req->kind) {
    case SCADA__CLIENT_REQUEST__KIND__HEARTBEAT:
        break;
    case SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE: {
        s_waiter_new(self, c, req, W_SUBSCRIBE);
        c->waiting++;
        break;
    }
    case SCADA__CLIENT_REQUEST__KIND__UNSUBSCRIBE: {
        char key[16];
        snprintf(key, sizeof key, "%u", req->page);
        s_page_drop(self, c, key);
        Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
        msg.kind = SCADA__BROKER_MSG__KIND__UNSUBSCRIBED;
        msg.has_id = true;
        msg.id = id;
        msg.has_page = true;
        msg.page = req->page;
        s_client_send(c, &msg);
        break;
    }
    case SCADA__CLIENT_REQUEST__KIND__WRITE: {
        s_waiter_t *w = s_waiter_new(self, c, req, W_WRITE);
        w->value = req->value;
        w->wall_ms = mclock_wall_ms();
        w->user = c->user ? strdup(c->user) : NULL;
        w->pubkey = c->pubkey ? strdup(c->pubkey) : NULL;
        w->cname = c->name ? strdup(c->name) : NULL;
        break;
    }
    case SCADA__CLIENT_REQUEST__KIND__EXISTS:
    case SCADA__CLIENT_REQUEST__KIND__RESOLVE:
        s_waiter_new(self, c, req,
                     req->kind == SCADA__CLIENT_REQUEST__KIND__EXISTS ? W_EXISTS : W_RESOLVE);
        break;
    default: //  s_request_check() lets no other kind through
        break;
    }
}

static int s_on_clients(zloop_t *loop, zsock_t *sock, void *arg)
{
    broker_t *self = (broker_t *)arg;
    int64_t now = mclock_mono_ms();
    for (int burst = 0; burst < 256; burst++) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        zframe_t *rid = zmsg_pop(msg);
        if (!rid || zmsg_size(msg) < 1) {
            zframe_destroy(&rid);
            zmsg_destroy(&msg);
            s_malformed(self, "empty message", "a client");
            continue;
        }
        s_client_t *c = s_client_get(self, rid, now);
        zframe_destroy(&rid);
        c->last_rx = now;
        //  A REQ socket puts an empty delimiter first; take the last frame.
        zframe_t *body = zmsg_last(msg);
        s_client_identity(c, body);
        Scada__ClientRequest *req =
            zmsg_size(msg) <= 2
                ? scada__client_request__unpack(NULL, zframe_size(body), zframe_data(body))
                : NULL;
        zmsg_destroy(&msg);
        if (!req) {
            s_malformed(self, "not a scada.ClientRequest", c->name ? c->name : c->key);
            s_client_error(c, 0, "malformed request: not a scada.ClientRequest");
            continue;
        }
        s_on_client_request(self, c, req, now);
        scada__client_request__free_unpacked(req, NULL);
    }
    s_resolve_flush(self, now);
    return 0;
}

//  --------------------------------------------------------------------------
//  Resolver messages

static void s_hello(broker_t *self)
{
    Scada__ResolverMsg msg = SCADA__RESOLVER_MSG__INIT;
    msg.kind = SCADA__RESOLVER_MSG__KIND__HELLO;
    s_resolver_send(self, &msg);
}

static void s_startup_work(broker_t *self, int64_t now);

static int s_on_resolver(zloop_t *loop, zsock_t *sock, void *arg)
{
    broker_t *self = (broker_t *)arg;
    int64_t now = mclock_mono_ms();
    for (int burst = 0; burst < 64; burst++) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        zframe_t *f = zmsg_first(msg);
        Scada__ResolverMsg *m =
            zmsg_size(msg) == 1 ? scada__resolver_msg__unpack(NULL, zframe_size(f), zframe_data(f))
                                : NULL;
        zmsg_destroy(&msg);
        if (!m) {
            s_malformed(self, "not a ResolverMsg", "the resolver");
            continue;
        }
        self->resolver_seen = now;
        if (!self->resolver_up) {
            self->resolver_up = true;
            slog_info("resolver answers");
        }
        switch (m->kind) {
        case SCADA__RESOLVER_MSG__KIND__REREGISTER:
            slog_info("resolver does not know us (it restarted): hello again");
            s_hello(self);
            break;
        case SCADA__RESOLVER_MSG__KIND__BEST_OFFERS:
            for (size_t i = 0; i < m->n_best; i++)
                s_device_offer(self, m->best[i], now);
            if (m->has_full && m->full)
                s_startup_work(self, now);
            break;
        case SCADA__RESOLVER_MSG__KIND__RESOLVED: {
            s_resolve_t *r = NULL;
            for (r = (s_resolve_t *)zlistx_first(self->resolves); r;
                 r = (s_resolve_t *)zlistx_next(self->resolves))
                if (r->id == m->id)
                    break;
            if (!r)
                break; //  an answer to an attempt already answered
            for (size_t i = 0; i < m->n_tags; i++) {
                Scada__TagInfo *info = m->tags[i];
                s_tag_t *tag = info->found ? s_tag_learn(self, info) : NULL;
                if (!info->found)
                    self->not_found++;
                self->names_resolved++;
                s_resolved_name(self, info->name, tag);
            }
            //  Names it did not answer (it should answer all) go again.
            for (size_t i = 0; i < r->nnames; i++)
                if (zhashx_lookup(self->resolving, r->names[i])) {
                    zhashx_delete(self->resolving, r->names[i]);
                    s_resolve_queue(self, r->names[i]);
                }
            zlistx_delete(self->resolves, zlistx_cursor(self->resolves));
            break;
        }
        case SCADA__RESOLVER_MSG__KIND__HEARTBEAT:
            break;
        case SCADA__RESOLVER_MSG__KIND__ERROR:
            slog_warn("resolver says: %s", m->error ? m->error : "(no reason)");
            break;
        default:
            s_malformed(self, "unexpected ResolverMsg kind", "the resolver");
        }
        scada__resolver_msg__free_unpacked(m, NULL);
    }
    s_resolve_flush(self, now);
    return 0;
}

//  resolve_on_startup: every tag of the site is resolved at start, so a page
//  change is only the subscribe step. subscribe_on_startup: every tag is
//  also subscribed (held by the broker itself), so every tag is polled.
static void s_startup_work(broker_t *self, int64_t now)
{
    if (self->startup_done)
        return;
    self->startup_done = true;
    if (!self->cfg->resolve_on_startup && !self->cfg->subscribe_on_startup)
        return;
    size_t n = 0;
    for (size_t i = 0; i < self->site->ntags; i++) {
        site_tag_t *st = site_tag_by_id(self->site, (uint32_t)i + 1);
        if (st && !zhashx_lookup(self->tags_by_name, st->name)) {
            s_resolve_queue(self, st->name);
            n++;
        }
    }
    slog_info("%s on startup: resolving %zu tags",
              self->cfg->subscribe_on_startup ? "subscribe" : "resolve", n);
}

//  subscribe_on_startup: hold every resolved tag.
static void s_startup_hold(broker_t *self, int64_t now)
{
    if (!self->cfg->subscribe_on_startup || self->held_all || !self->startup_done ||
        zhashx_size(self->resolving))
        return;
    self->held_all = true;
    size_t n = 0;
    for (s_tag_t *tag = (s_tag_t *)zhashx_first(self->tags_by_name); tag;
         tag = (s_tag_t *)zhashx_next(self->tags_by_name)) {
        s_tag_want(self, tag, now);
        n++;
    }
    slog_info("subscribe on startup: %zu tags held", n);
}

//  --------------------------------------------------------------------------
//  Timers

static void s_resolve_give_up(broker_t *self, s_resolve_t *r, int64_t now)
{
    slog_warn("the resolver did not answer %zu names in %u tries over %lld ms", r->nnames,
              r->attempt, (long long)(now - r->first_sent));
    char why[160];
    snprintf(why, sizeof why, "the resolver did not answer in %u tries over %lld ms", r->attempt,
             (long long)(now - r->first_sent));
    for (size_t i = 0; i < r->nnames; i++)
        zhashx_delete(self->resolving, r->names[i]);
    s_waiter_t *w = (s_waiter_t *)zlistx_first(self->waiters);
    while (w) {
        bool hit = false;
        for (size_t i = 0; i < w->nnames && !hit; i++)
            for (size_t k = 0; k < r->nnames && !hit; k++)
                hit = !w->done[i] && streq(w->names[i], r->names[k]);
        if (!hit) {
            w = (s_waiter_t *)zlistx_next(self->waiters);
            continue;
        }
        s_client_t *c = s_waiter_client(self, w);
        if (c) {
            if (w->kind == W_SUBSCRIBE && c->waiting)
                c->waiting--;
            s_client_error(c, w->id, why);
        }
        void *cursor = zlistx_cursor(self->waiters);
        w = (s_waiter_t *)zlistx_next(self->waiters);
        zlistx_delete(self->waiters, cursor);
    }
    for (s_resolve_t *q = (s_resolve_t *)zlistx_first(self->resolves); q;
         q = (s_resolve_t *)zlistx_next(self->resolves))
        if (q == r) {
            zlistx_delete(self->resolves, zlistx_cursor(self->resolves));
            break;
        }
}

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    broker_t *self = (broker_t *)arg;
    int64_t now = mclock_mono_ms();
    //  Resolves unanswered: again after backoff x min(attempt, 3)^2; given up
    //  after RESOLVE_TRIES, failing the requests that wait for them.
    zlistx_t *expired = zlistx_new();
    for (s_resolve_t *r = (s_resolve_t *)zlistx_first(self->resolves); r;
         r = (s_resolve_t *)zlistx_next(self->resolves)) {
        if (now < r->retry_at)
            continue;
        if (r->attempt < RESOLVE_TRIES) {
            self->resolve_retries++;
            slog_debug("resolve %llu unanswered: attempt %u", (unsigned long long)r->id,
                       r->attempt + 1);
            s_resolve_send(self, r, now);
        } else
            zlistx_add_end(expired, r);
    }
    for (s_resolve_t *r = (s_resolve_t *)zlistx_first(expired); r;
         r = (s_resolve_t *)zlistx_next(expired))
        s_resolve_give_up(self, r, now);
    zlistx_destroy(&expired);
    s_resolve_flush(self, now);
    //  Requests in progress.
    for (s_waiter_t *w = (s_waiter_t *)zlistx_first(self->waiters); w;) {
        void *cursor = zlistx_cursor(self->waiters);
        bool finished = s_waiter_step(self, w, now);
        //  s_waiter_step never touches the list; safe to delete here.
        s_waiter_t *next = (s_waiter_t *)zlistx_next(self->waiters);
        if (finished)
            zlistx_delete(self->waiters, cursor);
        w = next;
    }
    s_startup_hold(self, now);
    //  Subscriptions to the I/O servers, batched per tick.
    for (s_ios_t *ios = (s_ios_t *)zhashx_first(self->ioservers); ios;
         ios = (s_ios_t *)zhashx_next(self->ioservers))
        s_ios_flush(self, ios, now);
    //  Updates owed, at most one message per update_interval_ms per client.
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients))
        if (c->nowed && now >= c->next_flush)
            s_client_flush(c, now);
    return 0;
}

static void s_redis_state(broker_t *self, const char *state)
{
    size_t pages = 0, held = 0, slow = 0;
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients)) {
        pages += zhashx_size(c->pages);
        slow += c->full;
    }
    for (s_tag_t *tag = (s_tag_t *)zhashx_first(self->tags_by_name); tag;
         tag = (s_tag_t *)zhashx_next(self->tags_by_name))
        held += tag->refs > 0;
    rzloop_command(self->redis,
                   "HSET %s state %s pid %d started_ms %lld updated_ms %lld endpoint %s "
                   "clients %llu pages %llu tags_subscribed %llu tags_known %llu ioservers "
                   "%llu "
                   "resolver %s updates_sent %llu messages_sent %llu send_dropped %llu "
                   "malformed %llu resolves %llu resolve_retries %llu not_found %llu "
                   "writes_ok %llu writes_failed %llu failovers %llu clients_slow %llu "
                   "updates_missed %llu",
                   self->prefix, state, (int)getpid(), (long long)self->started_wall,
                   (long long)mclock_wall_ms(), self->cfg->endpoint,
                   (unsigned long long)zhashx_size(self->clients), (unsigned long long)pages,
                   (unsigned long long)held, (unsigned long long)zhashx_size(self->tags_by_name),
                   (unsigned long long)zhashx_size(self->ioservers),
                   self->resolver_up ? "up" : "down", (unsigned long long)self->updates_sent,
                   (unsigned long long)self->messages_sent, (unsigned long long)self->send_dropped,
                   (unsigned long long)self->malformed, (unsigned long long)self->resolves_sent,
                   (unsigned long long)self->resolve_retries, (unsigned long long)self->not_found,
                   (unsigned long long)self->writes_ok, (unsigned long long)self->writes_failed,
                   (unsigned long long)self->failovers, (unsigned long long)slow,
                   (unsigned long long)self->updates_missed);
    int64_t ttl = 3 * (int64_t)self->site->ping_time_ms;
    rzloop_command(self->redis, "PEXPIRE %s %lld", self->prefix, (long long)ttl);
    //  Clients: name (or routing id) -> "pages tags".
    char key[512];
    snprintf(key, sizeof key, "%s:clients", self->prefix);
    rzloop_command(self->redis, "DEL %s", key);
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients)) {
        size_t tags = 0;
        for (s_page_t *p = (s_page_t *)zhashx_first(c->pages); p;
             p = (s_page_t *)zhashx_next(c->pages))
            tags += p->ntags;
        char field[300];
        snprintf(field, sizeof field, "%s%s%s", c->name ? c->name : "", c->name ? "@" : "", c->key);
        char value[64];
        snprintf(value, sizeof value, "pages=%zu tags=%zu", zhashx_size(c->pages), tags);
        rzloop_command(self->redis, "HSET %s %s %s", key, field, value);
    }
    rzloop_command(self->redis, "PEXPIRE %s %lld", key, (long long)ttl);
}

static int s_on_ping(zloop_t *loop, int timer_id, void *arg)
{
    broker_t *self = (broker_t *)arg;
    int64_t now = mclock_mono_ms();
    Scada__ResolverMsg hb = SCADA__RESOLVER_MSG__INIT;
    hb.kind = SCADA__RESOLVER_MSG__KIND__HEARTBEAT;
    s_resolver_send(self, &hb);
    audit_flush(self->audit); //  stream entries that waited for Redis
    if (self->resolver_up && now - self->resolver_seen > 3 * (int64_t)self->site->ping_time_ms) {
        self->resolver_up = false;
        slog_warn("resolver silent for %lld ms: keeping the best offers we know",
                  (long long)(now - self->resolver_seen));
    }
    if (!self->startup_done && !self->resolver_up)
        s_hello(self); //  until the full table arrives
    //  Keep our subscriptions at each I/O server alive; it drops them after
    //  3 x ping_time without a word from us.
    for (s_ios_t *ios = (s_ios_t *)zhashx_first(self->ioservers); ios;
         ios = (s_ios_t *)zhashx_next(self->ioservers)) {
        if (ios->count == 0 && !ios->resync)
            continue;
        Scada__IoRequest req = SCADA__IO_REQUEST__INIT;
        req.id = ++self->next_id;
        req.kind = SCADA__IO_REQUEST__KIND__KEEP;
        req.client = self->name;
        req.has_count = true;
        req.count = ios->count;
        s_ios_send(ios, &req);
    }
    return 0;
}

static int s_on_clients_check(zloop_t *loop, int timer_id, void *arg)
{
    broker_t *self = (broker_t *)arg;
    int64_t now = mclock_mono_ms();
    int64_t hb = self->cfg->client_heartbeat_ms;
    zlistx_t *gone = zlistx_new();
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients)) {
        if (now - c->last_rx > 3 * hb) {
            zlistx_add_end(gone, c);
            continue;
        }
        if (now - c->last_tx >= hb) {
            Scada__BrokerMsg msg = SCADA__BROKER_MSG__INIT;
            msg.kind = SCADA__BROKER_MSG__KIND__HEARTBEAT;
            if (!s_client_send(c, &msg) && errno == EHOSTUNREACH)
                zlistx_add_end(gone, c);
        }
    }
    for (s_client_t *c = (s_client_t *)zlistx_first(gone); c; c = (s_client_t *)zlistx_next(gone))
        s_client_drop(self, c, "silent for 3 heartbeats");
    zlistx_destroy(&gone);
    if (rzloop_connected(self->redis))
        s_redis_state(self, "running");
    return 0;
}

static void s_on_redis_connect(rzloop_t *redis, void *arg)
{
    broker_t *self = (broker_t *)arg;
    s_redis_state(self, "running");
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

static void s_tag_free(void **item)
{
    s_tag_t *tag = (s_tag_t *)*item;
    s_tag_destroy(&tag);
    *item = NULL;
}

static void s_device_free(void **item)
{
    s_device_t *dev = (s_device_t *)*item;
    s_device_destroy(&dev);
    *item = NULL;
}

static void s_ios_free(void **item)
{
    s_ios_t *ios = (s_ios_t *)*item;
    s_ios_destroy(&ios);
    *item = NULL;
}

static void s_waiter_free(void **item)
{
    s_waiter_t *w = (s_waiter_t *)*item;
    s_waiter_destroy(&w);
    *item = NULL;
}

static void s_resolve_free(void **item)
{
    s_resolve_t *r = (s_resolve_t *)*item;
    s_resolve_destroy(&r);
    *item = NULL;
}

broker_t *broker_new(site_t *site, const char *name)
{
    broker_t *self = (broker_t *)zmalloc(sizeof *self);
    self->site = site;
    self->cfg = site_broker(site, name);
    self->name = strdup(name);
    self->prefix = zsys_sprintf("scada:%s:broker:%s", site->site, name);
    self->started_wall = mclock_wall_ms();
    self->incarnation = (uint64_t)self->started_wall * 1000003u ^ (uint64_t)getpid() << 40;
    self->tags_by_name = zhashx_new();
    zhashx_set_destructor(self->tags_by_name, s_tag_free);
    self->tags_by_id = (s_tag_t **)zmalloc((site->ntags + 1) * sizeof *self->tags_by_id);
    self->devices = zhashx_new();
    zhashx_set_destructor(self->devices, s_device_free);
    self->ioservers = zhashx_new();
    zhashx_set_destructor(self->ioservers, s_ios_free);
    self->clients = zhashx_new();
    self->waiters = zlistx_new();
    zlistx_set_destructor(self->waiters, s_waiter_free);
    self->resolves = zlistx_new();
    zlistx_set_destructor(self->resolves, s_resolve_free);
    self->to_resolve = zlistx_new();
    zlistx_set_destructor(self->to_resolve, (zlistx_destructor_fn *)zstr_free);
    self->resolving = zhashx_new();
    self->reasons = zhashx_new();
    zhashx_set_destructor(self->reasons, (zhashx_destructor_fn *)zstr_free);

    char err[512];
    if (!(self->sec = sec_new(site, name, NULL, err, sizeof err))) {
        slog_error("%s", err);
        broker_destroy(&self);
        return NULL;
    }
    //  No write without its record: no audit file, no broker.
    char *dir = site_path(site, site->security_audit_dir);
    char *path = zsys_sprintf("%s/audit-%s.log", dir, name);
    char *stream = zsys_sprintf("scada:%s:audit", site->site);
    self->audit = audit_new(path, stream, NULL);
    if (!self->audit)
        slog_error("cannot open the audit file %s: %s (security.audit_dir)", path, strerror(errno));
    else if (site->nroles)
        slog_info("roles in force (%zu roles, %zu users%s%s); writes audited in %s", site->nroles,
                  site->nusers, site->default_role ? ", default role " : "",
                  site->default_role ? site->default_role->name : "", path);
    else
        slog_info("no roles in the site file: every allowed certificate may read and write "
                  "every tag; writes audited in %s",
                  path);
    free(dir);
    zstr_free(&path);
    zstr_free(&stream);
    if (!self->audit) {
        broker_destroy(&self);
        return NULL;
    }
    self->clients_sock = zsock_new(ZMQ_ROUTER);
    //  A full client queue is EAGAIN (router_mandatory), not a silent drop.
    zsock_set_router_mandatory(self->clients_sock, 1);
    zsock_set_sndhwm(self->clients_sock, CLIENT_SNDHWM);
    zsock_set_sndbuf(self->clients_sock, CLIENT_SNDBUF);
    zsock_set_rcvhwm(self->clients_sock, CLIENT_RCVHWM);
    zsock_set_maxmsgsize(self->clients_sock, MAX_CLIENT_MSG);
    zsock_set_linger(self->clients_sock, 0);
    if (sec_server(self->sec, self->clients_sock, "client socket", err, sizeof err) != 0 ||
        site_bind(self->clients_sock, self->cfg->endpoint, err, sizeof err) < 0) {
        slog_error("client endpoint: %s", err);
        broker_destroy(&self);
        return NULL;
    }
    self->resolver = zsock_new(ZMQ_DEALER);
    zsock_set_linger(self->resolver, 0);
    zsock_set_sndhwm(self->resolver, RESOLVER_HWM);
    zsock_set_rcvhwm(self->resolver, RESOLVER_HWM);
    zsock_set_maxmsgsize(self->resolver, PEER_MAX_MSG);
    if (sec_client(self->sec, self->resolver, "resolver", "resolver link", err, sizeof err) != 0) {
        slog_error("%s", err);
        broker_destroy(&self);
        return NULL;
    }
    if (zsock_connect(self->resolver, "%s", site->resolver.endpoint) < 0) {
        slog_error("cannot connect to the resolver at %s: %s", site->resolver.endpoint,
                   zmq_strerror(errno));
        broker_destroy(&self);
        return NULL;
    }
    //  Every I/O server of the site, from the start: a SUB that connects
    //  only at failover could miss the first values of the new source.
    self->loop = zloop_new();
    sec_attach(self->sec, self->loop);
    for (size_t i = 0; i < site->nioservers; i++)
        s_ios_get(self, site->ioservers[i].name, site->ioservers[i].publish,
                  site->ioservers[i].control);
    slog_info("serving clients on %s; resolver %s; updates every %u ms at most, client "
              "heartbeat %u ms%s%s",
              self->cfg->endpoint, site->resolver.endpoint, self->cfg->update_interval_ms,
              self->cfg->client_heartbeat_ms,
              self->cfg->resolve_on_startup ? ", resolve on startup" : "",
              self->cfg->subscribe_on_startup ? ", subscribe on startup" : "");
    return self;
}

void broker_destroy(broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    if (self->clients) {
        for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
             c = (s_client_t *)zhashx_next(self->clients))
            s_client_destroy(self, c);
        zhashx_destroy(&self->clients);
    }
    zlistx_destroy(&self->waiters);
    zlistx_destroy(&self->resolves);
    zlistx_destroy(&self->to_resolve);
    zhashx_destroy(&self->resolving);
    zhashx_destroy(&self->ioservers);
    zhashx_destroy(&self->tags_by_name);
    zhashx_destroy(&self->devices);
    zhashx_destroy(&self->reasons);
    free(self->tags_by_id);
    zloop_destroy(&self->loop); //  after the I/O servers: they end their readers
    zsock_destroy(&self->clients_sock);
    zsock_destroy(&self->resolver);
    sec_destroy(&self->sec);
    audit_destroy(&self->audit);
    zstr_free(&self->prefix);
    free(self->name);
    free(self);
    *self_p = NULL;
}

void broker_actor(zsock_t *pipe, void *engine)
{
    broker_t *self = (broker_t *)engine;
    zloop_set_nonstop(self->loop, true);
    zloop_reader(self->loop, pipe, s_on_pipe, self);
    zloop_reader(self->loop, self->clients_sock, s_on_clients, self);
    zloop_reader_set_tolerant(self->loop, self->clients_sock);
    zloop_reader(self->loop, self->resolver, s_on_resolver, self);
    zloop_reader_set_tolerant(self->loop, self->resolver);
    zloop_timer(self->loop, TICK_MS, 0, s_on_tick, self);
    zloop_timer(self->loop, self->site->ping_time_ms, 0, s_on_ping, self);
    uint32_t check = self->cfg->client_heartbeat_ms / 4;
    if (check > self->site->ping_time_ms)
        check = self->site->ping_time_ms;
    zloop_timer(self->loop, check < 10 ? 10 : check, 0, s_on_clients_check, self);
    self->redis = rzloop_new(self->loop, self->site->redis_host, self->site->redis_port,
                             s_on_redis_connect, self);
    rzloop_set_auth(self->redis, self->site->redis_user, self->site->redis_password);
    audit_set_redis(self->audit, self->redis);
    s_hello(self);
    zsock_signal(pipe, 0);
    zloop_start(self->loop);
    if (rzloop_connected(self->redis)) {
        audit_flush(self->audit);
        s_redis_state(self, "stopped");
        rzloop_flush(self->redis, 1000);
    }
    audit_set_redis(self->audit, NULL);
    rzloop_destroy(&self->redis);
    //  Readers of the I/O server sockets go with the loop.
    zloop_destroy(&self->loop);
}
