/** Agent software version sent in Hello (keep in step with package.json). */
export const AGENT_VERSION = '0.1.0';
