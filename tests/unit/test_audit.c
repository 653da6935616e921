/*  test_audit: the audit record of write attempts: the line's JSON (every
    field, escaping, nulls), appending to an existing file, a directory
    made when missing, and refusing to start without a file.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "audit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_format(void **state)
{
    (void)state;
    audit_rec_t rec = {.ts_ms = 1795348083079,
                       .via = "b1",
                       .user = "olga",
                       .key = "rq:rM>}U?@Lns\"47",
                       .client = "hmi\n2",
                       .tag = "D1.SP",
                       .area = "pumps",
                       .has_old = true,
                       .old_value = 7,
                       .old_quality = "good",
                       .new_value = 42.5,
                       .result = "ok"};
    char buf[1024];
    size_t n = audit_format(&rec, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "{\"ts_ms\":1795348083079,\"via\":\"b1\",\"user\":\"olga\","
                             "\"key\":\"rq:rM>}U?@Lns\\\"47\",\"client\":\"hmi\\u000a2\","
                             "\"tag\":\"D1.SP\",\"area\":\"pumps\",\"old\":7,"
                             "\"old_quality\":\"good\",\"new\":42.5,\"result\":\"ok\","
                             "\"error\":null}");
    //  Unknown old value, no identity (a plain site), a refusal.
    audit_rec_t plain = {.ts_ms = 1,
                         .via = "io1",
                         .tag = "X\\Y",
                         .new_value = -1,
                         .old_value = 99, //  not has_old: not shown
                         .result = "refused",
                         .error = "user x (no role) may not write area a"};
    audit_format(&plain, buf, sizeof buf);
    assert_string_equal(buf, "{\"ts_ms\":1,\"via\":\"io1\",\"user\":null,\"key\":null,"
                             "\"client\":null,\"tag\":\"X\\\\Y\",\"area\":null,\"old\":null,"
                             "\"old_quality\":null,\"new\":-1,\"result\":\"refused\","
                             "\"error\":\"user x (no role) may not write area a\"}");
    //  A small buffer: cut and terminated, the length it needed returned.
    char small[16];
    size_t need = audit_format(&plain, small, sizeof small);
    assert_int_equal(need, strlen(buf));
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, buf, sizeof small - 1);
    //  NaN is no JSON number.
    plain.new_value = NAN;
    audit_format(&plain, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"new\":null"));
}

static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

static void test_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_audit.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/sub/dir/audit-b1.log", dir); //  made when missing
    audit_t *a = audit_new(path, NULL, NULL);
    assert_non_null(a);
    audit_rec_t rec = {.ts_ms = 5, .via = "b1", .tag = "T", .new_value = 1, .result = "ok"};
    assert_int_equal(audit_write(a, &rec), 0);
    rec.result = "failed";
    rec.error = "device offline";
    assert_int_equal(audit_write(a, &rec), 0);
    assert_int_equal(audit_records(a), 2);
    assert_int_equal(audit_file_errors(a), 0);
    audit_destroy(&a);
    assert_null(a);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    //  Opened again: appended, nothing before lost.
    a = audit_new(path, "scada:t:audit", NULL);
    rec.result = "refused";
    assert_int_equal(audit_write(a, &rec), 0);
    audit_destroy(&a);
    char *text = s_slurp(path);
    const char *want[] = {"\"result\":\"ok\",\"error\":null}\n",
                          "\"result\":\"failed\",\"error\":\"device offline\"}\n",
                          "\"result\":\"refused\",\"error\":\"device offline\"}\n"};
    const char *at = text;
    for (int i = 0; i < 3; i++) {
        const char *hit = strstr(at, want[i]);
        if (!hit)
            print_error("line %d missing in:\n%s\n", i, text);
        assert_non_null(hit);
        at = hit + strlen(want[i]);
    }
    assert_string_equal(at, "");
    //  A file that cannot be opened: NULL with errno, so the process stops.
    chmod(path, 0400);
    if (geteuid() != 0) {
        assert_null(audit_new(path, NULL, NULL));
        assert_int_equal(errno, EACCES);
    }
    snprintf(path, sizeof path, "%s/sub/dir/audit-b1.log/x", dir); //  a file is in the way
    errno = 0;
    assert_null(audit_new(path, NULL, NULL));
    assert_int_not_equal(errno, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
