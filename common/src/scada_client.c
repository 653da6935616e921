/*  scada_client: the client side of the broker protocol. See the header for
    the contract; this file holds the data structures.

    pages       the owner's pages, each an array of entries (one per tag name,
                in the owner's order). An entry points at the tag record once
                the broker has numbered the name.
    tags        one record per numbered name, found by name and by id: the id,
                the last value seen (given to a page that adds the tag later)
                and refs, every (page, entry) that shows it, rebuilt by
                s_reindex() whenever pages or ids change. A record no entry
                refers to is dropped, so the next SUBSCRIBE sends its name.
    subreqs     SUBSCRIBEs not yet answered, with the names they carried in
                order: SUBSCRIBED gives one id per name.
    writes      WRITEs not yet answered, with their deadlines.

    Callbacks may subscribe, unsubscribe and write. So every loop that calls
    back re-reads the structures after each call when `generation` moved (a
    re-index happened), and tag records are only dropped when no callback is
    running (`depth`), so a callback's arguments stay valid.
*/
#include "scada_client.h"
#include "sec.h"
#include "mclock.h"
#include "scada.pb-c.h"
#include "slog.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(SCADA_Q_GOOD == (int)SCADA__QUALITY__GOOD, "quality numbers");
_Static_assert(SCADA_Q_UNCERTAIN == (int)SCADA__QUALITY__UNCERTAIN, "quality numbers");
_Static_assert(SCADA_Q_BAD_NO_COMM == (int)SCADA__QUALITY__BAD_NO_COMM, "quality numbers");
_Static_assert(SCADA_Q_BAD_CONFIG == (int)SCADA__QUALITY__BAD_CONFIG, "quality numbers");
_Static_assert(SCADA_Q_BAD_NOT_FOUND == (int)SCADA__QUALITY__BAD_NOT_FOUND, "quality numbers");
_Static_assert(SCADA_Q_BAD_DEVICE == (int)SCADA__QUALITY__BAD_DEVICE, "quality numbers");
_Static_assert(SCADA_Q_BAD_NOT_ALLOWED == (int)SCADA__QUALITY__BAD_NOT_ALLOWED, "quality numbers");

#define S_DEFAULT_NAME      "scada-client"
#define S_DEFAULT_HEARTBEAT 5000
#define S_DEFAULT_WRITE_TMO 10000
#define S_DEFAULT_RECONNECT 100
#define S_DEFAULT_RECON_MAX 2000
#define S_DEFAULT_MAX_MSG   (16 * 1024 * 1024)
#define S_DISPATCH_MAX      10000 //  frames read per dispatch call at most
#define S_LOG_EVERY_MS      1000  //  malformed frames are logged this often at most
#define S_ZMTP_TTL_MAX_MS   6553500
#define S_GOODBYE_LINGER_MS 100 //  how long UNSUBSCRIBEs may take to leave at destroy

typedef struct _s_tag_t s_tag_t;
typedef struct _s_page_t s_page_t;

typedef struct {
    char *name;
    s_tag_t *tag;   //  NULL until the broker numbered the name
    bool not_found; //  the broker said it has no such tag (reported once)
    bool fresh;     //  added by the latest subscribe and given nothing yet
} s_entry_t;

struct _s_page_t {
    uint32_t page;
    s_entry_t *entries;
    size_t n;
    scada_value_fn *cb;
    void *arg;
    uint32_t req_id; //  the latest SUBSCRIBE, until SUBSCRIBED answers it
};

typedef struct {
    s_page_t *page;
    size_t index; //  into page->entries
} s_ref_t;

struct _s_tag_t {
    uint32_t id;
    char *name;
    bool has_last;     //  a value (or at least a quality) was seen
    bool has_value;    //  last value
    double value;      //
    int quality;       //
    int64_t ts_ms;     //
    char *reason;      //  owned, may be NULL
    s_ref_t *refs;     //  entries that show this tag
    size_t nrefs, cap; //
};

typedef struct {
    uint32_t id;
    uint32_t page;
    char **names; //  the names the SUBSCRIBE carried, in order (owned)
    size_t n;
    size_t nids; //  ids it carried
} s_subreq_t;

typedef struct {
    uint32_t id;
    char *tag;
    scada_write_fn *cb;
    void *arg;
    int64_t timeout_ms;
    int64_t deadline; //  monotonic ms
} s_write_t;

typedef enum { S_LINK_WAITING = 0, S_LINK_UP, S_LINK_LOST } s_link_t;

struct _scada_client_t {
    char *endpoint;
    char *name;
    uint32_t heartbeat_ms;
    uint32_t write_timeout_ms;
    uint32_t reconnect_ms, reconnect_max_ms;
    int64_t max_msg_bytes;
    zsock_t *sock;       //  DEALER to the broker
    zsock_t *monitor;    //  PAIR: its connection events (s_socket_new)
    sec_t *sec;          //  CURVE, or NULL (not owned)
    char *sec_peer;      //  the broker's certificate name
    bool refused;        //  a handshake failed; said once until one succeeds
    bool named;          //  this connection already carried our name
    s_link_t link;       //
    bool ever_up;        //  the broker answered at least once
    int64_t last_sent;   //  monotonic ms of the last send (or attempt)
    int64_t last_recv;   //  monotonic ms of the last valid message (or of the socket)
    uint32_t next_id;    //  request ids, never 0
    s_page_t **pages;    //
    size_t npages, cap;  //
    zhashx_t *by_name;   //  name -> s_tag_t (owns)
    zhashx_t *by_id;     //  "id" -> s_tag_t
    zlistx_t *subreqs;   //  s_subreq_t (owned, freed by hand)
    zlistx_t *writes;    //  s_write_t (owned, freed by hand)
    uint64_t generation; //  +1 on every re-index
    uint64_t activity;   //  +1 per valid message and per callback
    int depth;           //  callbacks running
    bool prune_due;      //  tag records to drop once no callback runs
    scada_event_fn *event_fn;
    void *event_arg;
    zloop_t *loop;
    int timer_id;
    scada_client_stats_t stats;
    uint64_t malformed_unlogged;
    int64_t malformed_logged_at;
    char malformed_last[128];
};

//  --------------------------------------------------------------------------
//  Small helpers

