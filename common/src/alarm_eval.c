/*  alarm_eval: the lifecycle of one alarm. See alarm_eval.h for the rules.

    Two layers. The condition layer turns values into `cond` (with the
    deadband) and `cond` into `active` (with the on-delay). The lifecycle
    layer turns changes of `active` and operator requests into states and
    events. Invariants, checked by s_check:
        in service:     active == (state is UNACK_ACTIVE or ACK_ACTIVE)
        out of service: state == NORMAL and not shelved
        an on-delay runs (pending_since_ms >= 0) only while cond && !active
        && !frozen
*/
#include "alarm_eval.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static bool s_state_active(al_state_t state)
{
    return state == AL_UNACK_ACTIVE || state == AL_ACK_ACTIVE;
}

static void s_check(const al_t *self)
{
    assert(self->out_of_service || self->active == s_state_active(self->state));
    assert(!self->out_of_service || (self->state == AL_NORMAL && !self->shelved));
    assert(self->pending_since_ms < 0 || (self->cond && !self->active && !self->frozen));
    (void)self;
}

//  a + b without overflow; b >= 0.
static int64_t s_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

//  Append an event describing the alarm as it is now; returns n + 1.
static int s_emit(const al_t *self, al_kind_t kind, bool with_value, al_event_t *out, int n)
{
    assert(n < AL_EVENTS_MAX);
    al_event_t *ev = &out[n];
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->state = self->state;
    ev->shelved = self->shelved;
    ev->out_of_service = self->out_of_service;
    ev->has_value = with_value && self->has_value;
    ev->value = ev->has_value ? self->value : 0;
    ev->until_ms = kind == AL_EV_SHELVE ? self->until_ms : 0;
    return n + 1;
}

//  --------------------------------------------------------------------------
//  Lifecycle

//  The condition became active (its on-delay served).
static int s_raise(al_t *self, al_event_t *out, int n)
{
    assert(!self->active);
    self->active = true;
    self->pending_since_ms = -1;
    if (self->out_of_service)
        return n; //  tracked, not reported
    assert(self->state == AL_NORMAL || self->state == AL_UNACK_CLEARED);
    self->state = AL_UNACK_ACTIVE;
    return s_emit(self, AL_EV_RAISE, true, out, n);
}

static int s_clear(al_t *self, al_event_t *out, int n)
{
    assert(self->active);
    self->active = false;
    if (self->out_of_service)
        return n;
    assert(s_state_active(self->state));
    self->state = self->state == AL_ACK_ACTIVE ? AL_NORMAL : AL_UNACK_CLEARED;
    return s_emit(self, AL_EV_CLEAR, true, out, n);
}

static int s_unshelve(al_t *self, al_event_t *out, int n)
{
    assert(self->shelved);
    self->shelved = false;
    self->until_ms = 0;
    //  The alarm now shows what the process does: a return to normal that
    //  happened while shelved leaves nothing to acknowledge.
    if (self->state == AL_UNACK_CLEARED)
        self->state = AL_NORMAL;
    return s_emit(self, AL_EV_UNSHELVE, false, out, n);
}

//  --------------------------------------------------------------------------
//  Condition

//  When the running on-delay ends; INT64_MAX if none runs.
static int64_t s_delay_due(const al_t *self)
{
    if (self->pending_since_ms < 0)
        return INT64_MAX;
    return s_add(self->pending_since_ms, self->cfg.on_delay_ms);
}

//  Apply every timer due at `now`, earliest first.
static int s_timers(al_t *self, int64_t now, al_event_t *out, int n)
{
    for (;;) {
        int64_t delay_due = s_delay_due(self);
        int64_t shelve_due = self->shelved ? self->until_ms : INT64_MAX;
        if (delay_due <= now && delay_due <= shelve_due)
            n = s_raise(self, out, n);
        else if (shelve_due <= now)
            n = s_unshelve(self, out, n);
        else
            break;
    }
    return n;
}

