/*  scadactl's CURVE. See ctlsec.h. */
#include "ctlsec.h"

#include <stdio.h>

static sec_t *s_sec = NULL;

int ctlsec_init(const site_t *site, const char *cert_path)
{
    char err[1024];
    s_sec = sec_new(site, "scadactl", cert_path, err, sizeof err);
    if (!s_sec) {
        fprintf(stderr, "scadactl: %s\n", err);
        return -1;
    }
    return 0;
}

void ctlsec_destroy(void)
{
    sec_destroy(&s_sec);
}

sec_t *ctlsec(void)
{
    return s_sec;
}

int ctlsec_client(zsock_t *sock, const char *peer)
{
    if (!s_sec)
        return 0;
    char err[1024];
    if (sec_client(s_sec, sock, peer, "scadactl", err, sizeof err) != 0) {
        fprintf(stderr, "scadactl: %s\n", err);
        return -1;
    }
    return 0;
}
