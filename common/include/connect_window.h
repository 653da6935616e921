/*  connect_window: the I/O server's own connect scheduler.

    The field lesson (seed 000): when an operating system caps half-open
    connections, dead devices take every slot, queued attempts time out before
    they have even started, and a device that comes back is never reconnected.
    So the I/O server never relies on the OS for this: at most `window`
    connection attempts are in flight, and this module decides which device
    gets the next slot. It is pure: no sockets, no clock; `now` (monotonic ms)
    is passed in, so every decision is unit-tested without sleeping.

    Rules:
    - The connect timeout starts when the attempt starts (cw_start), never
      while a device waits for a slot; waiting is not a failure.
    - Three classes of waiting device, each in a heap ordered by the time it
      became eligible:
        recent: online less than `recent_ms` ago;
        new:    never tried;
        dead:   tried, failed, and not online recently.
      A free slot goes to the eligible recent device first, then new, then
      dead. New and dead attempts may hold at most window - reserve slots, so
      a recent device finds a slot at once while fewer than `reserve` recent
      devices compete. That bound does not grow with the number of new or dead
      devices; the price is that first discovery at start-up uses
      window - reserve slots.
    - A recent device is retried every reconnect_min (+0..25% jitter) and its
      attempt times out after an adaptive timeout: 4 x its smoothed observed
      connect time, within [timeout_min, timeout]. A dead device backs off
      exponentially from reconnect_min to reconnect_max with jitter
      ("equal jitter": half fixed, half random) and gets the full timeout.
    - When dead devices wait longer than reconnect_max past their due time, the
      window cannot probe them as often as configured: cw_stats says so
      (starved) and the caller logs it and writes it to Redis.
*/
#ifndef CONNECT_WINDOW_H_INCLUDED
#define CONNECT_WINDOW_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t window;           //  attempts in flight at most, >= 1
    uint32_t timeout_ms;       //  full connect timeout
    uint32_t timeout_min_ms;   //  floor of the adaptive timeout (<= timeout_ms)
    uint32_t reconnect_min_ms; //  first retry delay
    uint32_t reconnect_max_ms; //  longest retry delay
    uint32_t recent_ms;        //  a device lost less than this ago is recent
    int32_t reserve;           //  slots dead probes may not take; < 0 means default
                               //  (window / 5, at least 1 when window >= 2)
    uint64_t seed;             //  jitter generator seed (any value)
} cw_config_t;

//  What a device is doing, as reported in Redis (`state` of a device key).
typedef enum {
    CW_IDLE = 0,   //  not wanted (not added or cancelled)
    CW_OFFLINE,    //  waiting for its retry time
    CW_QUEUED,     //  eligible, waiting for a free slot
    CW_CONNECTING, //  attempt in flight
    CW_ONLINE      //  connected
} cw_state_t;

typedef struct {
    size_t entries;        //  devices known
    size_t in_flight;      //  attempts in flight (<= window)
    size_t in_flight_dead; //  of which for new or dead devices (<= window - reserve)
    size_t queued;         //  eligible now, waiting for a slot
    size_t waiting;        //  backing off until their retry time
    size_t online;
    size_t dead;         //  waiting or queued devices of the dead class
    int64_t dead_lag_ms; //  how long the longest-waiting eligible dead device is overdue
    bool starved;        //  dead_lag_ms > reconnect_max_ms
    uint64_t attempts;   //  attempts started, ever
    uint64_t timeouts;   //  attempts that expired
    uint64_t failures;   //  attempts that failed otherwise (refused, unreachable)
} cw_stats_t;

typedef struct _cw_t cw_t;

//  Create a scheduler. Returns NULL if the config is invalid (window 0,
//  timeout_min > timeout, reconnect_min > reconnect_max, zero times).
//  Caller owns the return value.
cw_t *cw_new(const cw_config_t *config);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void cw_destroy(cw_t **self_p);

//  Add a device; returns its id (0, 1, 2, ...), or -1 on allocation failure.
//  It starts idle: call cw_want to have it connected.
int cw_add(cw_t *self);

//  The device wants a connection: from idle it becomes eligible now, in the
//  recent class if it was never tried. No effect in any other state.
void cw_want(cw_t *self, int id, int64_t now);

//  The device no longer wants a connection (shutting down, unconfigured).
//  An attempt in flight is forgotten and its slot freed. Becomes idle.
void cw_cancel(cw_t *self, int id);

//  Start the next attempt if a slot is free and a device is eligible.
//  Returns 1 and sets *id and *timeout_ms (the attempt's own timeout, which
//  starts now), or 0 if nothing should start now.
int cw_start(cw_t *self, int64_t now, int *id, uint32_t *timeout_ms);

//  Return 1 and set *id for one attempt whose timeout has passed; that
//  attempt counts as failed and its device backs off. 0 if none.
int cw_expired(cw_t *self, int64_t now, int *id);

//  The attempt of `id` succeeded (connect completed): it is online and its
//  connect time feeds the adaptive timeout.
void cw_connected(cw_t *self, int id, int64_t now);

//  The attempt of `id` failed before its timeout (refused, unreachable).
void cw_failed(cw_t *self, int id, int64_t now);

//  An online device lost its connection (or the caller closed it): it is
//  retried after reconnect_min, in the recent class.
void cw_lost(cw_t *self, int id, int64_t now);

//  The device answered on its connection: its consecutive failures are
//  forgotten. (A TCP connect alone does not prove the device works.)
void cw_answered(cw_t *self, int id);

//  A connection of `id` was closed before the device ever answered on it
//  (it accepts TCP but its application is dead): that counts as a failed
//  attempt, not as a loss, so it does not make the device recent again.
void cw_dropped(cw_t *self, int id, int64_t now);

//  Earliest time at which cw_start or cw_expired may return 1; INT64_MAX if
//  nothing is pending. A caller may sleep until then.
int64_t cw_next_event(const cw_t *self, int64_t now);

//  State of one device at `now`.
cw_state_t cw_state(const cw_t *self, int id, int64_t now);

//  Name of a state as written in Redis: "idle", "offline", "queued",
//  "connecting", "online".
const char *cw_state_name(cw_state_t state);

//  Consecutive failed attempts of a device (0 once it answered).
uint32_t cw_failures(const cw_t *self, int id);

//  Smoothed connect time of a device in ms, 0 if never measured.
uint32_t cw_connect_ms(const cw_t *self, int id);

//  Fill *stats.
void cw_stats(const cw_t *self, int64_t now, cw_stats_t *stats);

#endif
