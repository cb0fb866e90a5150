/* Times VFIO operations through the shim. Usage:
 *   vfio_ops pread N        N config-space dword preads of vfio0
 *   vfio_ops ranges N       N IOMMU_IOAS_IOVA_RANGES round trips, for scale
 *   vfio_ops init R D       R rounds of D threads, each opening vfio<i>,
 *                           binding, attaching and reading its region and
 *                           IRQ info, then closing (what
 *                           vfio_pci_device_init_perf_test measures)
 * Prints the elapsed nanoseconds.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "../../../../tests/c/softiommu_abi.h"
#include "../../../../tests/c/vfio_abi.h"

static int iommufd;

static long long now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int open_bound(int minor, uint32_t *ioas)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", minor);
	int dev = open(path, O_RDWR);
	struct t_bind b = { .argsz = sizeof(b), .iommufd = iommufd };
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	if (dev < 0 || ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &b) ||
	    ioctl(iommufd, IOMMU_IOAS_ALLOC, &a))
		return -1;
	struct t_attach at = { .argsz = sizeof(at), .pt_id = a.out_ioas_id };
	if (ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		return -1;
	*ioas = a.out_ioas_id;
	return dev;
}

static void *init_one(void *arg)
{
	int minor = (int)(intptr_t)arg;
	uint32_t ioas;
	int dev = open_bound(minor, &ioas);
	if (dev < 0)
		return (void *)1;
	struct t_device_info info = { .argsz = sizeof(info) };
	if (ioctl(dev, T_VFIO_DEVICE_GET_INFO, &info))
		return (void *)1;
	for (uint32_t i = 0; i < info.num_regions; i++) {
		struct t_region_info r = { .argsz = sizeof(r), .index = i };
		if (i != 8 && ioctl(dev, T_VFIO_DEVICE_GET_REGION_INFO, &r))
			return (void *)1;
	}
	for (uint32_t i = 0; i < info.num_irqs; i++) {
		struct t_irq_info q = { .argsz = sizeof(q), .index = i };
		ioctl(dev, T_VFIO_DEVICE_GET_IRQ_INFO, &q);
	}
	close(dev);
	struct destroy_cmd d = { .size = sizeof(d), .id = ioas };
	ioctl(iommufd, IOMMU_DESTROY, &d);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 1;
	long n = atol(argv[2]);
	iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		return 1;
	long long t0 = now();
	if (!strcmp(argv[1], "pread")) {
		uint32_t ioas;
		int dev = open_bound(0, &ioas);
		if (dev < 0)
			return 2;
		t0 = now();
		for (long i = 0; i < n; i++) {
			uint32_t v;
			if (pread(dev, &v, 4, T_REGION_OFFSET(T_CONFIG_REGION)) != 4)
				return 2;
		}
	} else if (!strcmp(argv[1], "ranges")) {
		struct ioas_alloc_cmd a = { .size = sizeof(a) };
		if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &a))
			return 2;
		t0 = now();
		for (long i = 0; i < n; i++) {
			struct iova_ranges_cmd r = { .size = sizeof(r), .ioas_id = a.out_ioas_id };
			if (ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &r) && errno != EMSGSIZE)
				return 2;
		}
	} else if (!strcmp(argv[1], "init")) {
		int devices = argc > 3 ? atoi(argv[3]) : 1;
		pthread_t threads[64];
		for (long r = 0; r < n; r++) {
			for (int d = 0; d < devices && d < 64; d++)
				pthread_create(&threads[d], NULL, init_one, (void *)(intptr_t)d);
			for (int d = 0; d < devices && d < 64; d++) {
				void *rc;
				pthread_join(threads[d], &rc);
				if (rc)
					return 3;
			}
		}
	}
	printf("%lld\n", now() - t0);
	return 0;
}
