/*  alarm: the alarm service (scada-alarm). See docs/alarms.md.

    Communication alarms from the I/O servers' events (device offline, I/O
    Timeout of a socket or channel) and tag alarms (limits, states, bad
    quality) on the tags it subscribes through a broker, with the ISA-18.2
    lifecycle of alarm_eval. Every event goes to the journal (ajournal), to
    subscribers (PUB) and to Redis; the active list and operator requests
    are served on a control socket. On start the state is rebuilt from the
    journal, then brought up to date from the current values and states.
*/
#ifndef ALARM_H_INCLUDED
#define ALARM_H_INCLUDED

#include "site.h"

#include <czmq.h>

typedef struct _alarmsvc_t alarmsvc_t;

//  Create the service for `site` (not owned; must outlive it): opens the
//  journal and binds its sockets. NULL and a log line on failure. Caller
//  owns the result.
alarmsvc_t *alarmsvc_new(site_t *site, const char *name);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void alarmsvc_destroy(alarmsvc_t **self_p);

//  The actor body: zactor_new(alarmsvc_actor, engine). Runs until $TERM.
void alarmsvc_actor(zsock_t *pipe, void *engine);

#endif
