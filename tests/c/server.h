/* The server process behind this program's session: found by its command
 * line, `softiommu serve --socket $SOFTIOMMU_SOCKET ...`.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_SERVER_H
#define SOFTIOMMU_SERVER_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The server's pid, from its command line, or -1. */
static inline pid_t server_pid(void)
{
	const char *socket = getenv("SOFTIOMMU_SOCKET");
	DIR *proc = opendir("/proc");
	struct dirent *e;
	pid_t found = -1;
	while (socket && proc && (e = readdir(proc))) {
		char path[300], cmd[4096];
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		int f = open(path, O_RDONLY);
		if (f < 0)
			continue;
		ssize_t n = read(f, cmd, sizeof(cmd) - 1);
		close(f);
		if (n <= 0)
			continue;
		cmd[n] = 0;
		/* Arguments are NUL-separated: look for "serve" then the socket. */
		int serve = 0, ours = 0;
		for (char *a = cmd; a < cmd + n; a += strlen(a) + 1) {
			serve |= !strcmp(a, "serve");
			ours |= serve && !strcmp(a, socket);
		}
		if (ours)
			found = atoi(e->d_name);
	}
	if (proc)
		closedir(proc);
	return found;
}

/* The server's resident set in KiB (VmRSS), or -1. */
static inline long server_rss_kib(pid_t server)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", server);
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kib;
}

#endif