static uint32_t s_new_id(scada_client_t *self)
{
    if (++self->next_id == 0)
        self->next_id = 1;
    return self->next_id;
}

static void s_id_key(uint32_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu32, id);
}

static s_page_t *s_page_find(scada_client_t *self, uint32_t page)
{
    for (size_t i = 0; i < self->npages; i++)
        if (self->pages[i]->page == page)
            return self->pages[i];
    return NULL;
}

static void s_page_free_entries(s_page_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->entries[i].name);
    free(p->entries);
    p->entries = NULL;
    p->n = 0;
}

static void s_subreq_free(s_subreq_t **rq_p)
{
    s_subreq_t *rq = *rq_p;
    if (!rq)
        return;
    for (size_t i = 0; i < rq->n; i++)
        free(rq->names[i]);
    free(rq->names);
    free(rq);
    *rq_p = NULL;
}

static void s_write_free(s_write_t **w_p)
{
    s_write_t *w = *w_p;
    if (!w)
        return;
    free(w->tag);
    free(w);
    *w_p = NULL;
}

static s_tag_t *s_tag_by_id(scada_client_t *self, uint32_t id)
{
    char key[16];
    s_id_key(id, key, sizeof key);
    return (s_tag_t *)zhashx_lookup(self->by_id, key);
}

static void s_tag_destroy(s_tag_t **tag_p)
{
    s_tag_t *t = *tag_p;
    if (!t)
        return;
    free(t->name);
    free(t->reason);
    free(t->refs);
    free(t);
    *tag_p = NULL;
}

static void s_tag_free_item(void **item)
{
    s_tag_destroy((s_tag_t **)item);
}

//  Remove a tag record from both indexes and free it; entries that pointed
//  at it lose their id. Only while no callback runs.
static void s_tag_remove(scada_client_t *self, s_tag_t *t)
{
    for (size_t p = 0; p < self->npages; p++)
        for (size_t i = 0; i < self->pages[p]->n; i++)
            if (self->pages[p]->entries[i].tag == t)
                self->pages[p]->entries[i].tag = NULL;
    char key[16];
    s_id_key(t->id, key, sizeof key);
    zhashx_delete(self->by_id, key);
    zhashx_delete(self->by_name, t->name); //  frees t
}

//  Drop the tag records no entry refers to.
static void s_prune(scada_client_t *self)
{
    self->prune_due = false;
    size_t n = 0, cap = zhashx_size(self->by_name);
    if (cap == 0)
        return;
    s_tag_t **gone = (s_tag_t **)malloc(cap * sizeof *gone);
    if (!gone)
        return;
    for (s_tag_t *t = (s_tag_t *)zhashx_first(self->by_name); t;
         t = (s_tag_t *)zhashx_next(self->by_name))
        if (t->nrefs == 0)
            gone[n++] = t;
    for (size_t i = 0; i < n; i++)
        s_tag_remove(self, gone[i]);
    free(gone);
}

static int s_ref_add(s_tag_t *t, s_page_t *p, size_t index)
{
    if (t->nrefs == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 2;
        s_ref_t *refs = (s_ref_t *)realloc(t->refs, cap * sizeof *refs);
        if (!refs)
            return -1;
        t->refs = refs;
        t->cap = cap;
    }
    t->refs[t->nrefs++] = (s_ref_t){p, index};
    return 0;
}

//  Link entries to the tag records of their names, rebuild every record's
//  refs, drop records nobody shows (later, if a callback runs).
static void s_reindex(scada_client_t *self)
{
    self->generation++;
    for (s_tag_t *t = (s_tag_t *)zhashx_first(self->by_name); t;
         t = (s_tag_t *)zhashx_next(self->by_name))
        t->nrefs = 0;
    for (size_t p = 0; p < self->npages; p++) {
        s_page_t *page = self->pages[p];
        for (size_t i = 0; i < page->n; i++) {
            s_entry_t *e = &page->entries[i];
            if (!e->tag) {
                e->tag = (s_tag_t *)zhashx_lookup(self->by_name, e->name);
                if (e->tag)
                    e->not_found = false;
            }
            if (e->tag && s_ref_add(e->tag, page, i) < 0)
                e->tag = NULL; //  out of memory: shown again after the next answer
        }
    }
    if (self->depth > 0)
        self->prune_due = true;
    else
        s_prune(self);
}

//  The broker numbered `name` as `id`.
static void s_learn(scada_client_t *self, const char *name, uint32_t id)
{
    s_tag_t *t = (s_tag_t *)zhashx_lookup(self->by_name, name);
    s_tag_t *other = s_tag_by_id(self, id);
    if (t && t->id == id)
        return;
    char key[16];
    if (other && other != t) {
        //  The id now names another tag (the broker's site changed): the
        //  old name loses its id and travels by name again.
        s_tag_remove(self, other);
    }
    if (t) {
        s_id_key(t->id, key, sizeof key);
        zhashx_delete(self->by_id, key);
        t->id = id;
    } else {
        t = (s_tag_t *)calloc(1, sizeof *t);
        if (!t)
            return;
        t->name = strdup(name);
        if (!t->name) {
            free(t);
            return;
        }
        t->id = id;
        zhashx_insert(self->by_name, name, t);
    }
    s_id_key(id, key, sizeof key);
    zhashx_insert(self->by_id, key, t);
}

static void s_event(scada_client_t *self, scada_client_event_t event, uint32_t page,
                    const char *text)
{
    self->activity++;
    if (self->event_fn) {
        self->depth++;
        self->event_fn(self, event, page, text, self->event_arg);
        self->depth--;
        return;
    }
    switch (event) {
    case SCADA_CLIENT_UP:
        slog_info("broker at %s answers", self->endpoint);
        break;
    case SCADA_CLIENT_LOST:
        slog_warn("broker at %s lost: %s", self->endpoint, text ? text : "");
        break;
    case SCADA_CLIENT_ERROR:
        if (page)
            slog_warn("broker at %s: error on page %" PRIu32 ": %s", self->endpoint, page,
                      text ? text : "");
        else
            slog_warn("broker at %s: error: %s", self->endpoint, text ? text : "");
        break;
    case SCADA_CLIENT_SUBSCRIBED:
        break;
    case SCADA_CLIENT_MISSED:
        slog_warn("broker at %s: %s updates held back or coalesced away while this client was "
                  "slow; the values that follow are current",
                  self->endpoint, text ? text : "?");
        break;
    }
}

