/* VmPin / VmLck under `softiommu run`: /proc/<pid>/status shows the pages
 * iommufd pinned for a process, read with stdio as with open(), and
 * IOMMU_IOAS_CHANGE_PROCESS moves them to the calling process. A process
 * in a pid namespace of its own (pid 1 there) sees its own pins in
 * /proc/self/status too (when it may make one: as root).
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

#define IOMMU_IOAS_CHANGE_PROCESS _IO(IOMMUFD_TYPE, 0x92)
struct change_process_cmd { uint32_t size, reserved; };

/* The value of `name` in /proc/<pid>/status, in kB, read with stdio. */
static long status_kb(pid_t pid, const char *name)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, strlen(name)) == 0)
			kb = strtol(line + strlen(name), NULL, 10);
	fclose(f);
	return kb;
}

/* The same through open() and read(). */
static long status_kb_raw(const char *name)
{
	char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *at = strstr(buf, name);
	return at ? strtol(at + strlen(name), NULL, 10) : -1;
}

/* Without CAP_IPC_LOCK pins are charged (with it, Linux charges nothing
 * but VmPin): drop it from the effective set, as the kernel's selftest does. */
static void drop_cap_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) == 0) {
		data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
		syscall(SYS_capset, &hdr, data);
	}
}

int main(void)
{
	drop_cap_ipc_lock();
	long page_kb = sysconf(_SC_PAGESIZE) / 1024;
	pid_t self = getpid();
	long pin0 = status_kb(self, "VmPin:"), lck0 = status_kb(self, "VmLck:");
	CHECK(pin0 >= 0 && lck0 >= 0, "the status file has VmPin and VmLck");

	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	/* Charge the process itself (VFIO's mode) when allowed to choose. */
	struct option_cmd o = { .size = sizeof(o), .option_id = 0, .op = 0, .val64 = 1 };
	int mm_mode = ioctl(fd, IOMMU_OPTION, &o) == 0;
	int ioas = ioas_alloc(fd);
	CHECK(ioas > 0, "IOAS_ALLOC");
	struct mock_dev md;
	CHECK(mock_domain(fd, ioas, 0, &md) == 0, "MOCK_DOMAIN: maps pin at once");

	int mfd = memfd_create("guest", 0);
	CHECK(mfd >= 0 && ftruncate(mfd, PAGE) == 0, "a one-page memfd");
	struct map_file_cmd m = { .size = sizeof(m), .flags = MAP_READABLE | MAP_WRITEABLE, .ioas_id = ioas,
				  .fd = mfd, .start = 0, .length = PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &m) == 0, "IOAS_MAP_FILE one page");
	CHECK(status_kb(self, "VmPin:") == pin0 + page_kb, "VmPin counts the pinned page (stdio)");
	CHECK(status_kb_raw("VmPin:") == pin0 + page_kb, "VmPin counts the pinned page (open and read)");
	if (mm_mode)
		CHECK(status_kb(self, "VmLck:") == lck0 + page_kb, "VmLck counts it in MM accounting");

	pid_t child = fork();
	if (child == 0) {
		int ok = status_kb(getpid(), "VmPin:") == pin0;
		struct change_process_cmd c = { .size = sizeof(c) };
		ok = ok && ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &c) == 0;
		ok = ok && status_kb(getpid(), "VmPin:") == pin0 + page_kb;
		ok = ok && status_kb(self, "VmPin:") == pin0;
		if (mm_mode)
			ok = ok && status_kb(getpid(), "VmLck:") == lck0 + page_kb && status_kb(self, "VmLck:") == lck0;
		_exit(ok ? 0 : 1);
	}
	int status = 0;
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "CHANGE_PROCESS in a child moves the pin to the child");
	struct change_process_cmd c = { .size = sizeof(c) };
	CHECK(ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &c) == 0, "and back to the parent");
	CHECK(status_kb(self, "VmPin:") == pin0 + page_kb, "VmPin counts it again");
	CHECK(close(fd) == 0, "close /dev/iommu");
	CHECK(status_kb(self, "VmPin:") == pin0, "closing releases the pin");

	if (unshare(CLONE_NEWPID) == 0) {
		pid_t init = fork();
		if (init == 0) {
			/* Pid 1 here: /proc/self/status must be this process's. */
			long before = status_kb_raw("VmPin:");
			int nfd = open("/dev/iommu", O_RDWR);
			int nioas = ioas_alloc(nfd);
			struct mock_dev nmd;
			int nmfd = memfd_create("guest", 0);
			struct map_file_cmd nm = { .size = sizeof(nm), .flags = MAP_READABLE | MAP_WRITEABLE,
						   .fd = nmfd, .length = PAGE };
			nm.ioas_id = nioas;
			int ok = getpid() == 1 && nioas > 0 && mock_domain(nfd, nioas, 0, &nmd) == 0 &&
				 ftruncate(nmfd, PAGE) == 0 && ioctl(nfd, IOMMU_IOAS_MAP_FILE, &nm) == 0 &&
				 status_kb_raw("VmPin:") == before + page_kb;
			_exit(ok ? 0 : 1);
		}
		CHECK(waitpid(init, &status, 0) == init && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "in a pid namespace of its own, a process sees its own pins");
	} else {
		printf("# no pid namespace (not root): that part is left out\n");
	}
	return finish();
}
