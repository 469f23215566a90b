/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <time.h>

int64_t stk_clock_ms(int clock)
{
    struct timespec ts;
    clock_gettime((clockid_t)clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
