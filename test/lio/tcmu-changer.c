/*
 * tcmu-changer: the test VM's medium changer. LIO's TCM-User backstore (target_core_user) hands each SCSI command
 * it does not handle itself to userspace through a UIO device (/dev/uioN: a mailbox, a command ring and a data
 * area in one mmap, Documentation/target/tcmu-design.rst). This handler answers them as a medium changer (PDT 08h)
 * from an element model that is a C port of src/emulator/element-model.ts: same element addresses (transport 0,
 * drives from 1, the mail slot at 10h, storage from 20h), same READ ELEMENT STATUS pages, MODE SENSE page 1Dh and
 * MOVE MEDIUM rules. LIO's core keeps what it emulates for passthrough backstores (passthrough_parse_cdb):
 * PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE, REPORT LUNS, the reservation checks and unit attentions, so the
 * PR state machine under test is the kernel's. No libtcmu, no netlink: with no daemon announcing reply support,
 * target_core_user does not wait for one.
 *
 *   tcmu-changer --match SUBSTR [--naa HEX] [--serial S] [--slots N] [--no-mail] [--drive HEX|-]...
 *                [--cartridge SLOT=BARCODE]... [--loaded DRIVE=SLOT:BARCODE]... [--verbose]
 *   tcmu-changer --stdio [layout options]
 * --match picks the UIO device whose name (tcm-user/<hba>/<dev>/<dev_config>) contains SUBSTR. Prints
 * "TCMU-CHANGER ready <uio> <map size>" when it serves, one line per command with --verbose (stderr).
 * --stdio answers CDBs given as hex lines on stdin with "<status> <key> <asc> <ascq> <data hex>" lines, without
 * any kernel: test/lio/tcmu-changer.test.ts compares this port with the emulator's element model that way.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/uio.h>
/* struct iovec comes from glibc; linux/uio.h would define it a second time. */
#define __LINUX_UIO_H
#include <linux/target_core_user.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- element model (element-model.ts) ---- */

enum { TRANSPORT = 1, STORAGE = 2, IMPORT_EXPORT = 3, DATA_TRANSFER = 4 };
enum { BASE_TRANSPORT = 0x00, BASE_DRIVE = 0x01, BASE_MAIL = 0x10, BASE_STORAGE = 0x20 };
#define MAX_ELEMENTS 128
#define MAX_ID 32

struct element {
  int type, address;
  char barcode[33]; /* empty: no cartridge */
  int source;       /* -1: unknown */
  uint8_t id[MAX_ID];
  int id_len; /* data transfer elements: the drive LU's designator (DVCID) */
};

static struct element elements[MAX_ELEMENTS];
static int element_count;

static struct element *at(int address) {
  for (int i = 0; i < element_count; i++)
    if (elements[i].address == address) return &elements[i];
  return NULL;
}

static int count_of(int type) {
  int n = 0;
  for (int i = 0; i < element_count; i++) n += elements[i].type == type;
  return n;
}

static int first_of(int type) {
  for (int i = 0; i < element_count; i++)
    if (elements[i].type == type) return elements[i].address;
  return 0;
}

static struct element *add(int type, int address) {
  if (element_count >= MAX_ELEMENTS) {
    fprintf(stderr, "tcmu-changer: too many elements\n");
    exit(2);
  }
  struct element *e = &elements[element_count++];
  memset(e, 0, sizeof *e);
  e->type = type;
  e->address = address;
  e->source = -1;
  return e;
}

/* ---- answers ---- */

struct answer {
  uint8_t status; /* 0 GOOD, 2 CHECK CONDITION */
  uint8_t key, asc, ascq;
  uint8_t data[65536];
  uint32_t len;
};

