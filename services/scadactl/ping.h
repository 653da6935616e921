/*  scadactl ping: is a process of the site alive and answering? */
#ifndef SCADACTL_PING_H_INCLUDED
#define SCADACTL_PING_H_INCLUDED

#include "site.h"

//  ping NAME...: each NAME is an I/O server or broker of the site, or
//  `resolver`, `alarm` or `devsim`. One request each, on the process's own
//  socket and protocol; it is alive when it answers within timeout_ms.
//  Prints one line per name; 0 when all answered, 1 otherwise, 2 on a name
//  the site does not have. Made for health checks (docker HEALTHCHECK).
int scadactl_ping(const site_t *site, const char *const *names, size_t nnames, int timeout_ms,
                  bool json);

#endif
