/* SPDX-License-Identifier: MIT */
/* The public header compiles as strict C99 and links against the shared
   library. */
#include "workerpool.h"
#include <stdio.h>
int main(void)
{
    wp_pool_options o = { 0 };
    wp_task_options t = { 0 };
    (void)o; (void)t;
    return wp_strerror(WP_EINVAL)[0] == '\0';
}
