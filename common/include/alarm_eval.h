/*  alarm_eval: the ISA-18.2 lifecycle of one alarm (issue 5).

    The alarm service keeps one al_t per alarm: one per limit of an analog
    tag ("<TAG>.HIHI", "<TAG>.HI", "<TAG>.LO", "<TAG>.LOLO"), one per state
    alarm of a digital tag ("<TAG>.STATE"), and one per communication alarm
    ("<TAG>.COMM", an I/O server's device or channel). The service feeds it
    values, conditions, operator requests and a timer; every call returns the
    events it caused, which the caller stamps (seq, time, alarm id, user,
    priority, message) and turns into AlarmEvent records. The module is pure:
    no I/O, no clock, no allocation; `now` (wall ms) is passed in.

    Condition
    - HI and HIHI: the condition sets when value > limit and resets only when
      value < limit - deadband; LO and LOLO: sets when value < limit, resets
      only when value > limit + deadband. Inside the deadband it keeps its
      last value, so a value oscillating around the limit raises once.
    - STATE: the condition is value == limit exactly (e.g. 1 for a tripped
      pump). COMM: the condition is whatever the caller says (tag quality
      bad, device offline, channel I/O timeout), through al_on_condition.
    - On-delay: the alarm becomes active once the condition has held
      continuously for on_delay_ms (at now >= start + on_delay_ms, found by
      the next value or by al_tick); if it resets earlier nothing happens.
      Clearing has no delay.
    - Bad quality: al_on_value(good = false), or a NaN value, freezes a limit
      or state alarm (the stale value is not evaluated, the state is kept)
      and cancels a running on-delay, since the condition is no longer known
      to hold; the on-delay starts again from the next good value that still
      meets the condition. The caller raises the tag's COMM alarm instead.

    Lifecycle (numbered as proto AlarmState; events as AlarmEvent.Kind)
        NORMAL        --raise--> UNACK_ACTIVE
        UNACK_ACTIVE  --ack----> ACK_ACTIVE     --clear--> UNACK_CLEARED
        ACK_ACTIVE    --clear--> NORMAL
        UNACK_CLEARED --ack----> NORMAL         --raise--> UNACK_ACTIVE
    Acknowledging NORMAL or ACK_ACTIVE is an error (AL_ERR_NOT_UNACKED), not
    a transition.

    Shelve
    - For 1 ms .. AL_SHELVE_MAX_MS (30 days); anything else is
      AL_ERR_DURATION. Shelving a shelved alarm sets a new end time (another
      SHELVE event). It ends at now >= until_ms (found by al_tick, al_on_value
      or al_on_condition) or by al_unshelve.
    - While shelved the condition and the lifecycle run as usual (it may be
      acknowledged too) and RAISE, CLEAR and ACK events are produced with
      shelved = true, so the journal is complete; the caller does not
      annunciate them.
    - When the shelve ends the alarm shows what the process does now: an
      active alarm keeps its state (UNACK_ACTIVE still wants an
      acknowledgement, ACK_ACTIVE stays acknowledged), an UNACK_CLEARED alarm
      returns to NORMAL (the UNSHELVE event carries the new state).

    Out of service
    - Removal puts the alarm in NORMAL (OUT_OF_SERVICE event) and ends a
      shelve. While out of service the condition and the on-delay are still
      tracked but produce no events and the lifecycle stays NORMAL; it cannot
      be shelved or acknowledged.
    - Return to service: an IN_SERVICE event (NORMAL), followed at once by a
      RAISE if the condition is active (its on-delay already served).

    Timers and requests
    - al_on_value, al_on_condition and al_tick first apply every timer due at
      `now`, in time order (an on-delay that expired, a shelve that ended),
      so the outcome does not depend on how late the tick is.
    - Requests (al_ack, al_shelve, al_unshelve, al_out_of_service,
      al_in_service) act on the alarm as the operator last saw it and apply
      no timer: an acknowledgement never acknowledges a raise the operator
      could not have seen yet. Calling al_tick at al_next_due keeps that
      difference within the tick's latency.

    Restart
    - al_restore sets the lifecycle from the alarm's last journal event
      (state, shelved and its end, out of service); the condition is taken as
      active exactly when the state is UNACK_ACTIVE or ACK_ACTIVE. Then the
      first value is evaluated as usual: an acknowledged alarm still active
      stays ACK_ACTIVE with no event; an active alarm whose condition is gone
      clears (ACK_ACTIVE -> NORMAL, UNACK_ACTIVE -> UNACK_CLEARED); a NORMAL
      or UNACK_CLEARED alarm whose condition is met raises, after its on-delay
      counted from that first value (the restart). A condition the journal
      said was active is therefore never delayed again, and the deadband
      applies across the restart.
*/
#ifndef ALARM_EVAL_H_INCLUDED
#define ALARM_EVAL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Events one call produces at most: a timer's UNSHELVE and RAISE, then the
//  CLEAR of the value itself. Output arrays hold at least this many.
#define AL_EVENTS_MAX 3