static void check(struct answer *a, int key, int asc, int ascq) {
  a->status = 2;
  a->key = (uint8_t)key;
  a->asc = (uint8_t)asc;
  a->ascq = (uint8_t)ascq;
  a->len = 0;
}

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put24(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 16);
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* MOVE MEDIUM: source full, destination empty, both reachable; 5/3B/0E or 5/3B/0D otherwise (SMC-3). */
static void move_medium(struct answer *a, const uint8_t *cdb) {
  struct element *t = at((int)get16(cdb + 2)), *from = at((int)get16(cdb + 4)), *to = at((int)get16(cdb + 6));
  if (t == NULL || t->type != TRANSPORT) return check(a, 5, 0x24, 0);
  if (from == NULL || from->type == TRANSPORT) return check(a, 5, 0x24, 0);
  if (to == NULL || to->type == TRANSPORT) return check(a, 5, 0x24, 0);
  if (from->barcode[0] == 0) return check(a, 5, 0x3b, 0x0e);
  if (to->barcode[0] != 0) return check(a, 5, 0x3b, 0x0d);
  memcpy(to->barcode, from->barcode, sizeof to->barcode);
  to->source = from->type == STORAGE ? from->address : from->source;
  from->barcode[0] = 0;
  from->source = -1;
}

/* One descriptor of `length` bytes (element-status.ts encodeDescriptor). */
static void describe(uint8_t *out, const struct element *e, int voltag, int dvcid) {
  int full = e->barcode[0] != 0;
  put16(out, (unsigned)e->address);
  out[2] = (uint8_t)((full ? 0x01 : 0) | (e->type != TRANSPORT ? 0x08 : 0) | (e->type == IMPORT_EXPORT ? 0x30 : 0));
  out[9] = (uint8_t)((full && e->source >= 0 ? 0x80 : 0) | (full ? 1 : 0));
  put16(out + 10, full && e->source >= 0 ? (unsigned)e->source : 0);
  int p = 12;
  if (voltag) {
    memset(out + p, 0x20, 32);
    memcpy(out + p, e->barcode, strlen(e->barcode));
    memset(out + p + 32, 0, 4);
    p += 36;
  }
  if (dvcid) {
    if (e->id_len > 0) {
      out[p] = 1;     /* code set: binary */
      out[p + 1] = 3; /* designator type: NAA */
      out[p + 3] = (uint8_t)e->id_len;
      memcpy(out + p + 4, e->id, (size_t)e->id_len);
    }
  }
}

static void read_element_status(struct answer *a, const uint8_t *cdb) {
  int type = cdb[1] & 0x0f, voltag = (cdb[1] & 0x10) != 0, dvcid = (cdb[6] & 0x01) != 0;
  unsigned start = get16(cdb + 2), count = get16(cdb + 4);
  unsigned alloc = (unsigned)cdb[7] << 16 | (unsigned)cdb[8] << 8 | cdb[9];
  if (type > 4) return check(a, 5, 0x24, 0);
  /* Chosen: of the type, from the starting address, in address order, at most `count`. */
  const struct element *chosen[MAX_ELEMENTS];
  unsigned n = 0;
  for (int i = 0; i < element_count && n < count; i++) { /* elements[] is in address order */
    const struct element *e = &elements[i];
    if ((unsigned)e->address >= start && (type == 0 || e->type == type)) chosen[n++] = e;
  }
  if (n == 0 && count > 0 && at((int)start) == NULL) return check(a, 5, 0x24, 0);
  uint8_t *out = a->data;
  uint32_t len = 8;
  memset(out, 0, sizeof a->data);
  for (int t = 1; t <= 4; t++) {
    unsigned k = 0, tail = 0;
    for (unsigned i = 0; i < n; i++)
      if (chosen[i]->type == t) {
        k++;
        unsigned id = dvcid ? 4u + (unsigned)chosen[i]->id_len : 0;
        if (id > tail) tail = id;
      }
    if (k == 0) continue;
    unsigned dlen = 12 + (voltag ? 36 : 0) + tail;
    uint8_t *page = out + len;
    page[0] = (uint8_t)t;
    page[1] = voltag ? 0x80 : 0;
    put16(page + 2, dlen);
    put24(page + 5, k * dlen);
    len += 8;
    for (unsigned i = 0; i < n; i++)
      if (chosen[i]->type == t) {
        describe(out + len, chosen[i], voltag, dvcid);
        len += dlen;
      }
  }
  put16(out, n > 0 ? (unsigned)chosen[0]->address : 0);
  put16(out + 2, n);
  put24(out + 5, len - 8);
  a->len = len < alloc ? len : alloc;
}