//  The condition (with its deadband) is `cond` at `now`: run the on-delay.
static int s_evaluate(al_t *self, bool cond, int64_t now, al_event_t *out, int n)
{
    self->cond = cond;
    if (!cond) {
        self->pending_since_ms = -1; //  went away before its on-delay: nothing happened
        if (self->active)
            n = s_clear(self, out, n);
    } else if (!self->active) {
        if (self->pending_since_ms < 0)
            self->pending_since_ms = now;
        if (s_delay_due(self) <= now)
            n = s_raise(self, out, n);
    }
    return n;
}

//  The condition of a limit or state alarm for a good value.
static bool s_condition(const al_t *self, double v)
{
    double limit = self->cfg.limit, deadband = self->cfg.deadband;
    switch (self->cfg.type) {
    case AL_HIHI:
    case AL_HI:
        if (v > limit)
            return true;
        if (v < limit - deadband)
            return false;
        return self->cond;
    case AL_LO:
    case AL_LOLO:
        if (v < limit)
            return true;
        if (v > limit + deadband)
            return false;
        return self->cond;
    case AL_STATE:
        return v == limit;
    default:
        assert(0 && "s_condition of a COMM alarm");
        return false;
    }
}

//  --------------------------------------------------------------------------

int al_init(al_t *self, const al_config_t *config)
{
    assert(self);
    if (!config || (int)config->type < 0 || config->type >= AL_TYPE_COUNT)
        return AL_ERR_INVALID;
    if (config->type != AL_COMM && !isfinite(config->limit))
        return AL_ERR_INVALID;
    if (config->type <= AL_LOLO && !(isfinite(config->deadband) && config->deadband >= 0))
        return AL_ERR_INVALID;
    memset(self, 0, sizeof *self);
    self->cfg = *config;
    self->state = AL_NORMAL;
    self->pending_since_ms = -1;
    s_check(self);
    return 0;
}

int al_restore(al_t *self, const al_saved_t *saved, int64_t now)
{
    assert(self && saved);
    if ((int)saved->state < 0 || saved->state >= AL_STATE_COUNT)
        return AL_ERR_INVALID;
    if (saved->out_of_service && (saved->state != AL_NORMAL || saved->shelved))
        return AL_ERR_INVALID;
    self->state = saved->state;
    self->out_of_service = saved->out_of_service;
    //  What the journal says was active stays active, deadband included, until
    //  a value says otherwise. Out of service the condition is unknown.
    self->active = s_state_active(saved->state);
    self->cond = self->active;
    self->frozen = false;
    self->pending_since_ms = -1;
    self->shelved = saved->shelved;
    self->until_ms = 0;
    if (saved->shelved) {
        int64_t latest = s_add(now, AL_SHELVE_MAX_MS);
        self->until_ms = saved->until_ms > latest ? latest : saved->until_ms;
    }
    s_check(self);
    return 0;
}

int al_on_value(al_t *self, double value, bool good, int64_t now, al_event_t *out)
{
    assert(self && out);
    assert(self->cfg.type != AL_COMM);
    int n = s_timers(self, now, out, 0);
    if (!good || isnan(value)) {
        //  The stale value is not evaluated: keep the state, and stop an
        //  on-delay, since the condition is no longer known to hold.
        self->frozen = true;
        self->pending_since_ms = -1;
    } else {
        self->frozen = false;
        bool cond = s_condition(self, value);
        self->value = value;
        self->has_value = true;
        n = s_evaluate(self, cond, now, out, n);
    }
    s_check(self);
    return n;
}

int al_on_condition(al_t *self, bool met, int64_t now, al_event_t *out)
{
    assert(self && out);
    assert(self->cfg.type == AL_COMM);
    int n = s_timers(self, now, out, 0);
    n = s_evaluate(self, met, now, out, n);
    s_check(self);
    return n;
}

int al_tick(al_t *self, int64_t now, al_event_t *out)
{
    assert(self && out);
    int n = s_timers(self, now, out, 0);
    s_check(self);
    return n;
}

int64_t al_next_due(const al_t *self)
{
    assert(self);
    int64_t due = s_delay_due(self);
    if (self->shelved && self->until_ms < due)
        due = self->until_ms;
    return due;
}

