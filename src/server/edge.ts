/**
 * The edge: every ControlService and FleetService request is checked here, once, before a handler sees it. What
 * is checked comes from the message descriptors, as `make gen` tabulates them (src/gen/edge-table.ts, written by
 * scripts/gen-edge-table.mjs from src/gen/protoset.binpb), so a new field or RPC is covered without code:
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
import { ScalarType } from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc-common';
import { quoteInput } from '../common/errors.js';
import type { TsProtoMessageType } from '../common/service-definition.js';
import { edgeTable, type EdgeTableField } from '../gen/edge-table.js';
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

/** A message as the edge checks it (src/gen/edge-table.ts, generated from the descriptors by `make gen`). */
export interface EdgeMessage {
  /** Full name (`prfleet.v1.ReadKeysRequest`). */
  readonly typeName: string;
  readonly fields: readonly EdgeField[];
}

/** A field of an {@link EdgeMessage}, with what the edge checks of it worked out once. */
export interface EdgeField {
  /** The proto name (`lu_id`), as violations name it. */
  readonly name: string;
  /** The property of a decoded ts-proto message (`luId`). */
  readonly localName: string;
  /** The local name of the oneof the field belongs to. */
  readonly oneof: string | undefined;
  readonly kind: EdgeTableField['kind'];
  /** The kind of the value: the field's own, a list's items', a map's values'. */
  readonly item: NonNullable<EdgeTableField['item']>;
  /** The scalar type of a scalar item. */
  readonly scalar: ScalarType | undefined;
  /** The type of a message item. */
  readonly message: EdgeMessage | undefined;
  /** Its leading comment says "Required.". */
  readonly required: boolean;
  /** The string limit of a string item; map keys are checked as names of this field. */
  readonly limit: keyof typeof STRING_LIMITS;
}

/** The messages the edge checks, and which one each RPC takes. */
export interface EdgeSchema {
  /** A message by full name (`prfleet.v1.ReadKeysRequest`). */
  message(typeName: string): EdgeMessage | undefined;
  /** The request message of a method path (`/prfleet.v1.ControlService/ReadKeys`). */
  requestOf(methodPath: string): EdgeMessage | undefined;
}

/**
 * The edge's schema from its generated table (src/gen/edge-table.ts, `make gen`): each message is built on first
 * use (a start builds none; a request builds its own and those it holds).
 */
export function loadEdgeSchema(table: typeof edgeTable = edgeTable): EdgeSchema {
  const built = new Map<string, EdgeMessage>();
  const message = (typeName: string): EdgeMessage | undefined => {
    const known = built.get(typeName);
    if (known !== undefined) return known;
    const fields = table.messages[typeName];
    if (fields === undefined) return undefined;
    const desc: { typeName: string; fields: EdgeField[] } = { typeName, fields: [] };
    // Registered before its fields are built: a message may hold itself.
    built.set(typeName, desc);
    for (const field of fields) desc.fields.push(edgeField(field, message));
    return desc;
  };
  return {
    message,
    requestOf: (path) => {
      const typeName = table.requests[path];
      return typeName === undefined ? undefined : message(typeName);
    },
  };
}

function edgeField(
  field: EdgeTableField,
  message: (typeName: string) => EdgeMessage | undefined,
): EdgeField {
  return {
    name: field.name,
    localName: field.localName,
    oneof: field.oneof,
    kind: field.kind,
    item: field.item ?? (field.kind as EdgeField['item']),
    scalar: field.scalar,
    message: field.message === undefined ? undefined : message(field.message),
    required: field.required === true,
    limit: limitOf(field.name),
  };
}

type Plain = Record<string, unknown>;

/** Every violation in `message` (a decoded ts-proto request of type `desc`). */
export function violationsOf(desc: EdgeMessage, message: unknown, prefix = ''): Violation[] {
  const out: Violation[] = [];
  checkMessage(desc, message as Plain | undefined, prefix, out);
  return out;
}

function fieldValue(field: EdgeField, message: Plain | undefined): unknown {
  if (message === undefined) return undefined;
  if (field.oneof === undefined) return message[field.localName];
  const chosen = message[field.oneof] as { $case?: string; value?: unknown } | undefined;
  return chosen?.$case === field.localName ? chosen.value : undefined;
}

