// The SDK in a real browser: headless Chromium (Debian's) driven by playwright-core opens
// the example tenant app against a real `zib dev`, uploads files through the page, and
// checks what the CDN serves. One multipart upload goes through a proxy that fails a part
// once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { logsOnFailure, repoRoot, sha256, startZibDev } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MiB = 1024 * 1024;

let dev;
let app;
let context;
let profileDir;

/** Starts examples/web-upload against the dev cluster on a free port. */
function startExampleApp(credentialsPath) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'examples/web-upload/server.mjs')], {
      env: { ...process.env, ZIB_CREDENTIALS: credentialsPath, PORT: '0', ZIB_BUCKET: 'browser-test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const onData = (d) => {
      out += d;
      const m = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve({ url: m[1], child });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => reject(new Error(`example app exited ${code}: ${out}`)));
  });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-browser-test-deps.sh`);
  const { chromium } = await import('playwright-core');
  dev = await startZibDev();
  app = await startExampleApp(join(dev.dataDir, 'dev', 'credentials.json'));
  profileDir = mkdtempSync(join(tmpdir(), 'zib-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await context?.close();
  app?.child.kill('SIGTERM');
  await dev?.stop();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

async function openLoggedIn(user) {
  await context.clearCookies(); // each test logs in as its own user
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  await page.goto(app.url);
  await page.fill('#user', user);
  await page.click('#login button');
  await page.waitForSelector('#uploader:not(.hidden)');
  return page;
}

/** A valid RGB PNG of w x h pixels. */
function makePng(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) row.set([(x * 37) & 0xff, (y * 59) & 0xff, 128], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function assertStages(events, name) {
  for (const stage of ['encrypting', 'uploading', 'completing']) {
    const values = events.filter((e) => e.stage === stage).map((e) => e.progress);
    assert.ok(values.length > 0, `${name}: no ${stage} events`);
    for (let i = 1; i < values.length; i++) assert.ok(values[i] > values[i - 1], `${name}: ${stage} not monotonic`);
    assert.ok(values.every((v) => Number.isInteger(v) && v >= 0 && v <= 100), `${name}: ${stage} ${values}`);
    assert.equal(values.at(-1), 100, `${name}: ${stage} ends at ${values.at(-1)}`);
  }
}

async function cdnGet(url) {
  const res = await fetch(url, { headers: { origin: 'http://tenant.example' } });
  assert.equal(res.status, 200);
  return {
    bytes: Buffer.from(await res.arrayBuffer()),
    contentType: res.headers.get('content-type'),
    cors: res.headers.get('access-control-allow-origin'),
  };
}

test('the example app uploads a 20 MiB file and a PNG from the file input', { timeout: 240_000 }, logsOnFailure(() => dev, async () => {
  const page = await openLoggedIn('alice');
  const big = randomBytes(20 * MiB + 4321);
  const png = makePng(37, 23);
  await page.setInputFiles('#file', [
    { name: 'big.bin', mimeType: 'application/x-zib-test', buffer: big },
    { name: 'tiny.png', mimeType: 'image/png', buffer: png },
  ]);
  await page.waitForFunction(() => window.zibUploads.length === 2 && window.zibUploads.every((u) => u.done), null, {
    timeout: 200_000,
  });
  const uploads = await page.evaluate(() => window.zibUploads);
  for (const u of uploads) assert.equal(u.error, null, `${u.name}: ${u.error}`);
  const [bigUp, pngUp] = uploads;
  assert.equal(bigUp.name, 'big.bin');
  assertStages(bigUp.events, 'big.bin');
  assertStages(pngUp.events, 'tiny.png');
  console.log(`big.bin progress events: ${bigUp.events.map((e) => e.stage[0] + e.progress).join(' ')}`);

  const bigGot = await cdnGet(bigUp.result.cdn_url);
  assert.equal(sha256(bigGot.bytes), sha256(big));
  assert.equal(bigGot.contentType, 'application/x-zib-test');
  assert.equal(bigGot.cors, '*');
  const pngGot = await cdnGet(pngUp.result.cdn_url);
  assert.equal(sha256(pngGot.bytes), sha256(png));
  assert.equal(pngGot.contentType, 'image/png');

  // The page shows the link and the image, decoded from the CDN's bytes.
  const img = page.locator('.upload img');
  await img.waitFor();
  await page.waitForFunction(() => document.querySelector('.upload img')?.complete);
  const size = await img.evaluate((el) => ({ w: el.naturalWidth, h: el.naturalHeight, src: el.src }));
  assert.deepEqual({ w: size.w, h: size.h }, { w: 37, h: 23 });
  assert.equal(size.src, pngUp.result.cdn_url);
  const links = await page.locator('.upload a').evaluateAll((as) => as.map((a) => a.href));
  assert.ok(links.includes(bigUp.result.cdn_url));
  const bars = await page.locator('.upload progress').evaluateAll((ps) => ps.map((p) => p.value));
  assert.deepEqual(bars, [100, 100]);
  // The key is scoped to the user by the app's server.
  const info = await fetch(`${dev.credentials.api_url}/v1/api/file/${pngUp.result.file_id}`, {
    headers: { authorization: `Bearer ${dev.credentials.access_key}:${dev.credentials.secret_key}` },
  }).then((r) => r.json());
  assert.match(info.key, /^alice\/\d+-tiny\.png$/);
  await page.close();
}));

test('CORS: node preflight and PUT headers, SDK script, CDN', async () => {
  const api = dev.credentials.api_url;
  const sdk = await fetch(`${api}/sdk/zib-sdk.js`, { headers: { origin: 'http://tenant.example' } });
  assert.equal(sdk.headers.get('access-control-allow-origin'), '*');
  assert.ok(sdk.headers.get('etag'));
  const reg = await fetch(`${api}/v1/api/upload/initiate`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${dev.credentials.access_key}:${dev.credentials.secret_key}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ bucket: 'browser-test', key: 'cors', file_size: 10 }),
  }).then((r) => r.json());
  const pre = await fetch(reg.upload_url, {
    method: 'OPTIONS',
    headers: {
      origin: 'http://tenant.example',
      'access-control-request-method': 'PUT',
      'access-control-request-headers': 'content-type',
    },
  });
  assert.ok(pre.status < 300, `preflight answered ${pre.status}`);
  assert.ok(['*', 'http://tenant.example'].includes(pre.headers.get('access-control-allow-origin')));
  assert.match(pre.headers.get('access-control-allow-methods') || '', /PUT/i);
  assert.match(pre.headers.get('access-control-allow-headers') || '', /content-type/i);
  const cdnPre = await fetch(reg.cdn_url, {
    method: 'OPTIONS',
    headers: { origin: 'http://tenant.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' },
  });
  assert.ok(['*', 'http://tenant.example'].includes(cdnPre.headers.get('access-control-allow-origin')));
});

/**
 * A proxy in front of the nodes (`/to/{host:port}/...` forwards to that node) that fails
 * the first PUT of part 2 with a 503 after reading its body, as a broken node would.
 */
async function faultyProxy() {
  const seen = [];
  let failed = false;
  const server = http.createServer((req, res) => {
    const m = /^\/to\/([^/]+)(\/.*)$/.exec(req.url);
    if (!m) {
      res.writeHead(404);
      return res.end();
    }
    const [, host, path] = m;
    seen.push({ method: req.method, path: path.split('?')[0] });
    if (req.method === 'PUT' && /\/parts\/2(\?|$)/.test(path) && !failed) {
      failed = true;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
        res.end(JSON.stringify({ error: 'injected failure for the test', code: 'injected' }));
      });
      return;
    }
    const up = http.request(`http://${host}${path}`, { method: req.method, headers: { ...req.headers, host } }, (upRes) => {
      res.writeHead(upRes.statusCode, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502, { 'access-control-allow-origin': '*' });
      res.end(e.message);
    });
    req.pipe(up);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, seen, base: `http://127.0.0.1:${server.address().port}` };
}

