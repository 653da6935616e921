/*  link_fsm: the timeout escalation of one link. See link_fsm.h for the
    rules and the transition table; this file is that table as code, one
    function per event, each a switch over the states.
*/
#include "link_fsm.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

//  Move to `state` at `now`; returns LINK_ACT_STATE_CHANGED if it is a change.
static unsigned s_enter(link_fsm_t *self, link_state_t state, int64_t now)
{
    if (self->state == state)
        return LINK_ACT_NONE;
    self->state = state;
    self->since_ms = now;
    self->alarm_active = state == LINK_REASSIGNING || state == LINK_REASSIGNED ||
                         state == LINK_FAILED || state == LINK_RECOVERING;
    return LINK_ACT_STATE_CHANGED;
}

static void s_reset_counters(link_fsm_t *self)
{
    self->consecutive_read_timeouts = 0;
    self->consecutive_write_timeouts = 0;
}

//  A counted timeout on an open link: `counter` has just been incremented.
static unsigned s_timeout(link_fsm_t *self, uint32_t counter, uint32_t limit, int64_t now)
{
    self->last_timeout_ms = now;
    if (counter < limit)
        return LINK_ACT_NONE; //  intermittent until proven otherwise
    switch (self->state) {
    case LINK_HEALTHY:
        //  A new failure episode.
        self->failures++;
        if (self->cfg.kind == LINK_CHANNEL)
            return LINK_ACT_RAISE_ALARM | LINK_ACT_MARK_BAD | LINK_ACT_CLOSE | LINK_ACT_REASSIGN |
                   s_enter(self, LINK_REASSIGNING, now);
        return LINK_ACT_RAISE_ALARM | LINK_ACT_MARK_BAD | LINK_ACT_CLOSE | LINK_ACT_RETRY_LATER |
               s_enter(self, LINK_FAILED, now);
    case LINK_REASSIGNED:
    case LINK_RECOVERING:
        //  Failed again before it ever answered: the same episode, the alarm
        //  is up and the tags are bad already; no second re-assign.
        return LINK_ACT_CLOSE | LINK_ACT_RETRY_LATER | s_enter(self, LINK_FAILED, now);
    default:
        assert(0 && "s_timeout on a closed link");
        return LINK_ACT_NONE;
    }
}

unsigned link_good_reply(link_fsm_t *self, int64_t now)
{
    assert(self);
    switch (self->state) {
    case LINK_HEALTHY:
        s_reset_counters(self);
        return LINK_ACT_NONE;
    case LINK_REASSIGNED:
    case LINK_RECOVERING:
        s_reset_counters(self);
        return LINK_ACT_CLEAR_ALARM | s_enter(self, LINK_HEALTHY, now);
    default:
        return LINK_ACT_NONE; //  closed: a late event from the old connection
    }
}

unsigned link_read_timeout(link_fsm_t *self, int64_t now)
{
    assert(self);
    if (!link_is_open(self))
        return LINK_ACT_NONE;
    if (self->consecutive_read_timeouts < UINT32_MAX)
        self->consecutive_read_timeouts++;
    return s_timeout(self, self->consecutive_read_timeouts, self->cfg.max_read_timeouts, now);
}

unsigned link_write_timeout(link_fsm_t *self, int64_t now)
{
    assert(self);
    if (!link_is_open(self))
        return LINK_ACT_NONE;
    if (self->consecutive_write_timeouts < UINT32_MAX)
        self->consecutive_write_timeouts++;
    return s_timeout(self, self->consecutive_write_timeouts, self->cfg.max_write_timeouts, now);
}

unsigned link_opened(link_fsm_t *self, int64_t now)
{
    assert(self);
    switch (self->state) {
    case LINK_DOWN:
        //  Counters survive a plain reconnect (see the header).
        return s_enter(self, LINK_HEALTHY, now);
    case LINK_REASSIGNING:
        s_reset_counters(self); //  the trial starts from 0
        return s_enter(self, LINK_REASSIGNED, now);
    case LINK_FAILED:
        s_reset_counters(self);
        return s_enter(self, LINK_RECOVERING, now);
    default:
        return LINK_ACT_NONE; //  already open
    }
}

