/*  sec: CURVE encryption and authentication of a process's ZeroMQ links.
    See sec.h. */
#include "sec.h"

#include "mclock.h"
#include "pubgate.h"
#include "slog.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEC_LOG_EVERY_MS 60000

//  One watched socket: a PAIR receiving its handshake events.
typedef struct {
    sec_t *owner;
    zsock_t *events;
    bool server;
    char what[96];       //  "control socket", "SUB to io1"
    char peer[64];       //  clients: the peer's name
    bool gated;          //  servers: a pubgate decides who may connect
    bool failing;        //  the last handshake failed
    uint64_t count;      //  refusals not logged yet
    int64_t logged;      //  mono ms of the last log line
    int64_t left_logged; //  mono ms of the last "left during the handshake"
    uint16_t last_event; //  the failure last counted
} s_watch_t;

//  The authenticator's start: its key directory, and whether it failed.
typedef struct {
    char *dir;
    bool failed;
} s_auth_args_t;

struct _sec_t {
    bool plain;
    char *dir;
    char *identity;
    zcert_t *cert;
    zactor_t *auth;          //  the ZAP authenticator, started by the first server socket
    s_auth_args_t auth_args; //  what the actor reads, and says back
    zlistx_t *watches;
    zloop_t *loop;
    uint64_t refused;
    int seq;
};

//  A path in the key directory.
static char *s_path(const sec_t *self, const char *name, const char *suffix)
{
    size_t len = strlen(self->dir) + strlen(name) + strlen(suffix) + 8;
    char *p = (char *)malloc(len);
    if (p)
        snprintf(p, len, "%s/%s%s", self->dir, name, suffix);
    return p;
}

static bool s_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void s_watch_destroy(void **item)
{
    s_watch_t *w = (s_watch_t *)*item;
    if (w) {
        zsock_destroy(&w->events);
        free(w);
        *item = NULL;
    }
}

static sec_t *s_new(const site_t *site, const char *identity, const char *cert_path, char *err,
                    size_t errlen, bool quiet);

sec_t *sec_new(const site_t *site, const char *identity, const char *cert_path, char *err,
               size_t errlen)
{
    return s_new(site, identity, cert_path, err, errlen, false);
}

int sec_check(const site_t *site, const char *identity, char *err, size_t errlen)
{
    sec_t *self = s_new(site, identity, NULL, err, errlen, true);
    if (!self)
        return -1;
    sec_destroy(&self);
    return 0;
}

static sec_t *s_new(const site_t *site, const char *identity, const char *cert_path, char *err,
                    size_t errlen, bool quiet)
{
    sec_t *self = (sec_t *)zmalloc(sizeof *self);
    self->plain = site->security_plain;
    self->identity = strdup(identity);
    self->dir = site_path(site, site->security_keys ? site->security_keys : "keys");
    self->watches = zlistx_new();
    zlistx_set_destructor(self->watches, s_watch_destroy);
    if (self->plain) {
        if (!quiet)
            slog_warn(
                "PLAIN LINKS: %s%s%d says security: {plain: true}: the ZeroMQ links of %s are "
                "neither encrypted nor authenticated",
                site->path, site->security_line ? ":" : "", site->security_line, identity);
        return self;
    }
    if (!s_is_dir(self->dir)) {
        snprintf(err, errlen,
                 "no key directory %s (make the site's keys with: scadactl --config %s keygen; "
                 "or say security: {plain: true} in the site file)",
                 self->dir, site->path);
        sec_destroy(&self);
        return NULL;
    }
    char *path = cert_path ? strdup(cert_path) : s_path(self, identity, ".key");
    char *secret = path ? (char *)malloc(strlen(path) + 8) : NULL;
    if (secret)
        sprintf(secret, "%s_secret", path);
    if (!secret || access(path, R_OK) != 0 || access(secret, R_OK) != 0) {
        snprintf(err, errlen,
                 "no certificate for %s: %s%s cannot be read (%s; make it with: scadactl "
                 "--config %s keygen)",
                 identity, path ? path : "?", path && access(path, R_OK) == 0 ? "_secret" : "",
                 strerror(errno), site->path);
        free(path);
        free(secret);
        sec_destroy(&self);
        return NULL;
    }
    self->cert = zcert_load(path);
    static const char zero[] = "0000000000000000000000000000000000000000";
    if (!self->cert || strcmp(zcert_secret_txt(self->cert), zero) == 0) {
        snprintf(err, errlen, "the certificate %s (with %s) is not a CURVE certificate", path,
                 secret);
        free(path);
        free(secret);
        sec_destroy(&self);
        return NULL;
    }
    if (!quiet)
        slog_info("CURVE on every link: certificate %s, allowed peers in %s/public", path,
                  self->dir);
    free(path);
    free(secret);
    return self;
}

