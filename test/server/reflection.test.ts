// Issue 11, point 6: reflection that real clients can use. `buf curl` (a client sharing no code with prfleet)
// lists the services over grpc.reflection.v1 and over the older v1alpha, finds grpc.health.v1.Health and calls
// it; a reflection client resolves the google.rpc error-detail types from the server alone and decodes the
// details of a real error with them (what grpcurl and descriptor-pool clients such as Python's do).
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  create,
  createFileRegistry,
  fromBinary,
  toJson,
  type FileRegistry,
} from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  AnySchema,
  anyUnpack,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from '@bufbuild/protobuf/wkt';
import { createChannel, createClient } from 'nice-grpc';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ServerReflectionV1AlphaService } from '../../src/server/reflection.js';
import { repoRoot } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';

const ROOT = repoRoot();

// google-protobuf message classes of the reflection service (CommonJS), shared by v1 and v1alpha.
const require = createRequire(import.meta.url);
const reflectionPb =
  require('nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js') as {
    ServerReflectionRequest: new () => {
      setFileContainingSymbol(v: string): unknown;
      setFileByFilename(v: string): unknown;
    };
  };

/** Runs `buf curl --protocol grpc --http2-prior-knowledge <args>`. */
function bufCurl(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      resolve(ROOT, 'node_modules/.bin/buf'),
      ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args],
      { cwd: ROOT, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

type ReflectionDefinition = typeof ServerReflectionService | typeof ServerReflectionV1AlphaService;

/**
 * The types a reflection client can resolve from the server: the file declaring each symbol, and the files it
 * imports, fetched over `definition`'s reflection version, in one registry.
 */
async function resolveTypes(
  address: string,
  definition: ReflectionDefinition,
  symbols: readonly string[],
): Promise<FileRegistry> {
  const channel = createChannel(address);
  onTestFinished(() => channel.close());
  const reflection = createClient(definition as typeof ServerReflectionService, channel);
  const ask = async (
    set: (request: InstanceType<typeof reflectionPb.ServerReflectionRequest>) => void,
  ) => {
    const request = new reflectionPb.ServerReflectionRequest();
    set(request);
    async function* one() {
      yield request as never;
    }
    for await (const response of reflection.serverReflectionInfo(one())) {
      const error = response.getErrorResponse();
      if (error !== undefined) throw new Error(error.getErrorMessage());
      return (response.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? []).map(
        (bytes) => fromBinary(FileDescriptorProtoSchema, bytes),
      );
    }
    return [];
  };
  const files = new Map<string, ReturnType<typeof fromBinary<typeof FileDescriptorProtoSchema>>>();
  // Dependencies first: a descriptor set lists a file after the files it imports.
  const fetchFile = async (name: string) => {
    if (files.has(name)) return;
    for (const file of await ask((r) => r.setFileByFilename(name))) {
      for (const dependency of file.dependency) await fetchFile(dependency);
      files.set(file.name, file);
    }
  };
  for (const symbol of symbols) {
    for (const file of await ask((r) => r.setFileContainingSymbol(symbol)))
      await fetchFile(file.name);
  }
  return createFileRegistry(create(FileDescriptorSetSchema, { file: [...files.values()] }));
}

/** The google.rpc.Status details (type URL and bytes) of a failed call, from its grpc-status-details-bin. */
function statusDetails(error: grpc.ServiceError) {
  const [bin] = error.metadata.get('grpc-status-details-bin');
  const reader = new BinaryReader(bin as Buffer);
  const details = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 3) details.push(fromBinary(AnySchema, reader.bytes()));
    else reader.skip(wireType);
  }
  return details;
}

const DETAIL_TYPES = [
  'google.rpc.ErrorInfo',
  'google.rpc.BadRequest',
  'google.rpc.ResourceInfo',
  'google.rpc.PreconditionFailure',
  'google.rpc.QuotaFailure',
];

describe('reflection for generic clients', () => {
  it('buf curl lists every service, health included, over reflection v1 and v1alpha', async () => {
    const { address } = await startTestServer();
    for (const protocol of ['grpc-v1', 'grpc-v1alpha']) {
      const list = await bufCurl([
        '--reflect-protocol',
        protocol,
        '--list-services',
        `http://${address}`,
      ]);
      expect(list.stderr).toBe('');
      expect(list.stdout.trim().split('\n').sort()).toEqual([
        'grpc.health.v1.Health',
        'prfleet.v1.AgentService',
        'prfleet.v1.ControlService',
        'prfleet.v1.FleetService',
      ]);
      const methods = await bufCurl([
        '--reflect-protocol',
        protocol,
        '--list-methods',
        `http://${address}`,
      ]);
      expect(methods.stdout.split('\n').filter((m) => m.startsWith('grpc.health.v1.'))).toEqual([
        'grpc.health.v1.Health/Check',
        'grpc.health.v1.Health/Watch',
      ]);
    }
    const health = await bufCurl([`http://${address}/grpc.health.v1.Health/Check`]);
    expect(health.code).toBe(0);
    expect(JSON.parse(health.stdout)).toEqual({ status: 'SERVING' });
  });

  it('serves the google.rpc error-detail types, and a client decodes real error details with them', async () => {
    const { address } = await startTestServer();
    for (const definition of [ServerReflectionService, ServerReflectionV1AlphaService]) {
      const registry = await resolveTypes(address, definition, DETAIL_TYPES);
      for (const type of DETAIL_TYPES) expect(registry.getMessage(type)?.typeName).toBe(type);
    }
    const registry = await resolveTypes(address, ServerReflectionService, DETAIL_TYPES);
    // A NOT_FOUND with a ResourceInfo, through a client that knows nothing but the reflected types.
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    onTestFinished(() => client.close());
    const getDevice = '/prfleet.v1.ControlService/GetDevice';
    const request = Buffer.from([0x0a, 4, ...Buffer.from('nope')]); // GetDeviceRequest{lu_id: "nope"}
    const error = await new Promise<grpc.ServiceError>((done) =>
      client.makeUnaryRequest(
        getDevice,
        (b: Buffer) => b,
        (b: Buffer) => b,
        request,
        (e) => done(e!),
      ),
    );
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    const decoded = statusDetails(error).map((any) => {
      const message = anyUnpack(any, registry);
      return message === undefined
        ? any.typeUrl
        : toJson(registry.getMessage(message.$typeName)!, message, { registry });
    });
    expect(decoded).toEqual([
      expect.objectContaining({ resourceType: 'logical unit', resourceName: 'nope' }),
    ]);
  });
});
