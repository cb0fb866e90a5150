/* The last close under `softiommu run`, after a child that inherited the
 * descriptor has exited and been reaped: close() returns only once the
 * context (or the access) has released its pins, as with Linux, where the
 * file's release runs inside that close(). The server also sees the last
 * close by itself, so every round races the two; many rounds, each with
 * many pages to release, give a close() that returns early room to show.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

#define ROUNDS 200
/* At most this many pages per context: their release takes about a
 * millisecond, long enough for the shim's close to arrive meanwhile. */
#define MAX_PAGES 4096L
/* Pages an access pins: fewer, as pinning through an access costs more. */
#define ACCESS_PAGES 64L

/* VmPin of this process in kB, read through open() and read(). */
static long vm_pin_kb(void)
{
	char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *at = strstr(buf, "VmPin:");
	return at ? strtol(at + strlen("VmPin:"), NULL, 10) : -1;
}

/* How many pages a context may pin: with CAP_IPC_LOCK nothing is charged;
 * otherwise half of RLIMIT_MEMLOCK (raised to its hard limit), so that
 * pins still held elsewhere for this user leave room. */
static long pages_to_pin(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[2];
	if (syscall(SYS_capget, &hdr, caps) == 0 &&
	    (caps[CAP_TO_INDEX(CAP_IPC_LOCK)].effective & CAP_TO_MASK(CAP_IPC_LOCK)))
		return MAX_PAGES;
	struct rlimit r;
	if (getrlimit(RLIMIT_MEMLOCK, &r) != 0)
		return 1;
	r.rlim_cur = r.rlim_max;
	setrlimit(RLIMIT_MEMLOCK, &r);
	if (r.rlim_cur == RLIM_INFINITY)
		return MAX_PAGES;
	long pages = (long)(r.rlim_cur / PAGE / 2);
	return pages < 1 ? 1 : pages > MAX_PAGES ? MAX_PAGES : pages;
}

/* Forks a child that holds every inherited descriptor and exits; true once
 * it has been reaped with status 0. */
static int fork_and_reap(void)
{
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	int status = 0;
	return child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

/* A new context with an IOAS where `len` bytes at `buf` are mapped, behind
 * a mock device when `mock` (then the map pins at once); the descriptor or
 * -1. */
static int context_with_map(void *buf, uint64_t len, int mock, uint32_t *ioas, uint64_t *iova)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return -1;
	int id = ioas_alloc(fd);
	struct mock_dev md;
	if (id <= 0 || (mock && mock_domain(fd, id, 0, &md) != 0))
		goto fail;
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_READABLE | MAP_WRITEABLE, .ioas_id = id,
			     .user_va = (uintptr_t)buf, .length = len };
	if (ioctl(fd, IOMMU_IOAS_MAP, &m) != 0)
		goto fail;
	*ioas = id;
	*iova = m.iova;
	return fd;
fail:
	close(fd);
	return -1;
}

/* The context: the pins behind its mock device go with the last close. */
static void context_rounds(void *buf, long pages, long pin0, long page_kb)
{
	int setup = 0, pinned = 0, reaped = 0, closed = 0, late = 0;
	for (int i = 0; i < ROUNDS; i++) {
		uint32_t ioas;
		uint64_t iova;
		int fd = context_with_map(buf, pages * PAGE, 1, &ioas, &iova);
		if (fd < 0) {
			setup++;
			continue;
		}
		/* Read before the fork, so that the server's call thread is
		 * asleep by the close (a fork outlasts its polling): the shim's
		 * close call then races the server's own release from a
		 * wake-up, which shows a lost race most often. */
		pinned += vm_pin_kb() == pin0 + pages * page_kb;
		reaped += fork_and_reap();
		closed += close(fd) == 0;
		late += vm_pin_kb() != pin0;
	}
	printf("context: %d rounds of %ld pages, %d set-up failures, %d late releases\n", ROUNDS, pages,
	       setup, late);
	CHECK(setup == 0, "every round opens a context, maps and pins its pages");
	CHECK(pinned == ROUNDS, "VmPin counts the pages while the context is open");
	CHECK(reaped == ROUNDS, "each child holding the descriptor exits and is reaped");
	CHECK(closed == ROUNDS, "the parent's close succeeds");
	CHECK(late == 0, "VmPin is back when the last close returns, every round");
}

/* An access (a side file): its pins go with its last close. */
static void access_rounds(void *buf, long pages)
{
	uint32_t ioas;
	uint64_t iova;
	int fd = context_with_map(buf, pages * PAGE, 0, &ioas, &iova);
	CHECK(fd >= 0, "a context with the buffer mapped");
	if (fd < 0)
		return;
	int setup = 0, reaped = 0, closed = 0, late = 0;
	for (int i = 0; i < ROUNDS; i++) {
		struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
		c.create_access.flags = ACCESS_NEEDS_PIN_PAGES;
		if (ioctl(fd, IOMMU_TEST_CMD, &c) != 0) {
			setup++;
			continue;
		}
		int afd = c.create_access.out_access_fd;
		struct test_cmd p = { .size = sizeof(p), .op = TEST_OP_ACCESS_PAGES, .id = afd };
		p.access_pages.iova = iova;
		p.access_pages.length = pages * PAGE;
		p.access_pages.uptr = (uintptr_t)buf;
		if (ioctl(fd, IOMMU_TEST_CMD, &p) != 0 || check_refs(fd, buf, pages * PAGE, 1) != 0)
			setup++;
		reaped += fork_and_reap();
		closed += close(afd) == 0;
		late += check_refs(fd, buf, pages * PAGE, 0) != 0;
	}
	printf("access: %d rounds of %ld pages, %d set-up failures, %d late releases\n", ROUNDS, pages,
	       setup, late);
	CHECK(setup == 0, "every round makes an access and pins the pages through it");
	CHECK(reaped == ROUNDS, "each child holding the access exits and is reaped");
	CHECK(closed == ROUNDS, "the parent's close of the access succeeds");
	CHECK(late == 0, "the access's pins are gone when its last close returns, every round");
	CHECK(close(fd) == 0, "close the context");
}

int main(void)
{
	long page_kb = sysconf(_SC_PAGESIZE) / 1024;
	long pages = pages_to_pin();
	long pin0 = vm_pin_kb();
	CHECK(pin0 >= 0, "the status file has VmPin");
	void *buf = NULL;
	CHECK(posix_memalign(&buf, PAGE, pages * PAGE) == 0, "a buffer");
	memset(buf, 0, pages * PAGE);
	context_rounds(buf, pages, pin0, page_kb);
	access_rounds(buf, pages < ACCESS_PAGES ? pages : ACCESS_PAGES);
	return finish();
}
