/* placeholder: replaced by the real suite */
#include <check.h>
#include <stdlib.h>
START_TEST(placeholder) { ck_assert(1); }
END_TEST
int main(void)
{
    Suite *s = suite_create("batcher");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, placeholder);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
