/**
 * The edge's generated table (src/gen/edge-table.ts, `make gen`): it is what scripts/gen-edge-table.mjs makes of
 * the committed descriptor set, and it describes the messages the generated ts-proto code decodes.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without declarations
import { edgeTable as tableOf, renderEdgeTable } from '../../scripts/gen-edge-table.mjs';
import { edgeTable } from '../../src/gen/edge-table.js';
import { AgentServiceDefinition } from '../../src/gen/prfleet/v1/agent.js';
import { ControlServiceDefinition } from '../../src/gen/prfleet/v1/control.js';
import { FleetServiceDefinition } from '../../src/gen/prfleet/v1/fleet.js';
import { loadEdgeSchema, type EdgeMessage } from '../../src/server/edge.js';

const protoset = readFileSync(new URL('../../src/gen/protoset.binpb', import.meta.url));

describe('the edge table', () => {
  it('is what make gen writes from the committed descriptor set', () => {
    const fresh = (renderEdgeTable as (t: unknown) => string)(
      (tableOf as (b: Uint8Array) => unknown)(protoset),
    );
    expect(readFileSync(new URL('../../src/gen/edge-table.ts', import.meta.url), 'utf8')).toBe(
      fresh,
    );
  });

  it('has every RPC of the three services, with the fields ts-proto decodes', () => {
    const schema = loadEdgeSchema();
    const checked = new Set<string>();
    const compare = (desc: EdgeMessage, type: { fromPartial(p: object): object }) => {
      if (checked.has(desc.typeName)) return;
      checked.add(desc.typeName);
      const properties = new Set(desc.fields.map((f) => f.oneof ?? f.localName));
      expect(Object.keys(type.fromPartial({})).sort(), desc.typeName).toEqual(
        [...properties].sort(),
      );
    };
    const services: readonly {
      fullName: string;
      methods: Record<string, { name: string; requestType: { fromPartial(p: object): object } }>;
    }[] = [ControlServiceDefinition, FleetServiceDefinition, AgentServiceDefinition];
    for (const service of services) {
      for (const method of Object.values(service.methods)) {
        const desc = schema.requestOf(`/${service.fullName}/${method.name}`);
        expect(desc?.typeName, method.name).toBeDefined();
        compare(desc!, method.requestType);
      }
    }
    expect(checked.size).toBeGreaterThan(30);
  });

  it('marks the fields whose comment says "Required." and builds nested messages', () => {
    const schema = loadEdgeSchema();
    const required = Object.entries(edgeTable.messages).flatMap(([type, fields]) =>
      fields.filter((f) => f.required === true).map((f) => `${type}.${f.name}`),
    );
    // The proto comments say "Required." on these (as the descriptors had them when the table was made).
    expect(required.length).toBeGreaterThan(0);
    for (const name of required) {
      const dot = name.lastIndexOf('.');
      const field = schema
        .message(name.slice(0, dot))
        ?.fields.find((f) => f.name === name.slice(dot + 1));
      expect(field?.required, name).toBe(true);
    }
    const session = schema.message('prfleet.v1.CommandSessionRequest');
    const nested = session?.fields.find((f) => f.kind === 'message');
    expect(nested?.message?.fields.length).toBeGreaterThan(0);
    expect(schema.message('prfleet.v1.NoSuchMessage')).toBeUndefined();
  });
});
