/*  scadactl's CURVE: one certificate for the whole command (the site's
    "scadactl" certificate, or --cert FILE / SCADA_CERT), applied to every
    socket it connects. */
#ifndef SCADACTL_CTLSEC_H_INCLUDED
#define SCADACTL_CTLSEC_H_INCLUDED

#include "sec.h"

//  Load the certificate (cert_path NULL: the site's scadactl certificate).
//  0, or -1 with the reason printed.
int ctlsec_init(const site_t *site, const char *cert_path);
void ctlsec_destroy(void);

//  The loaded security (NULL before ctlsec_init).
sec_t *ctlsec(void);

//  Make `sock` a CURVE client of process `peer` before it connects. 0, or
//  -1 with the reason printed. Plain sites: nothing to do.
int ctlsec_client(zsock_t *sock, const char *peer);

#endif
