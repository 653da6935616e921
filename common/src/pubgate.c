/*  pubgate: who may connect to a publish socket. See pubgate.h. */
#include "pubgate.h"

#include "mclock.h"
#include "slog.h"

#include <czmq.h>
#include <string.h>

#define PUBGATE_LOG_EVERY_MS 60000

struct _pubgate_t {
    const site_t *site;
    char *what;
    zlistx_t *trusted;          //  certificate names (owned)
    zlistx_t *areas;            //  plant areas (owned)
    uint64_t refused, accepted; //  atomic: read from other threads
    //  Refusal log (the checking thread only): certificates named so far,
    //  refusals since the last line, when that was.
    zhashx_t *named;
    uint64_t unlogged;
    int64_t logged;
};

//  A list of owned strings, each once.
static zlistx_t *s_names(void)
{
    zlistx_t *list = zlistx_new();
    zlistx_set_duplicator(list, (zlistx_duplicator_fn *)strdup);
    zlistx_set_destructor(list, (zlistx_destructor_fn *)zstr_free);
    zlistx_set_comparator(list, (zlistx_comparator_fn *)strcmp);
    return list;
}

static void s_add_name(zlistx_t *list, const char *name)
{
    if (name && !zlistx_find(list, (void *)name))
        zlistx_add_end(list, (void *)name);
}

pubgate_t *pubgate_new(const site_t *site, const char *what, const char *also_trusted)
{
    pubgate_t *self = (pubgate_t *)zmalloc(sizeof *self);
    self->site = site;
    self->what = strdup(what ? what : "publish socket");
    self->trusted = s_names();
    if (site->nbrokers == 0)
        s_add_name(self->trusted, site->default_broker.name);
    for (size_t i = 0; i < site->nbrokers; i++)
        s_add_name(self->trusted, site->brokers[i].name);
    s_add_name(self->trusted, also_trusted);
    self->areas = s_names();
    self->named = zhashx_new();
    return self;
}

void pubgate_add_area(pubgate_t *self, const char *area)
{
    s_add_name(self->areas, area);
}

void pubgate_destroy(pubgate_t **self_p)
{
    pubgate_t *self = *self_p;
    if (!self)
        return;
    free(self->what);
    zlistx_destroy(&self->trusted);
    zlistx_destroy(&self->areas);
    zhashx_destroy(&self->named);
    free(self);
    *self_p = NULL;
}

bool pubgate_allows(const pubgate_t *self, const char *user, char *why, size_t whylen)
{
    if (user && zlistx_find(self->trusted, (void *)user))
        return true;
    if (!self->site->nroles)
        return true;
    if (!user) {
        snprintf(why, whylen, "its key has no name in the key directory, so it has no role");
        return false;
    }
    const site_role_t *role = site_role_of(self->site, user);
    if (!role) {
        snprintf(why, whylen,
                 "certificate \"%s\" has no role (not in security.users, and no "
                 "security.default_role)",
                 user);
        return false;
    }
    for (const char *area = (const char *)zlistx_first(self->areas); area;
         area = (const char *)zlistx_next(self->areas))
        if (!site_may(self->site, user, area, false)) {
            snprintf(why, whylen,
                     "certificate \"%s\" (role %s) may not read area \"%s\", and this stream "
                     "carries every area of the process",
                     user, role->name, area);
            return false;
        }
    return true;
}

bool pubgate_check(pubgate_t *self, const char *user)
{
    char why[400];
    if (pubgate_allows(self, user, why, sizeof why)) {
        __atomic_add_fetch(&self->accepted, 1, __ATOMIC_RELAXED);
        return true;
    }
    uint64_t refused = __atomic_add_fetch(&self->refused, 1, __ATOMIC_RELAXED);
    //  At once for a certificate not named before, else at most once a
    //  minute with the count since the last line.
    int64_t now = mclock_mono_ms();
    const char *key = user ? user : "";
    bool new_name = zhashx_lookup(self->named, key) == NULL && zhashx_size(self->named) < 1000;
    self->unlogged++;
    if (new_name)
        zhashx_insert(self->named, key, (void *)1);
    if (new_name || !self->logged || now - self->logged >= PUBGATE_LOG_EVERY_MS) {
        slog_warn("%s refused a peer: %s; it gets nothing from this socket (%llu refusal%s "
                  "since the last line, %llu in all)",
                  self->what, why, (unsigned long long)self->unlogged,
                  self->unlogged == 1 ? "" : "s", (unsigned long long)refused);
        self->unlogged = 0;
        self->logged = now;
    }
    return false;
}

uint64_t pubgate_refused(const pubgate_t *self)
{
    return __atomic_load_n(&self->refused, __ATOMIC_RELAXED);
}

uint64_t pubgate_accepted(const pubgate_t *self)
{
    return __atomic_load_n(&self->accepted, __ATOMIC_RELAXED);
}