static void s_call_value(scada_client_t *self, s_page_t *page, const char *tag, uint32_t id,
                         const scada_value_t *v)
{
    self->activity++;
    if (!page->cb)
        return;
    self->depth++;
    page->cb(self, page->page, tag, id, v, page->arg);
    self->depth--;
}

static void s_call_write(scada_client_t *self, s_write_t *w, const char *error)
{
    self->activity++;
    if (!w->cb)
        return;
    self->depth++;
    w->cb(self, w->tag, error, w->arg);
    self->depth--;
}

//  After callbacks: drop what they left unreferenced.
static void s_settle(scada_client_t *self)
{
    if (self->depth == 0 && self->prune_due)
        s_prune(self);
}

static void s_malformed(scada_client_t *self, const char *why)
{
    self->stats.malformed++;
    self->malformed_unlogged++;
    snprintf(self->malformed_last, sizeof self->malformed_last, "%s", why);
    int64_t now = mclock_mono_ms();
    if (self->malformed_logged_at == 0 || now - self->malformed_logged_at >= S_LOG_EVERY_MS) {
        slog_warn("broker at %s: dropped %" PRIu64 " malformed message(s) (%" PRIu64
                  " in all), the last one: %s",
                  self->endpoint, self->malformed_unlogged, self->stats.malformed, why);
        self->malformed_unlogged = 0;
        self->malformed_logged_at = now;
    }
}

//  --------------------------------------------------------------------------
//  Sending

//  Send one request. The first message of a connection carries our name.
static int s_send(scada_client_t *self, Scada__ClientRequest *req)
{
    if (!self->named || req->kind == SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE)
        req->client = self->name;
    size_t len = scada__client_request__get_packed_size(req);
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, len) != 0)
        return -1;
    scada__client_request__pack(req, (uint8_t *)zmq_msg_data(&msg));
    self->last_sent = mclock_mono_ms();
    if (zmq_msg_send(&msg, zsock_resolve(self->sock), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return -1;
    }
    self->named = true;
    self->stats.sent++;
    return 0;
}

//  One SUBSCRIBE with the page's content: numbered names as ids, the others
//  as names.
static int s_send_subscribe(scada_client_t *self, s_page_t *p)
{
    s_subreq_t *rq = (s_subreq_t *)calloc(1, sizeof *rq);
    char **names = (char **)calloc(p->n + 1, sizeof *names);
    uint32_t *ids = (uint32_t *)calloc(p->n + 1, sizeof *ids);
    if (!rq || !names || !ids) {
        free(rq);
        free(names);
        free(ids);
        return -1;
    }
    rq->names = names;
    for (size_t i = 0; i < p->n; i++) {
        if (p->entries[i].tag)
            ids[rq->nids++] = p->entries[i].tag->id;
        else if ((names[rq->n] = strdup(p->entries[i].name)) != NULL)
            rq->n++;
    }
    rq->id = s_new_id(self);
    rq->page = p->page;
    Scada__ClientRequest req = SCADA__CLIENT_REQUEST__INIT;
    req.kind = SCADA__CLIENT_REQUEST__KIND__SUBSCRIBE;
    req.has_id = true;
    req.id = rq->id;
    req.has_page = true;
    req.page = p->page;
    req.n_names = rq->n;
    req.names = rq->names;
    req.n_tag_ids = rq->nids;
    req.tag_ids = ids;
    int rc = s_send(self, &req);
    free(ids);
    p->req_id = rq->id;
    if (rc == 0)
        zlistx_add_end(self->subreqs, rq);
    else
        s_subreq_free(&rq);
    return rc;
}

static void s_heartbeat(scada_client_t *self)
{
    Scada__ClientRequest req = SCADA__CLIENT_REQUEST__INIT;
    req.kind = SCADA__CLIENT_REQUEST__KIND__HEARTBEAT;
    if (s_send(self, &req) == 0)
        self->stats.heartbeats++;
}

//  --------------------------------------------------------------------------
//  The socket

static int s_on_reader(zloop_t *loop, zsock_t *reader, void *arg);
static int s_on_monitor(zloop_t *loop, zsock_t *reader, void *arg);

//  A DEALER to the broker, and a PAIR that hears when its connection
//  closes (a socket monitor): the broker then forgets us, so the client
//  must start over without waiting for 3 x heartbeat of silence. Returns 0
//  with both in *sock_p and *monitor_p, or -1.
static int s_socket_new(scada_client_t *self, zsock_t **sock_p, zsock_t **monitor_p)
{
    static int s_seq = 0;
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    zsock_t *monitor = zsock_new(ZMQ_PAIR);
    if (!sock || !monitor) {
        zsock_destroy(&sock);
        zsock_destroy(&monitor);
        return -1;
    }
    zsock_set_linger(sock, 0);
    zsock_set_linger(monitor, 0);
    int ivl = (int)(3 * self->heartbeat_ms);
    zsock_set_heartbeat_ivl(sock, ivl);
    zsock_set_heartbeat_timeout(sock, ivl);
    //  The broker drops the connection after this long without traffic
    //  from us; we send a ZMTP ping every `ivl`.
    zsock_set_heartbeat_ttl(sock, 2 * ivl < S_ZMTP_TTL_MAX_MS ? 2 * ivl : S_ZMTP_TTL_MAX_MS);
    zsock_set_reconnect_ivl(sock, (int)self->reconnect_ms);
    zsock_set_reconnect_ivl_max(sock, (int)self->reconnect_max_ms);
    int64_t max = self->max_msg_bytes;
    zmq_setsockopt(zsock_resolve(sock), ZMQ_MAXMSGSIZE, &max, sizeof max);
    char err[512];
    if (self->sec && sec_client(self->sec, sock, self->sec_peer, NULL, err, sizeof err) != 0) {
        slog_error("broker link: %s", err);
        zsock_destroy(&monitor);
        zsock_destroy(&sock);
        return -1;
    }
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://scada-client-monitor-%d-%d", (int)getpid(),
             __atomic_add_fetch(&s_seq, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor(zsock_resolve(sock), ep,
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) !=
            0 ||
        zsock_connect(monitor, "%s", ep) != 0 || zsock_connect(sock, "%s", self->endpoint) < 0) {
        zmq_socket_monitor(zsock_resolve(sock), NULL, 0);
        zsock_destroy(&monitor);
        zsock_destroy(&sock);
        return -1;
    }
    *sock_p = sock;
    *monitor_p = monitor;
    return 0;
}

