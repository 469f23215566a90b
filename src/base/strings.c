/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <string.h>

int stk_enum_lookup(const char *const *names, size_t n, const char *s)
{
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

const char *stk_enum_join(const char *const *names, size_t n, const char *sep, char *buf,
                          size_t bufsz)
{
    size_t off = 0;
    if (bufsz == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            continue;
        int w = snprintf(buf + off, bufsz - off, "%s%s", off ? sep : "", names[i]);
        if (w < 0 || (size_t)w >= bufsz - off)
            break;
        off += (size_t)w;
    }
    return buf;
}

bool stk_streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool stk_startswith(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

unsigned stk_edit_distance(const char *a, const char *b, unsigned max)
{
    size_t la = strlen(a), lb = strlen(b);
    /* Names compared here are field names: short. Longer input is simply
     * "far away". */
    if (la > 64 || lb > 64)
        return max + 1;
    unsigned row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0], best = row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned cost = (a[i - 1] | 0x20) == (b[j - 1] | 0x20) ? 0 : 1;
            unsigned v = diag + cost;
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > max)
            return max + 1;
    }
    return row[lb] > max ? max + 1 : row[lb];
}
