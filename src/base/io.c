/* SPDX-License-Identifier: Apache-2.0 */
/* Writing a whole buffer to a descriptor. */
#include "base.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

int stk_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* a non-blocking descriptor: wait until it takes more */
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            (void)poll(&pf, 1, -1);
            continue;
        }
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