static void s_socket_close(scada_client_t *self)
{
    if (self->loop) {
        if (self->sock)
            zloop_reader_end(self->loop, self->sock);
        if (self->monitor)
            zloop_reader_end(self->loop, self->monitor);
    }
    if (self->sock)
        zmq_socket_monitor(zsock_resolve(self->sock), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->sock);
}

//  True if the connection to the broker closed since the last call.
static bool s_connection_closed(scada_client_t *self)
{
    bool closed = false;
    void *handle = zsock_resolve(self->monitor);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, handle, ZMQ_DONTWAIT) >= 0) {
        //  Frame 1: event number (16 bits) and value; frame 2: the endpoint.
        uint16_t event = 0;
        if (zmq_msg_size(&msg) >= sizeof event)
            memcpy(&event, zmq_msg_data(&msg), sizeof event);
        if (event & ZMQ_EVENT_DISCONNECTED)
            closed = true;
        if (event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)) {
            if (!self->refused)
                s_event(self, SCADA_CLIENT_ERROR, 0,
                        self->sec ? "the broker refused the CURVE handshake: our key is not "
                                    "allowed there (revoked?), or it is not the broker we "
                                    "have the key of"
                                  : "the broker refused the handshake: it wants CURVE");
            self->refused = true;
        } else if (event & ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            self->refused = false;
        while (zmq_msg_more(&msg) && zmq_msg_recv(&msg, handle, ZMQ_DONTWAIT) >= 0)
            ;
    }
    zmq_msg_close(&msg);
    return closed;
}

//  A new connection: the broker sees a new client, so everything it knew
//  about us is gone. Returns 0, or -1 if the socket could not be made (the
//  old one is kept then).
static int s_socket_renew(scada_client_t *self)
{
    zsock_t *sock, *monitor;
    if (s_socket_new(self, &sock, &monitor) < 0)
        return -1;
    s_socket_close(self);
    self->sock = sock;
    self->monitor = monitor;
    if (self->loop) {
        zloop_reader(self->loop, self->sock, s_on_reader, self);
        zloop_reader(self->loop, self->monitor, s_on_monitor, self);
    }
    self->named = false;
    return 0;
}

//  --------------------------------------------------------------------------
//  Link loss

typedef struct {
    uint32_t page;
    char *name;
    bool has_value;
    double value;
    int64_t ts_ms;
} s_lost_t;

//  3 x heartbeat without a message, or the connection closed: re-create the
//  socket and subscribe every page again (by name: the ids were the old
//  connection's); then report the loss once per episode, and fail the
//  writes sent on the old connection.
static void s_link_lost(scada_client_t *self, int64_t now, bool closed)
{
    bool report = self->link != S_LINK_LOST;
    const char *reason = self->ever_up ? "broker lost" : "no answer from broker";
    char text[256];
    if (closed)
        snprintf(text, sizeof text, "the connection to %s closed", self->endpoint);
    else
        snprintf(text, sizeof text, "no message from %s for %" PRId64 " ms", self->endpoint,
                 now - self->last_recv);

    //  What to report, before the tag records go.
    s_lost_t *lost = NULL;
    size_t nlost = 0;
    if (report) {
        size_t total = 0;
        for (size_t p = 0; p < self->npages; p++)
            total += self->pages[p]->n;
        lost = (s_lost_t *)calloc(total + 1, sizeof *lost);
        for (size_t p = 0; lost && p < self->npages; p++)
            for (size_t i = 0; i < self->pages[p]->n; i++) {
                s_entry_t *e = &self->pages[p]->entries[i];
                if (e->not_found)
                    continue;
                s_lost_t *l = &lost[nlost];
                l->page = self->pages[p]->page;
                l->name = strdup(e->name);
                if (!l->name)
                    continue;
                if (e->tag && e->tag->has_last) {
                    l->has_value = e->tag->has_value;
                    l->value = e->tag->value;
                    l->ts_ms = e->tag->ts_ms;
                }
                e->fresh = false;
                nlost++;
            }
    }
    zlistx_t *failed = self->writes;
    self->writes = zlistx_new();

    //  Forget the connection's state and start a new one.
    for (s_subreq_t *rq = (s_subreq_t *)zlistx_first(self->subreqs); rq;
         rq = (s_subreq_t *)zlistx_next(self->subreqs))
        s_subreq_free(&rq);
    zlistx_purge(self->subreqs);
    for (size_t p = 0; p < self->npages; p++)
        for (size_t i = 0; i < self->pages[p]->n; i++)
            self->pages[p]->entries[i].tag = NULL;
    zhashx_purge(self->by_id);
    zhashx_purge(self->by_name);
    self->generation++;
    self->link = S_LINK_LOST;
    self->last_recv = now;
    if (s_socket_renew(self) < 0)
        slog_error("broker at %s: cannot create a socket: %s", self->endpoint,
                   zmq_strerror(zmq_errno()));
    for (size_t p = 0; p < self->npages; p++)
        s_send_subscribe(self, self->pages[p]);

    if (report) {
        self->stats.links_lost++;
        s_event(self, SCADA_CLIENT_LOST, 0, text);
        for (size_t k = 0; k < nlost; k++) {
            s_page_t *page = s_page_find(self, lost[k].page);
            if (page) {
                scada_value_t v = {lost[k].has_value, lost[k].has_value ? lost[k].value : 0,
                                   SCADA_Q_BAD_NO_COMM, lost[k].ts_ms, reason};
                s_call_value(self, page, lost[k].name, 0, &v);
            }
            free(lost[k].name);
        }
        free(lost);
    }
    char why[600];
    snprintf(why, sizeof why,
             "%s before the write was answered (%s; the device may or may not have taken it)",
             reason, text);
    s_write_t *w;
    while ((w = (s_write_t *)zlistx_detach(failed, NULL)) != NULL) {
        s_call_write(self, w, why);
        s_write_free(&w);
    }
    zlistx_destroy(&failed);
    s_settle(self);
}

