/* A VFIO device of the built-in machine (0000:02:00.0, a NIC alone in
 * IOMMU group 1) through the device cdev and through its group, as a
 * user-space driver or a VMM reaches it: sysfs, bind, attach, regions,
 * BAR mmap, MSI-X eventfds, reset, and each call's errno for bad input.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "vfio_abi.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define BDF "0000:02:00.0"
#define CDEV "/dev/vfio/devices/vfio3"
#define GROUP "/dev/vfio/1"

static int bind_to(int dev, int iommufd)
{
	struct t_bind b = { .argsz = sizeof(b), .iommufd = iommufd };
	if (ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &b))
		return -1;
	return (int)b.out_devid;
}

static int attach(int dev, uint32_t pt)
{
	struct t_attach a = { .argsz = sizeof(a), .pt_id = pt };
	return ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);
}

static void sysfs_describes_the_function(void)
{
	char buf[64] = { 0 };
	int fd = open("/sys/bus/pci/devices/" BDF "/vendor", O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0 && !strcmp(buf, "0x8086\n"),
	      "sysfs vendor reads 0x8086");
	close(fd);
	ssize_t n = readlink("/sys/bus/pci/devices/" BDF "/iommu_group", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	CHECK(n > 0 && !strcmp(strrchr(buf, '/') + 1, "1"), "iommu_group links to group 1");
	DIR *dir = opendir("/sys/bus/pci/devices/" BDF "/vfio-dev");
	struct dirent *e;
	int found = 0;
	while (dir && (e = readdir(dir)))
		found |= !strcmp(e->d_name, "vfio3");
	if (dir)
		closedir(dir);
	CHECK(found, "vfio-dev names the cdev vfio3");
	CHECK(access("/sys/kernel/iommu_groups/1/devices/" BDF, F_OK) == 0,
	      "the group lists the function");
}

/* The command register as sysfs' `config` shows it, or -1. */
static int sysfs_command(void)
{
	int fd = open("/sys/bus/pci/devices/" BDF "/config", O_RDONLY);
	uint16_t command = 0;
	ssize_t n = fd < 0 ? -1 : pread(fd, &command, 2, 4);
	if (fd >= 0)
		close(fd);
	return n == 2 ? command : -1;
}