//  Longest shelve: 30 days.
#define AL_SHELVE_MAX_MS (30LL * 24 * 3600 * 1000)

typedef enum {
    AL_HIHI = 0, //  analog, high-high limit
    AL_HI,       //  analog, high limit
    AL_LO,       //  analog, low limit
    AL_LOLO,     //  analog, low-low limit
    AL_STATE,    //  digital: active while value == limit
    AL_COMM,     //  active while the caller's condition is true
    AL_TYPE_COUNT
} al_type_t;

//  Lifecycle states, numbered as proto AlarmState.
typedef enum {
    AL_NORMAL = 0,        //  not active, nothing to acknowledge
    AL_UNACK_ACTIVE = 1,  //  active, not acknowledged
    AL_ACK_ACTIVE = 2,    //  active, acknowledged
    AL_UNACK_CLEARED = 3, //  no longer active, not acknowledged yet
    AL_STATE_COUNT
} al_state_t;

//  Event kinds, numbered as proto AlarmEvent.Kind.
typedef enum {
    AL_EV_RAISE = 0,
    AL_EV_CLEAR = 1,
    AL_EV_ACK = 2,
    AL_EV_SHELVE = 3,
    AL_EV_UNSHELVE = 4,
    AL_EV_OUT_OF_SERVICE = 5,
    AL_EV_IN_SERVICE = 6,
    AL_EV_COUNT
} al_kind_t;

//  Errors; every function returning int returns one of these or a count >= 0.
enum {
    AL_ERR_INVALID = -1,        //  bad config or bad journal state
    AL_ERR_NOT_UNACKED = -2,    //  al_ack: nothing to acknowledge
    AL_ERR_DURATION = -3,       //  al_shelve: duration not in 1 ms .. AL_SHELVE_MAX_MS
    AL_ERR_NOT_SHELVED = -4,    //  al_unshelve: not shelved
    AL_ERR_OUT_OF_SERVICE = -5, //  al_shelve, al_out_of_service: already out of service
    AL_ERR_IN_SERVICE = -6      //  al_in_service: not out of service
};

typedef struct {
    al_type_t type;
    double limit;         //  analog: the trip point; STATE: the alarm value; COMM: unused
    double deadband;      //  analog: >= 0, see the header comment; STATE, COMM: unused
    uint32_t on_delay_ms; //  condition must hold this long before the alarm is active; 0: at once
} al_config_t;

//  One event; the caller adds seq, ts_ms (now), alarm id, user, comment, etc.
typedef struct {
    al_kind_t kind;
    al_state_t state;    //  the state after the event
    bool shelved;        //  after the event
    bool out_of_service; //  after the event
    bool has_value;      //  `value` is set (RAISE and CLEAR of limit and state alarms)
    double value;        //  the value that raised or cleared it (for an on-delay: the
                         //  last good value)
    int64_t until_ms;    //  SHELVE: when the shelve ends; otherwise 0
} al_event_t;

//  What the journal says of an alarm: the fields of its last AlarmEvent.
typedef struct {
    al_state_t state;
    bool shelved;
    int64_t until_ms; //  if shelved
    bool out_of_service;
} al_saved_t;

//  One alarm. Plain data: the caller embeds it (an array of 100,000 is fine)
//  and may read the fields; only the functions below change them.
typedef struct {
    al_config_t cfg;
    al_state_t state;         //  lifecycle; NORMAL while out of service
    bool active;              //  the condition after the on-delay (tracked while
                              //  shelved or out of service)
    bool cond;                //  the condition with its deadband, before the on-delay
    bool frozen;              //  limit or state alarm: the last value had bad quality
    bool shelved;             //  suppressed until until_ms
    bool out_of_service;      //  removed from service by hand
    bool has_value;           //  `value` holds a good value
    double value;             //  the last good value
    int64_t pending_since_ms; //  cond && !active: since when it holds; -1: no on-delay running
    int64_t until_ms;         //  shelved: when the shelve ends
} al_t;