void sec_destroy(sec_t **self_p)
{
    sec_t *self = *self_p;
    if (!self)
        return;
    zlistx_destroy(&self->watches);
    zactor_destroy(&self->auth);
    free(self->auth_args.dir);
    zcert_destroy(&self->cert);
    free(self->dir);
    free(self->identity);
    free(self);
    *self_p = NULL;
}

bool sec_plain(const sec_t *self)
{
    return self->plain;
}

const char *sec_dir(const sec_t *self)
{
    return self->dir;
}

uint64_t sec_refused(const sec_t *self)
{
    return self->refused;
}

//  --------------------------------------------------------------------------
//  Handshake events

static int s_on_event(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_watch_t *w = (s_watch_t *)arg;
    zmsg_t *msg = zmsg_recv(sock);
    if (!msg)
        return 0;
    zframe_t *head = zmsg_first(msg);
    zframe_t *addr = zmsg_next(msg);
    if (!head || zframe_size(head) < 6) {
        zmsg_destroy(&msg);
        return 0;
    }
    uint16_t event;
    memcpy(&event, zframe_data(head), 2);
    char *ep = addr ? zframe_strdup(addr) : strdup("?");
    zmsg_destroy(&msg);
    int64_t now = mclock_mono_ms();
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        if (w->failing && !w->server)
            slog_info("%s: the CURVE handshake with %s at %s succeeds again", w->what, w->peer, ep);
        w->failing = false;
        free(ep);
        return 0;
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
        //  The peer went away mid-handshake: a port probe, a health check
        //  that only connects, a dropped link, or a client without CURVE
        //  that gave up first. Not counted as a refusal; said at most once a
        //  minute per socket.
        if (now - w->left_logged >= SEC_LOG_EVERY_MS) {
            slog_info("%s on %s: a peer left during the handshake (a port probe, or a peer "
                      "without CURVE)",
                      w->what, ep);
            w->left_logged = now;
        }
        free(ep);
        return 0;
    }
    w->owner->refused++;
    w->count++;
    bool first = !w->failing || event != w->last_event; //  a new reason is said at once
    w->failing = true;
    w->last_event = event;
    if (first || now - w->logged >= SEC_LOG_EVERY_MS) {
        char more[80] = "";
        if (w->count > 1)
            snprintf(more, sizeof more, " (%llu refused since the last line)",
                     (unsigned long long)w->count);
        if (w->server)
            slog_warn("%s on %s refused a peer%s: %s%s", w->what, ep, more,
                      event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                          ? "its key is not allowed (not in the key directory's public/, or "
                            "revoked)"
                          : "it failed the CURVE handshake (no CURVE, or a wrong server key)",
                      event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && w->gated
                          ? ", or its role may not read what this socket carries (the "
                            "socket's own line says which)"
                          : "");
        else
            slog_warn("%s: %s at %s refused us%s: our key is not allowed there, or %s/%s.key "
                      "is not its key",
                      w->what, w->peer, ep, more, w->owner->dir, w->peer);
        w->logged = now;
        w->count = 0;
    }
    free(ep);
    return 0;
}