//  --------------------------------------------------------------------------
//  Receiving

//  Everything that makes a decoded message unusable, or NULL.
static const char *s_validate(scada_client_t *self, const Scada__BrokerMsg *msg)
{
    if ((unsigned)msg->kind > (unsigned)SCADA__BROKER_MSG__KIND__RESOLVED_REPLY)
        return "unknown message kind";
    int64_t base = msg->has_base_ts ? msg->base_ts : 0;
    for (size_t i = 0; i < msg->n_updates; i++) {
        const Scada__Update *u = msg->updates[i];
        if (u->tag_id == 0)
            return "update for tag id 0";
        if (u->has_quality && (unsigned)u->quality > (unsigned)SCADA_Q_BAD_NOT_ALLOWED)
            return "update with an unknown quality";
        if (u->has_integer && u->has_number)
            return "update with both integer and number";
        int64_t ts;
        if (__builtin_add_overflow(base, u->has_ts ? u->ts : 0, &ts))
            return "update timestamp out of range";
    }
    if (msg->kind == SCADA__BROKER_MSG__KIND__WRITTEN && !msg->has_id)
        return "WRITTEN without id";
    if (msg->kind == SCADA__BROKER_MSG__KIND__SUBSCRIBED && msg->has_id) {
        for (s_subreq_t *rq = (s_subreq_t *)zlistx_first(self->subreqs); rq;
             rq = (s_subreq_t *)zlistx_next(self->subreqs))
            if (rq->id == msg->id) {
                if (msg->n_tag_ids != rq->n && msg->n_tag_ids != rq->n + rq->nids)
                    return "SUBSCRIBED with a tag_ids count that matches no request";
                if (msg->has_page && msg->page != rq->page)
                    return "SUBSCRIBED for another page than requested";
            }
    }
    return NULL;
}

//  Give a tag's last value to every entry that shows it.
static void s_deliver(scada_client_t *self, s_tag_t *t)
{
    scada_value_t v = {t->has_value, t->value, (scada_quality_t)t->quality, t->ts_ms, t->reason};
    uint64_t gen = self->generation;
    for (size_t i = 0; i < t->nrefs; i++) {
        s_ref_t ref = t->refs[i];
        ref.page->entries[ref.index].fresh = false;
        s_call_value(self, ref.page, t->name, t->id, &v);
        if (self->generation != gen)
            break; //  the refs changed under us; the new content gets later values
    }
}

static void s_apply_updates(scada_client_t *self, const Scada__BrokerMsg *msg)
{
    int64_t base = msg->has_base_ts ? msg->base_ts : 0;
    const char *prev = NULL; //  the reason of the previous update (same_reason)
    for (size_t i = 0; i < msg->n_updates; i++) {
        const Scada__Update *u = msg->updates[i];
        const char *reason = u->has_same_reason && u->same_reason ? prev : u->reason;
        prev = reason;
        s_tag_t *t = s_tag_by_id(self, u->tag_id);
        if (!t) {
            self->stats.unknown_ids++;
            continue;
        }
        //  An update without a value changes quality, time and reason: the
        //  value stays the last one known.
        if (u->has_integer || u->has_number) {
            t->has_value = true;
            t->value = u->has_integer ? (double)u->integer : u->number;
        }
        t->has_last = true;
        t->quality = u->has_quality ? (int)u->quality : SCADA_Q_GOOD;
        int64_t ts = base + (u->has_ts ? u->ts : 0);
        t->ts_ms = ts > 0 ? ts : 0;
        free(t->reason);
        t->reason = reason && *reason ? strdup(reason) : NULL;
        s_deliver(self, t);
    }
}

static s_subreq_t *s_subreq_take(scada_client_t *self, uint32_t id)
{
    for (s_subreq_t *rq = (s_subreq_t *)zlistx_first(self->subreqs); rq;
         rq = (s_subreq_t *)zlistx_next(self->subreqs))
        if (rq->id == id) {
            zlistx_delete(self->subreqs, zlistx_cursor(self->subreqs));
            return rq;
        }
    return NULL;
}

static void s_on_subscribed(scada_client_t *self, const Scada__BrokerMsg *msg)
{
    s_subreq_t *rq = msg->has_id ? s_subreq_take(self, msg->id) : NULL;
    if (!rq) {
        //  Not ours (any more): its values are still values.
        s_apply_updates(self, msg);
        return;
    }
    size_t off = msg->n_tag_ids == rq->n ? 0 : rq->nids;
    zhashx_t *missing = zhashx_new();
    for (size_t i = 0; i < rq->n; i++) {
        uint32_t id = msg->tag_ids[off + i];
        if (id)
            s_learn(self, rq->names[i], id);
        else
            zhashx_insert(missing, rq->names[i], rq->names[i]);
    }
    s_reindex(self);
    s_page_t *page = s_page_find(self, rq->page);
    bool latest = page && page->req_id == rq->id;
    if (latest)
        page->req_id = 0;
    s_apply_updates(self, msg);

    //  Names the broker does not know: reported once.
    uint64_t gen = self->generation;
    page = s_page_find(self, rq->page);
    for (size_t i = 0; page && i < page->n && zhashx_size(missing); i++) {
        s_entry_t *e = &page->entries[i];
        //  The request's copy of the name: it outlives whatever the callback does.
        const char *name = (const char *)zhashx_lookup(missing, e->name);
        if (e->tag || e->not_found || !name)
            continue;
        e->not_found = true;
        e->fresh = false;
        scada_value_t v = {false, 0, SCADA_Q_BAD_NOT_FOUND, 0, "no such tag"};
        s_call_value(self, page, name, 0, &v);
        if (self->generation != gen)
            break;
        page = s_page_find(self, rq->page);
    }
    zhashx_destroy(&missing);

    //  Tags new on the page that another page already shows: their value now.
    gen = self->generation;
    page = s_page_find(self, rq->page);
    for (size_t i = 0; page && i < page->n; i++) {
        s_entry_t *e = &page->entries[i];
        if (!e->fresh || !e->tag || !e->tag->has_last)
            continue;
        e->fresh = false;
        s_tag_t *t = e->tag;
        scada_value_t v = {t->has_value, t->value, (scada_quality_t)t->quality, t->ts_ms,
                           t->reason};
        s_call_value(self, page, t->name, t->id, &v);
        if (self->generation != gen)
            break;
        page = s_page_find(self, rq->page);
    }
    if (latest && s_page_find(self, rq->page))
        s_event(self, SCADA_CLIENT_SUBSCRIBED, rq->page, NULL);
    s_subreq_free(&rq);
}

