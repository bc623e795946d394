/**
 * The edge: every ControlService and FleetService request is checked here, once, before a handler sees it. What
 * is checked comes from the message descriptors (src/gen/protoset.binpb, written by `make gen`), so a new field
 * or RPC is covered without code:
 *
 * - every string is valid UTF-8 and at most {@link STRING_LIMITS} bytes for its kind of field (chosen by name,
 *   {@link limitOf}); ids, names, paths and keys carry no control characters, free text none but tab and newline;
 * - every list has at most {@link MAX_LIST_ITEMS} items, every bytes field at most {@link MAX_BYTES} bytes;
 * - every google.protobuf.Duration is non-negative (and normalized);
 * - a field whose proto comment has the sentence "Required." is set (non-empty, non-zero);
 * - an idempotency key does not use the server's own prefix.
 *
 * Every violation is reported at once: one INVALID_ARGUMENT with a BadRequest listing them (the first
 * {@link MAX_REPORTED_VIOLATIONS}), each quoting at most a short escaped prefix of what was sent.
 *
 * A body that is not protobuf, or has invalid UTF-8 in a string, cannot be refused by grpc-js's deserializer (it
 * answers INTERNAL), so the deserializer returns an {@link UndecodableRequest} instead and the middleware refuses
 * it with INVALID_ARGUMENT.
 */
import { Status } from 'nice-grpc-common';
import { BadRequest, RichServerError } from 'nice-grpc-error-details';
import {
  createFileRegistry,
  fromBinary,
  ScalarType,
  type DescField,
  type DescMessage,
  type FileRegistry,
} from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import {
  FileDescriptorSetSchema,
  type DescriptorProto,
  type FileDescriptorSet,
} from '@bufbuild/protobuf/wkt';
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc-common';
import { quoteInput } from '../common/errors.js';
import type { TsProtoMessageType } from '../common/service-definition.js';
import type { ConnectRequest, Hello } from '../gen/prfleet/v1/agent.js';
import { ASSIGNED_KEY_PREFIX } from './command-executor.js';
import { MAX_REASON_LENGTH } from './history.js';

/** Longest request string (bytes of UTF-8) by kind of field; see {@link limitOf}. */
export const STRING_LIMITS = {
  /** `id`, `*_id`, `*_ids` (agents, LUs, loaders, request and operation ids), `page_token`. */
  id: 128,
  /** `path` (device nodes). */
  path: 4096,
  /** Names: site, owner, name, purpose, group, labels, who (`*_by`), ISID (the key registry keeps 200). */
  name: 200,
  /** `idempotency_key`. */
  idempotencyKey: 256,
  /** `reason` (kept in the PROUT history). */
  reason: MAX_REASON_LENGTH,
  /** Any other string (notes, descriptions). */
  text: 1024,
} as const;

/** Most items of a repeated (or map) field in a request. */
export const MAX_LIST_ITEMS = 10_000;
/** Longest bytes field in a request (a raw TransportID). */
export const MAX_BYTES = 4096;
/** Violations listed in one BadRequest (the message says how many there were). */
export const MAX_REPORTED_VIOLATIONS = 10;

const NAME_FIELDS = new Set([
  'site',
  'owner',
  'name',
  'purpose',
  'key_purpose',
  'group',
  'group_site',
  'labels',
  'group_labels',
  'updated_by',
  'revoked_by',
  'isid',
]);

/** The kind of limit a request field of this name has. */
export function limitOf(fieldName: string): keyof typeof STRING_LIMITS {
  if (fieldName === 'idempotency_key') return 'idempotencyKey';
  if (fieldName === 'path') return 'path';
  if (fieldName === 'reason') return 'reason';
  if (fieldName === 'id' || /_ids?$/.test(fieldName) || fieldName === 'page_token') return 'id';
  if (NAME_FIELDS.has(fieldName)) return 'name';
  return 'text';
}