int al_ack(al_t *self, int64_t now, al_event_t *out)
{
    assert(self && out);
    if (self->state == AL_UNACK_ACTIVE)
        self->state = AL_ACK_ACTIVE;
    else if (self->state == AL_UNACK_CLEARED)
        self->state = AL_NORMAL;
    else
        return AL_ERR_NOT_UNACKED;
    s_check(self);
    return s_emit(self, AL_EV_ACK, false, out, 0);
}

int al_shelve(al_t *self, int64_t duration_ms, int64_t now, al_event_t *out)
{
    assert(self && out);
    if (duration_ms < 1 || duration_ms > AL_SHELVE_MAX_MS)
        return AL_ERR_DURATION;
    if (self->out_of_service)
        return AL_ERR_OUT_OF_SERVICE;
    self->shelved = true;
    self->until_ms = s_add(now, duration_ms);
    s_check(self);
    return s_emit(self, AL_EV_SHELVE, false, out, 0);
}

int al_unshelve(al_t *self, int64_t now, al_event_t *out)
{
    assert(self && out);
    if (!self->shelved)
        return AL_ERR_NOT_SHELVED;
    int n = s_unshelve(self, out, 0);
    s_check(self);
    return n;
}

int al_out_of_service(al_t *self, int64_t now, al_event_t *out)
{
    assert(self && out);
    if (self->out_of_service)
        return AL_ERR_OUT_OF_SERVICE;
    self->out_of_service = true;
    self->shelved = false;
    self->until_ms = 0;
    self->state = AL_NORMAL;
    s_check(self);
    return s_emit(self, AL_EV_OUT_OF_SERVICE, false, out, 0);
}

int al_in_service(al_t *self, int64_t now, al_event_t *out)
{
    assert(self && out);
    if (!self->out_of_service)
        return AL_ERR_IN_SERVICE;
    self->out_of_service = false;
    int n = s_emit(self, AL_EV_IN_SERVICE, false, out, 0);
    if (self->active) {
        self->state = AL_UNACK_ACTIVE;
        n = s_emit(self, AL_EV_RAISE, true, out, n);
    }
    s_check(self);
    return n;
}

bool al_annunciated(const al_t *self)
{
    assert(self);
    return self->state != AL_NORMAL && !self->shelved && !self->out_of_service;
}

size_t al_format_id(char *buf, size_t len, const char *source, al_type_t type)
{
    int rc = snprintf(buf, len, "%s.%s", source ? source : "", al_type_name(type));
    return rc < 0 ? 0 : (size_t)rc;
}

static const char *s_type_names[AL_TYPE_COUNT] = {"HIHI", "HI", "LO", "LOLO", "STATE", "COMM"};
static const char *s_state_names[AL_STATE_COUNT] = {"NORMAL", "UNACK_ACTIVE", "ACK_ACTIVE",
                                                    "UNACK_CLEARED"};
static const char *s_kind_names[AL_EV_COUNT] = {"RAISE",    "CLEAR",          "ACK",       "SHELVE",
                                                "UNSHELVE", "OUT_OF_SERVICE", "IN_SERVICE"};

const char *al_type_name(al_type_t type)
{
    return (int)type >= 0 && type < AL_TYPE_COUNT ? s_type_names[type] : "?";
}

const char *al_state_name(al_state_t state)
{
    return (int)state >= 0 && state < AL_STATE_COUNT ? s_state_names[state] : "?";
}

const char *al_kind_name(al_kind_t kind)
{
    return (int)kind >= 0 && kind < AL_EV_COUNT ? s_kind_names[kind] : "?";
}

int al_type_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < AL_TYPE_COUNT; i++)
        if (strcmp(name, s_type_names[i]) == 0)
            return i;
    return -1;
}

const char *al_strerror(int code)
{
    switch (code) {
    case AL_ERR_INVALID:
        return "invalid alarm configuration or journal state";
    case AL_ERR_NOT_UNACKED:
        return "not unacknowledged";
    case AL_ERR_DURATION:
        return "shelve duration must be 1 ms to 30 days";
    case AL_ERR_NOT_SHELVED:
        return "not shelved";
    case AL_ERR_OUT_OF_SERVICE:
        return "out of service";
    case AL_ERR_IN_SERVICE:
        return "not out of service";
    default:
        return code >= 0 ? "ok" : "unknown error";
    }
}
