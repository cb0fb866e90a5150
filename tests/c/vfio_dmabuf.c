/* Peer-to-peer DMA through a dma-buf: a range of the NIC's BAR 0
 * (0000:02:00.0) is exported with VFIO_DEVICE_FEATURE_DMA_BUF, mapped into
 * an IOAS with IOMMU_IOAS_MAP_FILE, and the I/OAT (0000:00:04.0) copies a
 * buffer into it; the bytes land in the NIC's BAR. Turning the NIC's
 * memory decoding off revokes the dma-buf: the next copy halts on a
 * translation fault and new maps are refused; closing the NIC's file
 * revokes it for good. Errno as vfio-pci and iommufd give them.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "vfio_abi.h"
#include "check.h"

#define NIC "0000:02:00.0"
#define IOAT "0000:00:04.0"
#define T_VFIO_DEVICE_FEATURE VFIO_REQ(17)
#define FEATURE_GET (1u << 16)
#define FEATURE_SET (1u << 17)
#define FEATURE_DMA_BUF 11
#define LEN (64 << 10)
#define BAR_OFFSET 0x1000
#define DESC_IOVA 0x1000000ull
#define SRC_IOVA 0x2000000ull
#define DST_IOVA 0x3000000ull
/* I/OAT channel 0's registers in BAR 0 (drivers/dma/ioat/registers.h). */
#define CHANCTRL 0x80
#define CHANCMD 0x84
#define DMACOUNT 0x86
#define CHANSTS 0x88
#define CHAINADDR 0x90
#define CHANERR 0xa8

struct dma_buf_request {
	uint32_t argsz, flags;
	uint32_t region_index, open_flags, dmabuf_flags, nr_ranges;
	struct { uint64_t offset, length; } ranges[2];
};

static int open_function(const char *bdf)
{
	char dir_path[128], path[300] = "";
	snprintf(dir_path, sizeof(dir_path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	DIR *dir = opendir(dir_path);
	struct dirent *e;
	while (dir && (e = readdir(dir)))
		if (!strncmp(e->d_name, "vfio", 4))
			snprintf(path, sizeof(path), "/dev/vfio/devices/%s", e->d_name);
	if (dir)
		closedir(dir);
	return open(path, O_RDWR);
}

static int bind(int dev, int iommufd)
{
	struct t_bind b = { .argsz = sizeof(b), .iommufd = iommufd };
	return ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &b);
}

static void set_command(int dev, uint16_t command)
{
	pwrite(dev, &command, 2, T_REGION_OFFSET(T_CONFIG_REGION) + 4);
}

/* Asks for a dma-buf of BAR `region`'s `n` ranges at `at` (each LEN long),
 * its file opened with `open_flags`. */
static int export_as(int dev, uint32_t flags, uint32_t region, int n, uint64_t at, uint32_t open_flags)
{
	struct dma_buf_request r = {
		.argsz = 24 + 16 * n, .flags = flags | FEATURE_DMA_BUF,
		.region_index = region, .open_flags = open_flags, .nr_ranges = n,
	};
	for (int i = 0; i < n; i++) {
		r.ranges[i].offset = at + (uint64_t)i * LEN;
		r.ranges[i].length = LEN;
	}
	return ioctl(dev, T_VFIO_DEVICE_FEATURE, &r);
}

static int export(int dev, uint32_t flags, uint32_t region, int n, uint64_t at)
{
	return export_as(dev, flags, region, n, at, O_RDWR | O_CLOEXEC);
}

static int map_file(int iommufd, uint32_t ioas, int fd, uint64_t iova)
{
	struct map_file_cmd m = {
		.size = sizeof(m), .ioas_id = ioas, .fd = fd, .length = LEN, .iova = iova,
		.flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
	};
	return ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &m);
}

static int map(int iommufd, uint32_t ioas, void *buf, uint64_t iova)
{
	struct map_cmd m = { .size = sizeof(m), .ioas_id = ioas, .user_va = (uintptr_t)buf,
			     .length = LEN, .iova = iova, .flags = MAP_FIXED_IOVA | MAP_READABLE };
	return ioctl(iommufd, IOMMU_IOAS_MAP, &m);
}

/* Runs the I/OAT descriptor at DESC_IOVA; the channel's status after. */
static uint64_t copy(volatile uint8_t *bar)
{
	bar[CHANCMD] = 0x20; /* reset the channel */
	*(volatile uint64_t *)(bar + CHAINADDR) = DESC_IOVA;
	*(volatile uint16_t *)(bar + CHANCTRL) = 1;
	*(volatile uint16_t *)(bar + DMACOUNT) = 1;
	uint64_t sts;
	for (long spins = 0; ((sts = *(volatile uint64_t *)(bar + CHANSTS)) & 7) == 0; spins++)
		if (spins > 2000000000L)
			break;
	return sts & 7;
}

