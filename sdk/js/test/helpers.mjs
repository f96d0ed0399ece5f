// Shared by the tests: a real `zib dev` cluster in a temp directory, and small utilities.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
// Where `cargo build -p zib-cli` put the binary (CARGO_TARGET_DIR is honoured).
export const zibBin =
  process.env.ZIB_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(repoRoot, 'target'), 'debug/zib');

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `zib dev` on a free port in a fresh directory and waits until an upload can be
 * initiated. Returns {credentials, dataDir, stop, logs}. `aiNodes`: how many nodes load
 * the AI models (a binary built with `ai` loads them in one by default; the tests that
 * do not transcribe stay light with 0).
 */
export async function startZibDev({ aiNodes = 0 } = {}) {
  if (!existsSync(zibBin)) {
    throw new Error(`${zibBin} is missing: run \`cargo build -p zib-cli\` (sdk/js/run-tests.sh does)`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'zib-sdk-test-'));
  const child = spawn(zibBin, ['dev', '--data-dir', join(dataDir, 'dev'), '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', NO_COLOR: '1', ZIB_AI_NODES: String(aiNodes) },
  });
  let logs = '';
  // ZIB_DEV_LOG=path keeps every line of every cluster's log there (for a failure's story).
  const logFile = process.env.ZIB_DEV_LOG;
  const keep = (d) => {
    logs = (logs + d.toString()).slice(-20000);
    if (logFile) appendFileSync(logFile, d);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });

  const credPath = join(dataDir, 'dev', 'credentials.json');
  // Loading the models takes seconds more on a busy machine.
  const startup = aiNodes > 0 ? 180_000 : 30_000;
  const deadline = Date.now() + startup;
  let credentials = null;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`zib dev exited (${JSON.stringify(exited)}):\n${logs}`);
    if (existsSync(credPath)) {
      try {
        credentials = JSON.parse(readFileSync(credPath, 'utf8'));
        const health = await fetch(`${credentials.api_url}/healthz`);
        if (health.ok) break;
      } catch {
        /* not ready yet */
      }
    }
    await sleep(100);
  }
  if (!credentials) throw new Error(`zib dev did not start within ${startup / 1000} s:\n${logs}`);

  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const gone = new Promise((r) => child.once('exit', r));
      const timeout = sleep(5000).then(() => {
        if (!exited) child.kill('SIGKILL');
      });
      await Promise.race([gone, timeout]);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const dev = { credentials, dataDir, stop, logs: () => logs, process: child };
  // Nodes register right after the server starts: wait until initiate works.
  await waitForNodes(dev);
  return dev;
}

async function waitForNodes(dev) {
  const { api_url, access_key, secret_key } = dev.credentials;
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    const res = await fetch(`${api_url}/v1/api/upload/initiate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${access_key}:${secret_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ bucket: 'warm-up', key: 'probe', file_size: 1 }),
    });
    if (res.ok) return;
    last = await res.text();
    await sleep(200);
  }
  throw new Error(`zib dev never accepted an upload: ${last}\n${dev.logs()}`);
}

/**
 * A test body that, when it fails, prints the tail of the cluster's log first: a CI run
 * keeps only the test output, and the log is where a failure's story is.
 */
export function logsOnFailure(getDev, body) {
  return async (...args) => {
    try {
      return await body(...args);
    } catch (e) {
      const logs = getDev()?.logs() ?? '(no cluster)';
      console.log(`# zib dev log, last ${Math.min(logs.length, 12000)} characters:\n${logs.slice(-12000).replace(/^/gm, '# ')}`);
      throw e;
    }
  };
}

/** Runs the zib CLI against the dev cluster; resolves stdout. */
export function runZib(dev, args, extraEnv = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(zibBin, args, {
      env: {
        ...process.env,
        ZIB_API_URL: dev.credentials.api_url,
        ZIB_ACCESS_KEY: dev.credentials.access_key,
        ZIB_SECRET_KEY: dev.credentials.secret_key,
        NO_COLOR: '1',
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`zib ${args.join(' ')} exited ${code}: ${err}`))));
  });
}