/* MODE SENSE(6) with page 1Dh or 3Fh: the element address assignment (no block descriptors). */
static void mode_sense6(struct answer *a, const uint8_t *cdb) {
  int page = cdb[2] & 0x3f;
  if (page != 0x1d && page != 0x3f) return check(a, 5, 0x24, 0);
  uint8_t *out = a->data;
  memset(out, 0, 24);
  out[0] = 23; /* mode data length: 3 + the 20-byte page */
  out[4] = 0x1d;
  out[5] = 0x12;
  const int types[4] = {TRANSPORT, STORAGE, IMPORT_EXPORT, DATA_TRANSFER};
  for (int i = 0; i < 4; i++) {
    put16(out + 6 + 4 * i, (unsigned)first_of(types[i]));
    put16(out + 8 + 4 * i, (unsigned)count_of(types[i]));
  }
  a->len = 24 < cdb[4] ? 24 : cdb[4];
}

static uint8_t lu_naa[8] = {0x50, 0x01, 0x40, 0x5c, 0x00, 0x00, 0xc0, 0x01};
static const char *serial = "prfleet-changer-0001";

static void inquiry(struct answer *a, const uint8_t *cdb) {
  unsigned alloc = get16(cdb + 3);
  uint8_t *out = a->data;
  memset(out, 0, 256);
  uint32_t len;
  if ((cdb[1] & 0x01) == 0) {
    if (cdb[2] != 0) return check(a, 5, 0x24, 0);
    out[0] = 0x08; /* medium changer */
    out[1] = 0x80; /* RMB */
    out[2] = 0x06; /* SPC-4 */
    out[3] = 0x02;
    out[4] = 31;
    memcpy(out + 8, "PRFLEET TCMU CHANGER    0001", 28);
    len = 36;
  } else {
    out[0] = 0x08;
    out[1] = cdb[2];
    switch (cdb[2]) {
      case 0x00:
        out[3] = 3;
        out[5] = 0x80;
        out[6] = 0x83;
        len = 7;
        break;
      case 0x80:
        out[3] = (uint8_t)strlen(serial);
        memcpy(out + 4, serial, strlen(serial));
        len = 4 + out[3];
        break;
      case 0x83: /* the LU's NAA only: tcmu does not tell which target port a command came through */
        out[3] = 12;
        out[4] = 0x01; /* binary */
        out[5] = 0x03; /* LU, NAA */
        out[7] = 8;
        memcpy(out + 8, lu_naa, 8);
        len = 16;
        break;
      default:
        return check(a, 5, 0x24, 0);
    }
  }
  a->len = len < alloc ? len : alloc;
}

static void request_sense(struct answer *a, const uint8_t *cdb) {
  memset(a->data, 0, 18);
  a->data[0] = 0x70;
  a->data[7] = 10;
  a->len = 18 < cdb[4] ? 18 : cdb[4];
}

static const char *execute(struct answer *a, const uint8_t *cdb) {
  a->status = 0;
  a->len = 0;
  switch (cdb[0]) {
    case 0x00: return "TEST UNIT READY";
    case 0x03: request_sense(a, cdb); return "REQUEST SENSE";
    case 0x07: return "INITIALIZE ELEMENT STATUS"; /* nothing to scan: the model is always known */
    case 0x12: inquiry(a, cdb); return "INQUIRY";
    case 0x1a: mode_sense6(a, cdb); return "MODE SENSE(6)";
    case 0x1e: return "PREVENT ALLOW MEDIUM REMOVAL";
    case 0xa5: move_medium(a, cdb); return "MOVE MEDIUM";
    case 0xb8: read_element_status(a, cdb); return "READ ELEMENT STATUS";
    default: check(a, 5, 0x20, 0); return "unsupported";
  }
}

/* ---- the TCMU ring ---- */

static int verbose;

