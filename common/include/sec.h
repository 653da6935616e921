/*  sec: CURVE encryption and authentication of a process's ZeroMQ links.

    Every process of a site has a certificate made by `scadactl keygen`: in
    the site's key directory (security.keys, default "keys" next to the site
    file), NAME.key holds its public key and NAME.key_secret its secret key
    (czmq zcert format), for NAME = each I/O server, each broker, resolver,
    alarm, devsim, and scadactl (the operators' default). DIR/public/ holds
    the public keys allowed to connect: a process or user whose public key is
    not there (never was, or was removed: revoked) is refused at the
    handshake, and nothing it sends arrives.

    The process's authenticator (a ZAP handler in its own thread) lets in a
    key that is in DIR/public/, with its certificate's `name` as metadata
    and the key as User-Id; on a socket with a gate (sec_server_gated) the
    gate must let that name in too.

    A socket that binds is a CURVE server with the process's certificate; a
    socket that connects is a CURVE client that knows its peer's public key
    (DIR/PEER.key), so a peer with the wrong key is refused too. Refused
    handshakes are logged, on both sides, once and then at most once a
    minute with a count. `security: {plain: true}` in the site file turns all
    of this off, and every process says so at every start.
*/
#ifndef SEC_H_INCLUDED
#define SEC_H_INCLUDED

#include "pubgate.h"
#include "site.h"

#include <czmq.h>
#include <stdbool.h>

typedef struct _sec_t sec_t;

//  The security of process `identity` on `site`: its certificate is
//  DIR/<identity>.key (cert_path, when given, names another certificate:
//  an operator's). NULL and a message naming the file on a missing or bad
//  certificate (or key directory). Plain sites always succeed.
sec_t *sec_new(const site_t *site, const char *identity, const char *cert_path, char *err,
               size_t errlen);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void sec_destroy(sec_t **self_p);

//  What sec_new would say, without logging anything: 0, or -1 and err. For
//  a start-up check (exit 2 on a missing certificate).
int sec_check(const site_t *site, const char *identity, char *err, size_t errlen);

//  The site says plain: the functions below change nothing.
bool sec_plain(const sec_t *self);

//  The key directory (absolute or relative to the working directory).
const char *sec_dir(const sec_t *self);

//  Make `sock` a CURVE server with this process's certificate; call before
//  bind. `what` names it in logs ("control socket"). 0, or -1 and err.
int sec_server(sec_t *self, zsock_t *sock, const char *what, char *err, size_t errlen);

//  sec_server(), and only peers `gate` lets in may connect (pubgate.h): a
//  peer it refuses fails the handshake. `gate` must outlive `self`; NULL is
//  sec_server(). Plain sites: nothing, as sec_server().
int sec_server_gated(sec_t *self, zsock_t *sock, const char *what, pubgate_t *gate, char *err,
                     size_t errlen);

//  Make `sock` a CURVE client of process `peer` (its public key from
//  DIR/<peer>.key); call before connect. 0, or -1 and err. `what` NULL:
//  its handshakes are not watched (a socket has one monitor, and its owner
//  already uses it).
int sec_client(sec_t *self, zsock_t *sock, const char *peer, const char *what, char *err,
               size_t errlen);

//  Log refused handshakes of every socket set up so far (and later) on
//  `loop`. Without it refusals are not logged (scadactl: it times out and
//  says so).
void sec_attach(sec_t *self, zloop_t *loop);

//  Handshakes refused so far on this process's sockets.
uint64_t sec_refused(const sec_t *self);

//  scadactl keygen: a certificate for every process of the site that has
//  none (and for each of `users`), their public keys in DIR/public. Existing
//  certificates are kept. Prints one line per certificate made or kept.
//  0, or -1 and err.
int sec_keygen(const site_t *site, const char *dir, const char *const *users, size_t nusers,
               char *err, size_t errlen);

//  Remove `name`'s public key from DIR/public: it is refused from the next
//  handshake on. 0, or -1 and err (not there).
int sec_revoke(const site_t *site, const char *dir, const char *name, char *err, size_t errlen);

#endif
