/* SPDX-License-Identifier: MIT */
// The public header compiles as C++ and links against the shared library.
#include "workerpool.h"
#include <cstring>
int main()
{
    wp_pool_options o = wp_pool_options();
    o.workers = 1;
    return std::strlen(wp_strerror(WP_ECRASHED)) == 0 || o.workers != 1;
}
