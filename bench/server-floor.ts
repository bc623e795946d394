/**
 * The floor of a `prfleet-server` start, for bench/coldstart.ts, which bundles it as the server is bundled
 * (`node scripts/bundle.mjs server-floor`: one ES module, the compile cache on) and starts it as it starts the
 * server. Holds no prfleet code but the generated ControlService definition (any server of this API needs it):
 *
 *  - PRFLEET_FLOOR=grpc: a nice-grpc server with Health that answers ListAgents (empty) and logs one pino line;
 *  - PRFLEET_FLOOR=deps: the same plus what the server's features must load at start: zod's mini API parsing the
 *    environment, yaml, nice-grpc-error-details, and the edge's request checks (src/server/edge.ts with its
 *    generated table, src/gen/edge-table.ts, and @bufbuild/protobuf's wire reader: loadEdgeSchema is the one
 *    prfleet function here).
 *
 * Logs {"msg":"listening","port":N} once it listens on PRFLEET_HOST:PORT, as the server does.
 */
import { createServer } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl } from 'nice-grpc-server-health';
import { pino } from 'pino';
import { ControlServiceDefinition } from '../src/gen/prfleet/v1/control.js';

const log = pino({ base: { name: 'server-floor' } });
const server = createServer({ 'grpc.enable_channelz': 0 });
server.add(HealthDefinition, HealthServiceImpl());
const { listAgents } = ControlServiceDefinition.methods;
server.add(
  { ...ControlServiceDefinition, methods: { listAgents } },
  { listAgents: async () => ({ agents: [], nextPageToken: '' }) },
);
if (process.env['PRFLEET_FLOOR'] === 'deps') await loadDependencies();
const port = await server.listen(
  `${process.env['PRFLEET_HOST'] ?? '127.0.0.1'}:${process.env['PORT'] ?? '0'}`,
);
log.info({ port }, 'listening');

/** What prfleet-server's features need at start beyond the gRPC server itself. */
async function loadDependencies(): Promise<void> {
  const z = await import('../src/common/zod-mini.js');
  const env = z
    .object({ PORT: z._default(z.coerce.number().check(z.int(), z.minimum(0)), 0) })
    .parse(process.env);
  const { parse } = await import('yaml');
  const { BadRequest } = await import('nice-grpc-error-details');
  const { loadEdgeSchema } = await import('../src/server/edge.js');
  const schema = loadEdgeSchema();
  log.debug(
    { env, yaml: typeof parse, details: typeof BadRequest, schema: typeof schema },
    'loaded',
  );
}
