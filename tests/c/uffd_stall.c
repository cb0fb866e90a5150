/* A caller stuck on its own memory stalls only itself: one thread makes a
 * call whose memory sits on a userfaultfd page nobody has filled yet; while
 * it waits, another thread's calls on the same context are answered at
 * once; once the page is filled the stuck call completes. Three places the
 * stuck memory can be:
 * - the ioctl's struct (the shim stages it with the caller's own copy),
 *   an iommufd command's or a VFIO type1 one's on the context
 *   (VFIO_IOMMU_MAP_DMA);
 * - an array the struct points to that the call reads (IOAS_ALLOW_IOVAS);
 * - an array the call writes (IOAS_IOVA_RANGES).
 * The server copies the last two before it takes the context's lock and
 * writes back after, so no server thread holds a lock while it waits.
 * (The trust issue's fourth finding.)
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
#include "vfio_abi.h"

static int fd, uffd;
/* Whether the userfaultfd also catches the kernel's accesses (as root):
 * only then would a server copying the memory itself wait on it. */
static int catches_kernel;

struct stuck {
	unsigned long request;
	void *arg;
	volatile int done;
	int result;
	pthread_t thread;
};

static void *call(void *p)
{
	struct stuck *s = p;
	s->result = ioctl(fd, s->request, s->arg);
	s->done = 1;
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void *unfilled_page(void)
{
	void *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = { .range = { .start = (uintptr_t)page, .len = PAGE },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	CHECK(page != MAP_FAILED && ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, "a page nobody has filled");
	return page;
}

static void fill(void *page, const void *content, size_t len)
{
	static char source[PAGE] __attribute__((aligned(4096)));
	memset(source, 0, sizeof(source));
	memcpy(source, content, len);
	struct uffdio_copy copy = { .dst = (uintptr_t)page, .src = (uintptr_t)source, .len = PAGE };
	CHECK(ioctl(uffd, UFFDIO_COPY, &copy) == 0, "fill the page");
}

/* Starts `s` on its own thread and checks that it waits while another
 * thread's calls on the same context are answered. */
static void others_go_on(struct stuck *s, const char *where)
{
	CHECK(pthread_create(&s->thread, NULL, call, s) == 0, "a thread makes the call");
	usleep(200 * 1000);
	printf("# memory stuck in %s\n", where);
	CHECK(!s->done, "and waits");
	double t0 = now();
	int ioas = ioas_alloc(fd);
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	int ok = ioas > 0 && ioctl(fd, IOMMU_TEST_CMD, &c) == 0;
	double took = now() - t0;
	printf("# calls of another thread on the same context: %.3f ms\n", took * 1e3);
	CHECK(ok && took < 1.0, "another thread's calls on the context are answered meanwhile");
	close(c.create_access.out_access_fd);
}

static void completes(struct stuck *s)
{
	CHECK(pthread_join(s->thread, NULL) == 0 && s->result == 0, "the stuck call completes");
}

int main(void)
{
	fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	catches_kernel = uffd >= 0;
	if (uffd < 0)
		uffd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	CHECK(uffd >= 0, "a userfaultfd");
	struct uffdio_api api = { .api = UFFD_API };
	CHECK(ioctl(uffd, UFFDIO_API, &api) == 0, "UFFDIO_API");

	/* The struct itself. */
	void *page = unfilled_page();
	struct stuck alloc = { .request = IOMMU_IOAS_ALLOC, .arg = page };
	others_go_on(&alloc, "the struct");
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	fill(page, &a, sizeof(a));
	completes(&alloc);
	uint32_t ioas = ((struct ioas_alloc_cmd *)page)->out_ioas_id;
	CHECK(ioas > 0, "with an IOAS of its own");

	/* A VFIO type1 struct on the context (its compatibility IOAS). */
	struct vfio_ioas_cmd compat = { .size = sizeof(compat), .ioas_id = ioas, .op = 1 /* SET */ };
	CHECK(ioctl(fd, IOMMU_VFIO_IOAS, &compat) == 0, "the IOAS serves VFIO's ioctls");
	void *buf = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	page = unfilled_page();
	struct stuck vfio_map = { .request = T_VFIO_IOMMU_MAP_DMA, .arg = page };
	others_go_on(&vfio_map, "a VFIO struct");
	struct t_dma_map dm = { .argsz = sizeof(dm), .flags = 3 /* READ | WRITE */,
				.vaddr = (uintptr_t)buf, .iova = 0x4000000, .size = PAGE };
	fill(page, &dm, sizeof(dm));
	completes(&vfio_map);

	if (!catches_kernel) {
		/* The server's copies take no user-mode faults: it never waits. */
		struct allow_iovas_cmd allow = { .size = sizeof(allow), .ioas_id = ioas, .num_iovas = 1,
						 .allowed_iovas = (uintptr_t)unfilled_page() };
		CHECK(ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &allow) == -1 && errno == EFAULT,
		      "as non-root, memory the server cannot copy is EFAULT at once");
		close(uffd);
		close(fd);
		return finish();
	}

	/* An array the call reads. */
	page = unfilled_page();
	struct allow_iovas_cmd allow = { .size = sizeof(allow), .ioas_id = ioas, .num_iovas = 1,
					 .allowed_iovas = (uintptr_t)page };
	struct stuck reads = { .request = IOMMU_IOAS_ALLOW_IOVAS, .arg = &allow };
	others_go_on(&reads, "an array the call reads");
	struct iova_range range = { .start = 1 << 20, .last = (2 << 20) - 1 };
	fill(page, &range, sizeof(range));
	completes(&reads);

	/* An array the call writes. */
	page = unfilled_page();
	struct iova_ranges_cmd ranges = { .size = sizeof(ranges), .ioas_id = ioas, .num_iovas = 4,
					  .allowed_iovas = (uintptr_t)page };
	struct stuck writes = { .request = IOMMU_IOAS_IOVA_RANGES, .arg = &ranges };
	others_go_on(&writes, "an array the call writes");
	fill(page, "", 0);
	completes(&writes);
	struct iova_range *out = page;
	CHECK(ranges.num_iovas == 1 && out[0].start == 0 && out[0].last == UINT64_MAX,
	      "and writes the usable range");
	/* The allowed range the stuck read brought is where maps now go. */
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_READABLE, .ioas_id = ioas,
			     .user_va = (uintptr_t)buf, .length = PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP, &m) == 0 && m.iova >= range.start && m.iova < range.last,
	      "and a map lands in the allowed range");
	close(uffd);
	close(fd);
	return finish();
}
