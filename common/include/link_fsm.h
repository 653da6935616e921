/*  link_fsm: the timeout escalation of one link (seed 002).

    A link is what fails as a unit: for `network` and `listen` channels one
    outstation socket (LINK_SOCKET), for `tcp` (gateway) and `serial` channels
    the whole channel (LINK_CHANNEL). The caller embeds a link_fsm_t per link,
    reports what happened on it, and performs the actions each call returns.
    The module is pure: no sockets, no clock; `now` (monotonic ms) is passed in.

    Rules:
    - Each read timeout (no complete good reply by the deadline) adds 1 to the
      consecutive read counter, each write timeout (the OS did not take the
      whole request in time) to the consecutive write counter. Any good reply
      resets both; an exception reply is a good reply (the outstation
      answered). A malformed or mismatched reply is no reply: if nothing good
      follows by the deadline, it is a read timeout.
    - Below both limits nothing happens: faults are often intermittent and
      the link stays in use.
    - At either limit the link fails: the I/O Timeout alarm is raised and its
      outstations' tags go bad-no-comm. A socket link is closed and reconnected
      through the connect window's backoff. A channel link is de-assigned
      (closed) and re-assigned at once, once per failure episode: if the
      reopened channel answers it is healthy again; if it cannot be reopened,
      or it fails again before answering, it stays failed and is retried
      through the connect window's backoff.
    - A failed link that has been reopened is on trial: the alarm stays active
      until its first good reply, which clears the alarm and makes the link
      healthy. On trial, the counters start from 0 and the same limits apply;
      at a limit the link is closed and retried with backoff again, without a
      second alarm and without another re-assign.
    - A link that closes (peer closed, I/O error) while healthy is merely
      down: its tags go bad-no-comm and it is reconnected with backoff, but no
      alarm is raised: the alarm is about timeouts. The counters survive such a
      close, so a peer that drops every connection before answering still
      reaches the limit.

    Transitions (actions in brackets):

    DOWN         opened -> HEALTHY; open_failed: [retry]
    HEALTHY      good_reply: reset counters; closed -> DOWN [bad, retry];
                 timeout at a limit: socket -> FAILED [alarm, bad, close, retry],
                                     channel -> REASSIGNING [alarm, bad, close, reassign]
    REASSIGNING  opened -> REASSIGNED (counters reset); open_failed -> FAILED [retry]
    REASSIGNED   good_reply -> HEALTHY [clear]; closed -> FAILED [retry];
                 timeout at a limit -> FAILED [close, retry]
    FAILED       opened -> RECOVERING (counters reset); open_failed: [retry]
    RECOVERING   good_reply -> HEALTHY [clear]; closed -> FAILED [retry];
                 timeout at a limit -> FAILED [close, retry]

    A timeout below the limits only counts. Every other event is ignored (no
    change, no action): a closed link has no requests, so its replies and
    timeouts are stale; an open link has nothing being opened. Every change
    of state also returns LINK_ACT_STATE_CHANGED. docs/channel-failover.md
    explains the machine for engineers.
*/
#ifndef LINK_FSM_H_INCLUDED
#define LINK_FSM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LINK_SOCKET = 0, //  one outstation socket of a `network` or `listen` channel
    LINK_CHANNEL = 1 //  a whole `tcp` (gateway) or `serial` channel
} link_kind_t;

typedef struct {
    link_kind_t kind;
    uint32_t max_read_timeouts;  //  consecutive read timeouts that fail the link, >= 1
    uint32_t max_write_timeouts; //  consecutive write timeouts that fail the link, >= 1
} link_config_t;

typedef enum {
    LINK_DOWN = 0,    //  not open, no alarm: before the first open, or closed by the peer
                      //  while healthy; reconnected through the connect window
    LINK_HEALTHY,     //  open and in use, both counters below their limits, no alarm
    LINK_REASSIGNING, //  channel only: failed at a limit, closed, being reopened at once
    LINK_REASSIGNED,  //  channel only: reopened after the re-assign, in use, alarm active
                      //  until the first good reply
    LINK_FAILED,      //  alarm active, closed, retried through the connect window's backoff
    LINK_RECOVERING,  //  reopened after a failure, in use, alarm active until the first
                      //  good reply
    LINK_STATE_COUNT
} link_state_t;

