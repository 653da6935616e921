/*  pubgate: who may subscribe to a publish socket. See pubgate.h. */
#include "pubgate.h"

#include "mclock.h"
#include "slog.h"

#include <string.h>

#define PUBGATE_LOG_EVERY_MS 60000

struct _pubgate_t {
    zsock_t *sock;
    const site_t *site;
    char *what;
    char **trusted;
    size_t ntrusted;
    char **areas;
    size_t nareas;
    uint64_t refused, accepted, bad;
    //  Refusal log: the certificates already named, and a count since the
    //  last line.
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

pubgate_t *pubgate_new(zsock_t *xpub, const site_t *site, const char *what,
                       const char *const *trusted, size_t ntrusted, const char *const *areas,
                       size_t nareas)
{
    pubgate_t *self = (pubgate_t *)zmalloc(sizeof *self);
    self->sock = xpub;
    self->site = site;
    self->what = strdup(what ? what : "publish socket");
    self->trusted = s_strv(trusted, ntrusted);
    self->ntrusted = ntrusted;
    self->areas = s_strv(areas, nareas);
    self->nareas = nareas;
    self->named = zhashx_new();
    zsock_set_xpub_manual(xpub, 1);
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

//  Log a refusal: at once for a certificate not named before, else at most
//  once a minute with the count since the last line.
static void s_log_refusal(pubgate_t *self, const char *user, const char *why, int64_t now)
{
    const char *key = user ? user : "";
    bool new_name = zhashx_lookup(self->named, key) == NULL;
    self->unlogged++;
    if (!new_name && self->logged && now - self->logged < PUBGATE_LOG_EVERY_MS)
        return;
    if (new_name && zhashx_size(self->named) < 1000)
        zhashx_insert(self->named, key, (void *)1);
    slog_warn("%s refused a subscriber: %s; it gets nothing from this socket (%llu refusal%s "
              "since the last line, %llu in all)",
              self->what, why, (unsigned long long)self->unlogged, self->unlogged == 1 ? "" : "s",
              (unsigned long long)self->refused);
    self->unlogged = 0;
    self->logged = now;
}

size_t pubgate_handle(pubgate_t *self)
{
    size_t n = 0;
    void *handle = zsock_resolve(self->sock);
    while (true) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        n++;
        const uint8_t *data = (const uint8_t *)zmq_msg_data(&msg);
        size_t size = zmq_msg_size(&msg);
        if (size < 1 || (data[0] != 0 && data[0] != 1)) {
            //  Not a subscription: XPUB passes up anything a peer sends.
            self->bad++;
            zmq_msg_close(&msg);
            continue;
        }
        if (data[0] == 0) {
            //  An unsubscription of this peer (a no-op if it was refused).
            zmq_setsockopt(handle, ZMQ_UNSUBSCRIBE, data + 1, size - 1);
            zmq_msg_close(&msg);
            continue;
        }
        const char *user = zmq_msg_gets(&msg, "name");
        char why[300];
        if (pubgate_allows(self, user, why, sizeof why)) {
            //  Manual mode: applies to the peer whose message was read last.
            zmq_setsockopt(handle, ZMQ_SUBSCRIBE, data + 1, size - 1);
            self->accepted++;
        } else {
            self->refused++;
            s_log_refusal(self, user, why, mclock_mono_ms());
        }
        zmq_msg_close(&msg);
    }
    return n;
}

static int s_on_readable(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    pubgate_handle((pubgate_t *)arg);
    return 0;
}

int pubgate_attach(pubgate_t *self, zloop_t *loop)
{
    return zloop_reader(loop, self->sock, s_on_readable, self);
}

uint64_t pubgate_refused(const pubgate_t *self)
{
    return self->refused;
}

uint64_t pubgate_accepted(const pubgate_t *self)
{
    return self->accepted;
}