int main(void)
{
	int iommufd = open("/dev/iommu", O_RDWR);
	struct ioas_alloc_cmd alloc = { .size = sizeof(alloc) };
	CHECK(iommufd >= 0 && ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) == 0, "an IOAS");
	uint32_t ioas = alloc.out_ioas_id;
	int nic = open_function(NIC), ioat = open_function(IOAT);
	CHECK(nic >= 0 && ioat >= 0, "both functions open");
	CHECK(bind(nic, iommufd) == 0 && bind(ioat, iommufd) == 0, "both bound");
	set_command(nic, 0x2);

	/* The request's rules (vfio_pci_core_feature_dma_buf). */
	CHECK(FAILS(export(nic, FEATURE_SET, 0, 1, BAR_OFFSET), EINVAL), "DMA_BUF is GET only");
	CHECK(FAILS(export(nic, FEATURE_GET, 0, 0, BAR_OFFSET), EINVAL), "no ranges: EINVAL");
	CHECK(FAILS(export(nic, FEATURE_GET, 1, 1, BAR_OFFSET), ENODEV), "an absent BAR: ENODEV");
	CHECK(FAILS(export(nic, FEATURE_GET, 0, 1, 0x800), EINVAL), "an unaligned range: EINVAL");
	CHECK(FAILS(export(nic, FEATURE_GET, 0, 2, 0x10000), EINVAL), "past the BAR: EINVAL");

	int dmabuf = export(nic, FEATURE_GET, 0, 1, BAR_OFFSET);
	CHECK(dmabuf >= 0, "the dma-buf's descriptor is the return value");
	CHECK(fcntl(dmabuf, F_GETFD) & FD_CLOEXEC, "opened close-on-exec as asked");
	int kept = export_as(nic, FEATURE_GET, 0, 1, BAR_OFFSET, O_RDWR);
	CHECK(kept >= 0 && !(fcntl(kept, F_GETFD) & FD_CLOEXEC), "without O_CLOEXEC it stays open on exec");
	close(kept);
	CHECK(mmap(NULL, LEN, PROT_READ, MAP_SHARED, dmabuf, 0) == MAP_FAILED && errno == EINVAL,
	      "vfio-pci's dma-buf cannot be mapped: EINVAL");
	CHECK(FAILS(ioctl(dmabuf, T_VFIO_DEVICE_RESET), ENOTTY), "a VFIO ioctl on it: ENOTTY");
	int two = export(nic, FEATURE_GET, 0, 2, 0);
	CHECK(two >= 0 && FAILS(map_file(iommufd, ioas, two, DST_IOVA), EOPNOTSUPP),
	      "iommufd maps a dma-buf of one range only: EOPNOTSUPP");
	close(two);
	CHECK(map_file(iommufd, ioas, dmabuf, DST_IOVA) == 0, "IOMMU_IOAS_MAP_FILE maps the dma-buf");

	/* The I/OAT copies host memory into the NIC's BAR. */
	uint8_t *desc = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t *src = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < LEN; i++)
		src[i] = "peer to peer "[i % 13];
	*(uint32_t *)desc = LEN;
	*(uint64_t *)(desc + 8) = SRC_IOVA;
	*(uint64_t *)(desc + 16) = DST_IOVA;
	*(uint64_t *)(desc + 24) = DESC_IOVA;
	CHECK(map(iommufd, ioas, desc, DESC_IOVA) == 0 && map(iommufd, ioas, src, SRC_IOVA) == 0,
	      "descriptor and source mapped");
	struct t_attach attach = { .argsz = 12, .pt_id = ioas };
	CHECK(ioctl(ioat, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) == 0, "the I/OAT attached");
	set_command(ioat, 0x6);
	volatile uint8_t *bar = mmap(NULL, 16 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, ioat, 0);
	CHECK(bar != MAP_FAILED, "the I/OAT's registers mapped");
	if (bar == MAP_FAILED)
		return finish();
	CHECK(copy(bar) == 1, "the copy is DONE");
	uint8_t *landed = malloc(LEN);
	CHECK(pread(nic, landed, LEN, T_REGION_OFFSET(0) + BAR_OFFSET) == LEN &&
		      !memcmp(landed, src, LEN),
	      "the bytes are in the NIC's BAR");

	/* Memory decoding off: revoked. */
	set_command(nic, 0x0);
	CHECK(copy(bar) == 3 && *(volatile uint32_t *)(bar + CHANERR) != 0,
	      "a copy into the revoked dma-buf halts the channel on its fault");
	CHECK(FAILS(map_file(iommufd, ioas, dmabuf, DST_IOVA + LEN), ENODEV),
	      "a revoked dma-buf maps no more: ENODEV");
	set_command(nic, 0x2);
	CHECK(map_file(iommufd, ioas, dmabuf, DST_IOVA + LEN) == 0, "restored, it maps again");
	CHECK(copy(bar) == 3, "the old mapping stays revoked");
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = DST_IOVA, .length = LEN };
	CHECK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &u) == 0 && map_file(iommufd, ioas, dmabuf, DST_IOVA) == 0,
	      "unmapped and mapped anew");
	memset(src, 'x', LEN);
	CHECK(copy(bar) == 1 && pread(nic, landed, LEN, T_REGION_OFFSET(0) + BAR_OFFSET) == LEN &&
		      landed[0] == 'x',
	      "the new mapping reaches the BAR");

	/* The NIC's user closes it: the dma-buf is revoked for good. */
	close(nic);
	CHECK(FAILS(map_file(iommufd, ioas, dmabuf, DST_IOVA + 2 * LEN), ENODEV),
	      "after the function's close: ENODEV");
	close(dmabuf);
	CHECK(FAILS(map_file(iommufd, ioas, dmabuf, DST_IOVA + 2 * LEN), EBADF),
	      "a closed dma-buf descriptor: EBADF");
	free(landed);
	return finish();
}
