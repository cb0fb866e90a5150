/* A caller stuck on its own memory stalls only itself: one thread passes an
 * ioctl struct that sits on a userfaultfd page nobody has filled yet; while
 * it waits, another thread's calls on the same context are answered at
 * once. The struct is read by the caller's own copy (the shim stages it),
 * so no server thread and no context lock waits with it. Once the page is
 * filled the stuck call completes. (The trust issue's fourth finding.)
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static int fd;
static void *stuck_page;
static volatile int stuck_done;
static int stuck_result = -2;

static void *stuck_caller(void *arg)
{
	(void)arg;
	stuck_result = ioctl(fd, IOMMU_IOAS_ALLOC, stuck_page);
	stuck_done = 1;
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
	fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	/* One that also catches the kernel's accesses (as root), so that a
	 * server reading the struct itself would wait on it too; else one for
	 * user-mode faults, which is what the caller's own copy takes. */
	int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0)
		uffd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	CHECK(uffd >= 0, "a userfaultfd");
	struct uffdio_api api = { .api = UFFD_API };
	CHECK(ioctl(uffd, UFFDIO_API, &api) == 0, "UFFDIO_API");
	stuck_page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = { .range = { .start = (uintptr_t)stuck_page, .len = PAGE },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	CHECK(stuck_page != MAP_FAILED && ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, "a page nobody has filled");

	pthread_t t;
	CHECK(pthread_create(&t, NULL, stuck_caller, NULL) == 0, "a thread calls with its struct there");
	usleep(200 * 1000);
	CHECK(!stuck_done, "and waits");
	double t0 = now();
	int ioas = ioas_alloc(fd);
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	int ok = ioas > 0 && ioctl(fd, IOMMU_TEST_CMD, &c) == 0;
	double took = now() - t0;
	printf("# calls of another thread on the same context: %.3f ms\n", took * 1e3);
	CHECK(ok && took < 1.0, "another thread's calls on the context are answered meanwhile");
	close(c.create_access.out_access_fd);

	/* Fill the page with a valid struct: the stuck call goes on. */
	static char source[PAGE] __attribute__((aligned(4096)));
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	memcpy(source, &a, sizeof(a));
	struct uffdio_copy copy = { .dst = (uintptr_t)stuck_page, .src = (uintptr_t)source, .len = PAGE };
	CHECK(ioctl(uffd, UFFDIO_COPY, &copy) == 0, "fill the page");
	CHECK(pthread_join(t, NULL) == 0 && stuck_result == 0, "the stuck call completes");
	struct ioas_alloc_cmd *done = stuck_page;
	CHECK(done->out_ioas_id > 0 && (int)done->out_ioas_id != ioas, "with an IOAS of its own");
	close(uffd);
	close(fd);
	return finish();
}
