// How a request fills an sg_io_hdr_t and how a completed one becomes a response: no koffi, no device.
import { describe, expect, it } from 'vitest';
import {
  SENSE_BUFFER_LENGTH,
  SG_DXFER_FROM_DEV,
  SG_DXFER_NONE,
  SG_DXFER_TO_DEV,
  SG_IO_HDR_FIELDS,
  SG_IO_HDR_LAYOUT,
  dataTransferOf,
  responseOf,
  sgIoHdrOf,
  type CompletedHdr,
} from '../../agent/transport/sgio-layout.js';
import type { ScsiRequest } from '../../src/scsi/exchange.js';

const readKeys: ScsiRequest = {
  cdb: Uint8Array.of(0x5e, 0, 0, 0, 0, 0, 0, 0, 0xff, 0),
  dataInLength: 0xff,
  timeoutMs: 1500.2,
};
const register: ScsiRequest = {
  cdb: Uint8Array.of(0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0),
  dataOut: new Uint8Array(24).fill(7),
  dataInLength: 0,
  timeoutMs: 1000,
};
const tur: ScsiRequest = { cdb: new Uint8Array(6), dataInLength: 0, timeoutMs: 1000 };

const completed = (fields: Partial<CompletedHdr> = {}): CompletedHdr => ({
  status: 0,
  sb_len_wr: 0,
  host_status: 0,
  driver_status: 0,
  resid: 0,
  duration: 3,
  ...fields,
});

describe('sg_io_hdr_t fields', () => {
  it('declares every field of the C layout, in offset order', () => {
    const byOffset = Object.entries(SG_IO_HDR_LAYOUT.offsets)
      .sort(([, a], [, b]) => a - b)
      .map(([field]) => field);
    expect(Object.keys(SG_IO_HDR_FIELDS)).toEqual(byOffset);
  });
});

describe('dataTransferOf', () => {
  it('says which way data moves and how much', () => {
    expect(dataTransferOf(readKeys)).toMatchObject({ direction: SG_DXFER_FROM_DEV, length: 0xff });
    expect(dataTransferOf(register)).toMatchObject({ direction: SG_DXFER_TO_DEV, length: 24 });
    expect(dataTransferOf(register).out).toBe(register.dataOut);
    expect(dataTransferOf(tur)).toMatchObject({ direction: SG_DXFER_NONE, length: 0 });
  });
});

describe('sgIoHdrOf', () => {
  it('fills the inputs from the request and zeroes the outputs', () => {
    const pointers = { cdb: 'cdb*', sense: 'sense*', data: 'data*' };
    const hdr = sgIoHdrOf(readKeys, dataTransferOf(readKeys), pointers);
    expect(Object.keys(hdr).sort()).toEqual(Object.keys(SG_IO_HDR_FIELDS).sort());
    expect(hdr).toMatchObject({
      interface_id: 0x53, // 'S'
      dxfer_direction: SG_DXFER_FROM_DEV,
      cmd_len: 10,
      mx_sb_len: SENSE_BUFFER_LENGTH,
      dxfer_len: 0xff,
      dxferp: 'data*',
      cmdp: 'cdb*',
      sbp: 'sense*',
      timeout: 1501, // whole milliseconds, rounded up: never shorter than asked
      status: 0,
      sb_len_wr: 0,
      resid: 0,
      duration: 0,
    });
  });
});

describe('responseOf', () => {
  it('copies the data actually transferred (dxfer_len − resid) and the sense written', () => {
    const transfer = dataTransferOf(readKeys);
    const data = new Uint8Array(0xff).map((_, i) => i);
    const sense = new Uint8Array(SENSE_BUFFER_LENGTH).fill(0x70);
    const response = responseOf(
      completed({ resid: 0xff - 8, sb_len_wr: 18, status: 2 }),
      transfer,
      sense,
      data,
    );
    expect([...response.dataIn]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(response.sense.length).toBe(18);
    expect(response).toMatchObject({ status: 2, resid: 0xff - 8, durationMs: 3 });
    data[0] = 99;
    expect(response.dataIn[0]).toBe(0); // a copy: the native buffer is freed after
  });

  it('clamps a resid beyond the buffer or below zero, and caps the sense length', () => {
    const transfer = dataTransferOf(readKeys);
    const data = new Uint8Array(0xff);
    const sense = new Uint8Array(SENSE_BUFFER_LENGTH);
    expect(responseOf(completed({ resid: 1000 }), transfer, sense, data)).toMatchObject({
      resid: 0xff,
      dataIn: new Uint8Array(0),
    });
    expect(responseOf(completed({ resid: -4 }), transfer, sense, data).dataIn.length).toBe(0xff);
    expect(responseOf(completed({ sb_len_wr: 200 }), transfer, sense, data).sense.length).toBe(
      SENSE_BUFFER_LENGTH,
    );
  });

  it('reports the raw resid and no data when nothing came from the device', () => {
    const response = responseOf(
      completed({ resid: 5 }),
      dataTransferOf(register),
      new Uint8Array(SENSE_BUFFER_LENGTH),
      undefined,
    );
    expect(response).toMatchObject({ resid: 5, dataIn: new Uint8Array(0) });
  });
});
