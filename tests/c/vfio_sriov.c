/* SR-IOV as a VMM or a PF driver uses it: the built-in machine's SR-IOV
 * port (0000:04:00.0, /dev/vfio/devices/vfio5) creates a VF when its
 * sriov_numvfs is written, the VF appears in sysfs with its own group and
 * device node, opens only with the PF's VF token, and goes away when the
 * count is written back to 0.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "vfio_abi.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define PF "/sys/bus/pci/devices/0000:04:00.0"
#define VF "/sys/bus/pci/devices/0000:04:10.0"
#define PF_CDEV "/dev/vfio/devices/vfio5"

#define T_VFIO_DEVICE_FEATURE VFIO_REQ(17)
#define T_FEATURE_SET (1u << 17)
#define T_FEATURE_PROBE (1u << 18)
#define T_FEATURE_PCI_VF_TOKEN 0
#define T_BIND_FLAG_TOKEN 1u

static const uint8_t token_a[16] = { 0x52, 0xac, 0x9b, 0xff, 0x3a, 0x88, 0x4f, 0xbd,
				     0x90, 0x1a, 0x0d, 0x76, 0x7c, 0x3b, 0x6c, 0x97 };
static const uint8_t token_b[16] = { 0x88, 0x59, 0x46, 0x74, 0x90, 0xa0, 0x47, 0xa9,
				     0xae, 0xa8, 0x9d, 0x9b, 0x35, 0x2a, 0xc0, 0x8a };

/* An attribute's number, or -1. */
static long read_number(const char *path)
{
	char buf[32] = { 0 };
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 0) : -1;
}

/* write(2) of `text` to sriov_numvfs: its return value, errno set. */
static ssize_t write_numvfs(const char *text)
{
	int fd = open(PF "/sriov_numvfs", O_WRONLY);
	if (fd < 0)
		return -2;
	ssize_t n = write(fd, text, strlen(text));
	int saved = errno;
	close(fd);
	errno = saved;
	return n;
}

/* The last component of the link at `path`, in `buf`; "" if none. */
static const char *link_name(const char *path, char *buf, size_t len)
{
	ssize_t n = readlink(path, buf, len - 1);
	buf[n > 0 ? n : 0] = 0;
	char *slash = strrchr(buf, '/');
	return slash ? slash + 1 : buf;
}

/* The VF's device node, from its vfio-dev directory; -1 if none. */
static int vf_cdev(char *path, size_t len)
{
	DIR *dir = opendir(VF "/vfio-dev");
	struct dirent *e;
	int minor = -1;
	while (dir && (e = readdir(dir)))
		if (!strncmp(e->d_name, "vfio", 4))
			minor = atoi(e->d_name + 4);
	if (dir)
		closedir(dir);
	snprintf(path, len, "/dev/vfio/devices/vfio%d", minor);
	return minor;
}

static int bind_token(int dev, int iommufd, const uint8_t *token)
{
	struct t_bind b = { .argsz = sizeof(b), .iommufd = iommufd };
	if (token) {
		b.flags = T_BIND_FLAG_TOKEN;
		b.token_uuid_ptr = (uint64_t)(uintptr_t)token;
	}
	return ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &b);
}

int main(void)
{
	char buf[256];
	CHECK(read_number(PF "/sriov_totalvfs") == 8, "the PF offers 8 VFs");
	CHECK(read_number(PF "/sriov_numvfs") == 0, "none enabled at start");
	CHECK(open(PF "/vendor", O_WRONLY) == -1 && errno == EACCES,
	      "an attribute without a store cannot be opened for writing");
	CHECK(write_numvfs("9") == -1 && errno == ERANGE, "9 VFs is past TotalVFs: ERANGE");
	CHECK(write_numvfs("one") == -1 && errno == EINVAL, "not a number: EINVAL");
	CHECK(access(VF, F_OK) == -1 && errno == ENOENT, "no VF before enabling");

	CHECK(write_numvfs("1") == 1, "writing 1 enables a VF");
	CHECK(read_number(PF "/sriov_numvfs") == 1, "sriov_numvfs reads 1");
	CHECK(write_numvfs("2") == -1 && errno == EBUSY, "a new count needs a disable first");
	CHECK(!strcmp(link_name(PF "/virtfn0", buf, sizeof(buf)), "0000:04:10.0"),
	      "virtfn0 links to 0000:04:10.0");
	CHECK(!strcmp(link_name(VF "/physfn", buf, sizeof(buf)), "0000:04:00.0"),
	      "the VF's physfn links back");
	CHECK(read_number(VF "/device") == 0x10ed, "the VF reads the VF device ID");
	CHECK(!strcmp(link_name(VF "/driver", buf, sizeof(buf)), "vfio-pci"),
	      "the VF inherits vfio-pci");
	const char *group = link_name(VF "/iommu_group", buf, sizeof(buf));
	char members[128];
	snprintf(members, sizeof(members), "/sys/kernel/iommu_groups/%s/devices/0000:04:10.0",
		 group);
	CHECK(atoi(group) > 0 && access(members, F_OK) == 0, "the VF has a group of its own");

	char cdev[64];
	CHECK(vf_cdev(cdev, sizeof(cdev)) > 5, "the VF has a new device node");
	int iommufd = open("/dev/iommu", O_RDWR);
	int pf = open(PF_CDEV, O_RDWR);
	CHECK(bind_token(pf, iommufd, token_a) == 0, "the PF binds and sets the VF token");
	struct {
		uint32_t argsz, flags;
		uint8_t uuid[16];
	} feature = { sizeof(feature), T_FEATURE_PROBE | T_FEATURE_SET | T_FEATURE_PCI_VF_TOKEN, { 0 } };
	CHECK(ioctl(pf, T_VFIO_DEVICE_FEATURE, &feature) == 0, "the PF probes the VF token feature");
	close(pf);

	int vf = open(cdev, O_RDWR);
	CHECK(vf >= 0, "the VF's device node opens");
	CHECK(FAILS(bind_token(vf, iommufd, NULL), EACCES), "the VF needs the token");
	CHECK(FAILS(bind_token(vf, iommufd, token_b), EACCES), "a wrong token is refused");
	CHECK(bind_token(vf, iommufd, token_a) == 0, "the PF's token opens the VF");
	pf = open(PF_CDEV, O_RDWR);
	CHECK(FAILS(bind_token(pf, iommufd, NULL), EACCES),
	      "with a VF in use the PF needs the token too");
	close(pf);

	CHECK(write_numvfs("0") == -1 && errno == EBUSY, "an open VF keeps the VFs");
	close(vf);
	CHECK(write_numvfs("0\n") == 2, "writing 0 disables them once the VF is closed");
	CHECK(read_number(PF "/sriov_numvfs") == 0, "sriov_numvfs reads 0 again");
	CHECK(access(VF, F_OK) == -1 && errno == ENOENT, "the VF left sysfs");
	CHECK(readlink(PF "/virtfn0", buf, sizeof(buf)) == -1 && errno == ENOENT,
	      "and its virtfn link went with it");
	CHECK(open(cdev, O_RDWR) == -1, "its device node no longer opens");
	close(iommufd);
	return finish();
}
