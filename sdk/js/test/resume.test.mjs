// Interrupted uploads through the SDK against a real `zib dev` cluster: a network loss in
// the middle of a call is resumed from the parts the node holds, a registration is resumed
// after a "reload" (an aborted call), and a completion whose answer is lost is reported as
// outcome unknown with the file id, never as failed. The network is a small HTTP proxy in
// front of the node, which records what reached the node and can be cut.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import ZiBStorage from '../zib-sdk.js';
import { sleep, startZibDev } from './helpers.mjs';

const KiB = 1024;
let dev;
let zib;

before(async () => {
  // Small parts: a few MiB make dozens of them (zib dev honours these).
  process.env.ZIB_PART_SIZE = String(256 * KiB);
  process.env.ZIB_MULTIPART_THRESHOLD = String(256 * KiB);
  dev = await startZibDev();
  zib = new ZiBStorage({
    accessKey: dev.credentials.access_key,
    secretKey: dev.credentials.secret_key,
    apiUrl: dev.credentials.api_url,
  });
});

after(async () => {
  await dev?.stop();
});

/** A proxy to `target` (a node's origin) that logs every answer and can be cut. */
async function startProxy(target) {
  const sockets = new Set();
  const state = { down: false, log: [], loseCompleteAnswer: false };
  const server = http.createServer((req, res) => {
    if (state.down) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url, target);
    const upstream = http.request(url, { method: req.method, headers: req.headers }, (answer) => {
      const path = url.pathname;
      state.log.push({ method: req.method, path, status: answer.statusCode });
      if (state.loseCompleteAnswer && path.endsWith('/complete')) {
        // The node completed it; its answer never reaches the client, nor anything after.
        state.down = true;
        answer.resume();
        cutAll();
        return;
      }
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => req.socket.destroy());
    req.socket.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  function cutAll() {
    for (const s of sockets) s.destroy();
  }
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    state,
    origin,
    cut() {
      state.down = true;
      cutAll();
    },
    restore() {
      state.down = false;
    },
    close: () => new Promise((r) => {
      cutAll();
      server.close(r);
    }),
    /** Part numbers the node answered 200 for. */
    storedParts() {
      return state.log
        .filter((e) => e.method === 'PUT' && e.status === 200 && /\/parts\/\d+$/.test(e.path))
        .map((e) => Number(e.path.split('/').pop()));
    },
  };
}

/** The registration with every node URL pointing at the proxy. */
function through(reg, proxy) {
  const node = new URL(reg.node_url).origin;
  const swap = (u) => (typeof u === 'string' ? u.replace(node, proxy.origin) : u);
  return {
    ...reg,
    node_url: swap(reg.node_url),
    upload_url: swap(reg.upload_url),
    complete_url: swap(reg.complete_url),
    parts: (reg.parts || []).map((p) => ({ ...p, upload_url: swap(p.upload_url) })),
  };
}

async function waitFor(what, predicate, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function cdnBytes(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `CDN answered ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

const counts = (list) => list.reduce((m, n) => m.set(n, (m.get(n) || 0) + 1), new Map());

test('a network loss in the middle of an upload is resumed in the same call, sending only missing parts', async () => {
  const data = randomBytes(8 * 1024 * KiB);
  const real = await zib.initiateUpload({ bucket: 'sdk-resume', key: 'netloss', fileSize: data.length });
  assert.equal(real.type, 'multipart');
  const total = real.parts.length;
  const proxy = await startProxy(new URL(real.node_url).origin);
  try {
    const upload = ZiBStorage.uploadDirect(data, through(real, proxy), { concurrency: 2, retries: 1 });
    await waitFor('five stored parts', () => proxy.storedParts().length >= 5);
    proxy.cut();
    const heldAtCut = new Set(proxy.storedParts());
    await sleep(4000); // longer than the part retries: only a resume gets past it
    proxy.restore();
    const result = await upload;
    assert.equal(result.file_id, real.file_id);

    const stored = counts(proxy.storedParts());
    // A part in flight at the cut may be stored with its answer lost: at most the two
    // in flight are missing from what the proxy saw.
    assert.ok(stored.size >= total - 2, `${stored.size} of ${total} parts seen stored`);
    for (const [n, c] of stored) assert.equal(c, 1, `part ${n} stored ${c} times`);
    const resumedAt = proxy.state.log.findIndex((e) => e.method === 'GET' && e.path.endsWith('/parts'));
    assert.ok(resumedAt >= 0, 'the SDK asked the node what it holds');
    const afterResume = proxy.state.log.slice(resumedAt)
      .filter((e) => e.method === 'PUT')
      .map((e) => Number(e.path.split('/').pop()));
    for (const n of afterResume) assert.ok(!heldAtCut.has(n), `part ${n} was held, yet sent again`);
    // The node's own word: nothing it already held was sent to it again after the resume.
    const refused = proxy.state.log.slice(resumedAt).filter((e) => e.method === 'PUT' && e.status !== 200);
    assert.deepEqual(refused, [], 'no part answered other than 200 after the resume');
    assert.ok((await cdnBytes(result.cdn_url)).equals(data), 'the file reads back identical');
  } finally {
    await proxy.close();
  }
});

test('a registration is resumed after a reload with { resume: true }', async () => {
  const data = randomBytes(6 * 1024 * KiB + 77);
  const real = await zib.initiateUpload({ bucket: 'sdk-resume', key: 'reload', fileSize: data.length });
  const proxy = await startProxy(new URL(real.node_url).origin);
  try {
    const reg = through(real, proxy);
    const page = new AbortController(); // the page going away
    const first = ZiBStorage.uploadDirect(data, reg, { concurrency: 1, signal: page.signal });
    await waitFor('three stored parts', () => proxy.storedParts().length >= 3);
    page.abort(new Error('reload'));
    await assert.rejects(first, (err) => err.kind === 'aborted');
    await sleep(300);

    const held = await ZiBStorage.uploadedParts(reg);
    assert.equal(held.state, 'receiving');
    const heldNumbers = new Set(held.parts.map((p) => p.part_number));
    assert.ok(heldNumbers.size >= 3 && heldNumbers.size < reg.parts.length, JSON.stringify(held));

    const before = proxy.state.log.length;
    const result = await ZiBStorage.uploadDirect(data, reg, { resume: true });
    assert.equal(result.file_id, real.file_id);
    const sent = proxy.state.log.slice(before)
      .filter((e) => e.method === 'PUT')
      .map((e) => Number(e.path.split('/').pop()));
    assert.equal(sent.length, reg.parts.length - heldNumbers.size, 'only the missing parts are sent');
    for (const n of sent) assert.ok(!heldNumbers.has(n), `part ${n} sent again`);
    assert.ok((await cdnBytes(result.cdn_url)).equals(data));
  } finally {
    await proxy.close();
  }
});

test('a completion whose answer is lost is outcome unknown, carrying the file id', async () => {
  const data = randomBytes(2 * 1024 * KiB);
  const real = await zib.initiateUpload({ bucket: 'sdk-resume', key: 'lost-answer', fileSize: data.length });
  const proxy = await startProxy(new URL(real.node_url).origin);
  try {
    proxy.state.loseCompleteAnswer = true;
    await assert.rejects(
      ZiBStorage.uploadDirect(data, through(real, proxy), { retries: 1, resumeWithinMs: 2000 }),
      (err) => {
        assert.equal(err.kind, 'outcome_unknown', err.message);
        assert.equal(err.outcomeUnknown, true);
        assert.equal(err.fileId, real.file_id);
        assert.equal(err.cdnUrl, real.cdn_url);
        assert.ok(err.message.includes(`outcome unknown — check \`zib pipeline ${real.file_id}\``), err.message);
        return true;
      }
    );
    // It did complete: the file reads back.
    assert.ok((await cdnBytes(real.cdn_url)).equals(data));
  } finally {
    await proxy.close();
  }
});

test('an abandoned pending upload can be deleted by file id', async () => {
  const real = await zib.initiateUpload({ bucket: 'sdk-resume', key: 'abandon', fileSize: 1024 * KiB });
  const report = await zib.deleteFile(real.file_id);
  assert.equal(report.success, true);
  assert.notEqual(report.already_deleted, true, JSON.stringify(report));
  const again = await zib.deleteFile(real.file_id);
  assert.equal(again.already_deleted, true, 'it is gone');
});