static s_watch_t *s_watch(sec_t *self, zsock_t *sock, bool server, const char *what,
                          const char *peer)
{
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://sec-%p-%d", (void *)self, ++self->seq);
    if (zmq_socket_monitor(
            zsock_resolve(sock), ep,
            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
        slog_warn("%s: handshakes cannot be watched (%s): refusals are not logged", what,
                  zmq_strerror(errno));
        return NULL;
    }
    s_watch_t *w = (s_watch_t *)zmalloc(sizeof *w);
    w->owner = self;
    w->server = server;
    snprintf(w->what, sizeof w->what, "%s", what);
    snprintf(w->peer, sizeof w->peer, "%s", peer ? peer : "");
    w->events = zsock_new(ZMQ_PAIR);
    if (!w->events || zsock_connect(w->events, "%s", ep) != 0) {
        zsock_destroy(&w->events);
        free(w);
        return NULL;
    }
    zlistx_add_end(self->watches, w);
    if (self->loop)
        zloop_reader(self->loop, w->events, s_on_event, w);
    return w;
}

void sec_attach(sec_t *self, zloop_t *loop)
{
    self->loop = loop;
    for (s_watch_t *w = (s_watch_t *)zlistx_first(self->watches); w;
         w = (s_watch_t *)zlistx_next(self->watches))
        zloop_reader(loop, w->events, s_on_event, w);
}

//  --------------------------------------------------------------------------
//  The authenticator: a ZAP handler (RFC 27) in its own thread, like czmq's
//  zauth, that also knows gates. A CURVE client whose public key is in
//  DIR/public/ (czmq's certificate store, which sees keys added and removed)
//  is let in with its certificate's metadata (`name`) and its key as
//  User-Id; on a socket whose ZAP domain names a gate, the gate must let
//  that name in too. Everything else is refused (400).

typedef struct {
    char *domain;
    pubgate_t *gate;
} s_gate_ref_t;

//  Add one metadata property (ZMTP 3 encoding) to buf; a name too long for
//  it is left out.
static void s_add_property(zchunk_t *buf, const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    if (nlen > 255 || vlen > 0x7fffffff)
        return;
    uint8_t head[4] = {(uint8_t)nlen};
    zchunk_extend(buf, head, 1);
    zchunk_extend(buf, name, nlen);
    head[0] = (uint8_t)(vlen >> 24);
    head[1] = (uint8_t)(vlen >> 16);
    head[2] = (uint8_t)(vlen >> 8);
    head[3] = (uint8_t)vlen;
    zchunk_extend(buf, head, 4);
    zchunk_extend(buf, value, vlen);
}

static void s_zap_reply(zsock_t *handler, const char *seq, const char *code, const char *text,
                        const char *user_id, zchunk_t *meta)
{
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, "1.0");
    zmsg_addstr(msg, seq ? seq : "");
    zmsg_addstr(msg, code);
    zmsg_addstr(msg, text);
    zmsg_addstr(msg, user_id ? user_id : "");
    zmsg_addmem(msg, meta ? zchunk_data(meta) : NULL, meta ? zchunk_size(meta) : 0);
    zmsg_send(&msg, handler);
}

static void s_zap_request(zsock_t *handler, zcertstore_t *store, zlistx_t *gates)
{
    zmsg_t *req = zmsg_recv(handler);
    if (!req)
        return;
    char *version = zmsg_popstr(req);
    char *seq = zmsg_popstr(req);
    char *domain = zmsg_popstr(req);
    char *address = zmsg_popstr(req);
    char *identity = zmsg_popstr(req);
    char *mechanism = zmsg_popstr(req);
    zframe_t *cred = zmsg_pop(req);
    zmsg_destroy(&req);
    if (!version || strcmp(version, "1.0") != 0 || !mechanism || strcmp(mechanism, "CURVE") != 0 ||
        !cred || zframe_size(cred) != 32) {
        s_zap_reply(handler, seq, "400", "CURVE only", NULL, NULL);
    } else {
        char key[41];
        zmq_z85_encode(key, zframe_data(cred), 32);
        zcert_t *cert = zcertstore_lookup(store, key);
        pubgate_t *gate = NULL;
        for (s_gate_ref_t *g = (s_gate_ref_t *)zlistx_first(gates); g && domain;
             g = (s_gate_ref_t *)zlistx_next(gates))
            if (strcmp(g->domain, domain) == 0)
                gate = g->gate;
        if (!cert)
            s_zap_reply(handler, seq, "400", "No access", NULL, NULL);
        else if (gate && !pubgate_check(gate, zcert_meta(cert, "name")))
            s_zap_reply(handler, seq, "400", "Not allowed on this socket", NULL, NULL);
        else {
            zchunk_t *meta = zchunk_new(NULL, 256);
            zlist_t *keys = zcert_meta_keys(cert);
            for (const char *k = (const char *)zlist_first(keys); k;
                 k = (const char *)zlist_next(keys)) {
                const char *v = zcert_meta(cert, k);
                if (v)
                    s_add_property(meta, k, v);
            }
            zlist_destroy(&keys);
            s_zap_reply(handler, seq, "200", "OK", key, meta);
            zchunk_destroy(&meta);
        }
    }
    zframe_destroy(&cred);
    free(version);
    free(seq);
    free(domain);
    free(address);
    free(identity);
    free(mechanism);
}

