/* A user-space driver for the emulated I/OAT DMA engine, by hand: VFIO
 * and iommufd as a real driver uses them. Build and run:
 *
 *   cc -O2 -o ioat_copy examples/ioat_copy.c
 *   softiommu run -- ./ioat_copy
 *
 * It copies a buffer with the device, then unmaps the source and shows the
 * channel halt on the translation fault.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* The uAPI this uses (include/uapi/linux/iommufd.h and vfio.h, Linux 6.6
 * and later), written out for systems whose headers are older. */
struct iommu_ioas_alloc { uint32_t size, flags, out_ioas_id; };
struct iommu_ioas_map { uint32_t size, flags, ioas_id, reserved; uint64_t user_va, length, iova; };
struct iommu_ioas_unmap { uint32_t size, ioas_id; uint64_t iova, length; };
struct vfio_device_bind_iommufd { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; };
struct vfio_device_attach_iommufd_pt { uint32_t argsz, flags, pt_id; };
#define IOMMU_IOAS_ALLOC _IO(';', 0x81)
#define IOMMU_IOAS_MAP _IO(';', 0x85)
#define IOMMU_IOAS_UNMAP _IO(';', 0x86)
#define IOMMU_IOAS_MAP_FIXED_IOVA 1
#define IOMMU_IOAS_MAP_WRITEABLE 2
#define IOMMU_IOAS_MAP_READABLE 4
#define VFIO_DEVICE_BIND_IOMMUFD _IO(';', 100 + 18)
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(';', 100 + 19)
#define VFIO_PCI_CONFIG_REGION_INDEX 7

#define BDF "0000:00:04.0"
#define LEN (64 << 10)
#define DESC_IOVA 0x1000000ull
#define SRC_IOVA 0x2000000ull
#define DST_IOVA 0x3000000ull
/* Channel 0's registers in BAR 0 (drivers/dma/ioat/registers.h). */
#define CHANCTRL 0x80
#define CHANCMD 0x84
#define DMACOUNT 0x86
#define CHANSTS 0x88
#define CHAINADDR 0x90
#define CHANERR 0xa8

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* The device node sysfs names for the function. */
static int open_device(void)
{
	DIR *dir = opendir("/sys/bus/pci/devices/" BDF "/vfio-dev");
	struct dirent *e;
	char path[300] = "";
	while (dir && (e = readdir(dir)))
		if (!strncmp(e->d_name, "vfio", 4))
			snprintf(path, sizeof(path), "/dev/vfio/devices/%s", e->d_name);
	if (dir)
		closedir(dir);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		die(BDF " has no VFIO device node (run under softiommu run)");
	return fd;
}

static void map(int iommufd, uint32_t ioas, void *buf, uint64_t iova, int writable)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m), .ioas_id = ioas, .user_va = (uintptr_t)buf,
		.length = LEN, .iova = iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 (writable ? IOMMU_IOAS_MAP_WRITEABLE : 0),
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &m))
		die("IOMMU_IOAS_MAP");
}

/* Rings the doorbell for the descriptor at DESC_IOVA and waits. */
static uint64_t copy(volatile uint8_t *bar)
{
	*(volatile uint64_t *)(bar + CHAINADDR) = DESC_IOVA;
	*(volatile uint16_t *)(bar + CHANCTRL) = 1; /* interrupt rearm */
	*(volatile uint16_t *)(bar + DMACOUNT) = 1;
	uint64_t sts;
	while (((sts = *(volatile uint64_t *)(bar + CHANSTS)) & 7) == 0) /* ACTIVE */
		;
	return sts;
}

static const char *state(uint64_t sts)
{
	static const char *names[] = { "ACTIVE", "DONE", "SUSPENDED", "HALTED" };
	return names[sts & 3];
}

int main(void)
{
	int iommufd = open("/dev/iommu", O_RDWR);
	int dev = open_device();
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	if (iommufd < 0 || ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC");

	uint8_t *desc = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t *src = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t *dst = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < LEN; i++)
		src[i] = "device bytes "[i % 13];
	/* One copy descriptor (hw.h's struct ioat_dma_descriptor), chained to itself. */
	*(uint32_t *)desc = LEN;
	*(uint64_t *)(desc + 8) = SRC_IOVA;
	*(uint64_t *)(desc + 16) = DST_IOVA;
	*(uint64_t *)(desc + 24) = DESC_IOVA;
	map(iommufd, alloc.out_ioas_id, desc, DESC_IOVA, 0);
	map(iommufd, alloc.out_ioas_id, src, SRC_IOVA, 0);
	map(iommufd, alloc.out_ioas_id, dst, DST_IOVA, 1);
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach),
							.pt_id = alloc.out_ioas_id };
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	printf("%s bound as device %u; IOAS %u, DMA through HWPT %u\n", BDF, bind.out_devid,
	       alloc.out_ioas_id, attach.pt_id);

	/* Memory space and bus master on; BAR 0 mapped; channel reset. */
	uint16_t command = 0x6;
	if (pwrite(dev, &command, 2, (uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40 | 4) != 2)
		die("enabling bus mastering");
	volatile uint8_t *bar = mmap(NULL, 16 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
	if (bar == MAP_FAILED)
		die("mapping BAR 0");
	bar[CHANCMD] = 0x20;

	uint64_t sts = copy(bar);
	printf("copy: channel %s, destination %s\n", state(sts),
	       memcmp(src, dst, LEN) ? "differs" : "holds the source's bytes");
	bar[CHANCMD] = 0x04; /* suspend */

	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = alloc.out_ioas_id,
					  .iova = SRC_IOVA, .length = LEN };
	if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		die("IOMMU_IOAS_UNMAP");
	memset(dst, 0, LEN);
	sts = copy(bar);
	printf("after unmapping the source: channel %s, CHANERR %#x, destination %s\n", state(sts),
	       *(volatile uint32_t *)(bar + CHANERR), dst[0] ? "written" : "untouched");
	return (sts & 3) == 3 ? 0 : 1;
}
