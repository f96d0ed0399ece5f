// Envelope v1 byte compatibility: the SDK seals every shared vector to the same bytes as
// the Rust implementation, both through sealEnvelope and through a whole uploadDirect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import ZiBStorage from '../zib-sdk.js';

const vectorsPath = fileURLToPath(new URL('../../../testdata/envelope/vectors.json', import.meta.url));
const vectors = JSON.parse(readFileSync(vectorsPath, 'utf8'));

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const fromHex = (h) => Buffer.from(h, 'hex');

test('the vectors file is not empty', () => {
  assert.ok(vectors.length >= 10, `only ${vectors.length} vectors`);
});

for (const v of vectors) {
  test(`sealEnvelope matches vector ${v.name}`, async () => {
    const plaintext = fromHex(v.plaintext_hex);
    const sealed = await ZiBStorage.sealEnvelope(plaintext, {
      key: v.key_hex,
      noncePrefix: v.nonce_prefix_hex,
      chunkSize: v.chunk_size,
    });
    assert.equal(sealed.length, v.ciphertext_hex.length / 2);
    assert.equal(hex(sealed), v.ciphertext_hex);
    assert.equal(ZiBStorage.ciphertextLength(plaintext.length, v.chunk_size), sealed.length);
  });
}

/** A stand-in node that keeps every PUT body, to see the exact bytes uploadDirect sends. */
async function captureNode() {
  const bodies = new Map();
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      bodies.set(req.url, Buffer.concat(parts));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ upload_id: 'x', size: 0, status: 'distributed' }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, bodies, base: `http://127.0.0.1:${server.address().port}` };
}

function registrationFor(v, base, asBlob) {
  const size = v.plaintext_hex.length / 2;
  return {
    type: 'single',
    file_id: '00000000-0000-4000-8000-000000000000',
    bucket: 'b',
    key: v.name,
    file_size: size,
    content_type: 'application/octet-stream',
    node_id: '00000000-0000-4000-8000-000000000001',
    node_url: base,
    upload_url: `${base}/v1/upload/${v.name}${asBlob ? '-blob' : ''}?token=t`,
    encryption_key: fromHex(v.key_hex).toString('base64'),
    envelope: { version: 1, chunk_size: v.chunk_size, nonce_prefix: v.nonce_prefix_hex },
    ciphertext_size: v.ciphertext_hex.length / 2,
    cdn_url: `${base}/objects/x`,
    expires_at: new Date(Date.now() + 600_000).toISOString(),
  };
}

test('uploadDirect sends every vector byte for byte (Buffer and Blob inputs)', async () => {
  const node = await captureNode();
  try {
    for (const v of vectors) {
      const plaintext = fromHex(v.plaintext_hex);
      await ZiBStorage.uploadDirect(plaintext, registrationFor(v, node.base, false));
      await ZiBStorage.uploadDirect(new Blob([plaintext]), registrationFor(v, node.base, true));
      assert.equal(hex(node.bodies.get(`/v1/upload/${v.name}?token=t`)), v.ciphertext_hex, v.name);
      assert.equal(hex(node.bodies.get(`/v1/upload/${v.name}-blob?token=t`)), v.ciphertext_hex, `${v.name} (Blob)`);
    }
  } finally {
    node.server.close();
  }
});

test('multipart parts concatenate to the single envelope', async () => {
  const node = await captureNode();
  try {
    const v = vectors.find((x) => x.name === 'cs16-multi-chunk-partial-tail');
    const reg = registrationFor(v, node.base, false);
    const size = reg.file_size; // 80 bytes at chunk 16: parts of 2 chunks
    const parts = [];
    let plain = 0;
    let cipher = 0;
    for (let n = 1; plain < size; n++) {
      const len = Math.min(32, size - plain);
      const chunks = Math.ceil(len / 16);
      const csize = (n === 1 ? 16 : 0) + len + 16 * chunks;
      parts.push({
        part_number: n,
        upload_url: `${node.base}/v1/upload/mp/parts/${n}?token=p${n}`,
        plaintext_offset: plain,
        plaintext_size: len,
        ciphertext_offset: cipher,
        ciphertext_size: csize,
      });
      plain += len;
      cipher += csize;
    }
    Object.assign(reg, {
      type: 'multipart',
      upload_url: undefined,
      upload_id: 'mp',
      parts,
      complete_url: `${node.base}/v1/upload/mp/complete?token=c`,
    });
    const seen = [];
    await ZiBStorage.uploadDirect(fromHex(v.plaintext_hex), reg, {
      concurrency: 2,
      onProgress: (p) => seen.push(p),
    });
    const joined = Buffer.concat(parts.map((p) => node.bodies.get(new URL(p.upload_url).pathname + new URL(p.upload_url).search)));
    assert.equal(hex(joined), v.ciphertext_hex);
    assert.ok(node.bodies.has('/v1/upload/mp/complete?token=c'));
    for (const stage of ['encrypting', 'uploading', 'completing']) {
      const values = seen.filter((p) => p.stage === stage).map((p) => p.progress);
      assert.ok(values.length > 0, `no ${stage} events`);
      assert.deepEqual(values, [...values].sort((a, b) => a - b), `${stage} not monotonic`);
      assert.equal(values.at(-1), 100, `${stage} does not end at 100`);
    }
  } finally {
    node.server.close();
  }
});
