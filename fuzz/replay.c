/* Replays fuzz corpora without libFuzzer: runs LLVMFuzzerTestOneInput on every file named on the
 * command line (directories are walked one level deep), so `meson test` keeps every corpus
 * entry as a regression test with any compiler. A crash or abort fails the test.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0, n;
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return -1;
  }
  for (;;) {
    if (len == cap) {
      uint8_t *nb;
      cap = cap ? cap * 2 : 4096;
      nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = nb;
    }
    n = fread(buf + len, 1, cap - len, f);
    if (n == 0) {
      break;
    }
    len += n;
  }
  fclose(f);
  /* Copy into an exact-size block so reads past the end are caught by sanitizers. */
  {
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
      free(buf);
      return -1;
    }
    if (len) {
      memcpy(exact, buf, len);
    }
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
  }
  free(buf);
  return 1;
}

static long run_path(const char *path) {
  struct stat st;
  DIR *d;
  struct dirent *e;
  long count = 0;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "cannot stat %s\n", path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    return run_file(path);
  }
  d = opendir(path);
  if (!d) {
    return -1;
  }
  while ((e = readdir(d)) != NULL) {
    char sub[4096];
    long r;
    if (e->d_name[0] == '.') {
      continue;
    }
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    if (stat(sub, &st) != 0 || S_ISDIR(st.st_mode)) {
      continue;
    }
    r = run_file(sub);
    if (r < 0) {
      closedir(d);
      return -1;
    }
    count += r;
  }
  closedir(d);
  return count;
}

int main(int argc, char **argv) {
  long total = 0;
  int i;
  /* The empty input always runs. */
  LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
  for (i = 1; i < argc; i++) {
    long r = run_path(argv[i]);
    if (r < 0) {
      return 1;
    }
    total += r;
  }
  printf("replayed %ld inputs\n", total);
  return total > 0 || argc < 2 ? 0 : 1;
}
