/*  scada_client: the client side of the broker protocol (scada-broker).

    One DEALER to one broker (see proto/scada.proto, "Client protocol"). The
    owner groups tags in pages: subscribing a page is one SUBSCRIBE and one
    SUBSCRIBED, whatever the number of tags, and re-subscribing a page
    replaces its content. Names the broker has already numbered travel as
    their ids. Values come back through the page's callback, decoded
    (integer or double, timestamp = base_ts + ts); a tag the broker does not
    know is reported once as BAD_NOT_FOUND.

    The link looks after itself: the client sends HEARTBEAT only when it has
    sent nothing for heartbeat_ms; after 3 x heartbeat_ms without a message
    from the broker the link is lost, every subscribed tag is reported once
    as BAD_NO_COMM (keeping its last value), pending writes fail, the socket
    is re-created and every page subscribed again. ZMTP heartbeats (with a
    TTL for the broker's side) catch half-open TCP connections.

    Nothing in the non-blocking API waits. Drive it from an event loop:
    scada_client_attach() for a zloop, or scada_client_socket() +
    scada_client_dispatch() + scada_client_tick() for any other poller.
    Tools may use the blocking helpers (scada_client_wait,
    scada_client_write_wait).

    A slow client (its process stalled, its link too slow): the broker
    queues a bounded number of messages to it, then holds back what the
    client is owed, keeping the latest value of each tag. The first message
    after that says how many updates were held back or coalesced away:
    SCADA_CLIENT_MISSED, before the values of that message; the current
    value of every tag concerned follows at once, without a resubscribe.

    Malformed frames from the broker are counted (scada_client_stats), logged
    at most once a second and dropped. ERROR messages from the broker go to
    the pending write they answer, or to the event handler (or the log).

    Callbacks run inside dispatch, tick or wait. They may subscribe,
    unsubscribe and write, but must not destroy the client.
*/
#ifndef SCADA_CLIENT_H_INCLUDED
#define SCADA_CLIENT_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Tag quality; the same numbers as scada.Quality on the wire.
typedef enum {
    SCADA_Q_GOOD = 0,
    SCADA_Q_UNCERTAIN = 1,
    SCADA_Q_BAD_NO_COMM = 2,   //  source lost: the value is the last one known
    SCADA_Q_BAD_CONFIG = 3,    //  the tag cannot be read as configured
    SCADA_Q_BAD_NOT_FOUND = 4, //  no such tag
    SCADA_Q_BAD_DEVICE = 5,    //  the device answered with something unusable
    SCADA_Q_BAD_NOT_ALLOWED = 6 //  your certificate's role may not read the tag's area
} scada_quality_t;

//  One value of one tag, as a callback sees it. Pointers are valid only
//  during the callback.
typedef struct {
    bool has_value;          //  false: no value known (value is 0)
    double value;            //  engineering value (bools as 0/1)
    scada_quality_t quality; //
    int64_t ts_ms;           //  source timestamp, ms since the epoch; 0 unknown
    const char *reason;      //  why the quality is not good; NULL when none
} scada_value_t;

typedef struct {
    const char *name;          //  client name for the broker's logs (copied);
                               //  NULL: "scada-client"
    uint32_t heartbeat_ms;     //  the broker's client_heartbeat_ms; 0: 5000
    uint32_t write_timeout_ms; //  a write the broker has not answered fails after
                               //  this; 0: 10000 (keep it above the broker's
                               //  write_timeout_ms)
    uint32_t reconnect_ms;     //  ZeroMQ reconnect interval; 0: 100
    uint32_t reconnect_max_ms; //  its upper bound as it backs off; 0: 2000
    int64_t max_msg_bytes;     //  larger frames from the broker are refused
                               //  (ZMQ_MAXMSGSIZE); 0: 16 MiB
    struct _sec_t *sec;        //  CURVE (sec.h): the broker link as a client of
    const char *sec_peer;      //  this broker's name; NULL sec: a plain link
} scada_client_opts_t;

//  What the link did; see scada_event_fn.
typedef enum {
    SCADA_CLIENT_UP = 0,     //  the first valid message of a connection arrived
    SCADA_CLIENT_LOST,       //  3 x heartbeat_ms of silence; text says how long. The
                             //  socket was re-created (scada_client_socket changed)
    SCADA_CLIENT_SUBSCRIBED, //  the latest SUBSCRIBE of `page` was answered
    SCADA_CLIENT_ERROR,      //  an ERROR from the broker that answers no pending
                             //  write: `page` when it answers a SUBSCRIBE or
                             //  UNSUBSCRIBE, else 0; text is the broker's
    SCADA_CLIENT_MISSED      //  the broker's queue to this client was full: text is
                             //  the number of updates it held back or coalesced
                             //  away, in decimal (also added to stats.missed). The
                             //  values that follow are current. Raised before the
                             //  values of the message that says so.
} scada_client_event_t;

