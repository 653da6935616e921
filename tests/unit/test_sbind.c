/*  test_sbind: site_bind(), binding endpoints of the site file.

    An endpoint whose host is a name (a docker-compose service name) cannot
    be bound by ZeroMQ; site_bind() binds every interface on its port
    instead (localhost: the loopback), so a peer reaches it by address.
    Every other endpoint binds as given, and a failure says why.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "site.h"

#include <czmq.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  A TCP port that was free on 127.0.0.1 a moment ago.
static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

static zsock_t *s_rep(void)
{
    zsock_t *sock = zsock_new(ZMQ_REP);
    assert_non_null(sock);
    zsock_set_linger(sock, 0);
    return sock;
}

//  A REQ socket on 127.0.0.1:port asks, `rep` answers.
static void s_exchange(zsock_t *rep, int port)
{
    zsock_t *req = zsock_new(ZMQ_REQ);
    assert_non_null(req);
    zsock_set_linger(req, 0);
    zsock_set_rcvtimeo(req, 2000);
    zsock_set_rcvtimeo(rep, 2000);
    assert_int_equal(zsock_connect(req, "tcp://127.0.0.1:%d", port), 0);
    assert_int_equal(zstr_send(req, "ping"), 0);
    char *got = zstr_recv(rep);
    assert_non_null(got);
    assert_string_equal(got, "ping");
    zstr_free(&got);
    assert_int_equal(zstr_send(rep, "pong"), 0);
    got = zstr_recv(req);
    assert_non_null(got);
    assert_string_equal(got, "pong");
    zstr_free(&got);
    zsock_destroy(&req);
}

static void s_last_endpoint(zsock_t *sock, const char *want)
{
    char *last = zsock_last_endpoint(sock);
    assert_non_null(last);
    assert_string_equal(last, want);
    zstr_free(&last);
}

//  localhost is a name, not an interface: bound on the loopback.
static void test_localhost(void **state)
{
    int port = s_free_port();
    char endpoint[64], want[64], err[256] = "";
    snprintf(endpoint, sizeof endpoint, "tcp://localhost:%d", port);
    zsock_t *rep = s_rep();
    assert_int_equal(site_bind(rep, endpoint, err, sizeof err), port);
    assert_string_equal(err, "");
    snprintf(want, sizeof want, "tcp://127.0.0.1:%d", port);
    s_last_endpoint(rep, want);
    s_exchange(rep, port);
    zsock_destroy(&rep);
}

//  A service name: every interface on the port.
static void test_host_name(void **state)
{
    int port = s_free_port();
    char endpoint[64], want[64], err[256] = "";
    snprintf(endpoint, sizeof endpoint, "tcp://io1.scada-test.invalid:%d", port);
    zsock_t *rep = s_rep();
    assert_int_equal(site_bind(rep, endpoint, err, sizeof err), port);
    snprintf(want, sizeof want, "tcp://0.0.0.0:%d", port);
    s_last_endpoint(rep, want);
    s_exchange(rep, port);
    zsock_destroy(&rep);
}

//  An address, *, an interface name: as given.
static void test_as_given(void **state)
{
    int port = s_free_port();
    char endpoint[64], err[256] = "";
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    zsock_t *rep = s_rep();
    assert_int_equal(site_bind(rep, endpoint, err, sizeof err), port);
    s_last_endpoint(rep, endpoint);
    s_exchange(rep, port);
    zsock_destroy(&rep);

    port = s_free_port();
    snprintf(endpoint, sizeof endpoint, "tcp://lo:%d", port);
    rep = s_rep();
    assert_int_equal(site_bind(rep, endpoint, err, sizeof err), port);
    char want[64];
    snprintf(want, sizeof want, "tcp://127.0.0.1:%d", port);
    s_last_endpoint(rep, want);
    zsock_destroy(&rep);

    port = s_free_port();
    snprintf(endpoint, sizeof endpoint, "tcp://*:%d", port);
    rep = s_rep();
    assert_int_equal(site_bind(rep, endpoint, err, sizeof err), port);
    s_exchange(rep, port);
    zsock_destroy(&rep);

    //  An IPv6 address, where this machine has ::1.
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = fd >= 0 && bind(fd, (struct sockaddr *)&v6, sizeof v6) == 0;
    if (fd >= 0)
        close(fd);
    if (have_v6) {
        port = s_free_port();
        snprintf(endpoint, sizeof endpoint, "tcp://[::1]:%d", port);
        rep = s_rep();
        assert_int_equal(site_bind(rep, endpoint, err, sizeof err), port);
        s_last_endpoint(rep, endpoint);
        zsock_destroy(&rep);
    }

    //  Not tcp: as given.
    char path[64];
    snprintf(path, sizeof path, "ipc:///tmp/test_sbind.%d", (int)getpid());
    rep = s_rep();
    assert_true(site_bind(rep, path, err, sizeof err) >= 0);
    zsock_destroy(&rep);
}

static void test_errors(void **state)
{
    int port = s_free_port();
    char endpoint[64], want[200], err[256];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    zsock_t *first = s_rep();
    assert_int_equal(site_bind(first, endpoint, err, sizeof err), port);

    //  A busy port, as given and after falling back from a name.
    zsock_t *second = s_rep();
    assert_int_equal(site_bind(second, endpoint, err, sizeof err), -1);
    snprintf(want, sizeof want, "cannot bind %s: Address already in use", endpoint);
    assert_string_equal(err, want);
    snprintf(endpoint, sizeof endpoint, "tcp://localhost:%d", port);
    assert_int_equal(site_bind(second, endpoint, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "cannot bind tcp://localhost:%d (as tcp://127.0.0.1:%d): Address already in use", port,
             port);
    assert_string_equal(err, want);
    snprintf(endpoint, sizeof endpoint, "tcp://io1:%d", port);
    assert_int_equal(site_bind(second, endpoint, err, sizeof err), -1);
    snprintf(want, sizeof want, "cannot bind tcp://io1:%d (as tcp://*:%d): Address already in use",
             port, port);
    assert_string_equal(err, want);

    //  Not a name: the error as ZeroMQ gives it.
    assert_int_equal(site_bind(second, "tcp://999.1.1.1:5", err, sizeof err), -1);
    assert_string_equal(err, "cannot bind tcp://999.1.1.1:5: No such device");
    assert_int_equal(site_bind(second, "tcp://192.0.2.1:5", err, sizeof err), -1);
    assert_string_equal(err, "cannot bind tcp://192.0.2.1:5: Cannot assign requested address");
    assert_int_equal(site_bind(second, "bogus://x", err, sizeof err), -1);
    assert_string_equal(err, "cannot bind bogus://x: Protocol not supported");
    assert_int_equal(site_bind(second, "tcp://io1", err, sizeof err), -1);
    assert_string_equal(err, "cannot bind tcp://io1: Invalid argument");
    zsock_destroy(&second);
    zsock_destroy(&first);
}

int main(void)
{
    zsys_init();
    zsys_handler_set(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_host_name),
        cmocka_unit_test(test_as_given),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("sbind", tests, NULL, NULL);
}