//  The actor. Args: s_auth_args_t. Commands: "GATE" domain
//  pointer (answered with a signal), "$TERM".
static void s_authenticator(zsock_t *pipe, void *args)
{
    s_auth_args_t *start = (s_auth_args_t *)args;
    zsock_t *handler = zsock_new(ZMQ_REP);
    if (!handler || zsock_bind(handler, "inproc://zeromq.zap.01") != 0) {
        //  Another handler in this process: without ours, libzmq would let
        //  every key in, so the caller stops.
        zsock_destroy(&handler);
        start->failed = true;
        zsock_signal(pipe, 1);
        return;
    }
    zcertstore_t *store = zcertstore_new(start->dir);
    zlistx_t *gates = zlistx_new();
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, handler, NULL);
    while (true) {
        zsock_t *which = (zsock_t *)zpoller_wait(poller, -1);
        if (which == handler) {
            s_zap_request(handler, store, gates);
            continue;
        }
        if (which != pipe)
            break; //  interrupted
        zmsg_t *msg = zmsg_recv(pipe);
        if (!msg)
            break;
        char *cmd = zmsg_popstr(msg);
        bool term = !cmd || strcmp(cmd, "$TERM") == 0;
        if (cmd && strcmp(cmd, "GATE") == 0) {
            s_gate_ref_t *g = (s_gate_ref_t *)zmalloc(sizeof *g);
            g->domain = zmsg_popstr(msg);
            zframe_t *ptr = zmsg_pop(msg);
            if (ptr && zframe_size(ptr) == sizeof g->gate)
                memcpy(&g->gate, zframe_data(ptr), sizeof g->gate);
            zframe_destroy(&ptr);
            if (g->domain && g->gate)
                zlistx_add_end(gates, g);
            else {
                free(g->domain);
                free(g);
            }
            zsock_signal(pipe, 0);
        }
        free(cmd);
        zmsg_destroy(&msg);
        if (term)
            break;
    }
    for (s_gate_ref_t *g = (s_gate_ref_t *)zlistx_first(gates); g;
         g = (s_gate_ref_t *)zlistx_next(gates)) {
        free(g->domain);
        free(g);
    }
    zlistx_destroy(&gates);
    zpoller_destroy(&poller);
    zcertstore_destroy(&store);
    zsock_destroy(&handler);
}

//  --------------------------------------------------------------------------
//  Sockets

int sec_server(sec_t *self, zsock_t *sock, const char *what, char *err, size_t errlen)
{
    return sec_server_gated(self, sock, what, NULL, err, errlen);
}

int sec_server_gated(sec_t *self, zsock_t *sock, const char *what, pubgate_t *gate, char *err,
                     size_t errlen)
{
    if (self->plain)
        return 0;
    if (!self->auth) {
        char *pub = s_path(self, "public", "");
        if (!pub || !s_is_dir(pub)) {
            snprintf(err, errlen,
                     "no directory %s of allowed public keys (scadactl keygen makes it)",
                     pub ? pub : "?");
            free(pub);
            return -1;
        }
        self->auth_args.dir = pub;
        self->auth_args.failed = false;
        self->auth = zactor_new(s_authenticator, &self->auth_args);
        if (!self->auth || self->auth_args.failed) {
            zactor_destroy(&self->auth);
            zstr_free(&self->auth_args.dir);
            snprintf(err, errlen,
                     "cannot start the authenticator (another ZAP handler runs in this process)");
            return -1;
        }
    }
    char domain[64] = "scada";
    if (gate) {
        snprintf(domain, sizeof domain, "scada-gate-%d", ++self->seq);
        zmsg_t *msg = zmsg_new();
        zmsg_addstr(msg, "GATE");
        zmsg_addstr(msg, domain);
        zmsg_addmem(msg, &gate, sizeof gate);
        zmsg_send(&msg, self->auth);
        zsock_wait(self->auth);
    }
    zcert_apply(self->cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, domain);
    s_watch_t *w = s_watch(self, sock, true, what, NULL);
    if (w)
        w->gated = gate != NULL;
    return 0;
}

