/* A minimal SQLite VFS for WASI, written for wasmtime-gp's benchmarks: SQLite 3.40's unix VFS needs POSIX
 * file locking that WASI lacks, so SQLite is built with SQLITE_OS_OTHER and this VFS, which opens no files.
 * speedtest1 runs with --memdb and temporary storage in memory, so it never asks for one. */
#include <string.h>
#include <time.h>

#include "sqlite3.h"

static int memory_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
  (void)vfs; (void)name; (void)flags; (void)out_flags;
  file->pMethods = 0;
  return SQLITE_CANTOPEN;
}

static int memory_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs; (void)name; (void)sync_dir;
  return SQLITE_IOERR_DELETE;
}

static int memory_access(sqlite3_vfs *vfs, const char *name, int flags, int *result) {
  (void)vfs; (void)name; (void)flags;
  *result = 0;
  return SQLITE_OK;
}

static int memory_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
  (void)vfs;
  sqlite3_snprintf(size, out, "%s", name);
  return SQLITE_OK;
}

/* Deterministic on purpose: the benchmark should do the same work on every run. */
static int memory_randomness(sqlite3_vfs *vfs, int size, char *out) {
  (void)vfs;
  for (int i = 0; i < size; i++) out[i] = (char)(i * 131 + 7);
  return size;
}

static int memory_sleep(sqlite3_vfs *vfs, int microseconds) {
  (void)vfs;
  return microseconds;
}

static int memory_current_time(sqlite3_vfs *vfs, double *julian_day) {
  (void)vfs;
  *julian_day = 2440587.5 + (double)time(0) / 86400.0;
  return SQLITE_OK;
}

static int memory_last_error(sqlite3_vfs *vfs, int size, char *out) {
  (void)vfs;
  if (size > 0) out[0] = 0;
  return 0;
}

static sqlite3_vfs memory_vfs = {
    1, sizeof(sqlite3_file), 512, 0, "memory-only", 0,
    memory_open, memory_delete, memory_access, memory_full_pathname,
    0, 0, 0, 0,
    memory_randomness, memory_sleep, memory_current_time, memory_last_error,
};

int sqlite3_os_init(void) { return sqlite3_vfs_register(&memory_vfs, 1); }

int sqlite3_os_end(void) { return SQLITE_OK; }
