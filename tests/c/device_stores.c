/* A driver's plain stores to a device model's mapped registers reach the
 * device, as MMIO writes do: the DSA (0000:6a:01.0, /dev/vfio/devices/vfio7)
 * configured through stores to BAR 0, a descriptor written to its portal
 * with MOVDIR64B (emulated where the CPU lacks it), write-1-to-clear
 * through a store; and faults that are not the device's still reach the
 * program's own SIGSEGV handler.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "vfio_abi.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define CDEV "/dev/vfio/devices/vfio7"
#define IOVA 0x1000000ull
#define MEM_LEN (4 << 20)

static volatile uint8_t *bar0;

static uint32_t command(uint32_t cmd)
{
	*(volatile uint32_t *)(bar0 + 0xa0) = cmd << 20;
	return *(volatile uint32_t *)(bar0 + 0xa8);
}

static void movdir64b(volatile void *dst, const void *src)
{
	/* movdir64b (%rdx), %rax */
	asm volatile(".byte 0x66, 0x0f, 0x38, 0xf8, 0x02" : : "a"(dst), "d"(src) : "memory");
}

static sigjmp_buf recover;
static volatile int own_faults;

static void own_handler(int sig)
{
	(void)sig;
	own_faults++;
	siglongjmp(recover, 1);
}

int main(void)
{
	int iommufd = open("/dev/iommu", O_RDWR);
	int dev = open(CDEV, O_RDWR);
	struct t_bind bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	CHECK(dev >= 0 && ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0, "bind the DSA");
	uint32_t ioas = (uint32_t)ioas_alloc(iommufd);
	uint8_t *mem = mmap(NULL, MEM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct map_cmd m = { .size = sizeof(m),
			     .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)mem, .length = MEM_LEN,
			     .iova = IOVA };
	CHECK(ioctl(iommufd, IOMMU_IOAS_MAP, &m) == 0, "map 4 MiB at 0x1000000");
	struct t_attach attach = { .argsz = sizeof(attach), .pt_id = ioas };
	CHECK(ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) == 0, "attach");
	uint16_t cmdreg = 0x6;
	CHECK(pwrite(dev, &cmdreg, 2, T_REGION_OFFSET(T_CONFIG_REGION) + 4) == 2, "bus master on");
	bar0 = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, dev, T_REGION_OFFSET(0));
	volatile uint8_t *portal =
		mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, dev, T_REGION_OFFSET(2));
	CHECK(bar0 != MAP_FAILED && portal != MAP_FAILED, "map BAR 0 and the portal");

	CHECK(command(5) == 0, "reset through a store to CMD");
	CHECK(command(6) == 0x20, "enabling the WQ first: CMDSTS says the device is not enabled");
	/* WQ 0: 32 entries, dedicated, memmove and batch; group 0. */
	volatile uint32_t *wqcfg = (volatile uint32_t *)(bar0 + 0x500);
	wqcfg[0] = 32;
	wqcfg[2] = 1;
	wqcfg[3] = 21 | 10 << 5;
	wqcfg[8] = 1 << 3 | 1 << 1;
	*(volatile uint64_t *)(bar0 + 0x400) = 1;
	*(volatile uint64_t *)(bar0 + 0x420) = 1;
	CHECK(wqcfg[0] == 32, "configuration stores land");
	CHECK(command(1) == 0 && command(6) == 0, "enable device and WQ");
	CHECK((*(volatile uint64_t *)(bar0 + 0x90) & 3) == 1, "GENSTATS reads enabled");

	/* A memmove of 64 KiB with a completion record, through the portal. */
	uint8_t *src = mem + 0x100000, *dst = mem + 0x200000;
	volatile uint8_t *record = mem + 0x1000;
	memset(src, 'd', 65536);
	uint8_t desc[64] __attribute__((aligned(64))) = { 0 };
	uint32_t word = 0x0c | 3u << 24; /* CRAV | RCR, memmove */
	uint64_t cr = IOVA + 0x1000, s = IOVA + 0x100000, d = IOVA + 0x200000;
	uint32_t size = 65536;
	memcpy(desc + 4, &word, 4);
	memcpy(desc + 8, &cr, 8);
	memcpy(desc + 16, &s, 8);
	memcpy(desc + 24, &d, 8);
	memcpy(desc + 32, &size, 4);
	movdir64b(portal, desc);
	for (int i = 0; i < 100000 && !record[0]; i++)
		usleep(10);
	CHECK(record[0] == 1, "MOVDIR64B to the portal: the completion record says success");
	CHECK(memcmp(src, dst, 65536) == 0, "and the bytes arrived");

	/* A source the IOAS does not map: the record reports the fault. */
	uint64_t bad = 0x40000000;
	memcpy(desc + 16, &bad, 8);
	memset((void *)record, 0, 32);
	movdir64b(portal, desc);
	for (int i = 0; i < 100000 && !record[0]; i++)
		usleep(10);
	uint64_t fault;
	memcpy(&fault, (const void *)(record + 8), 8);
	CHECK(record[0] == 3 && fault == bad, "a page fault with its address in the record");
	CHECK((*(volatile uint64_t *)(bar0 + 0xc0) & 1) == 0, "and nothing in SWERR");

	/* A descriptor for a disabled WQ goes to SWERR; a store of 1s clears it. */
	CHECK(command(7) == 0, "disable the WQ");
	movdir64b(portal, desc);
	CHECK((*(volatile uint64_t *)(bar0 + 0xc0) & 1) == 1, "SWERR records the dropped descriptor");
	*(volatile uint64_t *)(bar0 + 0xc0) = 3;
	CHECK(*(volatile uint64_t *)(bar0 + 0xc0) == 0, "writing 1s clears it");

	/* A fault of the program's own still reaches its handler. */
	signal(SIGSEGV, own_handler);
	volatile uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sigsetjmp(recover, 1) == 0)
		ro[0] = 1;
	CHECK(own_faults == 1, "a store to the program's read-only page reaches its handler");
	CHECK(command(5) == 0, "device stores still trapped after that");
	close(dev);
	close(iommufd);
	return finish();
}