test('a 65 MiB multipart upload in the page completes although part 2 fails once', { timeout: 240_000 }, logsOnFailure(() => dev, async () => {
  const page = await openLoggedIn('bob');
  const proxy = await faultyProxy();
  // The tenant app's answer is rewritten in the page so every part goes through the
  // proxy. (Not with page.route: Playwright answers CORS preflights itself once routing is
  // on, and the preflight must reach the node.)
  await page.evaluate((proxyBase) => {
    const realFetch = window.fetch;
    window.fetch = async (input, init) => {
      const response = await realFetch(input, init);
      if (String(input) !== '/api/upload-initiate' || !response.ok) return response;
      const reg = await response.json();
      if (reg.type === 'multipart') {
        for (const part of reg.parts) {
          const u = new URL(part.upload_url);
          part.upload_url = `${proxyBase}/to/${u.host}${u.pathname}${u.search}`;
        }
      }
      return new Response(JSON.stringify(reg), { status: 200, headers: { 'content-type': 'application/json' } });
    };
  }, proxy.base);
  const outcome = await page.evaluate(async (size) => {
    const pieces = [];
    const piece = new Uint8Array(65536);
    for (let at = 0; at < size; at += piece.length) {
      crypto.getRandomValues(piece);
      pieces.push(piece.slice(0, Math.min(piece.length, size - at)));
    }
    const blob = new Blob(pieces, { type: 'application/octet-stream' });
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
    const hash = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    const t0 = performance.now();
    const result = await window.uploadFile(blob, 'generated.bin');
    const record = window.zibUploads.at(-1);
    const { byob, workers } = window.ZiBStorage._internals;
    return { hash, result, events: record.events, ms: performance.now() - t0, stalls: byob.stalls, workerRuns: workers.runs };
  }, 65 * MiB + 777);
  try {
    assertStages(outcome.events, 'generated.bin');
    const part2 = proxy.seen.filter((r) => r.method === 'PUT' && /\/parts\/2$/.test(r.path));
    assert.ok(part2.length >= 2, `part 2 was not retried: ${JSON.stringify(proxy.seen)}`);
    assert.ok(proxy.seen.some((r) => r.method === 'OPTIONS'), `no CORS preflight reached the node: ${JSON.stringify(proxy.seen)}`);
    const got = await cdnGet(outcome.result.cdn_url);
    assert.equal(got.bytes.length, 65 * MiB + 777);
    assert.equal(sha256(got.bytes), outcome.hash);
    console.log(`multipart browser upload with one retried part: ${((65 * MiB) / MiB / (outcome.ms / 1000)).toFixed(1)} MiB/s ` +
      `(runs sealed by workers: ${outcome.workerRuns}, BYOB reads abandoned: ${outcome.stalls})`);
  } finally {
    proxy.server.close();
    await page.close();
  }
}));

