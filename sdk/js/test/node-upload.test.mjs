// Server-side uploads through the SDK against a real `zib dev` cluster, and the errors a
// caller sees when a registration cannot be used.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import ZiBStorage from '../zib-sdk.js';
import { runZib, sha256, startZibDev } from './helpers.mjs';

const MiB = 1024 * 1024;
let dev;
let zib;

before(async () => {
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

/** A port nothing listens on: bound, then released. */
async function closedPort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function download(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `CDN answered ${res.status} for ${url}`);
  return { bytes: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type') };
}

function stagesOf(events) {
  const by = {};
  for (const e of events) (by[e.stage] ??= []).push(e.progress);
  return by;
}

function assertProgress(events) {
  const by = stagesOf(events);
  for (const stage of ['encrypting', 'uploading', 'completing']) {
    const values = by[stage] ?? [];
    assert.ok(values.length > 0, `no ${stage} events`);
    for (const v of values) assert.ok(Number.isInteger(v) && v >= 0 && v <= 100, `${stage} ${v}`);
    for (let i = 1; i < values.length; i++) assert.ok(values[i] > values[i - 1], `${stage} not monotonic: ${values}`);
    assert.equal(values.at(-1), 100, `${stage} ends at ${values.at(-1)}`);
  }
}

test('a 50 MiB Buffer uploaded from Node round-trips through the CDN', async () => {
  const data = randomBytes(50 * MiB);
  const reg = await zib.initiateUpload({
    bucket: 'sdk-node',
    key: 'big/50mib.bin',
    fileSize: data.length,
    contentType: 'application/x-zib-test',
  });
  assert.equal(reg.type, 'single');
  const events = [];
  const result = await ZiBStorage.uploadDirect(data, reg, { onProgress: (p) => events.push(p) });
  assert.deepEqual(result, { file_id: reg.file_id, cdn_url: reg.cdn_url });
  assertProgress(events);
  const got = await download(result.cdn_url);
  assert.equal(got.bytes.length, data.length);
  assert.equal(sha256(got.bytes), sha256(data));
  assert.equal(got.contentType, 'application/x-zib-test');
  assert.equal(zib.getCdnUrl(result.file_id), result.cdn_url);
});

test('a multipart upload (65 MiB Blob) round-trips, parts in parallel', async () => {
  const data = randomBytes(65 * MiB);
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'big/65mib.bin', fileSize: data.length });
  assert.equal(reg.type, 'multipart');
  assert.ok(reg.parts.length >= 2);
  const events = [];
  const result = await ZiBStorage.uploadDirect(new Blob([data]), reg, {
    concurrency: 3,
    onProgress: (p) => events.push(p),
  });
  assertProgress(events);
  const got = await download(result.cdn_url);
  assert.equal(sha256(got.bytes), sha256(data));
});

test('a file uploaded by the Rust CLI downloads identical, as does the SDK upload of the same bytes', async () => {
  const data = randomBytes(3 * MiB + 12345);
  const path = join(dev.dataDir, 'cli-upload.bin');
  writeFileSync(path, data);
  const out = await runZib(dev, ['upload', '--bucket', 'sdk-node', '--key', 'cli/file.bin', path]);
  const fromCli = JSON.parse(out);
  const cli = await download(fromCli.cdn_url);
  assert.equal(sha256(cli.bytes), sha256(data));

  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'sdk/file.bin', fileSize: data.length });
  const fromSdk = await ZiBStorage.uploadDirect(data.buffer.slice(data.byteOffset, data.byteOffset + data.length), reg);
  const sdk = await download(fromSdk.cdn_url);
  assert.equal(sha256(sdk.bytes), sha256(data));
  // And the Rust client reads what the SDK wrote.
  const viaCli = await runZib(dev, ['get', fromSdk.file_id, '-o', join(dev.dataDir, 'sdk-get.bin')]);
  assert.equal(typeof viaCli, 'string');
});

test('an empty file round-trips, or initiate says why not', async () => {
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'empty', fileSize: 0 }).catch((e) => e);
  if (reg instanceof Error) {
    console.log(`initiate refuses empty files: ${reg.message}`);
    // The API refuses empty files (the reference lists file_size 0 as a 400): it says so.
    assert.match(reg.message, /HTTP 400 from ZiB API: .*file_size/);
    return;
  }
  const result = await ZiBStorage.uploadDirect(new Uint8Array(0), reg);
  assert.equal((await download(result.cdn_url)).bytes.length, 0);
});

