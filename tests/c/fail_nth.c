/* Fault injection as Linux's iommufd_fail_nth drives it: the thread writes n
 * to its /proc/self/task/<tid>/fail-nth, runs a sequence of iommufd calls,
 * and reads the file back: "0" when the n-th failure point failed, what
 * is left otherwise. Each n fails the sequence at one more point, with
 * ENOMEM, and leaves nothing pinned; the sweep ends when n passes the last
 * point. debugfs shows the fault-injection knobs the kernel's test sets.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static char *buffer;

/* The sequence under test: open, IOAS, a mock domain, a map, an access
 * that pins, an unmap. 0, or -1 at the first failure (errno kept). */
static int sequence(int *out_fd)
{
	int fd = open("/dev/iommu", O_RDWR);
	*out_fd = fd;
	if (fd < 0)
		return -1;
	int ioas = ioas_alloc(fd);
	if (ioas < 0)
		return -1;
	struct mock_dev dev;
	if (mock_domain(fd, ioas, 0, &dev))
		return -1;
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)buffer, .length = 16 * PAGE, .iova = MOCK_APERTURE_START };
	if (ioctl(fd, IOMMU_IOAS_MAP, &m))
		return -1;
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	c.create_access.flags = ACCESS_NEEDS_PIN_PAGES;
	if (ioctl(fd, IOMMU_TEST_CMD, &c))
		return -1;
	struct test_cmd p = { .size = sizeof(p), .op = TEST_OP_ACCESS_PAGES, .id = c.create_access.out_access_fd };
	p.access_pages.iova = MOCK_APERTURE_START;
	p.access_pages.length = 4 * PAGE;
	p.access_pages.uptr = (uintptr_t)buffer;
	int r = ioctl(fd, IOMMU_TEST_CMD, &p);
	close(c.create_access.out_access_fd);
	if (r)
		return -1;
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = MOCK_APERTURE_START, .length = 16 * PAGE };
	return ioctl(fd, IOMMU_IOAS_UNMAP, &u);
}

static long read_counter(int f)
{
	char text[32] = { 0 };
	if (pread(f, text, sizeof(text) - 1, 0) <= 1)
		return -1;
	return strtol(text, NULL, 10);
}

static int arm(int f, unsigned n)
{
	char text[16];
	int len = snprintf(text, sizeof(text), "%u", n);
	return pwrite(f, text, len, 0) == len ? 0 : -1;
}

static void *other_thread(void *arg)
{
	(void)arg;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/fail-nth", gettid());
	int f = open(path, O_RDWR);
	long left = f < 0 ? -1 : read_counter(f);
	if (f >= 0)
		close(f);
	return (void *)left;
}

int main(void)
{
	DIR *debugfs = opendir("/sys/kernel/debug/");
	CHECK(debugfs != NULL, "debugfs can be listed");
	int knob = debugfs ? openat(dirfd(debugfs), "failslab/ignore-gfp-wait", O_WRONLY) : -1;
	CHECK(knob >= 0 && write(knob, "N", 1) == 1, "failslab's knobs are there to set");
	if (knob >= 0)
		close(knob);
	if (debugfs)
		closedir(debugfs);

	buffer = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/fail-nth", gettid());
	int f = open(path, O_RDWR);
	CHECK(f >= 0, "the thread's fail-nth file opens");
	CHECK(read_counter(f) == 0, "it starts disarmed");
	CHECK(pwrite(f, "x", 1, 0) == -1 && errno == EINVAL, "a write that is no number is EINVAL");
	CHECK(pwrite(f, "4294967296", 10, 0) == -1 && errno == ERANGE, "one past u32 is ERANGE");
	CHECK(write(f, "0x10\n", 5) == 5 && read_counter(f) == 16, "write takes kstrtouint's forms");
	char text[8] = { 0 };
	CHECK(lseek(f, 0, SEEK_SET) == 0 && read(f, text, 1) == 1 && read(f, text + 1, 7) == 2 && !strcmp(text, "16\n"),
	      "read continues from the file position");
	CHECK(arm(f, 0) == 0, "disarm");

	int fd = -1;
	CHECK(sequence(&fd) == 0, "the sequence succeeds unarmed");
	close(fd);

	unsigned n, failed_with_enomem = 0, leaks = 0;
	for (n = 1; n < 1000; n++) {
		if (arm(f, n))
			break;
		int r = sequence(&fd);
		int err = errno;
		long left = read_counter(f);
		arm(f, 0);
		if (fd >= 0)
			close(fd);
		/* Nothing may stay pinned once the context is gone. */
		int check = open("/dev/iommu", O_RDWR);
		if (check_refs(check, buffer, 16 * PAGE, 0))
			leaks++;
		close(check);
		if (left != 0) {
			CHECK(r == 0 && left >= 1, "past the last point the sequence succeeds and the count is left");
			break;
		}
		if (r == -1 && err == ENOMEM)
			failed_with_enomem++;
	}
	printf("# %u failure points\n", n - 1);
	CHECK(n > 5 && failed_with_enomem == n - 1, "each armed run failed with ENOMEM at its point");
	CHECK(leaks == 0, "and left nothing pinned");

	arm(f, 3);
	pthread_t t;
	void *other = NULL;
	CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0 && pthread_join(t, &other) == 0 && other == (void *)0,
	      "another thread's counter is its own");
	CHECK(read_counter(f) == 3, "and ours is as we set it");
	arm(f, 0);
	close(f);
	return finish();
}