static void regions_irqs_and_reset(int dev)
{
	struct t_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_INFO, &info) == 0 &&
		      info.flags == (T_DEVICE_FLAGS_PCI | T_DEVICE_FLAGS_RESET) &&
		      info.num_regions == 9 && info.num_irqs == 5,
	      "GET_INFO: a PCI function with reset, 9 regions, 5 IRQ indexes");
	info.argsz = 4;
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_GET_INFO, &info), EINVAL),
	      "GET_INFO with argsz below its fixed part is EINVAL");

	struct t_region_info cfg = { .argsz = sizeof(cfg), .index = T_CONFIG_REGION };
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_REGION_INFO, &cfg) == 0 && cfg.size == 4096 &&
		      cfg.offset == T_REGION_OFFSET(T_CONFIG_REGION),
	      "the config region: 4 KiB at index 7 << 40");
	uint16_t ids[2] = { 0, 0 };
	CHECK(pread(dev, ids, 4, cfg.offset) == 4 && ids[0] == 0x8086 && ids[1] == 0x1533,
	      "pread of config space gives 8086:1533");
	uint16_t enable = 0x6; /* memory space and bus master */
	CHECK(pwrite(dev, &enable, 2, cfg.offset + 4) == 2 && (sysfs_command() & 0x6) == 0x6,
	      "a command register write shows in sysfs' config at the next open");
	char byte;
	CHECK(FAILS(pread(dev, &byte, 1, cfg.offset + 4096), EINVAL),
	      "pread past config space is EINVAL");
	struct t_region_info bar = { .argsz = sizeof(bar), .index = 9 };
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_GET_REGION_INFO, &bar), EINVAL),
	      "region 9 does not exist: EINVAL");

	bar.index = 0;
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_REGION_INFO, &bar) == 0 && bar.size == 128 << 10 &&
		      (bar.flags & T_REGION_MMAP),
	      "BAR 0: 128 KiB, mappable");
	char *regs = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, bar.offset);
	CHECK(regs != MAP_FAILED, "mmap of BAR 0");
	if (regs != MAP_FAILED) {
		memcpy(regs + 0x100, "doorbell", 8);
		char back[8] = { 0 };
		CHECK(pread(dev, back, 8, bar.offset + 0x100) == 8 && !memcmp(back, "doorbell", 8),
		      "stores to the mapped BAR reach the device's registers");
		munmap(regs, bar.size);
	}
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, dev, bar.offset) == MAP_FAILED &&
		      errno == EINVAL,
	      "a private mapping of a BAR is EINVAL");

	struct t_irq_info irq = { .argsz = sizeof(irq), .index = T_MSIX_IRQ };
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_IRQ_INFO, &irq) == 0 && irq.count == 5,
	      "MSI-X has 5 vectors");
	int efd = eventfd(0, EFD_NONBLOCK);
	char raw[sizeof(struct t_irq_set) + sizeof(int32_t)];
	struct t_irq_set *set = (struct t_irq_set *)raw;
	*set = (struct t_irq_set){ .argsz = sizeof(raw),
				   .flags = T_IRQ_DATA_EVENTFD | T_IRQ_ACTION_TRIGGER,
				   .index = T_MSIX_IRQ,
				   .start = 0,
				   .count = 1 };
	set->data[0] = efd;
	CHECK(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, set) == 0, "SET_IRQS gives MSI-X vector 0 an eventfd");
	struct t_irq_set fire = { .argsz = sizeof(fire),
				  .flags = T_IRQ_DATA_NONE | T_IRQ_ACTION_TRIGGER,
				  .index = T_MSIX_IRQ,
				  .start = 0,
				  .count = 1 };
	uint64_t value = 0;
	CHECK(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, &fire) == 0 && read(efd, &value, 8) == 8 &&
		      value == 1,
	      "a loopback trigger signals the eventfd");
	fire.start = 5;
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, &fire), EINVAL),
	      "a vector past the count is EINVAL");
	close(efd);

	/* INTx with an unmask eventfd, as KVM's resampler gives it (what a
	 * signal on it does is checked in the engine's tests, where the device
	 * raises INTx). One interrupt type at a time: MSI-X off first. */
	struct t_irq_set off = { .argsz = sizeof(off),
				 .flags = T_IRQ_DATA_NONE | T_IRQ_ACTION_TRIGGER,
				 .index = T_MSIX_IRQ, .start = 0, .count = 0 };
	CHECK(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, &off) == 0, "MSI-X off");
	int intx = eventfd(0, 0), resample = eventfd(0, 0);
	*set = (struct t_irq_set){ .argsz = sizeof(raw),
				   .flags = T_IRQ_DATA_EVENTFD | T_IRQ_ACTION_TRIGGER,
				   .index = T_INTX_IRQ, .start = 0, .count = 1 };
	set->data[0] = intx;
	CHECK(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, set) == 0, "SET_IRQS gives INTx an eventfd");
	set->flags = T_IRQ_DATA_EVENTFD | T_IRQ_ACTION_UNMASK;
	set->data[0] = dev;
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, set), EINVAL),
	      "an unmask 'eventfd' that is no eventfd is EINVAL");
	set->data[0] = resample;
	CHECK(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, set) == 0, "an unmask eventfd is taken");
	set->data[0] = -1;
	CHECK(ioctl(dev, T_VFIO_DEVICE_SET_IRQS, set) == 0, "and -1 removes it");
	close(intx);
	close(resample);
	CHECK(ioctl(dev, T_VFIO_DEVICE_RESET) == 0, "RESET");
}

/* Whether the VT-d debugfs file of the function has a line for IOVA page
 * `pfn` (the format Linux's Intel driver prints). */