// C0 controls (tab and newline allowed in free text only), DEL, C1 controls, and the bidirectional marks,
// embeddings, overrides and isolates: with those a reason kept in the history could display unlike its bytes.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const CONTROL_IN_TEXT =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** What the deserializer hands on for a body it could not decode (instead of throwing: grpc-js says INTERNAL). */
export class UndecodableRequest {
  constructor(
    /** Why decoding failed. */
    readonly problem: string,
    /** Fields holding invalid UTF-8, when that was the problem. */
    readonly fields: readonly string[] = [],
  ) {}
}

/** One BadRequest field violation. */
export interface Violation {
  readonly field: string;
  readonly description: string;
}

/** The descriptors of the request messages, with the proto comments that mark required fields. */
export interface EdgeSchema {
  /** Descriptor of a message by full name (`prfleet.v1.ReadKeysRequest`). */
  message(typeName: string): DescMessage | undefined;
  /** The request message of a method path (`/prfleet.v1.ControlService/ReadKeys`). */
  requestOf(methodPath: string): DescMessage | undefined;
  /** True when the field's leading comment says "Required.". */
  isRequired(field: DescField): boolean;
}

/** Reads the descriptor set (src/gen/protoset.binpb); source info (comments) must be in it. */
export function loadEdgeSchema(protoset: Uint8Array): EdgeSchema {
  const { set, comments } = splitSourceInfo(protoset);
  const registry: FileRegistry = createFileRegistry(set);
  const required = new Set<DescriptorProto['field'][number]>();
  set.file.forEach((file, f) => {
    const fileComments = comments[f];
    // Message paths: [4, i] at the top, [..., 3, j] nested; a field is [..., 2, k].
    const visit = (messages: readonly DescriptorProto[], prefix: number[]) =>
      messages.forEach((message, i) => {
        const at = [...prefix, i];
        message.field.forEach((field, k) => {
          if (fileComments?.has([...at, 2, k].join('.')) === true) required.add(field);
        });
        visit(message.nestedType, [...at, 3]);
      });
    visit(file.messageType, [4]);
  });
  const requests = new Map<string, DescMessage>();
  for (const file of registry.files) {
    for (const service of file.services) {
      for (const method of service.methods) {
        requests.set(`/${service.typeName}/${method.name}`, method.input);
      }
    }
  }
  return {
    message: (typeName) => registry.getMessage(typeName),
    requestOf: (path) => requests.get(path),
    isRequired: (field) => required.has(field.proto),
  };
}

/**
 * The descriptor set without its files' source info, and each file's leading comments that mark a field
 * required, by location path ("4.0.2.1"). The source info is three quarters of the bytes and most of the time
 * @bufbuild/protobuf takes to decode the set (a cold start pays it); those few comments are read off the wire.
 */
function splitSourceInfo(protoset: Uint8Array): {
  set: FileDescriptorSet;
  comments: Map<string, string>[];
} {
  const reader = new BinaryReader(protoset);
  const files = new BinaryWriter();
  const comments: Map<string, string>[] = [];
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no !== 1) {
      reader.skip(wireType);
      continue;
    }
    const file = reader.bytes();
    const fileReader = new BinaryReader(file);
    const kept = new BinaryWriter();
    const fileComments = new Map<string, string>();
    while (fileReader.pos < fileReader.len) {
      const start = fileReader.pos;
      const [fieldNo, fieldWireType] = fileReader.tag();
      // FileDescriptorProto.source_code_info = 9
      if (fieldNo === 9) {
        readRequiredComments(fileReader.bytes(), fileComments);
      } else {
        fileReader.skip(fieldWireType, fieldNo);
        kept.raw(file.subarray(start, fileReader.pos));
      }
    }
    files.tag(1, WireType.LengthDelimited).bytes(kept.finish());
    comments.push(fileComments);
  }
  return { set: fromBinary(FileDescriptorSetSchema, files.finish()), comments };
}

