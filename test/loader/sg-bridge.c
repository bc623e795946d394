/*
 * LD_PRELOAD bridge for tests: a program (mtx, sg_persist) that opens PRFLEET_SG_BRIDGE_PATH gets a stand-in
 * file descriptor, and each SG_IO ioctl on it is sent to the Unix socket PRFLEET_SG_BRIDGE_SOCKET, where a test
 * process answers from the emulator. The program decodes the emulator's bytes with its own code: an independent
 * decoder of the same bytes. Wire format, both ways little-endian u32 lengths:
 *   request:  cdb_len, cdb, data_out_len, data_out, data_in_len (what the program allows)
 *   response: status, sense_len, sense, data_in_len, data_in
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <scsi/sg.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int bridged_fd = -1;

static int is_bridged(const char *path) {
  const char *p = getenv("PRFLEET_SG_BRIDGE_PATH");
  return p != NULL && path != NULL && strcmp(p, path) == 0;
}

static int open_stand_in(void) {
  int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
  bridged_fd = real_open("/dev/null", O_RDWR);
  return bridged_fd;
}

#define OPEN_WRAPPER(name)                                                    \
  int name(const char *path, int flags, ...) {                                \
    mode_t mode = 0;                                                          \
    va_list ap;                                                               \
    va_start(ap, flags);                                                      \
    if (flags & O_CREAT) mode = va_arg(ap, mode_t);                           \
    va_end(ap);                                                               \
    if (is_bridged(path)) return open_stand_in();                             \
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, #name);            \
    return real(path, flags, mode);                                           \
  }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

static int write_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t len) {
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int put_block(int fd, const void *data, uint32_t len) {
  return write_all(fd, &len, 4) || (len > 0 && write_all(fd, data, len));
}

/* Reads a length-prefixed block into buf (at most cap bytes kept, the rest discarded); returns its length. */
static int64_t get_block(int fd, void *buf, uint32_t cap) {
  uint32_t len;
  if (read_all(fd, &len, 4)) return -1;
  uint8_t scratch[256];
  uint32_t kept = len < cap ? len : cap;
  if (kept > 0 && read_all(fd, buf, kept)) return -1;
  for (uint32_t left = len - kept; left > 0;) {
    uint32_t n = left < sizeof scratch ? left : sizeof scratch;
    if (read_all(fd, scratch, n)) return -1;
    left -= n;
  }
  return kept;
}

static int bridge_sg_io(sg_io_hdr_t *h) {
  const char *sock_path = getenv("PRFLEET_SG_BRIDGE_SOCKET");
  if (sock_path == NULL) return errno = EIO, -1;
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strncpy(addr.sun_path, sock_path, sizeof addr.sun_path - 1);
  if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) return errno = EIO, -1;
  uint32_t out_len = h->dxfer_direction == SG_DXFER_TO_DEV ? h->dxfer_len : 0;
  uint32_t in_cap = h->dxfer_direction == SG_DXFER_FROM_DEV ? h->dxfer_len : 0;
  uint32_t status;
  int64_t sense_len, in_len;
  if (put_block(s, h->cmdp, h->cmd_len) || put_block(s, h->dxferp, out_len) ||
      write_all(s, &in_cap, 4) || read_all(s, &status, 4) ||
      (sense_len = get_block(s, h->sbp, h->mx_sb_len)) < 0 ||
      (in_len = get_block(s, h->dxferp, in_cap)) < 0) {
    close(s);
    return errno = EIO, -1;
  }
  close(s);
  h->status = (unsigned char)status;
  h->masked_status = (unsigned char)((status >> 1) & 0x7f);
  h->sb_len_wr = (unsigned char)sense_len;
  h->host_status = 0;
  h->driver_status = sense_len > 0 ? 0x08 : 0; /* DRIVER_SENSE */
  h->msg_status = 0;
  h->resid = (int)(in_cap - (uint32_t)in_len);
  h->duration = 0;
  h->info = status != 0 ? SG_INFO_CHECK : 0;
  return 0;
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (fd >= 0 && fd == bridged_fd) {
    switch (request) {
      case SG_IO:
        return bridge_sg_io(arg);
      case SG_GET_VERSION_NUM:
        *(int *)arg = 30536;
        return 0;
      default:
        return 0; /* timeouts, reserved size and the like: accepted */
    }
  }
  int (*real_ioctl)(int, unsigned long, ...) = dlsym(RTLD_NEXT, "ioctl");
  return real_ioctl(fd, request, arg);
}