static s_write_t *s_write_take(scada_client_t *self, uint32_t id)
{
    for (s_write_t *w = (s_write_t *)zlistx_first(self->writes); w;
         w = (s_write_t *)zlistx_next(self->writes))
        if (w->id == id) {
            zlistx_delete(self->writes, zlistx_cursor(self->writes));
            return w;
        }
    return NULL;
}

static void s_on_error(scada_client_t *self, const Scada__BrokerMsg *msg)
{
    self->stats.errors++;
    const char *text = msg->error && *msg->error ? msg->error : "error without a reason";
    uint32_t id = msg->has_id ? msg->id : 0;
    if (id) {
        s_write_t *w = s_write_take(self, id);
        if (w) {
            s_call_write(self, w, text);
            s_write_free(&w);
            return;
        }
        s_subreq_t *rq = s_subreq_take(self, id);
        if (rq) {
            s_page_t *page = s_page_find(self, rq->page);
            if (page && page->req_id == rq->id)
                page->req_id = 0;
            s_event(self, SCADA_CLIENT_ERROR, rq->page, text);
            s_subreq_free(&rq);
            return;
        }
    }
    s_event(self, SCADA_CLIENT_ERROR, msg->has_page ? msg->page : 0, text);
}

static void s_handle_frame(scada_client_t *self, const uint8_t *data, size_t size)
{
    Scada__BrokerMsg *msg = scada__broker_msg__unpack(NULL, size, data);
    if (!msg) {
        s_malformed(self, "does not decode as BrokerMsg");
        return;
    }
    const char *why = s_validate(self, msg);
    if (why) {
        s_malformed(self, why);
        scada__broker_msg__free_unpacked(msg, NULL);
        return;
    }
    self->stats.received++;
    self->activity++;
    self->last_recv = mclock_mono_ms();
    if (self->link != S_LINK_UP) {
        self->link = S_LINK_UP;
        self->ever_up = true;
        s_event(self, SCADA_CLIENT_UP, 0, NULL);
    }
    if (msg->has_missed && msg->missed > 0) {
        //  Said before the values: they are the current ones.
        self->stats.missed += msg->missed;
        self->stats.missed_events++;
        char count[24];
        snprintf(count, sizeof count, "%" PRIu64, (uint64_t)msg->missed);
        s_event(self, SCADA_CLIENT_MISSED, 0, count);
    }
    switch (msg->kind) {
    case SCADA__BROKER_MSG__KIND__SUBSCRIBED:
        s_on_subscribed(self, msg);
        break;
    case SCADA__BROKER_MSG__KIND__UPDATES:
        s_apply_updates(self, msg);
        break;
    case SCADA__BROKER_MSG__KIND__WRITTEN: {
        s_write_t *w = s_write_take(self, msg->id);
        if (w) {
            s_call_write(self, w, msg->error && *msg->error ? msg->error : NULL);
            s_write_free(&w);
        }
        break;
    }
    case SCADA__BROKER_MSG__KIND__ERROR:
        s_on_error(self, msg);
        break;
    default: //  HEARTBEAT: alive; UNSUBSCRIBED, replies to requests we never send
        break;
    }
    scada__broker_msg__free_unpacked(msg, NULL);
    s_settle(self);
}

//  --------------------------------------------------------------------------
//  Public API

scada_client_t *scada_client_new(const char *endpoint, const scada_client_opts_t *opts)
{
    if (!endpoint || !*endpoint)
        return NULL;
    scada_client_opts_t o = opts ? *opts : (scada_client_opts_t){0};
    scada_client_t *self = (scada_client_t *)calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup(endpoint);
    self->name = strdup(o.name && *o.name ? o.name : S_DEFAULT_NAME);
    self->heartbeat_ms = o.heartbeat_ms ? o.heartbeat_ms : S_DEFAULT_HEARTBEAT;
    self->write_timeout_ms = o.write_timeout_ms ? o.write_timeout_ms : S_DEFAULT_WRITE_TMO;
    self->reconnect_ms = o.reconnect_ms ? o.reconnect_ms : S_DEFAULT_RECONNECT;
    self->reconnect_max_ms = o.reconnect_max_ms ? o.reconnect_max_ms : S_DEFAULT_RECON_MAX;
    if (self->reconnect_max_ms < self->reconnect_ms)
        self->reconnect_max_ms = self->reconnect_ms;
    self->max_msg_bytes = o.max_msg_bytes > 0 ? o.max_msg_bytes : S_DEFAULT_MAX_MSG;
    self->sec = o.sec;
    self->sec_peer = strdup(o.sec_peer ? o.sec_peer : "b1");
    self->by_name = zhashx_new();
    self->by_id = zhashx_new();
    self->subreqs = zlistx_new();
    self->writes = zlistx_new();
    self->timer_id = -1;
    if (!self->endpoint || !self->name || !self->by_name || !self->by_id || !self->subreqs ||
        !self->writes) {
        scada_client_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->by_name, s_tag_free_item);
    if (s_socket_new(self, &self->sock, &self->monitor) < 0) {
        scada_client_destroy(&self);
        return NULL;
    }
    int64_t now = mclock_mono_ms();
    self->last_sent = now;
    self->last_recv = now;
    return self;
}