static int debugfs_has(uint64_t pfn)
{
	char want[32], line[512];
	snprintf(want, sizeof(want), "0x%013llx |", (unsigned long long)pfn);
	FILE *f = fopen("/sys/kernel/debug/iommu/intel/" BDF "/domain_translation_struct", "r");
	int found = 0;
	while (f && fgets(line, sizeof(line), f))
		found |= !strncmp(line, want, strlen(want));
	if (f)
		fclose(f);
	return found;
}

static void debugfs_shows_the_live_page_table(int iommufd, int ioas)
{
	CHECK(access("/sys/kernel/debug/iommu/intel", F_OK) == 0,
	      "the Intel IOMMU's debugfs is there");
	void *buf = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = PAGE,
			     .iova = 0x200000 };
	CHECK(!debugfs_has(0x200), "no translation for IOVA 0x200000 before the map");
	CHECK(ioctl(iommufd, IOMMU_IOAS_MAP, &m) == 0, "map a page at IOVA 0x200000");
	CHECK(debugfs_has(0x200), "domain_translation_struct shows it at the next open");
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = 0x200000, .length = PAGE };
	CHECK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &u) == 0 && !debugfs_has(0x200),
	      "and not after the unmap");
	munmap(buf, PAGE);
}

static void the_cdev(void)
{
	int dev = open(CDEV, O_RDWR);
	CHECK(dev >= 0, "open " CDEV);
	struct t_device_info info = { .argsz = sizeof(info) };
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_GET_INFO, &info), EINVAL),
	      "an unbound device answers EINVAL");
	CHECK(FAILS(bind_to(dev, -2), EINVAL), "binding to fd -2 is EINVAL");
	int devnull = open("/dev/null", O_RDWR);
	CHECK(FAILS(bind_to(dev, devnull), EBADFD), "binding to a file that is no iommufd is EBADFD");
	CHECK(FAILS(bind_to(dev, 999), EBADF), "binding to a closed descriptor is EBADF");
	close(devnull);
	int iommufd = open("/dev/iommu", O_RDWR);
	int devid = bind_to(dev, iommufd);
	CHECK(devid > 0, "BIND_IOMMUFD gives a device id");
	CHECK(FAILS(bind_to(dev, iommufd), EINVAL), "a second bind is EINVAL");
	CHECK(FAILS(destroy(iommufd, devid), EBUSY), "the bound device cannot be destroyed");
	CHECK(FAILS(open(GROUP, O_RDWR), EBUSY), "the group file is busy while the cdev is bound");
	int ioas = ioas_alloc(iommufd);
	CHECK(attach(dev, ioas) == 0, "ATTACH_IOMMUFD_PT to an IOAS");
	CHECK(FAILS(attach(dev, 0xffffffffu), ENOENT), "attaching to no object is ENOENT");
	struct t_detach d = { .argsz = sizeof(d) };
	CHECK(ioctl(dev, T_VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == 0, "DETACH_IOMMUFD_PT");
	CHECK(attach(dev, ioas) == 0, "attach again");
	debugfs_shows_the_live_page_table(iommufd, ioas);
	regions_irqs_and_reset(dev);
	struct t_hot_reset_info hri = { .argsz = sizeof(hri) };
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hri) == 0 &&
		      hri.flags == 3 /* DEV_ID | DEV_ID_OWNED */ && hri.count == 1 &&
		      hri.devices[0].id == (uint32_t)devid,
	      "hot reset info through the cdev names the device by its id, owned");
	struct t_hot_reset hr = { .argsz = 12 };
	CHECK(ioctl(dev, T_VFIO_DEVICE_PCI_HOT_RESET, &hr) == 0,
	      "a cdev's hot reset needs no group fds: its iommufd context owns the bus");

	pid_t child = fork();
	if (child == 0) {
		struct t_device_info i = { .argsz = sizeof(i) };
		_exit(ioctl(dev, T_VFIO_DEVICE_GET_INFO, &i) == 0 && i.num_regions == 9 ? 0 : 1);
	}
	int status = 0;
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child uses the inherited device");

	close(dev);
	int group = open(GROUP, O_RDWR);
	CHECK(group >= 0, "once the cdev is closed, the group opens at once");
	close(group);
	close(iommufd);
}