test('an expired registration is refused before any byte is sent, naming the expiry', async () => {
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'expired', fileSize: 1000 });
  const copy = { ...reg, expires_at: new Date(Date.now() - 1000).toISOString(), upload_url: 'http://127.0.0.1:1/never' };
  await assert.rejects(ZiBStorage.uploadDirect(randomBytes(1000), copy), (err) => {
    assert.ok(err instanceof Error);
    assert.equal(err.kind, 'expired');
    assert.match(err.message, /upload registration expired at .* \(initiate a new upload\)/);
    return true;
  });
});

test('a replayed registration is refused, naming that it was already used', async () => {
  const data = randomBytes(2 * MiB);
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'replay', fileSize: data.length });
  await ZiBStorage.uploadDirect(data, reg);
  await assert.rejects(ZiBStorage.uploadDirect(data, reg), (err) => {
    assert.equal(err.kind, 'already_used');
    assert.match(err.message, /already used/);
    assert.match(err.message, /HTTP 409 from node/);
    return true;
  });
});

test('a replayed multipart registration is refused too', async () => {
  const data = randomBytes(65 * MiB);
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'replay-mp', fileSize: data.length });
  await ZiBStorage.uploadDirect(data, reg);
  await assert.rejects(ZiBStorage.uploadDirect(data, reg), /already used/);
});

test('an unreachable node is named, with the cause and without the token', async () => {
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'unreachable', fileSize: 100 });
  const port = await closedPort();
  const copy = { ...reg, upload_url: `http://127.0.0.1:${port}/v1/upload/x?token=secret-token` };
  await assert.rejects(ZiBStorage.uploadDirect(randomBytes(100), copy, { retries: 1 }), (err) => {
    assert.equal(err.kind, 'unreachable');
    assert.ok(err.message.startsWith(`node unreachable at http://127.0.0.1:${port}/v1/upload/x: `), err.message);
    assert.match(err.message, /ECONNREFUSED/);
    assert.doesNotMatch(err.message, /secret-token/);
    return true;
  });
});

test('a file of the wrong size and an aborted upload reject with what happened', async () => {
  const reg = await zib.initiateUpload({ bucket: 'sdk-node', key: 'abort', fileSize: 65 * MiB });
  await assert.rejects(ZiBStorage.uploadDirect(randomBytes(10), reg), /the file is 10 bytes but the registration is for 68157440 bytes/);
  const controller = new AbortController();
  const upload = ZiBStorage.uploadDirect(randomBytes(65 * MiB), reg, {
    signal: controller.signal,
    onProgress: (p) => {
      if (p.stage === 'uploading' && p.progress >= 5) controller.abort(new Error('user cancelled'));
    },
  });
  await assert.rejects(upload, (err) => {
    assert.equal(err.name, 'AbortError');
    assert.match(err.message, /upload aborted: user cancelled/);
    return true;
  });
});

test('account-level calls surface the server error for endpoints it does not serve yet', async () => {
  const calls = {
    listBuckets: () => zib.listBuckets(),
    listObjects: () => zib.listObjects('sdk-node'),
    deleteObject: () => zib.deleteObject('sdk-node', 'big/50mib.bin'),
    startEncoding: () => zib.startEncoding('00000000-0000-4000-8000-000000000000', { transcription: 'fastest' }),
    getEncodingStatus: () => zib.getEncodingStatus('job'),
    submitTranscription: () => zib.submitTranscription('00000000-0000-4000-8000-000000000000', 'fastest'),
    submitVisionAI: () => zib.submitVisionAI('00000000-0000-4000-8000-000000000000', 'standard'),
    getComputeStatus: () => zib.getComputeStatus('job'),
  };
  for (const [name, call] of Object.entries(calls)) {
    const outcome = await call().then(
      (value) => ({ value }),
      (error) => ({ error })
    );
    if (outcome.error) {
      // Whatever the server says, the caller reads it: the status and the server's words.
      assert.ok(outcome.error instanceof Error, name);
      assert.match(outcome.error.message, /^HTTP \d{3} from ZiB API: \S/, name);
      assert.equal(typeof outcome.error.status, 'number', name);
    } else if (name === 'listBuckets' || name === 'listObjects') {
      assert.match(outcome.value, /<\?xml|<List/, `${name} returned ${outcome.value}`);
    }
  }
  await assert.rejects(
    new ZiBStorage({ accessKey: 'nope', secretKey: 'wrong', apiUrl: dev.credentials.api_url }).initiateUpload({
      bucket: 'sdk-node', key: 'x', fileSize: 1,
    }),
    /HTTP 401 from ZiB API: /
  );
});