/** Marks a required field in its leading comment; see {@link EdgeSchema.isRequired}. */
const REQUIRED = /(^|\s)Required\./;

/**
 * SourceCodeInfo: repeated Location location = 1 { repeated int32 path = 1 [packed]; leading_comments = 3 }.
 * Only the locations whose bytes hold "Required." are decoded: a start pays for the rest only a tag and a length
 * each (thousands of them, interpreted code at that point).
 */
function readRequiredComments(info: Uint8Array, into: Map<string, string>): void {
  const text = Buffer.from(info.buffer, info.byteOffset, info.byteLength);
  const reader = new BinaryReader(info);
  let next = text.indexOf('Required.');
  while (next !== -1 && reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no !== 1 || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, no);
      continue;
    }
    const length = reader.uint32();
    const start = reader.pos;
    reader.pos += length;
    if (next >= reader.pos) continue;
    readLocation(info.subarray(start, reader.pos), into);
    next = text.indexOf('Required.', reader.pos);
  }
}

function readLocation(bytes: Uint8Array, into: Map<string, string>): void {
  const location = new BinaryReader(bytes);
  const path: number[] = [];
  let comment = '';
  while (location.pos < location.len) {
    const [fieldNo, fieldWireType] = location.tag();
    if (fieldNo === 1 && fieldWireType === WireType.LengthDelimited) {
      const end = location.uint32() + location.pos;
      while (location.pos < end) path.push(location.int32());
    } else if (fieldNo === 1) path.push(location.int32());
    else if (fieldNo === 3) comment = location.string();
    else location.skip(fieldWireType, fieldNo);
  }
  if (REQUIRED.test(comment)) into.set(path.join('.'), comment);
}

type Plain = Record<string, unknown>;

/** Every violation in `message` (a decoded ts-proto request of type `desc`), at most `limit` of them. */
export function violationsOf(
  schema: EdgeSchema,
  desc: DescMessage,
  message: unknown,
  prefix = '',
): Violation[] {
  const out: Violation[] = [];
  checkMessage(schema, desc, message as Plain | undefined, prefix, out);
  return out;
}

function fieldValue(field: DescField, message: Plain | undefined): unknown {
  if (message === undefined) return undefined;
  if (field.oneof === undefined) return message[field.localName];
  const chosen = message[field.oneof.localName] as { $case?: string; value?: unknown } | undefined;
  return chosen?.$case === field.localName ? chosen.value : undefined;
}

function isUnset(field: DescField, value: unknown): boolean {
  if (value === undefined || value === null) return true;
  switch (field.fieldKind) {
    case 'list':
      return (value as unknown[]).length === 0;
    case 'map':
      return Object.keys(value).length === 0;
    case 'message':
      return false;
    default:
      return value === '' || value === 0 || value === 0n || value === false;
  }
}

/** What the edge checks of one field, worked out once per descriptor field (not per request). */
interface FieldRule {
  readonly required: boolean;
  /** The string limit of a string field (scalar, list or map value); map keys are checked as names of this field. */
  readonly limit: keyof typeof STRING_LIMITS;
}

const fieldRules = new WeakMap<DescField, FieldRule>();

function ruleOf(schema: EdgeSchema, field: DescField): FieldRule {
  let rule = fieldRules.get(field);
  if (rule === undefined) {
    rule = { required: schema.isRequired(field), limit: limitOf(field.name) };
    fieldRules.set(field, rule);
  }
  return rule;
}

