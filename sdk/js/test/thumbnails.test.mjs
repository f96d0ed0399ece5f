// Thumbnails and the 9:16 rendition as a web player meets them: a generated 1280x720
// clip uploaded to `zib dev` is encoded through startEncoding with `thumbnails` and
// `aspect_variants`; in headless Chromium, on a page of another origin, the sprite VTT
// is fetched, a cue's `<sheet>#xywh=x,y,w,h` resolves to an image that loads with the
// region inside it, and hls.js plays the vertical stream in portrait.
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
let job;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'zib-sdk-thumbs-'));
  const clip = join(work, 'clip.mp4');
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=1280x720:rate=15:duration=${SECONDS}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${SECONDS}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
    '-movflags', '+faststart', clip,
  ]);
  dev = await startZibDev();
  const out = await runZib(dev, ['upload', '--bucket', 'videos', '--key', 'wide.mp4', clip]);
  fileId = JSON.parse(out.trim()).file_id;
  const { api_url, access_key, secret_key } = dev.credentials;
  storage = new ZiBStorage({ accessKey: access_key, secretKey: secret_key, apiUrl: api_url });
});

after(async () => {
  await dev?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('startEncoding passes thumbnails and aspect_variants; the job names both', async () => {
  // A bad override is the server's 400, naming the field: the SDK sent it as given.
  await assert.rejects(
    storage.startEncoding(fileId, { thumbnails: { sprite: { width: 1 } } }),
    (e) => {
      assert.equal(e.status, 400);
      assert.match(e.message, /thumbnails\.sprite\.width/);
      return true;
    },
  );
  const started = await storage.startEncoding(fileId, {
    thumbnails: { sprite: { interval: 2 } },
    aspect_variants: ['9:16'],
  });
  assert.equal(started.status, 'queued', JSON.stringify(started));
  const deadline = Date.now() + 400_000;
  for (;;) {
    job = await storage.getEncodingStatus(started.encoding_id);
    assert.ok(!['failed_user_action', 'cancelled'].includes(job.phase), JSON.stringify(job));
    const done = ['local_complete', 'replicating', 'safe'].includes(job.phase);
    if (done && job.thumbnails && job.aspect_variants?.['9:16']) break;
    assert.ok(Date.now() < deadline, `no thumbnails and variant: ${JSON.stringify(job)}`);
    await sleep(1000);
  }
  for (const f of ['poster_url', 'sprite_url', 'sprite_vtt_url']) {
    assert.match(job.thumbnails[f], /\/objects\/[0-9a-f-]{36}$/, f);
  }
  assert.match(job.aspect_variants['9:16'].hls_manifest_url, /\/stream\/[0-9a-f-]{36}\/master\.m3u8$/);
  assert.notEqual(job.aspect_variants['9:16'].hls_manifest_url, job.hls_manifest_url);
  // A backfill on a file whose variant exists answers the same child job.
  const backfill = await storage.startEncoding(fileId, { aspect_variants_only: ['9:16'] });
  assert.equal(backfill.mode, 'aspect_variants_only', JSON.stringify(backfill));
  assert.equal(backfill.parent_encoding_job_id, started.encoding_id);
});

/** A page on its own origin with hls.js; `window.check` runs the two checks. */
function startPageServer(vttUrl, verticalUrl) {
  const hlsJs = readFileSync(join(repoRoot, 'sdk/js/node_modules/hls.js/dist/hls.min.js'));
  const page = `<!doctype html><meta charset="utf-8"><title>player</title>
<video id="v" muted playsinline></video>
<script src="/hls.min.js"></script>
<script>
  window.hlsErrors = [];
  // The first cue of the sprite track: its sheet, loaded as an image, and its region.
  window.spriteCue = (async () => {
    const vtt = await fetch(${JSON.stringify(vttUrl)}).then((r) => r.text());
    const lines = vtt.split(/\\r?\\n/);
    const at = lines.findIndex((l) => l.includes('-->'));
    const body = lines[at + 1].trim();
    const [sheet, frag] = new URL(body, ${JSON.stringify(vttUrl)}).href.split('#xywh=');
    const [x, y, w, h] = frag.split(',').map(Number);
    const img = new Image();
    img.crossOrigin = 'anonymous';
    await new Promise((ok, fail) => { img.onload = ok; img.onerror = () => fail(new Error('image failed: ' + sheet)); img.src = sheet; });
    const canvas = document.createElement('canvas');
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, x, y, w, h, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h).data;
    let lit = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] + px[i + 1] + px[i + 2] > 60) lit++;
    return { cues: lines.filter((l) => l.includes('-->')).length, sheet, x, y, w, h,
             naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, lit: lit / (w * h) };
  })().catch((e) => ({ error: String(e) }));
  const video = document.getElementById('v');
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_, d) => window.hlsErrors.push({ type: d.type, details: d.details, fatal: d.fatal }));
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => window.hlsErrors.push({ type: 'play', details: String(e), fatal: true })));
  hls.loadSource(${JSON.stringify(verticalUrl)});
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

test('in Chromium a sprite cue resolves to a loaded tile and hls.js plays the vertical stream', async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/install-browser-test-deps.sh`);
  assert.ok(job?.thumbnails, 'the encoding test ran first');
  const vertical = job.aspect_variants['9:16'].hls_manifest_url;
  const server = await startPageServer(job.thumbnails.sprite_vtt_url, vertical);
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;
  assert.notEqual(new URL(pageUrl).origin, new URL(vertical).origin);
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'zib-chromium-thumbs-'));
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

    const cue = await page.evaluate(() => window.spriteCue);
    assert.equal(cue.error, undefined, JSON.stringify(cue));
    assert.ok(cue.cues >= SECONDS / 2, `2 s cues over ${SECONDS} s: ${JSON.stringify(cue)}`);
    assert.match(new URL(cue.sheet).pathname, /^\/objects\//);
    assert.ok(cue.w > 0 && cue.h > 0, JSON.stringify(cue));
    assert.ok(cue.x + cue.w <= cue.naturalWidth && cue.y + cue.h <= cue.naturalHeight, JSON.stringify(cue));
    assert.ok(cue.lit > 0.5, `the tile is mostly black: ${JSON.stringify(cue)}`);

    const start = Date.now();
    let state;
    while (Date.now() - start < 60_000) {
      state = await page.evaluate(() => {
        const v = document.getElementById('v');
        return { t: v.currentTime, w: v.videoWidth, h: v.videoHeight, errors: window.hlsErrors };
      });
      if (state.errors.some((e) => e.fatal) || state.t > 2) break;
      await sleep(250);
    }
    const errors = state.errors.filter((e) => !/^buffer(Stalled|Nudge|SeekOverHole)/.test(e.details));
    assert.deepEqual(errors, [], 'hls.js reported errors');
    assert.ok(state.t > 2, `playback did not advance: currentTime ${state.t}`);
    assert.ok(state.h > state.w && state.w * 16 === state.h * 9, `not a 9:16 picture: ${state.w}x${state.h}`);
  } finally {
    await context.close();
    server.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
