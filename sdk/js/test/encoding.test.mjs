// Video through the SDK and a real player: a generated clip uploaded to `zib dev` is
// encoded with startEncoding / getEncodingStatus, then hls.js (from npm) in headless
// Chromium (Debian's) plays the CDN's master playlist from a page on another origin.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ZiBStorage from '../zib-sdk.js';
import { repoRoot, runZib, sleep, startZibDev } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SECONDS = 6;

let dev;
let work;
let fileId;
let storage;
let encodingId;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'zib-sdk-video-'));
  const clip = join(work, 'clip.mp4');
  // A generated clip (testsrc2 + a tone), H.264 + AAC, 640x360: one rung, quick.
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=30:duration=${SECONDS}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${SECONDS}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
    '-movflags', '+faststart', clip,
  ]);
  dev = await startZibDev();
  const out = await runZib(dev, ['upload', '--bucket', 'videos', '--key', 'clip.mp4', clip]);
  fileId = JSON.parse(out.trim()).file_id;
  const { api_url, access_key, secret_key } = dev.credentials;
  storage = new ZiBStorage({ accessKey: access_key, secretKey: secret_key, apiUrl: api_url });
});

after(async () => {
  await dev?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const playableComplete = (phase) => ['local_complete', 'replicating', 'safe'].includes(phase);

test('startEncoding is idempotent and getEncodingStatus follows the job to a live manifest', async () => {
  const job = await storage.startEncoding(fileId);
  assert.equal(job.status, 'queued', JSON.stringify(job));
  assert.match(job.encoding_id, /^[0-9a-f-]{36}$/);
  encodingId = job.encoding_id;
  const again = await storage.startEncoding(fileId);
  assert.equal(again.status, 'already_queued', JSON.stringify(again));
  assert.equal(again.encoding_id, encodingId);

  const deadline = Date.now() + 300_000;
  let status;
  let lastProgress = -1;
  for (;;) {
    status = await storage.getEncodingStatus(encodingId);
    const phase = status?.phase;
    assert.ok(!['failed_user_action', 'cancelled'].includes(phase), JSON.stringify(status));
    assert.equal(typeof status.progress, 'number');
    assert.ok(status.progress >= lastProgress, `progress went back: ${JSON.stringify(status)}`);
    lastProgress = status.progress;
    if (playableComplete(phase)) break;
    assert.ok(Date.now() < deadline, `encode never completed: ${JSON.stringify(status)}`);
    await sleep(1000);
  }
  const master = `${dev.credentials.api_url}/stream/${fileId}/master.m3u8`;
  assert.equal(status.encoding_id, encodingId);
  assert.equal(status.hls_manifest_url, master);
  const done = await storage.startEncoding(fileId);
  assert.equal(done.status, 'already_encoded', JSON.stringify(done));
  assert.equal(done.encoding_id, encodingId);

  // A wrong id rejects with the server's 404, like any missing one.
  await assert.rejects(storage.getEncodingStatus('00000000-0000-4000-8000-000000000000'), (e) => {
    assert.equal(e.status, 404);
    return true;
  });
});

/** A page on its own origin (another port) with hls.js from node_modules. */
function startPageServer(masterUrl) {
  const hlsJs = readFileSync(join(repoRoot, 'sdk/js/node_modules/hls.js/dist/hls.min.js'));
  const page = `<!doctype html><meta charset="utf-8"><title>player</title>
<video id="v" muted playsinline></video>
<script src="/hls.min.js"></script>
<script>
  window.hlsErrors = [];
  window.mseH264 = window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E,mp4a.40.2"');
  const video = document.getElementById('v');
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_, d) => window.hlsErrors.push({ type: d.type, details: d.details, fatal: d.fatal }));
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => window.hlsErrors.push({ type: 'play', details: String(e), fatal: true })));
  hls.loadSource(${JSON.stringify(masterUrl)});
  hls.attachMedia(video);
</script>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/hls.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(hlsJs);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page);
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('hls.js in Chromium plays the master from another origin', async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-browser-test-deps.sh`);
  assert.ok(encodingId, 'the encoding test ran first');
  const master = `${dev.credentials.api_url}/stream/${fileId}/master.m3u8`;
  const server = await startPageServer(master);
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;
  assert.notEqual(new URL(pageUrl).origin, new URL(master).origin);
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'zib-chromium-hls-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  try {
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
    await page.goto(pageUrl);
    assert.equal(await page.evaluate(() => window.mseH264), true, 'this Chromium cannot play H.264 + AAC through MSE');
    const start = Date.now();
    let state;
    while (Date.now() - start < 60_000) {
      state = await page.evaluate(() => ({
        t: document.getElementById('v').currentTime,
        errors: window.hlsErrors,
      }));
      if (state.errors.some((e) => e.fatal) || state.t > 2) break;
      await sleep(250);
    }
    // Stalls while buffering are not errors of the stream; anything else is.
    const errors = state.errors.filter((e) => !/^buffer(Stalled|Nudge|SeekOverHole)/.test(e.details));
    assert.deepEqual(errors, [], 'hls.js reported errors');
    assert.ok(state.t > 2, `playback did not advance: currentTime ${state.t}`);
  } finally {
    await context.close();
    server.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
