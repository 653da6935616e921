/*  sbind: bind a ZeroMQ socket to an endpoint of the site file. See site.h.

    One site file serves both local processes (every endpoint on 127.0.0.1)
    and containers, where a process reaches another by its service name
    (tcp://io1:5600). ZeroMQ connects to a name but binds only *, an IP
    address or an interface name; binding tcp://io1:5600 fails with ENODEV.
    The process that owns such an endpoint is the host the name points at,
    so it binds every interface on that port instead.
*/
#include "site.h"
#include "slog.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

//  Host and port of a tcp:// endpoint. Returns false when it is not one.
static bool s_split(const char *endpoint, char *host, size_t hostlen, const char **port)
{
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return false;
    const char *h = endpoint + 6;
    const char *colon = strrchr(h, ':');
    if (!colon || colon == h || !colon[1] || (size_t)(colon - h) >= hostlen)
        return false;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = 0;
    *port = colon + 1;
    return true;
}

//  A DNS-style host name: letters, digits, '-' and '.', with a letter
//  somewhere (999.1.1.1 is a bad address, not a name).
static bool s_is_name(const char *host)
{
    bool letter = false;
    for (const char *p = host; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            letter = true;
        else if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
            return false;
    }
    struct in_addr v4;
    return letter && inet_pton(AF_INET, host, &v4) != 1;
}

int site_bind(zsock_t *sock, const char *endpoint, char *err, size_t errlen)
{
    char host[256];
    const char *port = NULL;
    bool tcp = s_split(endpoint, host, sizeof host, &port);
    if (tcp && host[0] == '[')
        zsock_set_ipv6(sock, 1); //  else libzmq takes no IPv6 address
    int rc = zsock_bind(sock, "%s", endpoint);
    if (rc >= 0)
        return rc;
    int error = zmq_errno();
    if (error != ENODEV || !tcp || !s_is_name(host)) {
        snprintf(err, errlen, "cannot bind %s: %s", endpoint, zmq_strerror(error));
        return -1;
    }
    //  localhost stays on the loopback interface; any other name is this
    //  machine seen from its peers.
    bool local = strcasecmp(host, "localhost") == 0;
    char instead[300];
    snprintf(instead, sizeof instead, "tcp://%s:%s", local ? "127.0.0.1" : "*", port);
    rc = zsock_bind(sock, "%s", instead);
    if (rc < 0) {
        snprintf(err, errlen, "cannot bind %s (as %s): %s", endpoint, instead,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    if (local)
        slog_info("binding %s as %s: localhost is a host name, not an interface", endpoint,
                  instead);
    else
        slog_info("binding %s as %s: %s is a host name; peers connect to it by name", endpoint,
                  instead, host);
    return rc;
}
