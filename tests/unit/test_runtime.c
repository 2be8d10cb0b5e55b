/* runtime: the pure parts (subordinate id lookup). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/runtime.h"

static void test_subid(void **state)
{
        const char *text = "# comment\nalice:100000:65536\n1001:200000:1000\nbob:bad:1\ncarol:300000:0\n";
        unsigned long s = 0, n = 0;
        assert_int_equal(subid_find(text, "alice", 1000, &s, &n), 0);
        assert_int_equal(s, 100000);
        assert_int_equal(n, 65536);
        assert_int_equal(subid_find(text, "dave", 1001, &s, &n), 0);
        assert_int_equal(s, 200000);
        assert_int_equal(subid_find(text, "bob", 5, &s, &n), -ENOENT);
        assert_int_equal(subid_find(text, "carol", 6, &s, &n), -ENOENT);
        assert_int_equal(subid_find("", "alice", 1, &s, &n), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_subid)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