static void complete(uint8_t *map, struct tcmu_mailbox *mb, struct tcmu_cmd_entry *ent) {
  static struct answer a;
  const uint8_t *cdb = map + ent->req.cdb_off;
  uint32_t iov_cnt = ent->req.iov_cnt;
  struct iovec iov[64];
  if (iov_cnt > 64) iov_cnt = 64;
  memcpy(iov, ent->req.iov, iov_cnt * sizeof iov[0]);
  const char *what = execute(&a, cdb);
  /* Data-in: the answer, then zeros to the end of the buffer (the data area is reused between commands). */
  uint32_t done = 0;
  for (uint32_t i = 0; i < iov_cnt; i++) {
    uint8_t *base = map + (uintptr_t)iov[i].iov_base;
    size_t n = iov[i].iov_len;
    size_t take = a.len > done ? (a.len - done < n ? a.len - done : n) : 0;
    memcpy(base, a.data + done, take);
    memset(base + take, 0, n - take);
    done += (uint32_t)take;
  }
  if (verbose)
    fprintf(stderr, "tcmu-changer: %02x %s -> status %u %x/%02x/%02x len %u\n", cdb[0], what, a.status, a.key,
            a.asc, a.ascq, a.len);
  memset(&ent->rsp, 0, sizeof ent->rsp);
  ent->rsp.scsi_status = a.status;
  if (a.status == 2) {
    uint8_t *s = (uint8_t *)ent->rsp.sense_buffer;
    s[0] = 0x70;
    s[2] = a.key;
    s[7] = 10;
    s[12] = a.asc;
    s[13] = a.ascq;
  } else if (mb->flags & TCMU_MAILBOX_FLAG_CAP_READ_LEN) {
    /* The length actually answered: the initiator sees the rest as residual, as from a real device. */
    ent->hdr.uflags |= TCMU_UFLAG_READ_LEN;
    ent->rsp.read_len = a.len;
  }
}

static void serve(int fd, uint8_t *map) {
  struct tcmu_mailbox *mb = (struct tcmu_mailbox *)map;
  for (;;) {
    __sync_synchronize();
    uint32_t tail = mb->cmd_tail;
    while (tail != *(volatile uint32_t *)&mb->cmd_head) {
      __sync_synchronize();
      struct tcmu_cmd_entry *ent = (struct tcmu_cmd_entry *)(map + mb->cmdr_off + tail);
      uint32_t len = tcmu_hdr_get_len(ent->hdr.len_op);
      if (tcmu_hdr_get_op(ent->hdr.len_op) == TCMU_OP_CMD) complete(map, mb, ent);
      /* PAD: skip to the ring's start; TMR notifications: nothing to abort, commands complete at once. */
      tail = (tail + len) % mb->cmdr_size;
      __sync_synchronize();
      mb->cmd_tail = tail;
    }
    uint32_t one = 1, events;
    if (write(fd, &one, 4) != 4) perror("tcmu-changer: write uio");
    /* Sleep until the kernel queues more (a UIO event); the ring was drained before, so nothing is missed. */
    while (read(fd, &events, 4) != 4) {
      if (errno != EINTR) {
        perror("tcmu-changer: read uio");
        exit(1);
      }
    }
  }
}

