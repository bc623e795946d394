/** The /metrics settings, apart from metrics.ts so reading them does not load prom-client. */

/** PRFLEET_METRICS_PORT (0 or unset = no /metrics listener) and PRFLEET_METRICS_HOST (default 0.0.0.0). */
export function loadMetricsConfig(
  env: NodeJS.ProcessEnv = process.env,
): { port: number; host: string } | undefined {
  const raw = env['PRFLEET_METRICS_PORT'];
  if (raw === undefined || raw === '' || raw === '0') return undefined;
  const port = Number(raw);
  // Decimal only: Number() reads `0x1f90` as 8080 and `1e3` as 1000.
  if (!/^\d+$/.test(raw) || port < 1 || port > 65_535) {
    throw new Error(
      `invalid PRFLEET_METRICS_PORT: ${JSON.stringify(raw)} (1-65535, or 0 for none)`,
    );
  }
  return { port, host: env['PRFLEET_METRICS_HOST'] ?? '0.0.0.0' };
}