function isUnset(field: EdgeField, value: unknown): boolean {
  if (value === undefined || value === null) return true;
  switch (field.kind) {
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

function checkMessage(
  desc: EdgeMessage,
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
    if (field.required && isUnset(field, value)) {
      out.push({ field: `${prefix}${field.name}`, description: 'required' });
      continue;
    }
    if (value === undefined || value === null) continue;
    // The field's path is built only when it is reported or has fields of its own: most requests have none.
    switch (field.kind) {
      case 'scalar': {
        const problem = scalarProblem(field.limit, field.scalar, value);
        if (problem !== undefined)
          out.push({ field: `${prefix}${field.name}`, description: problem });
        break;
      }
      case 'message':
        checkMessage(field.message!, value as Plain, `${prefix}${field.name}.`, out);
        break;
      case 'list':
        checkList(field, value as unknown[], `${prefix}${field.name}`, out);
        break;
      case 'map':
        checkMap(field, value as Plain, `${prefix}${field.name}`, out);
        break;
      case 'enum':
        break;
    }
  }
}

function checkList(field: EdgeField, items: unknown[], path: string, out: Violation[]): void {
  if (items.length > MAX_LIST_ITEMS) {
    out.push({ field: path, description: `${items.length} items; at most ${MAX_LIST_ITEMS}` });
    return;
  }
  items.forEach((item, i) => {
    if (field.item === 'scalar') {
      const problem = scalarProblem(field.limit, field.scalar, item);
      if (problem !== undefined) out.push({ field: `${path}[${i}]`, description: problem });
    } else if (field.item === 'message')
      checkMessage(field.message!, item as Plain, `${path}[${i}].`, out);
  });
}

function checkMap(field: EdgeField, value: Plain, path: string, out: Violation[]): void {
  const entries = Object.entries(value);
  if (entries.length > MAX_LIST_ITEMS) {
    out.push({ field: path, description: `${entries.length} entries; at most ${MAX_LIST_ITEMS}` });
    return;
  }
  for (const [key, item] of entries) {
    const at = `${path}[${quoteInput(key, 32)}]`;
    const keyProblem = scalarProblem(field.limit, ScalarType.STRING, key);
    if (keyProblem !== undefined) out.push({ field: at, description: keyProblem });
    if (field.item === 'scalar') {
      const problem = scalarProblem(field.limit, field.scalar, item);
      if (problem !== undefined) out.push({ field: at, description: problem });
    } else if (field.item === 'message') checkMessage(field.message!, item as Plain, `${at}.`, out);
  }
}

/** What is wrong with one scalar value (a string or bytes field with its limit), or undefined. */
function scalarProblem(
  kind: keyof typeof STRING_LIMITS,
  type: ScalarType | undefined,
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
export function checkRequest(desc: EdgeMessage, message: unknown, prefix = ''): void {
  if (message instanceof UndecodableRequest) throw undecodable(desc, message);
  const violations = violationsOf(desc, message, prefix);
  if (violations.length > 0) throw invalidArguments(violations);
}

function undecodable(desc: EdgeMessage, request: UndecodableRequest): RichServerError {
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
        const desc = schema.requestOf(path);
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

function replacedFields(desc: EdgeMessage, message: Plain | undefined, prefix: string): string[] {
  const found: string[] = [];
  for (const field of desc.fields) {
    const value = fieldValue(field, message);
    const path = `${prefix}${field.name}`;
    if (value === undefined || value === null) continue;
    const visit = (item: unknown, at: string, kind: 'scalar' | 'message', sub?: EdgeMessage) => {
      if (kind === 'scalar' && typeof item === 'string' && item.includes('\ufffd')) found.push(at);
      if (kind === 'message' && sub !== undefined)
        found.push(...replacedFields(sub, item as Plain, `${at}.`));
    };
    if (field.kind === 'scalar') visit(value, path, 'scalar');
    else if (field.kind === 'message') visit(value, path, 'message', field.message);
    else if (field.kind === 'list') {
      (value as unknown[]).forEach((item, i) =>
        field.item === 'message'
          ? visit(item, `${path}[${i}]`, 'message', field.message)
          : visit(item, `${path}[${i}]`, 'scalar'),
      );
    } else if (field.kind === 'map') {
      for (const [key, item] of Object.entries(value as Plain)) {
        if (key.includes('\ufffd')) found.push(path);
        else
          visit(
            item,
            `${path}[${quoteInput(key, 32)}]`,
            field.item === 'message' ? 'message' : 'scalar',
            field.item === 'message' ? field.message : undefined,
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
      checkRequest(desc, call.request);
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
