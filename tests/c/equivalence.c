/* A random but reproducible run of iommufd calls, printed call by call, so
 * that the test suite can replay the very same bytes through the library
 * and compare every result, errno and returned struct, and the memory the
 * calls wrote (the shim's fast path against the engine itself).
 *
 * Usage: equivalence [SEED [CALLS]]. All user memory the calls name lies
 * in one region at a fixed address, filled with a fixed pattern, that the
 * replay rebuilds. Output, one line per call:
 *   call REQUEST BYTES-BEFORE
 *   ret RESULT ERRNO BYTES-AFTER
 * then "region HASH" (FNV-1a of the region) and the usual check lines.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"

#define REGION 0x3f0000000000ULL
#define REGION_PAGES 64
/* Where arrays for IOVA_RANGES (written) and ALLOW_IOVAS (read) sit. */
#define ARRAY_PAGE 62

static uint64_t state;

static uint64_t next(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static uint64_t below(uint64_t n)
{
	return next() % n;
}

static void hex(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
}

/* Some IOVA: a page of the first 64, sometimes not page aligned. */
static uint64_t some_iova(void)
{
	uint64_t iova = (1 + below(64)) * PAGE;
	return below(8) == 0 ? iova + below(PAGE) : iova;
}

static uint64_t some_length(void)
{
	switch (below(8)) {
	case 0:
		return 0;
	case 1:
		return below(3 * PAGE);
	default:
		return (1 + below(4)) * PAGE;
	}
}

static uint32_t some_id(void)
{
	return below(8);
}

static uint32_t some_map_flags(void)
{
	uint32_t f = below(8) ? MAP_FIXED_IOVA : 0;
	if (below(4))
		f |= MAP_READABLE;
	if (below(2))
		f |= MAP_WRITEABLE;
	return f;
}

/* One call: fills `arg` and returns its request and size. */
static unsigned long build(unsigned char *arg, size_t *size)
{
	memset(arg, 0, 256);
	switch (below(10)) {
	case 0: {
		struct ioas_alloc_cmd *c = (void *)arg;
		*size = sizeof(*c);
		c->size = sizeof(*c);
		return IOMMU_IOAS_ALLOC;
	}
	case 1:
	case 2: {
		struct map_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct map_cmd){ .size = sizeof(*c), .flags = some_map_flags(), .ioas_id = some_id(),
				       .user_va = REGION + below(56) * PAGE, .length = some_length(),
				       .iova = some_iova() };
		if (below(16) == 0)
			c->user_va += below(PAGE);
		return IOMMU_IOAS_MAP;
	}
	case 3: {
		struct unmap_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct unmap_cmd){ .size = sizeof(*c), .ioas_id = some_id(), .iova = some_iova(),
					 .length = some_length() };
		if (below(8) == 0) {
			c->iova = 0;
			c->length = UINT64_MAX;
		}
		return IOMMU_IOAS_UNMAP;
	}
	case 4: {
		struct copy_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct copy_cmd){ .size = sizeof(*c), .flags = some_map_flags(), .dst_ioas_id = some_id(),
					.src_ioas_id = some_id(), .length = some_length(),
					.dst_iova = some_iova(), .src_iova = some_iova() };
		return IOMMU_IOAS_COPY;
	}
	case 5: {
		struct iova_ranges_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct iova_ranges_cmd){ .size = sizeof(*c), .ioas_id = some_id(), .num_iovas = below(4),
					       .allowed_iovas = REGION + ARRAY_PAGE * PAGE };
		return IOMMU_IOAS_IOVA_RANGES;
	}
	case 6: {
		struct allow_iovas_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct allow_iovas_cmd){ .size = sizeof(*c), .ioas_id = some_id(), .num_iovas = below(3),
					       .allowed_iovas = REGION + ARRAY_PAGE * PAGE };
		return IOMMU_IOAS_ALLOW_IOVAS;
	}
	case 7: {
		struct destroy_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct destroy_cmd){ .size = sizeof(*c), .id = some_id() };
		return IOMMU_DESTROY;
	}
	case 8: {
		struct option_cmd *c = (void *)arg;
		*size = sizeof(*c);
		*c = (struct option_cmd){ .size = sizeof(*c), .option_id = 1, .op = below(2),
					  .object_id = some_id(), .val64 = below(2) };
		return IOMMU_OPTION;
	}
	default: {
		struct test_cmd *c = (void *)arg;
		*size = sizeof(*c);
		c->size = sizeof(*c);
		c->id = some_id();
		if (below(2)) {
			c->op = TEST_OP_ADD_RESERVED;
			c->add_reserved.start = some_iova();
			c->add_reserved.length = some_length();
		} else {
			c->op = TEST_OP_MOCK_DOMAIN;
		}
		return IOMMU_TEST_CMD;
	}
	}
}

int main(int argc, char **argv)
{
	state = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	state = state * 0x9e3779b97f4a7c15ULL + 1;
	long calls = argc > 2 ? strtol(argv[2], NULL, 0) : 200;
	unsigned char *region = mmap((void *)REGION, REGION_PAGES * PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(region == (void *)REGION, "the region at its fixed address");
	for (size_t i = 0; i < REGION_PAGES * PAGE; i++)
		region[i] = (unsigned char)(i * 31 + i / PAGE);
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	static unsigned char arg[256];
	for (long k = 0; k < calls; k++) {
		size_t size;
		unsigned long request = build(arg, &size);
		printf("call %lx ", request);
		hex(arg, size);
		printf("\n");
		int rc = ioctl(fd, request, arg);
		printf("ret %d %d ", rc, rc < 0 ? errno : 0);
		hex(arg, size);
		printf("\n");
	}
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < REGION_PAGES * PAGE; i++)
		h = (h ^ region[i]) * 0x100000001b3ULL;
	printf("region %016llx\n", (unsigned long long)h);
	close(fd);
	return finish();
}
