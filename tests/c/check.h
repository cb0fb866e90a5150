/* What every C test program shares: a CHECK that prints one line per check
 * and counts failures, and the closing line the Rust harness reads.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_CHECK_H
#define SOFTIOMMU_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define PAGE 4096UL

static int failures;

#define CHECK(cond, what)                                                          \
	do {                                                                       \
		if (cond) {                                                        \
			printf("ok %s\n", what);                                   \
		} else {                                                           \
			printf("FAIL %s (line %d, errno %d %s)\n", what, __LINE__, \
			       errno, strerror(errno));                            \
			failures++;                                                \
		}                                                                  \
	} while (0)

/* `expr` failed with errno `err` (the ioctl convention: -1 and errno). */
#define FAILS(expr, err) ((expr) == -1 && errno == (err))

/* Prints the closing "N failed" line; the program's exit status. */
static inline int finish(void)
{
	printf("%d failed\n", failures);
	return failures ? 1 : 0;
}

#endif
