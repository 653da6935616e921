/*  svcmain: the main() every service binary shares. See svcmain.h. */
#include "svcmain.h"

#include "sec.h"
#include "slog.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

int svcmain(int argc, char **argv, const svcmain_t *svc)
{
    static struct option options[] = {{"config", required_argument, NULL, 'c'},
                                      {"name", required_argument, NULL, 'n'},
                                      {"log-level", required_argument, NULL, 'l'},
                                      {"help", no_argument, NULL, 'h'},
                                      {"check", no_argument, NULL, 'k'},
                                      {NULL, 0, NULL, 0}};
    const char *config = NULL, *name = NULL;
    int level = SLOG_INFO, opt;
    bool check = false;
    while ((opt = getopt_long(argc, argv, "c:n:l:h", options, NULL)) != -1) {
        switch (opt) {
        case 'k':
            check = true;
            break;
        case 'c':
            config = optarg;
            break;
        case 'n':
            name = optarg;
            if (!name[0]) {
                fprintf(stderr, "%s: --name: empty name\n", svc->binary);
                return 2;
            }
            break;
        case 'l':
            level = slog_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "%s: --log-level: unknown level \"%s\"\n", svc->binary, optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(svc->usage, stdout);
            return 0;
        default:
            fputs(svc->usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", svc->binary, argv[optind]);
        fputs(svc->usage, stderr);
        return 2;
    }
    if (!config || (svc->name_required && !name)) {
        fprintf(stderr, "%s: %s\n", svc->binary,
                svc->name_required ? "--config and --name are required" : "--config is required");
        fputs(svc->usage, stderr);
        return 2;
    }
    slog_init(name ? name : svc->binary, (slog_level_t)level);
    char err[1024];
    site_t *site = site_load(config, err, sizeof err);
    if (!site) {
        fprintf(stderr, "%s: %s\n", svc->binary, err);
        return 2;
    }
    char why[256] = "";
    if (svc->check_name && name && !svc->check_name(site, name, why, sizeof why)) {
        fprintf(stderr, "%s: %s: %s\n", svc->binary, config, why);
        site_destroy(&site);
        return 2;
    }
    if (!name) {
        name = svc->default_name(site);
        slog_init(name, (slog_level_t)level);
    }
    //  A CURVE site needs this process's certificate: without it nothing
    //  could talk to it, so it does not start.
    if (sec_check(site, name, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", svc->binary, err);
        site_destroy(&site);
        return 2;
    }
    if (check) {
        printf("%s: %s: site %s is good for %s (%zu I/O servers, %zu channels, %zu tags)\n",
               svc->binary, config, site->site, name, site->nioservers, site->nchannels,
               site->ntags);
        site_destroy(&site);
        return 0;
    }
    zsys_init();
    zsys_set_linger(0);
    void *engine = svc->create(site, name);
    if (!engine) {
        site_destroy(&site);
        return 1;
    }
    zactor_t *actor = zactor_new(svc->actor, engine);
    int rc = 0;
    //  The engine reports a fatal error as "FATAL"; signals (czmq's handler
    //  sets zsys_interrupted) end the wait.
    zpoller_t *poller = zpoller_new(actor, NULL);
    while (!zsys_interrupted && rc == 0) {
        if (zpoller_wait(poller, 500)) {
            char *msg = zstr_recv(actor);
            if (msg && streq(msg, "FATAL"))
                rc = 1;
            zstr_free(&msg);
        }
    }
    zpoller_destroy(&poller);
    zactor_destroy(&actor);
    svc->destroy(engine);
    site_destroy(&site);
    slog_info("stopped");
    return rc;
}
