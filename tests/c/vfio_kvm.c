/* A VMM using KVM registers each VFIO file with KVM's VFIO pseudo device
 * (KVM_SET_DEVICE_ATTR, KVM_DEV_VFIO_FILE_ADD / _DEL). For our device and
 * group files that must work as it does for the kernel's; for any other
 * device or file the request must reach the kernel unchanged.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "vfio_abi.h"
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define CDEV "/dev/vfio/devices/vfio3"
#define GROUP "/dev/vfio/1"

struct t_kvm_device_attr { uint32_t flags, group; uint64_t attr, addr; };
struct t_kvm_create_device { uint32_t type, fd, flags; };
#define T_KVM_CREATE_VM _IO(0xae, 0x01)
#define T_KVM_CREATE_DEVICE _IOWR(0xae, 0xe0, struct t_kvm_create_device)
#define T_KVM_SET_DEVICE_ATTR _IOW(0xae, 0xe1, struct t_kvm_device_attr)
#define T_KVM_DEV_TYPE_VFIO 4
#define T_KVM_DEV_VFIO_FILE 1
#define T_FILE_ADD 1
#define T_FILE_DEL 2

static int file_attr(int kvm_dev, uint64_t verb, int file)
{
	struct t_kvm_device_attr a = { .group = T_KVM_DEV_VFIO_FILE, .attr = verb,
				       .addr = (uint64_t)(uintptr_t)&file };
	return ioctl(kvm_dev, T_KVM_SET_DEVICE_ATTR, &a);
}

/* KVM's VFIO pseudo device, or -1 where this machine has no usable KVM. */
static int kvm_vfio_device(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return -1;
	int vm = ioctl(kvm, T_KVM_CREATE_VM, 0);
	close(kvm);
	if (vm < 0)
		return -1;
	struct t_kvm_create_device d = { .type = T_KVM_DEV_TYPE_VFIO };
	int r = ioctl(vm, T_KVM_CREATE_DEVICE, &d);
	close(vm);
	return r < 0 ? -1 : (int)d.fd;
}

int main(void)
{
	int dev = open(CDEV, O_RDWR);
	int group = open(GROUP, O_RDWR);
	CHECK(dev >= 0 && group >= 0, "a device and a group file open");
	/* Another kind of descriptor: the kernel answers, not the shim. */
	int efd = eventfd(0, 0);
	CHECK(FAILS(file_attr(efd, T_FILE_ADD, dev), ENOTTY),
	      "KVM_SET_DEVICE_ATTR on a non-KVM descriptor stays the kernel's (ENOTTY)");

	int kvm_dev = kvm_vfio_device();
	if (kvm_dev < 0) {
		/* Said plainly, not counted: the KVM checks need a KVM. */
		printf("note: no usable /dev/kvm here (errno %d); KVM VFIO device checks not run\n",
		       errno);
		close(efd);
		return finish();
	}
	CHECK(file_attr(kvm_dev, T_FILE_ADD, dev) == 0, "FILE_ADD takes a VFIO device file");
	CHECK(FAILS(file_attr(kvm_dev, T_FILE_ADD, dev), EEXIST), "adding it twice is EEXIST");
	CHECK(file_attr(kvm_dev, T_FILE_ADD, group) == 0, "FILE_ADD takes a VFIO group file");
	CHECK(file_attr(kvm_dev, T_FILE_DEL, dev) == 0, "FILE_DEL removes the device file");
	CHECK(FAILS(file_attr(kvm_dev, T_FILE_DEL, dev), ENOENT),
	      "deleting one not added is ENOENT");
	CHECK(file_attr(kvm_dev, T_FILE_DEL, group) == 0, "FILE_DEL removes the group file");
	CHECK(FAILS(file_attr(kvm_dev, T_FILE_ADD, efd), EINVAL),
	      "a file that is no VFIO file stays the kernel's to refuse (EINVAL)");
	CHECK(FAILS(file_attr(kvm_dev, T_FILE_ADD, 999), EBADF), "no descriptor: EBADF");
	close(kvm_dev);
	close(efd);
	close(group);
	close(dev);
	return finish();
}
