/* Bad argument pointers through the shim are EFAULT, never a crash, and a
 * call whose response cannot be written changes nothing, as in Linux:
 * the shim copies argument structs itself (a fault in its copy is caught)
 * and falls back to the server's own reads when it cannot.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static volatile int program_segv;
static void on_segv(int sig)
{
	(void)sig;
	program_segv = 1;
}

int main(void)
{
	/* The program's own SIGSEGV handler, which must see none of ours. */
	signal(SIGSEGV, on_segv);
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	char *pages = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(pages != MAP_FAILED, "three pages");
	/* A read-only page between a PROT_NONE page on each side. */
	char *none = pages, *ro = pages + PAGE, *after = pages + 2 * PAGE;
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	memcpy(ro, &a, sizeof(a));
	struct { uint32_t size, id; } d = { .size = 8, .id = 1 };
	memcpy(ro + 512, &d, sizeof(d));
	/* A size that is read, for a struct that runs off the page. */
	memcpy(after - 4, &a.size, sizeof(a.size));
	CHECK(mprotect(none, PAGE, PROT_NONE) == 0 && mprotect(ro, PAGE, PROT_READ) == 0 &&
		      mprotect(after, PAGE, PROT_NONE) == 0,
	      "PROT_NONE, read-only, PROT_NONE pages");

	CHECK(FAILS(ioctl(fd, IOMMU_IOAS_ALLOC, none), EFAULT), "a struct in PROT_NONE memory is EFAULT");
	CHECK(FAILS(ioctl(fd, IOMMU_IOAS_ALLOC, (void *)0xdead000000000UL), EFAULT),
	      "a struct at a non-canonical address is EFAULT");
	CHECK(FAILS(ioctl(fd, IOMMU_IOAS_ALLOC, (void *)0xffffffff81000000UL), EFAULT),
	      "a struct at a kernel address is EFAULT");
	CHECK(FAILS(ioctl(fd, IOMMU_IOAS_ALLOC, (void *)8), EFAULT), "a struct at address 8 is EFAULT");
	CHECK(FAILS(ioctl(fd, IOMMU_IOAS_ALLOC, ro), EFAULT), "a response to read-only memory is EFAULT");
	/* A struct that runs off its mapping. */
	CHECK(FAILS(ioctl(fd, IOMMU_IOAS_ALLOC, after - 4), EFAULT), "a struct running off its mapping is EFAULT");
	/* None of the failed calls made an IOAS: the next is the first. */
	CHECK(ioas_alloc(fd) == 1, "and none of them made an IOAS");
	/* An input-only command reads a read-only struct and succeeds. */
	CHECK(ioctl(fd, IOMMU_DESTROY, ro + 512) == 0, "DESTROY takes a read-only struct");
	CHECK(!program_segv, "the program's own handler saw no fault");
	close(fd);
	return finish();
}
