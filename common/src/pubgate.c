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
    char **trusted;
    size_t ntrusted;
    char **areas;
    size_t nareas;
    uint64_t refused, accepted; //  atomic: read from other threads
    //  Refusal log (the checking thread only): certificates named so far,
    //  refusals since the last line, when that was.
    zhashx_t *named;
    uint64_t unlogged;
    int64_t logged;
};

static char **s_strv(const char *const *v, size_t n)
{
    char **out = (char **)zmalloc((n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = strdup(v[i]);
    return out;
}

static void s_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

pubgate_t *pubgate_new(const site_t *site, const char *what, const char *const *trusted,
                       size_t ntrusted, const char *const *areas, size_t nareas)
{
    pubgate_t *self = (pubgate_t *)zmalloc(sizeof *self);
    self->site = site;
    self->what = strdup(what ? what : "publish socket");
    self->trusted = s_strv(trusted, ntrusted);
    self->ntrusted = ntrusted;
    self->areas = s_strv(areas, nareas);
    self->nareas = nareas;
    self->named = zhashx_new();
    return self;
}

void pubgate_destroy(pubgate_t **self_p)
{
    pubgate_t *self = *self_p;
    if (!self)
        return;
    free(self->what);
    s_strv_free(self->trusted, self->ntrusted);
    s_strv_free(self->areas, self->nareas);
    zhashx_destroy(&self->named);
    free(self);
    *self_p = NULL;
}

bool pubgate_allows(const pubgate_t *self, const char *user, char *why, size_t whylen)
{
    if (user)
        for (size_t i = 0; i < self->ntrusted; i++)
            if (strcmp(user, self->trusted[i]) == 0)
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
    for (size_t i = 0; i < self->nareas; i++)
        if (!site_may(self->site, user, self->areas[i], false)) {
            snprintf(why, whylen,
                     "certificate \"%s\" (role %s) may not read area \"%s\", and this stream "
                     "carries every area of the process",
                     user, role->name, self->areas[i]);
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