//  Set up an alarm in NORMAL, in service, not shelved, condition not met.
//  Returns 0, or AL_ERR_INVALID (and leaves *self untouched) for an unknown
//  type, an analog or state limit that is not finite, or an analog deadband
//  that is negative or not finite.
int al_init(al_t *self, const al_config_t *config);

//  Restore the lifecycle from the journal (see "Restart"), right after
//  al_init and before the first value. A shelve ending more than
//  AL_SHELVE_MAX_MS after `now` ends at now + AL_SHELVE_MAX_MS. Returns 0, or
//  AL_ERR_INVALID (and leaves *self untouched) for a state out of range or an
//  out-of-service alarm that is shelved or not NORMAL.
int al_restore(al_t *self, const al_saved_t *saved, int64_t now);

//  A new value of a limit or state alarm's tag, with its quality: good
//  values are evaluated; bad ones, and NaN, only freeze the alarm. Applies
//  the timers due at `now` first. Writes up to AL_EVENTS_MAX events to out
//  and returns how many. Asserts the alarm is not a COMM alarm.
int al_on_value(al_t *self, double value, bool good, int64_t now, al_event_t *out);

//  The condition of a COMM alarm is `met` at `now` (events without a value).
//  Applies due timers first. Returns the number of events written to out
//  (up to AL_EVENTS_MAX). Asserts the alarm is a COMM alarm.
int al_on_condition(al_t *self, bool met, int64_t now, al_event_t *out);

//  Apply the timers due at `now`: an on-delay that expired raises, a shelve
//  that ended unshelves. Returns the number of events written to out (up to
//  AL_EVENTS_MAX; 2 in fact).
int al_tick(al_t *self, int64_t now, al_event_t *out);

//  The earliest time at which al_tick would produce an event; INT64_MAX if
//  no timer runs. A caller may keep its alarms in a timer heap by this.
int64_t al_next_due(const al_t *self);

//  Operator acknowledges: UNACK_ACTIVE -> ACK_ACTIVE, UNACK_CLEARED ->
//  NORMAL, one ACK event. Returns 1, or AL_ERR_NOT_UNACKED with no change.
int al_ack(al_t *self, int64_t now, al_event_t *out);

//  Shelve for duration_ms from now: one SHELVE event with until_ms. Returns
//  1, or AL_ERR_DURATION or AL_ERR_OUT_OF_SERVICE with no change.
int al_shelve(al_t *self, int64_t duration_ms, int64_t now, al_event_t *out);

//  End a shelve by hand: one UNSHELVE event (an UNACK_CLEARED alarm returns
//  to NORMAL). Returns 1, or AL_ERR_NOT_SHELVED with no change.
int al_unshelve(al_t *self, int64_t now, al_event_t *out);

//  Remove from service: NORMAL, shelve ended, one OUT_OF_SERVICE event.
//  Returns 1, or AL_ERR_OUT_OF_SERVICE with no change.
int al_out_of_service(al_t *self, int64_t now, al_event_t *out);

//  Return to service: an IN_SERVICE event, then a RAISE if the condition is
//  active. Returns 1 or 2, or AL_ERR_IN_SERVICE with no change.
int al_in_service(al_t *self, int64_t now, al_event_t *out);

//  True if the operator should see the alarm in the active list and hear
//  it: not NORMAL, not shelved, in service.
bool al_annunciated(const al_t *self);

//  Write "<source>.<TYPE>" (e.g. "PLC1.LEVEL.HI") into buf, NUL-terminated
//  and truncated to len. Returns the length the full id needs, like snprintf.
size_t al_format_id(char *buf, size_t len, const char *source, al_type_t type);

//  Names, as in the proto and the alarm ids: "HIHI", "HI", "LO", "LOLO",
//  "STATE", "COMM"; "NORMAL", "UNACK_ACTIVE", ...; "RAISE", "CLEAR", ...;
//  "?" for a number out of range.
const char *al_type_name(al_type_t type);
const char *al_state_name(al_state_t state);
const char *al_kind_name(al_kind_t kind);

//  The type named `name` (case-sensitive, as al_type_name writes it), or -1.
int al_type_parse(const char *name);

//  What an error code means, for the AlarmReply `error` text: "not
//  unacknowledged", ...; "ok" for 0 and counts, "unknown error" otherwise.
const char *al_strerror(int code);

#endif
