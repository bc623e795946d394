// nginx from Debian's packages as an HTTP/1.1-only reverse proxy in front of a prfleet server, run by the test
// with its own configuration and prefix in a temporary directory (never the system service).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';

/** Where the nginx binary is (Debian: /usr/sbin/nginx), or undefined when it is not installed. */
export function nginxBinary(): string | undefined {
  for (const candidate of ['/usr/sbin/nginx', '/usr/bin/nginx']) {
    if (spawnSync(candidate, ['-v']).status === 0) return candidate;
  }
  return undefined;
}

/** A running nginx proxying one port to a prfleet server. */
export interface NginxProxy {
  /** '127.0.0.1:port' of the proxy. */
  readonly address: string;
  /** Kills nginx at once (SIGKILL): every proxied connection is cut. */
  kill(): Promise<void>;
  /** Starts it again on the same port, same configuration. */
  restart(): Promise<void>;
  /** The error log so far (for failed assertions). */
  readonly dir: string;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address !== null ? address.port : 0;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`nginx did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The configuration: HTTP/1.1 towards the server (`proxy_http_version 1.1`, keep-alive upstream connections,
 * no HTTP/2 anywhere), what a reverse proxy in front of prfleet needs for the long-poll link (docs/deployment.md).
 */
export function nginxConfig(dir: string, listenPort: number, serverPort: number): string {
  return `# prfleet test proxy: HTTP/1.1 only
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 512; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream prfleet {
    server 127.0.0.1:${serverPort};
    keepalive 16;
    # shorter than the server's 5 s keep-alive: nginx must not reuse a connection the server is closing
    keepalive_timeout 4s;
  }
  server {
    listen 127.0.0.1:${listenPort};
    client_max_body_size 8m;
    location / {
      proxy_pass http://prfleet;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_read_timeout 60s;
      proxy_buffering off;
    }
  }
}
`;
}

/** Starts nginx in front of 127.0.0.1:`serverPort`; killed and its directory removed when the test finishes. */
export async function startNginx(binary: string, serverPort: number): Promise<NginxProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'prfleet-nginx-'));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxConfig(dir, port, serverPort));
  let child: ChildProcess | undefined;
  const start = async () => {
    const started = spawn(binary, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], {
      stdio: 'ignore',
    });
    child = started;
    await waitForPort(port, 10_000);
  };
  const kill = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  await start();
  onTestFinished(async () => {
    await kill();
    await rm(dir, { recursive: true, force: true });
  });
  return { address: `127.0.0.1:${port}`, kill, restart: start, dir };
}
