/* SPDX-License-Identifier: Apache-2.0 */
/* Compiled into each private module only (with -DSTK_MODULE_NAME=name): the
 * stamp stk_module_sym() checks before it uses the module. */
#include "base/base.h"

#define STAMP_NAME_(m) stk_module_##m##_stamp
#define STAMP_NAME(m)  STAMP_NAME_(m)

extern const char STAMP_NAME(STK_MODULE_NAME)[];
const char STAMP_NAME(STK_MODULE_NAME)[] = STK_VERSION;