function checkMessage(
  schema: EdgeSchema,
  desc: DescMessage,
  message: Plain | undefined,
  prefix: string,
  out: Violation[],
): void {
  if (desc.typeName === 'google.protobuf.Duration') {
    checkDuration(message, prefix, out);
    return;
  }
  for (const field of desc.fields) {
    const value = fieldValue(field, message);
    const rule = ruleOf(schema, field);
    if (rule.required && isUnset(field, value)) {
      out.push({ field: `${prefix}${field.name}`, description: 'required' });
      continue;
    }
    if (value === undefined || value === null) continue;
    // The field's path is built only when it is reported or has fields of its own: most requests have none.
    switch (field.fieldKind) {
      case 'scalar': {
        const problem = scalarProblem(rule.limit, field.scalar, value);
        if (problem !== undefined)
          out.push({ field: `${prefix}${field.name}`, description: problem });
        break;
      }
      case 'message':
        checkMessage(schema, field.message, value as Plain, `${prefix}${field.name}.`, out);
        break;
      case 'list':
        checkList(schema, field, rule, value as unknown[], `${prefix}${field.name}`, out);
        break;
      case 'map':
        checkMap(schema, field, rule, value as Plain, `${prefix}${field.name}`, out);
        break;
      case 'enum':
        break;
    }
  }
}

function checkList(
  schema: EdgeSchema,
  field: DescField & { fieldKind: 'list' },
  rule: FieldRule,
  items: unknown[],
  path: string,
  out: Violation[],
): void {
  if (items.length > MAX_LIST_ITEMS) {
    out.push({ field: path, description: `${items.length} items; at most ${MAX_LIST_ITEMS}` });
    return;
  }
  items.forEach((item, i) => {
    if (field.listKind === 'scalar') {
      const problem = scalarProblem(rule.limit, field.scalar, item);
      if (problem !== undefined) out.push({ field: `${path}[${i}]`, description: problem });
    } else if (field.listKind === 'message')
      checkMessage(schema, field.message, item as Plain, `${path}[${i}].`, out);
  });
}

function checkMap(
  schema: EdgeSchema,
  field: DescField & { fieldKind: 'map' },
  rule: FieldRule,
  value: Plain,
  path: string,
  out: Violation[],
): void {
  const entries = Object.entries(value);
  if (entries.length > MAX_LIST_ITEMS) {
    out.push({ field: path, description: `${entries.length} entries; at most ${MAX_LIST_ITEMS}` });
    return;
  }
  for (const [key, item] of entries) {
    const at = `${path}[${quoteInput(key, 32)}]`;
    const keyProblem = scalarProblem(rule.limit, ScalarType.STRING, key);
    if (keyProblem !== undefined) out.push({ field: at, description: keyProblem });
    if (field.mapKind === 'scalar') {
      const problem = scalarProblem(rule.limit, field.scalar, item);
      if (problem !== undefined) out.push({ field: at, description: problem });
    } else if (field.mapKind === 'message')
      checkMessage(schema, field.message, item as Plain, `${at}.`, out);
  }
}

/** What is wrong with one scalar value (a string or bytes field with its limit), or undefined. */
function scalarProblem(
  kind: keyof typeof STRING_LIMITS,
  type: ScalarType,
  value: unknown,
): string | undefined {
  if (type === ScalarType.BYTES) {
    const length = (value as Uint8Array).length;
    return length > MAX_BYTES ? `${length} bytes; at most ${MAX_BYTES}` : undefined;
  }
  if (type !== ScalarType.STRING || typeof value !== 'string' || value === '') return undefined;
  const max = STRING_LIMITS[kind];
  // A string of n UTF-16 units has at most 3n UTF-8 bytes: short ones need no byte count.
  if (value.length * 3 > max) {
    const bytes = Buffer.byteLength(value);
    if (bytes > max) return `${quoteInput(value)} is longer than ${max} bytes`;
  }
  const control = kind === 'text' || kind === 'reason' ? CONTROL_IN_TEXT : CONTROL;
  if (control.test(value)) return `${quoteInput(value)} contains a control character`;
  if (kind === 'idempotencyKey' && value.startsWith(ASSIGNED_KEY_PREFIX)) {
    return `${quoteInput(value)}: the prefix ${ASSIGNED_KEY_PREFIX} is the server's own (keys it assigns)`;
  }
  return undefined;
}

