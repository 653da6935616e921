/*  scadactl's alarm commands: alarms, ack, shelve, unshelve, disable, enable. */
#ifndef SCADACTL_ALARMS_H_INCLUDED
#define SCADACTL_ALARMS_H_INCLUDED

#include "site.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool json;
    bool history;          //  alarms --history: journal events
    const char *area;      //  filter (alarms) or every unacknowledged alarm of it (ack)
    uint32_t max_priority; //  alarms: priority 1..max_priority (0: all)
    uint32_t limit;        //  --history: newest N (0: the service's default)
    const char *const *ids;
    size_t nids;
    const char *user;
    const char *comment;
    uint64_t duration_ms; //  shelve
    int timeout_ms;
} scadactl_alarm_opts_t;

//  alarms [--area A] [--priority N] [--history [--limit N]] [ID...]
int scadactl_alarms(const site_t *site, const scadactl_alarm_opts_t *opts);

//  ack ID... | ack --all-area AREA; shelve ID... DURATION; unshelve ID...;
//  disable ID... (out of service); enable ID... (back in service).
int scadactl_alarm_action(const site_t *site, const char *cmd, const scadactl_alarm_opts_t *opts);

//  The active alarm list kept fresh without blocking, for a screen that also
//  shows live values (watch --alarms): LIST is asked every 2 s on a DEALER,
//  and the answer read whenever it is there.
typedef struct _scadactl_alarm_view_t scadactl_alarm_view_t;
scadactl_alarm_view_t *scadactl_alarm_view_new(const site_t *site);
void scadactl_alarm_view_destroy(scadactl_alarm_view_t **self_p);
//  Send and receive what is due; true when the list changed.
bool scadactl_alarm_view_poll(scadactl_alarm_view_t *self);
//  A heading and at most max_rows alarms, most urgent first (priority, then
//  unacknowledged, then newest).
void scadactl_alarm_view_print(scadactl_alarm_view_t *self, int max_rows);

//  "90s", "15m", "2h", "1d", "500ms", "30" (seconds) -> ms; -1 if not a
//  positive duration of at most a year.
int scadactl_duration_ms(const char *text, uint64_t *ms);

#endif