/* The UIO device whose name contains `match`; its map size from sysfs. */
static int find_uio(const char *match, char *dev, size_t devlen, size_t *size) {
  DIR *d = opendir("/sys/class/uio");
  struct dirent *de;
  while (d != NULL && (de = readdir(d)) != NULL) {
    char path[512], name[512] = "", sz[64] = "";
    if (de->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/sys/class/uio/%s/name", de->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    if (fgets(name, sizeof name, f) == NULL) name[0] = 0;
    fclose(f);
    if (strstr(name, match) == NULL) continue;
    snprintf(path, sizeof path, "/sys/class/uio/%s/maps/map0/size", de->d_name);
    f = fopen(path, "r");
    if (f == NULL || fgets(sz, sizeof sz, f) == NULL) return closedir(d), -1;
    fclose(f);
    *size = (size_t)strtoull(sz, NULL, 0);
    snprintf(dev, devlen, "/dev/%s", de->d_name);
    closedir(d);
    return 0;
  }
  if (d != NULL) closedir(d);
  return -1;
}

static int parse_hex(const char *s, uint8_t *out, int max) {
  int n = 0;
  if (strncmp(s, "0x", 2) == 0) s += 2;
  if (strlen(s) % 2 != 0) return -1;
  for (; s[0] && s[1] && n < max; s += 2) {
    char b[3] = {s[0], s[1], 0};
    char *end;
    out[n++] = (uint8_t)strtoul(b, &end, 16);
    if (*end != 0) return -1;
  }
  return s[0] ? -1 : n;
}

static int stdio_loop(void) {
  static struct answer a;
  char line[512];
  while (fgets(line, sizeof line, stdin) != NULL) {
    uint8_t cdb[32] = {0};
    line[strcspn(line, "\r\n")] = 0;
    if (parse_hex(line, cdb, sizeof cdb) < 6) {
      printf("error bad cdb\n");
    } else {
      execute(&a, cdb);
      printf("%u %u %u %u ", a.status, a.key, a.asc, a.ascq);
      for (uint32_t i = 0; i < a.len; i++) printf("%02x", a.data[i]);
      printf("\n");
    }
    fflush(stdout);
  }
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: tcmu-changer --match SUBSTR [--naa HEX] [--serial S] [--slots N] [--no-mail]\n"
                  "       [--drive HEX|-]... [--cartridge SLOT=BARCODE]... [--loaded DRIVE=SLOT:BARCODE]... [--verbose]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *match = NULL;
  int slots = 16, mail = 1, drives = 0;
  char *drive_ids[16], *cartridges[64], *loaded[16];
  int ncart = 0, nloaded = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--verbose") == 0) verbose = 1;
    else if (strcmp(a, "--stdio") == 0) match = "";
    else if (strcmp(a, "--no-mail") == 0) mail = 0;
    else if (v == NULL) usage();
    else if (strcmp(a, "--match") == 0) match = argv[++i];
    else if (strcmp(a, "--serial") == 0) serial = argv[++i];
    else if (strcmp(a, "--slots") == 0) slots = atoi(argv[++i]);
    else if (strcmp(a, "--naa") == 0) { if (parse_hex(argv[++i], lu_naa, 8) != 8) usage(); }
    else if (strcmp(a, "--drive") == 0 && drives < 16) drive_ids[drives++] = argv[++i];
    else if (strcmp(a, "--cartridge") == 0 && ncart < 64) cartridges[ncart++] = argv[++i];
    else if (strcmp(a, "--loaded") == 0 && nloaded < 16) loaded[nloaded++] = argv[++i];
    else usage();
  }
  if (match == NULL || slots < 0 || slots > 96) usage();
  if (drives == 0) drive_ids[drives++] = "-";

  add(TRANSPORT, BASE_TRANSPORT);
  for (int i = 0; i < drives; i++) {
    struct element *e = add(DATA_TRANSFER, BASE_DRIVE + i);
    if (strcmp(drive_ids[i], "-") != 0 && (e->id_len = parse_hex(drive_ids[i], e->id, MAX_ID)) <= 0) usage();
  }
  if (mail) add(IMPORT_EXPORT, BASE_MAIL);
  for (int i = 0; i < slots; i++) add(STORAGE, BASE_STORAGE + i);
  for (int i = 0; i < ncart; i++) {
    int slot;
    char code[33];
    if (sscanf(cartridges[i], "%d=%32s", &slot, code) != 2 || at(BASE_STORAGE + slot - 1) == NULL) usage();
    strcpy(at(BASE_STORAGE + slot - 1)->barcode, code);
  }
  for (int i = 0; i < nloaded; i++) {
    int drive, slot;
    char code[33];
    if (sscanf(loaded[i], "%d=%d:%32s", &drive, &slot, code) != 3) usage();
    struct element *e = at(BASE_DRIVE + drive);
    if (e == NULL || e->type != DATA_TRANSFER) usage();
    strcpy(e->barcode, code);
    e->source = BASE_STORAGE + slot - 1;
  }

  /* It outlives the test process that started it (the VM powers off under it): a closed log pipe is no reason to stop. */
  signal(SIGPIPE, SIG_IGN);
  if (match[0] == 0) return stdio_loop();
  char dev[300];
  size_t size = 0;
  if (find_uio(match, dev, sizeof dev, &size) != 0 || size == 0) {
    fprintf(stderr, "tcmu-changer: no UIO device named like '%s' (is the user backstore enabled?)\n", match);
    return 1;
  }
  int fd = open(dev, O_RDWR);
  if (fd < 0) return perror(dev), 1;
  uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return perror("tcmu-changer: mmap"), 1;
  struct tcmu_mailbox *mb = (struct tcmu_mailbox *)map;
  printf("TCMU-CHANGER ready %s map=%zu version=%u flags=0x%x\n", dev, size, mb->version, mb->flags);
  fflush(stdout);
  serve(fd, map); /* drains what was queued before it started, then waits for events */
  return 0;
}