void scada_client_destroy(scada_client_t **self_p)
{
    assert(self_p);
    scada_client_t *self = *self_p;
    if (!self)
        return;
    assert(self->depth == 0); //  never from inside a callback
    if (self->sock && self->link == S_LINK_UP && self->npages > 0) {
        //  Release the pages at once rather than when the broker notices the
        //  silence; give the messages a moment to leave.
        while (self->npages > 0)
            scada_client_unsubscribe(self, self->pages[self->npages - 1]->page);
        zsock_set_linger(self->sock, S_GOODBYE_LINGER_MS);
    }
    if (self->loop && self->timer_id >= 0)
        zloop_timer_end(self->loop, self->timer_id);
    s_socket_close(self);
    for (size_t p = 0; p < self->npages; p++) {
        s_page_free_entries(self->pages[p]);
        free(self->pages[p]);
    }
    free(self->pages);
    if (self->subreqs) {
        for (s_subreq_t *rq = (s_subreq_t *)zlistx_first(self->subreqs); rq;
             rq = (s_subreq_t *)zlistx_next(self->subreqs))
            s_subreq_free(&rq);
        zlistx_destroy(&self->subreqs);
    }
    if (self->writes) {
        for (s_write_t *w = (s_write_t *)zlistx_first(self->writes); w;
             w = (s_write_t *)zlistx_next(self->writes))
            s_write_free(&w);
        zlistx_destroy(&self->writes);
    }
    zhashx_destroy(&self->by_id);
    zhashx_destroy(&self->by_name);
    free(self->endpoint);
    free(self->sec_peer);
    free(self->name);
    free(self);
    *self_p = NULL;
}

int scada_client_subscribe(scada_client_t *self, uint32_t page, const char *const *tags, size_t n,
                           scada_value_fn *cb, void *arg)
{
    assert(self);
    assert(tags || n == 0);
    s_page_t *p = s_page_find(self, page);
    if (!p) {
        if (self->npages == self->cap) {
            size_t cap = self->cap ? 2 * self->cap : 4;
            s_page_t **pages = (s_page_t **)realloc(self->pages, cap * sizeof *pages);
            if (!pages)
                return -1;
            self->pages = pages;
            self->cap = cap;
        }
        p = (s_page_t *)calloc(1, sizeof *p);
        if (!p)
            return -1;
        p->page = page;
        self->pages[self->npages++] = p;
    }
    //  The new content; a name already on the page keeps what it had.
    s_entry_t *entries = (s_entry_t *)calloc(n + 1, sizeof *entries);
    zhashx_t *old = zhashx_new();
    zhashx_t *seen = zhashx_new();
    if (!entries || !old || !seen) {
        free(entries);
        zhashx_destroy(&old);
        zhashx_destroy(&seen);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++)
        zhashx_insert(old, p->entries[i].name, &p->entries[i]);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tags[i] || zhashx_lookup(seen, tags[i]))
            continue;
        zhashx_insert(seen, tags[i], (void *)tags[i]);
        s_entry_t *prev = (s_entry_t *)zhashx_lookup(old, tags[i]);
        s_entry_t *e = &entries[m];
        e->name = strdup(tags[i]);
        if (!e->name)
            continue;
        if (prev) {
            e->tag = prev->tag;
            e->not_found = prev->not_found;
            e->fresh = prev->fresh;
        } else
            e->fresh = true;
        m++;
    }
    zhashx_destroy(&old);
    zhashx_destroy(&seen);
    s_page_free_entries(p);
    p->entries = entries;
    p->n = m;
    p->cb = cb;
    p->arg = arg;
    s_reindex(self);
    return s_send_subscribe(self, p);
}

int scada_client_unsubscribe(scada_client_t *self, uint32_t page)
{
    assert(self);
    size_t k = 0;
    while (k < self->npages && self->pages[k]->page != page)
        k++;
    if (k == self->npages)
        return -1;
    s_page_t *p = self->pages[k];
    self->pages[k] = self->pages[--self->npages];
    s_page_free_entries(p);
    free(p);
    s_reindex(self);
    Scada__ClientRequest req = SCADA__CLIENT_REQUEST__INIT;
    req.kind = SCADA__CLIENT_REQUEST__KIND__UNSUBSCRIBE;
    req.has_id = true;
    req.id = s_new_id(self);
    req.has_page = true;
    req.page = page;
    s_send(self, &req);
    return 0;
}

static int s_write(scada_client_t *self, const char *tag, double value, int64_t timeout_ms,
                   scada_write_fn *cb, void *arg, uint32_t *id_p)
{
    assert(self);
    assert(tag);
    s_write_t *w = (s_write_t *)calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->tag = strdup(tag);
    if (!w->tag) {
        free(w);
        return -1;
    }
    w->id = s_new_id(self);
    w->cb = cb;
    w->arg = arg;
    w->timeout_ms = timeout_ms;
    w->deadline = mclock_mono_ms() + timeout_ms;
    Scada__ClientRequest req = SCADA__CLIENT_REQUEST__INIT;
    req.kind = SCADA__CLIENT_REQUEST__KIND__WRITE;
    req.has_id = true;
    req.id = w->id;
    req.has_value = true;
    req.value = value;
    s_tag_t *t = (s_tag_t *)zhashx_lookup(self->by_name, tag);
    uint32_t tag_id = t ? t->id : 0;
    char *name = w->tag;
    if (t) {
        req.n_tag_ids = 1;
        req.tag_ids = &tag_id;
    } else {
        req.n_names = 1;
        req.names = &name;
    }
    if (s_send(self, &req) < 0) {
        s_write_free(&w);
        return -1;
    }
    if (id_p)
        *id_p = w->id;
    zlistx_add_end(self->writes, w);
    return 0;
}

int scada_client_write(scada_client_t *self, const char *tag, double value, scada_write_fn *cb,
                       void *arg)
{
    return s_write(self, tag, value, self->write_timeout_ms, cb, arg, NULL);
}

void scada_client_set_event_handler(scada_client_t *self, scada_event_fn *fn, void *arg)
{
    assert(self);
    self->event_fn = fn;
    self->event_arg = arg;
}

zsock_t *scada_client_socket(scada_client_t *self)
{
    assert(self);
    return self->sock;
}

int scada_client_dispatch(scada_client_t *self)
{
    assert(self);
    assert(self->depth == 0);
    void *handle = zsock_resolve(self->sock);
    int n = 0;
    while (n < S_DISPATCH_MAX) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        n++;
        if (zmq_msg_more(&msg)) {
            //  The protocol is one frame per message: drop the whole message.
            while (zmq_msg_more(&msg)) {
                zmq_msg_close(&msg);
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, handle, ZMQ_DONTWAIT) < 0)
                    break;
            }
            zmq_msg_close(&msg);
            s_malformed(self, "more than one frame");
            continue;
        }
        s_handle_frame(self, (const uint8_t *)zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
    }
    return n;
}