function checkDuration(value: Plain | undefined, path: string, out: Violation[]): void {
  const seconds = (value?.['seconds'] as bigint | undefined) ?? 0n;
  const nanos = (value?.['nanos'] as number | undefined) ?? 0;
  const field = path.replace(/\.$/, '');
  if (seconds < 0n || nanos < 0) out.push({ field, description: 'must not be negative' });
  else if (nanos > 999_999_999)
    out.push({ field, description: 'nanos must be below 1,000,000,000' });
}

/** One INVALID_ARGUMENT for every violation (BadRequest with the first {@link MAX_REPORTED_VIOLATIONS}). */
export function invalidArguments(violations: readonly Violation[]): RichServerError {
  const listed = violations.slice(0, MAX_REPORTED_VIOLATIONS);
  const first = listed[0];
  const more =
    violations.length > 1
      ? ` (${violations.length} problems: ${listed.map((v) => v.field).join(', ')}${violations.length > listed.length ? ', …' : ''})`
      : '';
  return new RichServerError(
    Status.INVALID_ARGUMENT,
    first === undefined ? 'invalid request' : `${first.field}: ${first.description}${more}`,
    [BadRequest.fromPartial({ fieldViolations: listed })],
  );
}

/** Throws {@link invalidArguments} when `message` (of type `desc`) breaks any edge rule. */
export function checkRequest(
  schema: EdgeSchema,
  desc: DescMessage,
  message: unknown,
  prefix = '',
): void {
  if (message instanceof UndecodableRequest) throw undecodable(desc, message);
  const violations = violationsOf(schema, desc, message, prefix);
  if (violations.length > 0) throw invalidArguments(violations);
}

