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

//  "90s", "15m", "2h", "1d", "500ms", "30" (seconds) -> ms; -1 if not a
//  positive duration of at most a year.
int scadactl_duration_ms(const char *text, uint64_t *ms);

#endif