int sec_client(sec_t *self, zsock_t *sock, const char *peer, const char *what, char *err,
               size_t errlen)
{
    if (self->plain)
        return 0;
    char *path = s_path(self, peer, ".key");
    zcert_t *theirs = path ? zcert_load(path) : NULL;
    if (!theirs) {
        snprintf(err, errlen, "no public key of %s: %s cannot be read (scadactl keygen makes it)",
                 peer, path ? path : "?");
        free(path);
        return -1;
    }
    free(path);
    zcert_apply(self->cert, sock);
    zsock_set_curve_serverkey(sock, zcert_public_txt(theirs));
    zcert_destroy(&theirs);
    if (what)
        s_watch(self, sock, false, what, peer);
    return 0;
}

//  --------------------------------------------------------------------------
//  keygen, revoke

//  The directory and any parent it lacks (mkdir -p).
static int s_mkdir(const char *path, mode_t mode, char *err, size_t errlen)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                break;
            *p = '/';
        }
    if (mkdir(path, mode) == 0 || (errno == EEXIST && s_is_dir(path)))
        return 0;
    snprintf(err, errlen, "cannot make the directory %s: %s", path, strerror(errno));
    return -1;
}

static int s_make(const site_t *site, const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096], pub[4096], secret[4200];
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    snprintf(secret, sizeof secret, "%s_secret", path);
    snprintf(pub, sizeof pub, "%s/public/%s.key", dir, name);
    if (access(path, F_OK) == 0 && access(secret, F_OK) == 0) {
        printf("kept %s (its public key is allowed only if %s exists)\n", path, pub);
        return 0;
    }
    zcert_t *cert = zcert_new();
    if (!cert) {
        snprintf(err, errlen, "cannot make a certificate for %s", name);
        return -1;
    }
    zcert_set_meta(cert, "name", "%s", name);
    zcert_set_meta(cert, "site", "%s", site->site);
    mode_t old = umask(077); //  the secret file is the owner's alone
    int rc = zcert_save(cert, path);
    umask(old);
    if (rc == 0) {
        chmod(path, 0644);
        rc = zcert_save_public(cert, pub);
        chmod(pub, 0644);
    }
    zcert_destroy(&cert);
    if (rc != 0) {
        snprintf(err, errlen, "cannot write the certificate %s: %s", path, strerror(errno));
        return -1;
    }
    printf("made %s and %s; allowed: %s\n", path, secret, pub);
    return 0;
}

static bool s_name_ok(const char *name)
{
    if (!*name || *name == '.')
        return false;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

int sec_keygen(const site_t *site, const char *dir, const char *const *users, size_t nusers,
               char *err, size_t errlen)
{
    char pub[4096];
    snprintf(pub, sizeof pub, "%s/public", dir);
    if (s_mkdir(dir, 0755, err, errlen) || s_mkdir(pub, 0755, err, errlen))
        return -1;
    zlistx_t *names = zlistx_new();
    zlistx_add_end(names, (void *)"resolver");
    for (size_t i = 0; i < site->nioservers; i++)
        zlistx_add_end(names, site->ioservers[i].name);
    if (site->nbrokers == 0)
        zlistx_add_end(names, site->default_broker.name);
    for (size_t i = 0; i < site->nbrokers; i++)
        zlistx_add_end(names, site->brokers[i].name);
    zlistx_add_end(names, (void *)"alarm");
    zlistx_add_end(names, (void *)"devsim");
    zlistx_add_end(names, (void *)"scadactl");
    for (size_t i = 0; i < nusers; i++)
        zlistx_add_end(names, (void *)users[i]);
    int rc = 0;
    for (const char *n = (const char *)zlistx_first(names); n && rc == 0;
         n = (const char *)zlistx_next(names)) {
        if (!s_name_ok(n)) {
            snprintf(err, errlen, "\"%s\" cannot name a certificate (letters, digits, - _ .)", n);
            rc = -1;
        } else
            rc = s_make(site, dir, n, err, errlen);
    }
    zlistx_destroy(&names);
    return rc;
}

int sec_revoke(const site_t *site, const char *dir, const char *name, char *err, size_t errlen)
{
    char pub[4096];
    snprintf(pub, sizeof pub, "%s/public/%s.key", dir, name);
    if (!s_name_ok(name) || unlink(pub) != 0) {
        snprintf(err, errlen, "cannot revoke %s: %s: %s", name, pub,
                 s_name_ok(name) ? strerror(errno) : "not a certificate name");
        return -1;
    }
    printf("revoked %s: %s removed; its handshakes are refused from now on\n", name, pub);
    return 0;
}