function undecodable(desc: DescMessage, request: UndecodableRequest): RichServerError {
  if (request.fields.length > 0) {
    return invalidArguments(
      request.fields.map((field) => ({ field, description: 'not valid UTF-8' })),
    );
  }
  return new RichServerError(
    Status.INVALID_ARGUMENT,
    `the request body is not a valid ${desc.typeName}: ${request.problem}`,
    [BadRequest.fromPartial({ fieldViolations: [{ field: '', description: request.problem }] })],
  );
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Request deserializers for grpc-js (the `requestDeserializer` of directServiceDefinition) that never throw: a
 * body that is not protobuf, or that has invalid UTF-8 in a string (ts-proto would quietly put U+FFFD there),
 * becomes an {@link UndecodableRequest}.
 */
export function edgeDeserializer(schema: EdgeSchema) {
  return (path: string, type: TsProtoMessageType) => {
    const desc = schema.requestOf(path);
    return (bytes: Uint8Array): unknown => {
      try {
        return type.decode(new BinaryReader(bytes, (b) => strictUtf8.decode(b)));
      } catch (e) {
        const problem = e instanceof Error ? e.message : String(e);
        if (!(e instanceof TypeError) || !/encoded data/i.test(problem)) {
          return new UndecodableRequest(problem.slice(0, 200));
        }
        // Invalid UTF-8: decode leniently to name the fields that came out with U+FFFD.
        let lenient: unknown;
        try {
          lenient = type.decode(bytes);
        } catch {
          return new UndecodableRequest('invalid UTF-8 in a string field');
        }
        const fields = desc === undefined ? [] : replacedFields(desc, lenient as Plain, '');
        return new UndecodableRequest('invalid UTF-8 in a string field', fields);
      }
    };
  };
}

/**
 * The fields of `message`, decoded leniently from `bytes` as `type` (descriptor `typeName`: ts-proto put U+FFFD
 * where the bytes were not UTF-8), that held invalid UTF-8; [] when every string is valid.
 */
export function invalidUtf8Fields(
  schema: EdgeSchema,
  typeName: string,
  type: TsProtoMessageType,
  bytes: Uint8Array,
  message: unknown,
): string[] {
  try {
    type.decode(new BinaryReader(bytes, (b) => strictUtf8.decode(b)));
    return [];
  } catch {
    const desc = schema.message(typeName);
    return desc === undefined ? [] : replacedFields(desc, message as Plain, '');
  }
}

/**
 * A Hello as the session's Hello check (checkRequest) sees it: an {@link UndecodableRequest} naming `fields` (its
 * strings that held invalid UTF-8, `hello.hostname`) when there are any, so it is refused like any Hello that
 * breaks a rule; else the Hello itself.
 */
export function helloWithInvalidUtf8(hello: Hello, fields: readonly string[]): Hello {
  if (fields.length === 0) return hello;
  return new UndecodableRequest('invalid UTF-8 in a string field', fields) as unknown as Hello;
}

/**
 * The request deserializer of AgentService.Connect: ts-proto's lenient decoding (inventories and results, the
 * stream's busy path, are decoded once as ever), except that a Hello is decoded again strictly and refused by
 * the session's Hello check when a string held invalid UTF-8.
 */
export function agentRequestDeserializer(schema: EdgeSchema) {
  return (_path: string, type: TsProtoMessageType) =>
    (bytes: Uint8Array): unknown => {
      const request = type.decode(bytes) as ConnectRequest;
      if (request.message?.$case !== 'hello') return request;
      const fields = invalidUtf8Fields(schema, 'prfleet.v1.ConnectRequest', type, bytes, request);
      return {
        message: { $case: 'hello', value: helloWithInvalidUtf8(request.message.value, fields) },
      };
    };
}

function replacedFields(desc: DescMessage, message: Plain | undefined, prefix: string): string[] {
  const found: string[] = [];
  for (const field of desc.fields) {
    const value = fieldValue(field, message);
    const path = `${prefix}${field.name}`;
    if (value === undefined || value === null) continue;
    const visit = (item: unknown, at: string, kind: 'scalar' | 'message', sub?: DescMessage) => {
      if (kind === 'scalar' && typeof item === 'string' && item.includes('\ufffd')) found.push(at);
      if (kind === 'message' && sub !== undefined)
        found.push(...replacedFields(sub, item as Plain, `${at}.`));
    };
    if (field.fieldKind === 'scalar') visit(value, path, 'scalar');
    else if (field.fieldKind === 'message') visit(value, path, 'message', field.message);
    else if (field.fieldKind === 'list') {
      (value as unknown[]).forEach((item, i) =>
        field.listKind === 'message'
          ? visit(item, `${path}[${i}]`, 'message', field.message)
          : visit(item, `${path}[${i}]`, 'scalar'),
      );
    } else if (field.fieldKind === 'map') {
      for (const [key, item] of Object.entries(value as Plain)) {
        if (key.includes('\ufffd')) found.push(path);
        else
          visit(
            item,
            `${path}[${quoteInput(key, 32)}]`,
            field.mapKind === 'message' ? 'message' : 'scalar',
            field.mapKind === 'message' ? field.message : undefined,
          );
      }
    }
  }
  return found;
}

/**
 * Server middleware checking each request against the edge rules: unary and server-streaming requests before
 * the handler runs; each message of a client stream as it arrives (an undecodable one ends the call with
 * INVALID_ARGUMENT). CommandSession checks its commands itself, to answer in-band.
 */
export function edgeMiddleware(schema: EdgeSchema) {
  return async function* edge<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ) {
    const desc = schema.requestOf(call.method.path);
    if (desc === undefined) return yield* call.next(call.request, context);
    if (!call.requestStream) {
      checkRequest(schema, desc, call.request);
      return yield* call.next(call.request, context);
    }
    const requests = call.request as AsyncIterable<unknown>;
    async function* decoded() {
      for await (const request of requests) {
        if (request instanceof UndecodableRequest) throw undecodable(desc!, request);
        yield request;
      }
    }
    return yield* call.next(decoded() as Request, context);
  };
}
