/*  svcmain: the main() every service binary shares.

    Parses --config FILE, --name NAME, --log-level LEVEL, --check and --help,
    loads and checks the site file (--check: then says so and exits 0), creates the engine, runs it as an actor and
    waits for SIGINT/SIGTERM (or "FATAL" from the engine). Exit codes: 0 ok,
    1 runtime failure (the engine could not start, or said FATAL), 2 bad
    usage or bad site file. Messages start with the binary's name.
*/
#ifndef SVCMAIN_H_INCLUDED
#define SVCMAIN_H_INCLUDED

#include "site.h"

#include <czmq.h>
#include <stdbool.h>

typedef struct {
    const char *binary; //  "scada-broker", for messages
    const char *usage;  //  the whole --help text
    bool name_required; //  --name must be given
    //  The name when --name is not given (may be NULL if name_required).
    const char *(*default_name)(const site_t *site);
    //  Checks the name against the site: false and why (exit 2). May be NULL.
    bool (*check_name)(const site_t *site, const char *name, char *why, size_t len);
    void *(*create)(site_t *site, const char *name); //  NULL: failed, logged (exit 1)
    void (*destroy)(void *engine);
    zactor_fn *actor;
} svcmain_t;

int svcmain(int argc, char **argv, const svcmain_t *svc);

#endif
