/*  scada-alarm: parse arguments and the site file, start the engine actor,
    wait for a signal. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or
    bad site file. */
#include "alarm.h"
#include "slog.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void s_usage(FILE *out)
{
    fprintf(out, "usage: scada-alarm --config SITE.yaml [--name NAME] [--log-level LEVEL]\n"
                 "\n"
                 "The alarm service: communication alarms from the I/O servers, limit and\n"
                 "state alarms on tags (subscribed through a broker), ISA-18.2 lifecycle,\n"
                 "a journal that survives restarts (see docs/alarms.md).\n"
                 "\n"
                 "  --config FILE      the site file (required)\n"
                 "  --name NAME        a name for logs (default alarm)\n"
                 "  --log-level LEVEL  debug, info (default), warn, error\n"
                 "  --help             this text\n");
}

int main(int argc, char **argv)
{
    static struct option options[] = {{"config", required_argument, NULL, 'c'},
                                      {"name", required_argument, NULL, 'n'},
                                      {"log-level", required_argument, NULL, 'l'},
                                      {"help", no_argument, NULL, 'h'},
                                      {NULL, 0, NULL, 0}};
    const char *config = NULL, *name = NULL;
    int level = SLOG_INFO, opt;
    while ((opt = getopt_long(argc, argv, "c:n:l:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'l':
            level = slog_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "scada-alarm: --log-level: unknown level \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "scada-alarm: unexpected argument \"%s\"\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    if (!config) {
        fprintf(stderr, "scada-alarm: --config is required\n");
        s_usage(stderr);
        return 2;
    }
    slog_init(name ? name : "alarm", (slog_level_t)level);
    char err[1024];
    site_t *site = site_load(config, err, sizeof err);
    if (!site) {
        fprintf(stderr, "scada-alarm: %s\n", err);
        return 2;
    }
    if (!name)
        name = "alarm";
    zsys_init();
    zsys_set_linger(0);
    alarmsvc_t *engine = alarmsvc_new(site, name);
    if (!engine) {
        site_destroy(&site);
        return 1;
    }
    zactor_t *actor = zactor_new(alarmsvc_actor, engine);
    int rc = 0;
    //  The engine reports a fatal error as "FATAL"; signals end the wait.
    zpoller_t *poller = zpoller_new(actor, NULL);
    while (!zsys_interrupted) {
        if (zpoller_wait(poller, 500)) {
            char *msg = zstr_recv(actor);
            if (msg && streq(msg, "FATAL"))
                rc = 1;
            zstr_free(&msg);
            if (rc)
                break;
        }
    }
    zpoller_destroy(&poller);
    zactor_destroy(&actor);
    alarmsvc_destroy(&engine);
    site_destroy(&site);
    slog_info("stopped");
    return rc;
}