unsigned link_open_failed(link_fsm_t *self, int64_t now)
{
    assert(self);
    switch (self->state) {
    case LINK_DOWN:
        return LINK_ACT_RETRY_LATER;
    case LINK_REASSIGNING:
        //  The one re-assign did not work: failed until the fault clears.
        return LINK_ACT_RETRY_LATER | s_enter(self, LINK_FAILED, now);
    case LINK_FAILED:
        return LINK_ACT_RETRY_LATER;
    default:
        return LINK_ACT_NONE; //  open: nothing was being opened
    }
}

unsigned link_closed(link_fsm_t *self, int64_t now)
{
    assert(self);
    switch (self->state) {
    case LINK_HEALTHY:
        return LINK_ACT_MARK_BAD | LINK_ACT_RETRY_LATER | s_enter(self, LINK_DOWN, now);
    case LINK_REASSIGNED:
    case LINK_RECOVERING:
        return LINK_ACT_RETRY_LATER | s_enter(self, LINK_FAILED, now);
    default:
        return LINK_ACT_NONE; //  closed already (perhaps by the caller on LINK_ACT_CLOSE)
    }
}

unsigned link_event(link_fsm_t *self, link_event_t event, int64_t now)
{
    switch (event) {
    case LINK_EV_GOOD_REPLY:
        return link_good_reply(self, now);
    case LINK_EV_READ_TIMEOUT:
        return link_read_timeout(self, now);
    case LINK_EV_WRITE_TIMEOUT:
        return link_write_timeout(self, now);
    case LINK_EV_OPENED:
        return link_opened(self, now);
    case LINK_EV_OPEN_FAILED:
        return link_open_failed(self, now);
    case LINK_EV_CLOSED:
        return link_closed(self, now);
    default:
        assert(0 && "unknown link event");
        return LINK_ACT_NONE;
    }
}

int link_fsm_init(link_fsm_t *self, const link_config_t *config, int64_t now)
{
    if (!self || !config || config->max_read_timeouts == 0 || config->max_write_timeouts == 0 ||
        (config->kind != LINK_SOCKET && config->kind != LINK_CHANNEL))
        return -1;
    memset(self, 0, sizeof *self);
    self->cfg = *config;
    self->state = LINK_DOWN;
    self->last_timeout_ms = -1;
    self->since_ms = now;
    return 0;
}

bool link_is_open(const link_fsm_t *self)
{
    return self->state == LINK_HEALTHY || self->state == LINK_REASSIGNED ||
           self->state == LINK_RECOVERING;
}

const char *link_state_name(link_state_t state)
{
    switch (state) {
    case LINK_DOWN:
        return "down";
    case LINK_HEALTHY:
        return "healthy";
    case LINK_REASSIGNING:
    case LINK_REASSIGNED:
        return "reassigning";
    case LINK_FAILED:
    case LINK_RECOVERING:
        return "failed";
    default:
        return "?";
    }
}

const char *link_state_detail(link_state_t state)
{
    static const char *const names[LINK_STATE_COUNT] = {"down",       "healthy", "reassigning",
                                                        "reassigned", "failed",  "recovering"};
    return (unsigned)state < LINK_STATE_COUNT ? names[state] : "?";
}

const char *link_event_name(link_event_t event)
{
    static const char *const names[LINK_EV_COUNT] = {"good-reply", "read-timeout", "write-timeout",
                                                     "opened",     "open-failed",  "closed"};
    return (unsigned)event < LINK_EV_COUNT ? names[event] : "?";
}

static const char *const s_action_names[] = {
    "raise-alarm", "mark-bad", "close", "reassign", "retry-later", "clear-alarm", "state-changed"};
#define S_NACTIONS (sizeof s_action_names / sizeof s_action_names[0])

const char *link_action_name(unsigned action)
{
    for (size_t i = 0; i < S_NACTIONS; i++)
        if (action == 1u << i)
            return s_action_names[i];
    return "?";
}

size_t link_actions_text(unsigned actions, char *buf, size_t len)
{
    size_t need = 0;
    if (len > 0)
        buf[0] = '\0';
    if ((actions & LINK_ACT_ALL) == 0)
        return (size_t)snprintf(buf, len, "none");
    for (size_t i = 0; i < S_NACTIONS; i++) {
        if (!(actions & (1u << i)))
            continue;
        const char *name = s_action_names[i];
        int n = snprintf(need < len ? buf + need : NULL, need < len ? len - need : 0, "%s%s",
                         need ? "," : "", name);
        need += (size_t)n;
    }
    return need;
}