static void the_group(void)
{
	CHECK(FAILS(open("/dev/vfio/2", O_RDWR), ENOENT), "the kernel driver's group has no file");
	CHECK(FAILS(open("/dev/vfio/devices/vfio4", O_RDWR), ENOENT), "nor its device a cdev");
	int group = open(GROUP, O_RDWR);
	CHECK(group >= 0, "open " GROUP);
	CHECK(FAILS(open(GROUP, O_RDWR), EBUSY), "a group file opens once");
	struct t_group_status st = { .argsz = sizeof(st) };
	CHECK(ioctl(group, T_VFIO_GROUP_GET_STATUS, &st) == 0 && st.flags == T_GROUP_VIABLE,
	      "GET_STATUS: viable, no container");
	CHECK(FAILS(ioctl(group, T_VFIO_GROUP_GET_DEVICE_FD, BDF), EINVAL),
	      "no device fd without a container");
	int container = open("/dev/vfio/vfio", O_RDWR);
	CHECK(ioctl(container, T_VFIO_GET_API_VERSION) == 0, "the container's API version is 0");
	CHECK(ioctl(group, T_VFIO_GROUP_SET_CONTAINER, &container) == 0, "SET_CONTAINER");
	CHECK(ioctl(container, T_VFIO_SET_IOMMU, T_VFIO_TYPE1V2_IOMMU) == 0, "SET_IOMMU type1v2");
	CHECK(ioctl(group, T_VFIO_GROUP_GET_STATUS, &st) == 0 &&
		      st.flags == (T_GROUP_VIABLE | T_GROUP_CONTAINER_SET),
	      "GET_STATUS: viable, container set");
	CHECK(FAILS(ioctl(group, T_VFIO_GROUP_GET_DEVICE_FD, "0000:01:00.0"), ENODEV),
	      "another group's device is ENODEV");
	int dev = ioctl(group, T_VFIO_GROUP_GET_DEVICE_FD, BDF);
	CHECK(dev >= 0, "GET_DEVICE_FD");
	struct t_device_info info = { .argsz = sizeof(info) };
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_INFO, &info) == 0 && info.num_regions == 9,
	      "the group's device file answers GET_INFO");
	struct t_attach a = { .argsz = sizeof(a), .pt_id = 1 };
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a), ENOTTY),
	      "the cdev-only ATTACH is ENOTTY there");
	struct t_hot_reset_info hri = { .argsz = sizeof(hri) };
	CHECK(ioctl(dev, T_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hri) == 0 && hri.flags == 0 &&
		      hri.count == 1 && hri.devices[0].id == 1 && hri.devices[0].bus == 2,
	      "hot reset info: the function alone on bus 2, by group id");
	struct t_hot_reset hr = { .argsz = 16, .count = 1, .group_fds = { container } };
	CHECK(FAILS(ioctl(dev, T_VFIO_DEVICE_PCI_HOT_RESET, &hr), EINVAL),
	      "a hot reset naming a container, not a group, is EINVAL");
	hr.group_fds[0] = group;
	CHECK(ioctl(dev, T_VFIO_DEVICE_PCI_HOT_RESET, &hr) == 0,
	      "a hot reset with the group's fd as proof of ownership");
	void *buf = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct t_dma_map map = { .argsz = sizeof(map), .flags = 3, .vaddr = (uintptr_t)buf,
				 .iova = 0x100000, .size = PAGE };
	CHECK(ioctl(container, T_VFIO_IOMMU_MAP_DMA, &map) == 0, "MAP_DMA through the container");
	close(dev);
	close(group);
	close(container);
}

int main(void)
{
	sysfs_describes_the_function();
	the_cdev();
	the_group();
	return finish();
}