typedef enum {
    LINK_EV_GOOD_REPLY = 0, //  a complete reply, normal or exception
    LINK_EV_READ_TIMEOUT,   //  no complete good reply by the deadline
    LINK_EV_WRITE_TIMEOUT,  //  the OS did not accept the whole request in time
    LINK_EV_OPENED,         //  connect or port open succeeded
    LINK_EV_OPEN_FAILED,    //  connect or port open failed or timed out
    LINK_EV_CLOSED,         //  the peer closed the link, or an I/O error closed it
    LINK_EV_COUNT
} link_event_t;

//  Actions, a bitmask: the caller performs every bit that is set, in this order.
enum {
    LINK_ACT_NONE = 0,
    //  Raise the I/O Timeout alarm of the link.
    LINK_ACT_RAISE_ALARM = 1 << 0,
    //  The link's outstations are offline: their tags keep their last values
    //  with quality bad-no-comm.
    LINK_ACT_MARK_BAD = 1 << 1,
    //  Close the socket; for a channel, de-assign it: close its socket or port.
    LINK_ACT_CLOSE = 1 << 2,
    //  Reopen the channel at once, not waiting for the backoff; then report
    //  link_opened or link_open_failed.
    LINK_ACT_REASSIGN = 1 << 3,
    //  Reopen through the connect window's backoff (cw_lost, cw_failed, cw_dropped).
    LINK_ACT_RETRY_LATER = 1 << 4,
    //  Clear the I/O Timeout alarm of the link.
    LINK_ACT_CLEAR_ALARM = 1 << 5,
    //  The state changed: publish the event, rewrite the Redis key.
    LINK_ACT_STATE_CHANGED = 1 << 6,
    LINK_ACT_ALL = 0x7f
};

//  One link. The caller embeds it and reads the fields; only the functions
//  below change them. Invariant: alarm_active is true exactly in REASSIGNING,
//  REASSIGNED, FAILED and RECOVERING.
typedef struct {
    link_config_t cfg;
    link_state_t state;
    uint32_t consecutive_read_timeouts;  //  since the last good reply (or reopen after a failure)
    uint32_t consecutive_write_timeouts; //  likewise
    bool alarm_active;                   //  the I/O Timeout alarm is raised
    int64_t last_timeout_ms;             //  `now` of the last counted timeout, -1 if none
    uint64_t failures;                   //  failure episodes (limits reached from HEALTHY)
    int64_t since_ms;                    //  when the current state was entered
} link_fsm_t;

//  Set up a link in state DOWN at `now`. Returns 0, or -1 (and leaves *self
//  untouched) if a limit is 0 or the kind is unknown.
int link_fsm_init(link_fsm_t *self, const link_config_t *config, int64_t now);

//  Events. Each returns the LINK_ACT_* bits the caller must perform.
unsigned link_good_reply(link_fsm_t *self, int64_t now);
unsigned link_read_timeout(link_fsm_t *self, int64_t now);
unsigned link_write_timeout(link_fsm_t *self, int64_t now);
unsigned link_opened(link_fsm_t *self, int64_t now);
unsigned link_open_failed(link_fsm_t *self, int64_t now);
unsigned link_closed(link_fsm_t *self, int64_t now);

//  The same, by event number (for tables and tests).
unsigned link_event(link_fsm_t *self, link_event_t event, int64_t now);

//  True if the link is open and requests may be sent on it (HEALTHY,
//  REASSIGNED, RECOVERING).
bool link_is_open(const link_fsm_t *self);

//  The state as written in Redis (`state` of ioserver:<io>:channel:<ch>):
//  "down", "healthy", "reassigning" (REASSIGNING and REASSIGNED), "failed"
//  (FAILED and RECOVERING).
const char *link_state_name(link_state_t state);

//  The exact state for logs: "down", "healthy", "reassigning", "reassigned",
//  "failed", "recovering".
const char *link_state_detail(link_state_t state);

//  Name of an event for logs: "good-reply", "read-timeout", ...
const char *link_event_name(link_event_t event);

//  Name of one action bit for logs: "raise-alarm", "mark-bad", "close",
//  "reassign", "retry-later", "clear-alarm", "state-changed"; "?" for anything
//  that is not exactly one known bit.
const char *link_action_name(unsigned action);

//  Write the names of the bits of `actions` into buf, joined by ',' ("none"
//  if no bit is set), NUL-terminated and truncated to len. Returns the length
//  the full text needs, like snprintf.
size_t link_actions_text(unsigned actions, char *buf, size_t len);

#endif
