// How zib-sdk.js reads and seals Blobs in headless Chromium (Debian's, driven by
// playwright-core): BYOB reads, sealing workers, the watchdog for Chromium's stalled BYOB
// reads, and pages whose Content-Security-Policy forbids workers. Every case must give the
// envelope the SDK makes from the same bytes in memory (which the Node vector tests pin to
// the Rust envelope). No ZiB server is needed: a loopback server serves the working tree's SDK.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let server;
let origin;
let context;
let profileDir;

const page = `<!doctype html><meta charset="utf-8"><script src="/zib-sdk.js"></script><script>
/** A random Blob of \`size\` bytes that the browser holds, and its bytes. */
async function randomBlob(size) {
  const pieces = [];
  for (let at = 0; at < size; at += 65536) {
    pieces.push(crypto.getRandomValues(new Uint8Array(Math.min(65536, size - at))));
  }
  const blob = new Blob(pieces);
  return { blob, bytes: new Uint8Array(await blob.arrayBuffer()) };
}
const params = { key: '11'.repeat(32), noncePrefix: '22'.repeat(7), chunkSize: 262144 };
const hex = async (bytes) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)),
  (b) => b.toString(16).padStart(2, '0')).join('');
/** SHA-256 of the envelope sealed from \`source\`, and of the one sealed from \`bytes\` in memory. */
async function sealBoth(source, bytes) {
  return { fromBlob: await hex(await ZiBStorage.sealEnvelope(source, params)),
    inMemory: await hex(await ZiBStorage.sealEnvelope(bytes, params)) };
}
</script>`;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-browser-test-deps.sh`);
  const { chromium } = await import('playwright-core');
  server = http.createServer((req, res) => {
    if (req.url === '/zib-sdk.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(readFileSync(join(repoRoot, 'sdk/js/zib-sdk.js')));
    }
    const headers = { 'content-type': 'text/html' };
    if (req.url === '/no-workers') headers['content-security-policy'] = "worker-src 'none'";
    res.writeHead(200, headers);
    res.end(page);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${server.address().port}`;
  profileDir = mkdtempSync(join(tmpdir(), 'zib-chromium-sealing-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await context?.close();
  server?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

/** Runs `fn` in a fresh tab of `path` and resolves to what it returns; the tab is closed. */
async function inPage(path, fn) {
  const tab = await context.newPage();
  tab.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  try {
    await tab.goto(origin + path);
    return await tab.evaluate(fn);
  } finally {
    await tab.close();
  }
}

test('a Blob sealed with BYOB reads and sealing workers gives the in-memory envelope', { timeout: 120_000 }, async () => {
  const out = await inPage('/', async () => {
    const { blob, bytes } = await randomBlob(9 * 1024 * 1024 + 12345);
    await sealBoth(blob, bytes); // starts the workers: runs go to them once they answer
    for (let i = 0; i < 100 && !ZiBStorage._internals.workers.list.every((w) => w.ready); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const runsBefore = ZiBStorage._internals.workers.runs;
    const sealed = await sealBoth(blob, bytes);
    return { ...sealed, workerRuns: ZiBStorage._internals.workers.runs - runsBefore,
      stalls: ZiBStorage._internals.byob.stalls };
  });
  assert.equal(out.fromBlob, out.inMemory);
  assert.ok(out.workerRuns > 0, 'the sealing workers sealed nothing');
  assert.equal(out.stalls, 0);
});

test('a BYOB read that stalls is abandoned and the rest of the Blob is read again', { timeout: 120_000 }, async () => {
  const out = await inPage('/', async () => {
    const { blob, bytes } = await randomBlob(5 * 1024 * 1024 + 777);
    ZiBStorage._internals.byob.stallMs = 300;
    // Chromium's bug, reproduced: the stream of the part's slice answers BYOB reads for
    // 1.5 MiB, then leaves the next one pending for ever. Slices of it are plain Blobs.
    const stallAfter = 1.5 * 1024 * 1024;
    const stalling = (real) => ({
      size: real.size,
      type: real.type,
      slice: (a, b) => real.slice(a, b),
      arrayBuffer: () => real.arrayBuffer(),
      stream() {
        const reader = real.stream().getReader();
        let sent = 0;
        let left = new Uint8Array(0);
        return new ReadableStream({
          type: 'bytes',
          async pull(c) {
            if (sent >= stallAfter) return new Promise(() => {});
            if (left.length === 0) {
              const r = await reader.read();
              if (r.done) {
                c.close();
                if (c.byobRequest) c.byobRequest.respond(0);
                return;
              }
              left = r.value;
            }
            const piece = left.slice(0, 65536); // small pieces: the stall comes mid-Blob
            left = left.subarray(piece.length);
            sent += piece.length; // before enqueue, which transfers (detaches) the piece
            c.enqueue(piece);
          },
          cancel: () => reader.cancel(),
        });
      },
    });
    const source = { size: blob.size, type: '', slice: (a, b) => stalling(blob.slice(a, b)), arrayBuffer: () => blob.arrayBuffer(),
      stream: () => blob.stream() };
    const sealed = await sealBoth(source, bytes);
    const byob = ZiBStorage._internals.byob;
    return { ...sealed, stalls: byob.stalls, stalled: byob.stalled };
  });
  assert.equal(out.fromBlob, out.inMemory);
  assert.equal(out.stalls, 1);
  assert.equal(out.stalled, true, 'BYOB reads were not given up in this page after the stall');
});

test('a page whose CSP forbids workers seals in the page', { timeout: 120_000 }, async () => {
  const out = await inPage('/no-workers', async () => {
    const { blob, bytes } = await randomBlob(3 * 1024 * 1024 + 5);
    const first = await sealBoth(blob, bytes);
    await new Promise((r) => setTimeout(r, 300)); // a worker blocked later fails by then
    const second = await sealBoth(blob, bytes);
    const w = ZiBStorage._internals.workers;
    return { first, second, runs: w.runs, failed: w.failed };
  });
  assert.equal(out.first.fromBlob, out.first.inMemory);
  assert.equal(out.second.fromBlob, out.second.inMemory);
  assert.equal(out.failed, true, 'the SDK did not notice its workers cannot run');
  assert.equal(out.runs, 0);
});
