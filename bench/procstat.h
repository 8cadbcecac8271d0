/* Benchmark helpers: CPU time and resident memory of a server under test, from /proc (Linux).
 *
 * A server is one process (a pid) or every process of a process group (a pomelo master and the
 * servers it forks, or a whole cluster started with setsid). Used by bench-idle and bench-load.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_BENCH_PROCSTAT_H
#define POMELO_BENCH_PROCSTAT_H

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/** What a server used up to now. */
typedef struct proc_sample {
  unsigned long long ticks;     /**< utime + stime, clock ticks (sysconf(_SC_CLK_TCK)) */
  unsigned long long sys_ticks; /**< stime alone */
  unsigned long long rss_kib;   /**< VmRSS, summed over the processes */
  unsigned long long max_ticks; /**< the busiest process's utime + stime */
  long max_pid;                 /**< that process */
  int procs;                    /**< processes counted */
} proc_sample;

/* One /proc/<pid>/stat: its process group, utime + stime and stime. Returns 0, or -1 when it
 * cannot be read (the process is gone). */
static inline int procstat_read_stat_(const char *pid, long *pgrp, unsigned long long *ticks,
                                      unsigned long long *sys_ticks) {
  char path[300], line[1024];
  FILE *f;
  char *p;
  unsigned long long ut = 0, st = 0;
  int field;
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  f = fopen(path, "r");
  if (!f) {
    return -1;
  }
  if (!fgets(line, sizeof line, f)) {
    fclose(f);
    return -1;
  }
  fclose(f);
  p = strrchr(line, ')'); /* the command name may hold spaces and parentheses */
  if (!p) {
    return -1;
  }
  p++;
  /* After ")": field 3 (state), 4 ppid, 5 pgrp, ..., 14 utime, 15 stime. */
  for (field = 3; field <= 15; field++) {
    char *end;
    unsigned long long v;
    while (*p == ' ') {
      p++;
    }
    if (!*p) {
      return -1;
    }
    if (field == 3) {
      p++;
      continue;
    }
    v = strtoull(p, &end, 10);
    if (end == p) {
      return -1;
    }
    p = end;
    if (field == 5) {
      *pgrp = (long)v;
    } else if (field == 14) {
      ut = v;
    } else if (field == 15) {
      st = v;
    }
  }
  *ticks = ut + st;
  *sys_ticks = st;
  return 0;
}

/** A "Vm..." line of /proc/<pid>/status ("VmRSS:", "VmHWM:", ...) in KiB; `pid` a number or
 * "self"; 0 when the line is absent (VmRSS of a zombie). Returns 0, or -1 when the file cannot
 * be read (the process is gone). */
static inline int procstat_status_kib(const char *pid, const char *field, unsigned long long *kib) {
  char path[300], line[256];
  size_t fl = strlen(field);
  FILE *f;
  snprintf(path, sizeof path, "/proc/%s/status", pid);
  f = fopen(path, "r");
  if (!f) {
    return -1;
  }
  *kib = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, field, fl) == 0) {
      *kib = strtoull(line + fl, NULL, 10);
      break;
    }
  }
  fclose(f);
  return 0;
}

static inline void procstat_add_(proc_sample *out, long pid, unsigned long long t,
                                 unsigned long long st, unsigned long long rss) {
  out->ticks += t;
  out->sys_ticks += st;
  out->rss_kib += rss;
  if (out->procs == 0 || t > out->max_ticks) {
    out->max_ticks = t;
    out->max_pid = pid;
  }
  out->procs++;
}

/** Samples process `pid` (when > 0) or every process of group `pgid`. Returns 0, or -1 when no
 * such process exists (`out->procs` is then 0). */
static inline int procstat_sample(long pid, long pgid, proc_sample *out) {
  memset(out, 0, sizeof *out);
  if (pid > 0) {
    char name[32];
    long pgrp;
    unsigned long long t, st, rss;
    snprintf(name, sizeof name, "%ld", pid);
    if (procstat_read_stat_(name, &pgrp, &t, &st) != 0 ||
        procstat_status_kib(name, "VmRSS:", &rss) != 0) {
      return -1;
    }
    procstat_add_(out, pid, t, st, rss);
    return 0;
  }
  {
    DIR *d = opendir("/proc");
    struct dirent *de;
    if (!d) {
      return -1;
    }
    while ((de = readdir(d)) != NULL) {
      long pgrp = -1;
      unsigned long long t, st, rss;
      if (!isdigit((unsigned char)de->d_name[0])) {
        continue;
      }
      if (procstat_read_stat_(de->d_name, &pgrp, &t, &st) != 0 || pgrp != pgid ||
          procstat_status_kib(de->d_name, "VmRSS:", &rss) != 0) {
        continue; /* another group, or gone in between */
      }
      procstat_add_(out, atol(de->d_name), t, st, rss);
    }
    closedir(d);
  }
  return out->procs > 0 ? 0 : -1;
}

/** The command name of a process (/proc/<pid>/comm), "?" when gone. */
static inline void procstat_comm(long pid, char *buf, size_t len) {
  char path[64];
  FILE *f;
  snprintf(path, sizeof path, "/proc/%ld/comm", pid);
  snprintf(buf, len, "?");
  f = fopen(path, "r");
  if (f) {
    if (fgets(buf, (int)len, f)) {
      buf[strcspn(buf, "\n")] = '\0';
    }
    fclose(f);
  }
}

/** The whole machine's busy time so far (every CPU: all but idle and iowait), in clock ticks,
 * from the first line of /proc/stat; 0 when it cannot be read. */
static inline unsigned long long procstat_machine_busy(void) {
  unsigned long long v[8] = {0}, busy = 0;
  FILE *f = fopen("/proc/stat", "r");
  int i, got;
  if (!f) {
    return 0;
  }
  got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]);
  fclose(f);
  for (i = 0; i < got; i++) {
    if (i != 3 && i != 4) { /* idle, iowait */
      busy += v[i];
    }
  }
  return busy;
}

/** CPU seconds (user + system) this process used so far. */
static inline double procstat_self_cpu(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) {
    return 0;
  }
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/** Clock ticks per second for proc_sample. */
static inline double procstat_hz(void) {
  long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? (double)hz : 100.0;
}

#endif /* POMELO_BENCH_PROCSTAT_H */