/** A proxy in front of the nodes (`/to/{host:port}/...`) that records what each node answered. */
async function recordingProxy() {
  const seen = [];
  const server = http.createServer((req, res) => {
    const m = /^\/to\/([^/]+)(\/.*)$/.exec(req.url);
    if (!m) {
      res.writeHead(404);
      return res.end();
    }
    const [, host, path] = m;
    const up = http.request(`http://${host}${path}`, { method: req.method, headers: { ...req.headers, host } }, (upRes) => {
      seen.push({ method: req.method, path: path.split('?')[0], status: upRes.statusCode });
      res.writeHead(upRes.statusCode, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.socket.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, seen, base: `http://127.0.0.1:${server.address().port}` };
}

test('a page resumes an interrupted multipart upload with { resume: true }, sending only missing parts', { timeout: 240_000 }, logsOnFailure(() => dev, async () => {
  const page = await openLoggedIn('carol');
  const proxy = await recordingProxy();
  const { access_key, secret_key, api_url } = dev.credentials;
  const size = 65 * MiB + 5;
  const res = await fetch(`${api_url}/v1/api/upload/initiate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${access_key}:${secret_key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ bucket: 'browser-test', key: 'resumed.bin', file_size: size }),
  });
  const reg = await res.json();
  assert.equal(reg.type, 'multipart', JSON.stringify(reg));
  const via = (u) => {
    const url = new URL(u);
    return `${proxy.base}/to/${url.host}${url.pathname}${url.search}`;
  };
  const routed = {
    ...reg,
    complete_url: via(reg.complete_url),
    parts: reg.parts.map((p) => ({ ...p, upload_url: via(p.upload_url) })),
  };
  try {
    const outcome = await page.evaluate(async ({ reg, size }) => {
      const pieces = [];
      const piece = new Uint8Array(65536);
      for (let at = 0; at < size; at += piece.length) {
        crypto.getRandomValues(piece);
        pieces.push(piece.slice(0, Math.min(piece.length, size - at)));
      }
      const blob = new Blob(pieces);
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
      const hash = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
      // The first page: gone (aborted) once two parts are in.
      const page = new AbortController();
      const first = window.ZiBStorage.uploadDirect(blob, reg, {
        concurrency: 1,
        signal: page.signal,
        onProgress: (p) => {
          if (p.stage === 'uploading' && p.progress >= 45) page.abort(new Error('reload'));
        },
      }).then(() => 'finished', (e) => e.kind);
      const firstOutcome = await first;
      await new Promise((r) => setTimeout(r, 300));
      const held = await window.ZiBStorage.uploadedParts(reg);
      // The reloaded page, with the same registration.
      const result = await window.ZiBStorage.uploadDirect(blob, reg, { resume: true });
      return { hash, firstOutcome, held, result };
    }, { reg: routed, size });
    assert.equal(outcome.firstOutcome, 'aborted');
    const heldNumbers = new Set(outcome.held.parts.map((p) => p.part_number));
    assert.ok(heldNumbers.size >= 1 && heldNumbers.size < reg.parts.length, JSON.stringify(outcome.held));
    const listed = proxy.seen.findLastIndex((r) => r.method === 'GET' && r.path.endsWith('/parts'));
    assert.ok(listed >= 0, 'the resumed upload asked the node what it holds');
    const resent = proxy.seen.slice(listed).filter((r) => r.method === 'PUT');
    assert.equal(resent.length, reg.parts.length - heldNumbers.size, JSON.stringify(resent));
    for (const r of resent) {
      assert.equal(r.status, 200, JSON.stringify(r));
      assert.ok(!heldNumbers.has(Number(r.path.split('/').pop())), `held part sent again: ${r.path}`);
    }
    assert.equal(outcome.result.file_id, reg.file_id);
    const got = await cdnGet(reg.cdn_url);
    assert.equal(got.bytes.length, size);
    assert.equal(sha256(got.bytes), outcome.hash);
  } finally {
    proxy.server.close();
    await page.close();
  }
}));
