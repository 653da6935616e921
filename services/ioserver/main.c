/*  scada-ioserver: svcmain (parse arguments and the site file, run the engine
    actor, wait for a signal) with the I/O server's engine. */
#include "ioserver.h"
#include "svcmain.h"

static bool s_check_name(const site_t *site, const char *name, char *why, size_t len)
{
    if (site_ioserver(site, name))
        return true;
    snprintf(why, len, "no I/O server named \"%s\" under ioservers", name);
    return false;
}

static void *s_create(site_t *site, const char *name)
{
    return ioserver_new(site, name);
}

static void s_destroy(void *engine)
{
    ioserver_t *self = (ioserver_t *)engine;
    ioserver_destroy(&self);
}

int main(int argc, char **argv)
{
    static const svcmain_t svc = {
        .binary = "scada-ioserver",
        .usage = "usage: scada-ioserver --config SITE.yaml --name NAME [--log-level LEVEL]\n"
                 "\n"
                 "Polls the Modbus devices of the site file whose `servers` name NAME,\n"
                 "publishes their values and events, and keeps its state in Redis.\n"
                 "\n"
                 "  --config FILE      the site file (required)\n"
                 "  --name NAME        which I/O server of the site this is (required)\n"
                 "  --log-level LEVEL  debug, info (default), warn, error\n"
                 "  --check            check the site file (and the name), say so and exit\n"
                 "  --help             this text\n",
        .name_required = true,
        .check_name = s_check_name,
        .create = s_create,
        .destroy = s_destroy,
        .actor = ioserver_actor};
    return svcmain(argc, argv, &svc);
}