typedef struct {
    uint64_t sent;           //  messages sent
    uint64_t received;       //  valid messages received
    uint64_t malformed;      //  frames that did not decode or break the protocol
    uint64_t unknown_ids;    //  updates for a tag id no page holds (late, after an
                             //  unsubscribe)
    uint64_t errors;         //  ERROR messages received
    uint64_t heartbeats;     //  HEARTBEATs sent
    uint64_t links_lost;     //  times the link was declared lost
    uint64_t write_timeouts; //  writes failed because nothing answered them
    uint64_t missed;         //  updates the broker held back or coalesced away because
                             //  this client was slow (sum of SCADA_CLIENT_MISSED)
    uint64_t missed_events;  //  times the broker said so
} scada_client_stats_t;

typedef struct _scada_client_t scada_client_t;

//  A value of `tag` (id `tag_id`, 0 when the broker does not know the tag)
//  on `page`.
typedef void(scada_value_fn)(scada_client_t *self, uint32_t page, const char *tag, uint32_t tag_id,
                             const scada_value_t *value, void *arg);

//  The result of a write: error NULL when the device took it, else why not.
typedef void(scada_write_fn)(scada_client_t *self, const char *tag, const char *error, void *arg);

//  A link event; text may be NULL.
typedef void(scada_event_fn)(scada_client_t *self, scada_client_event_t event, uint32_t page,
                             const char *text, void *arg);

//  Create a client of the broker at `endpoint` (e.g. tcp://127.0.0.1:5700)
//  and connect. opts may be NULL (defaults). Returns NULL if the endpoint
//  is not valid. Caller owns the return value.
scada_client_t *scada_client_new(const char *endpoint, const scada_client_opts_t *opts);

//  Destroy; tolerates NULL, sets *self_p to NULL. Pending writes are dropped
//  without a callback. While the link is up every page is unsubscribed
//  first (the socket lingers up to 100 ms for that); otherwise the broker
//  ends the subscriptions when it sees the link go.
void scada_client_destroy(scada_client_t **self_p);

//  Subscribe `page` to tags[0..n-1] (duplicates count once), replacing what
//  the page held: one SUBSCRIBE. `cb` gets every value of these tags from
//  now on; a tag that was already on another page gets the value known
//  there as soon as the broker confirms. n may be 0 (the page is emptied
//  but kept). Returns 0, or -1 if the message could not be queued (the
//  page is still recorded and sent again after the next reconnect).
int scada_client_subscribe(scada_client_t *self, uint32_t page, const char *const *tags, size_t n,
                           scada_value_fn *cb, void *arg);

//  Forget `page` and tell the broker (UNSUBSCRIBE). Returns 0, or -1 if
//  the page was not subscribed.
int scada_client_unsubscribe(scada_client_t *self, uint32_t page);

//  Write `value` to `tag`. `cb` (may be NULL) runs once with the result:
//  the broker's WRITTEN or ERROR, or an error of our own when the link is
//  lost or nothing answers within write_timeout_ms. Returns 0, or -1 if the
//  request could not be queued (no callback then).
int scada_client_write(scada_client_t *self, const char *tag, double value, scada_write_fn *cb,
                       void *arg);

//  Receive link events (NULL: broker errors and link changes are logged).
void scada_client_set_event_handler(scada_client_t *self, scada_event_fn *fn, void *arg);

//  The socket to poll for input. It changes when the link is re-created
//  (SCADA_CLIENT_LOST); scada_client_attach() follows that by itself.
zsock_t *scada_client_socket(scada_client_t *self);

//  Read and handle every message waiting on the socket. Returns the number
//  of frames read.
int scada_client_dispatch(scada_client_t *self);

//  Time-driven work at monotonic time now_ms (mclock_mono_ms): heartbeats,
//  link loss and reconnect, write timeouts.
void scada_client_tick(scada_client_t *self, int64_t now_ms);

//  Milliseconds until scada_client_tick has work to do (>= 0).
int64_t scada_client_next_timeout_ms(scada_client_t *self);

//  Drive the client from `loop`: a reader on its socket (moved along when
//  the socket is re-created) and a timer for scada_client_tick. Only one
//  loop at a time. Returns 0 or -1.
int scada_client_attach(scada_client_t *self, zloop_t *loop);

//  Blocking, for tools: poll, dispatch and tick until something was
//  received or a callback ran, or timeout_ms passed. Returns 1 when
//  something happened, 0 on timeout, -1 when interrupted (Ctrl-C).
int scada_client_wait(scada_client_t *self, int timeout_ms);

//  Blocking write, for tools: waits at most timeout_ms for the result.
//  Returns 0 when the device took the write, else -1 with the reason in
//  error (errlen bytes, always terminated).
int scada_client_write_wait(scada_client_t *self, const char *tag, double value, int timeout_ms,
                            char *error, size_t errlen);

//  True from the first valid message of a connection until it is lost.
bool scada_client_connected(scada_client_t *self);

//  The endpoint given to scada_client_new.
const char *scada_client_endpoint(scada_client_t *self);

//  Counters since creation.
void scada_client_stats(scada_client_t *self, scada_client_stats_t *stats);

//  "good", "uncertain", "bad-no-comm", "bad-config", "bad-not-found",
//  "bad-device"; "bad" for anything else.
const char *scada_quality_name(int quality);

#endif
