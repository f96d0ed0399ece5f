// An empty (0-byte) file through the SDK against a real `zib dev`: initiate accepts
// file_size 0, uploadDirect seals the envelope's one empty chunk, and the CDN and
// `zib get` read it back empty (a Range on it is 416, as S3 answers).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ZiBStorage from '../zib-sdk.js';
import { runZib, startZibDev } from './helpers.mjs';

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

test('an empty file uploads through the SDK and reads back empty', async () => {
  const reg = await zib.initiateUpload({ bucket: 'sdk-empty', key: 'nothing.txt', fileSize: 0, contentType: 'text/plain' });
  assert.equal(reg.type, 'single');
  assert.equal(reg.file_size, 0);
  const events = [];
  const result = await ZiBStorage.uploadDirect(new Uint8Array(0), reg, { onProgress: (p) => events.push(p) });
  assert.deepEqual(result, { file_id: reg.file_id, cdn_url: reg.cdn_url });
  const uploading = events.filter((e) => e.stage === 'uploading').map((e) => e.progress);
  assert.equal(uploading.at(-1), 100, `upload progress ends at 100: ${JSON.stringify(events)}`);

  const got = await fetch(result.cdn_url);
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-length'), '0');
  assert.equal(got.headers.get('content-type'), 'text/plain');
  assert.equal((await got.arrayBuffer()).byteLength, 0);

  const head = await fetch(result.cdn_url, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), '0');

  const ranged = await fetch(result.cdn_url, { headers: { range: 'bytes=0-' } });
  assert.equal(ranged.status, 416);
  assert.equal(ranged.headers.get('content-range'), 'bytes */0');

  const out = join(dev.dataDir, 'empty.out');
  await runZib(dev, ['get', result.file_id, '-o', out]);
  assert.equal(readFileSync(out).length, 0);

  // A Blob (the browser's File) of 0 bytes goes the same way.
  const reg2 = await zib.initiateUpload({ bucket: 'sdk-empty', key: 'blob.bin', fileSize: 0 });
  const fromBlob = await ZiBStorage.uploadDirect(new Blob([]), reg2);
  const got2 = await fetch(fromBlob.cdn_url);
  assert.equal(got2.status, 200);
  assert.equal((await got2.arrayBuffer()).byteLength, 0);
});

test('initiate still refuses a negative or missing file_size by name', async () => {
  for (const fileSize of [-1, undefined, 1.5]) {
    await assert.rejects(
      zib.initiateUpload({ bucket: 'sdk-empty', key: 'bad', fileSize }),
      (e) => e.status === 400 && /file_size/.test(e.message),
      `file_size ${fileSize}`
    );
  }
});