void scada_client_tick(scada_client_t *self, int64_t now_ms)
{
    assert(self);
    assert(self->depth == 0);
    int64_t hb = self->heartbeat_ms;
    if (s_connection_closed(self))
        s_link_lost(self, now_ms, true);
    else if (now_ms - self->last_recv >= 3 * hb)
        s_link_lost(self, now_ms, false);
    if (now_ms - self->last_sent >= hb)
        s_heartbeat(self);
    //  Writes nothing answered, oldest deadline first.
    s_write_t *w = (s_write_t *)zlistx_first(self->writes);
    while (w) {
        if (w->deadline > now_ms) {
            w = (s_write_t *)zlistx_next(self->writes);
            continue;
        }
        zlistx_delete(self->writes, zlistx_cursor(self->writes));
        self->stats.write_timeouts++;
        char why[600];
        snprintf(why, sizeof why, "no answer from broker at %s within %" PRId64 " ms",
                 self->endpoint, w->timeout_ms);
        s_call_write(self, w, why);
        s_write_free(&w);
        w = (s_write_t *)zlistx_first(self->writes); //  the callback may have written
    }
    s_settle(self);
}

int64_t scada_client_next_timeout_ms(scada_client_t *self)
{
    assert(self);
    int64_t now = mclock_mono_ms();
    int64_t hb = self->heartbeat_ms;
    int64_t due = self->last_sent + hb;
    if (self->last_recv + 3 * hb < due)
        due = self->last_recv + 3 * hb;
    for (s_write_t *w = (s_write_t *)zlistx_first(self->writes); w;
         w = (s_write_t *)zlistx_next(self->writes))
        if (w->deadline < due)
            due = w->deadline;
    return due > now ? due - now : 0;
}

static int s_on_reader(zloop_t *loop, zsock_t *reader, void *arg)
{
    scada_client_dispatch((scada_client_t *)arg);
    return 0;
}

static int s_on_monitor(zloop_t *loop, zsock_t *reader, void *arg)
{
    scada_client_tick((scada_client_t *)arg, mclock_mono_ms());
    return 0;
}

static int s_on_timer(zloop_t *loop, int timer_id, void *arg)
{
    scada_client_tick((scada_client_t *)arg, mclock_mono_ms());
    return 0;
}

int scada_client_attach(scada_client_t *self, zloop_t *loop)
{
    assert(self);
    assert(loop);
    if (self->loop)
        return -1;
    size_t every = self->heartbeat_ms / 10;
    every = every < 10 ? 10 : every > 250 ? 250 : every;
    if (zloop_reader(loop, self->sock, s_on_reader, self) < 0)
        return -1;
    if (zloop_reader(loop, self->monitor, s_on_monitor, self) < 0) {
        zloop_reader_end(loop, self->sock);
        return -1;
    }
    self->timer_id = zloop_timer(loop, every, 0, s_on_timer, self);
    if (self->timer_id < 0) {
        zloop_reader_end(loop, self->sock);
        zloop_reader_end(loop, self->monitor);
        return -1;
    }
    self->loop = loop;
    return 0;
}

int scada_client_wait(scada_client_t *self, int timeout_ms)
{
    assert(self);
    int64_t deadline = mclock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    uint64_t activity = self->activity;
    while (true) {
        int64_t now = mclock_mono_ms();
        scada_client_tick(self, now);
        if (self->activity != activity)
            return 1;
        if (now >= deadline)
            return 0;
        int64_t wait = scada_client_next_timeout_ms(self);
        if (wait > deadline - now)
            wait = deadline - now;
        zmq_pollitem_t items[] = {{zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0},
                                  {zsock_resolve(self->monitor), 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, 2, (long)(wait > 0 ? wait : 1));
        if (rc < 0 || zsys_interrupted)
            return -1;
        if (items[0].revents & ZMQ_POLLIN)
            scada_client_dispatch(self);
        //  A closed connection (items[1]) is handled by the tick at the top.
        if (self->activity != activity)
            return 1;
    }
}

typedef struct {
    bool done;
    char *error;
} s_wait_write_t;

static void s_on_write_done(scada_client_t *self, const char *tag, const char *error, void *arg)
{
    s_wait_write_t *st = (s_wait_write_t *)arg;
    st->done = true;
    st->error = error ? strdup(error) : NULL;
    if (error && !st->error)
        st->error = strdup("out of memory");
}

int scada_client_write_wait(scada_client_t *self, const char *tag, double value, int timeout_ms,
                            char *error, size_t errlen)
{
    assert(self);
    s_wait_write_t st = {false, NULL};
    uint32_t id = 0;
    if (s_write(self, tag, value, timeout_ms > 0 ? timeout_ms : 1, s_on_write_done, &st, &id) < 0) {
        snprintf(error, errlen, "cannot send to broker at %s: %s", self->endpoint,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    while (!st.done) {
        if (scada_client_wait(self, timeout_ms > 0 ? timeout_ms : 1) < 0) {
            //  Interrupted: the pending write must not call back into `st`.
            s_write_t *w = s_write_take(self, id);
            s_write_free(&w);
            snprintf(error, errlen, "interrupted");
            return -1;
        }
    }
    int rc = st.error ? -1 : 0;
    if (st.error)
        snprintf(error, errlen, "%s", st.error);
    else if (errlen)
        error[0] = '\0';
    free(st.error);
    return rc;
}

bool scada_client_connected(scada_client_t *self)
{
    assert(self);
    return self->link == S_LINK_UP;
}

const char *scada_client_endpoint(scada_client_t *self)
{
    assert(self);
    return self->endpoint;
}

void scada_client_stats(scada_client_t *self, scada_client_stats_t *stats)
{
    assert(self);
    assert(stats);
    *stats = self->stats;
}

const char *scada_quality_name(int quality)
{
    switch (quality) {
    case SCADA_Q_GOOD:
        return "good";
    case SCADA_Q_UNCERTAIN:
        return "uncertain";
    case SCADA_Q_BAD_NO_COMM:
        return "bad-no-comm";
    case SCADA_Q_BAD_CONFIG:
        return "bad-config";
    case SCADA_Q_BAD_NOT_FOUND:
        return "bad-not-found";
    case SCADA_Q_BAD_DEVICE:
        return "bad-device";
    case SCADA_Q_BAD_NOT_ALLOWED:
        return "bad-not-allowed";
    default:
        return "bad";
    }
}
