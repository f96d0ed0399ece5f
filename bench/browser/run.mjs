// Browser bench of zib-sdk.js in headless Chromium against a real `zib dev`:
// - SDK sealing throughput of a 256 MiB Blob vs raw crypto.subtle.encrypt per chunk;
// - end-to-end upload MB/s;
// - the page's peak JS heap (performance.memory, precise) and Chromium's RSS while
//   uploading 64 MiB and 256 MiB: flat, not proportional to size.
// Prints a table and writes bench/out/browser.json.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot, startZibDev } from '../../sdk/js/test/helpers.mjs';

const require = createRequire(join(repoRoot, 'sdk/js/package.json'));
const { chromium } = require('playwright-core');
const MiB = 1024 * 1024;
const here = fileURLToPath(new URL('.', import.meta.url));

/** Resident memory of every process of our Chromium (found by its profile directory). */
function chromiumRss(profileDir) {
  let total = 0;
  let renderer = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes(profileDir)) continue;
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      total += rss;
      if (cmd.includes('--type=renderer')) renderer += rss;
    } catch {
      /* the process ended */
    }
  }
  return { total, renderer };
}

async function sampleRssWhile(profileDir, work) {
  let peak = { total: 0, renderer: 0 };
  const base = chromiumRss(profileDir);
  const timer = setInterval(() => {
    const now = chromiumRss(profileDir);
    peak = { total: Math.max(peak.total, now.total), renderer: Math.max(peak.renderer, now.renderer) };
  }, 50);
  try {
    const value = await work();
    return { value, base, peak };
  } finally {
    clearInterval(timer);
  }
}

const dev = await startZibDev();
const { api_url, access_key, secret_key } = dev.credentials;
const page = readFileSync(join(here, 'bench.html'), 'utf8').replaceAll('{{ZIB_API_URL}}', api_url);
let n = 0;
const server = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/initiate') {
    let body = '';
    for await (const c of req) body += c;
    const { size } = JSON.parse(body);
    const zib = await fetch(`${api_url}/v1/api/upload/initiate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${access_key}:${secret_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ bucket: 'bench', key: `browser/${n++}`, file_size: size }),
    });
    res.writeHead(zib.status, { 'content-type': 'application/json' });
    return res.end(await zib.text());
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));

const profileDir = mkdtempSync(join(tmpdir(), 'zib-bench-chromium-'));
const context = await chromium.launchPersistentContext(profileDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--enable-precise-memory-info', '--js-flags=--expose-gc',
  ],
});
const results = { date: new Date().toISOString(), chromium: context.browser()?.version() ?? 'persistent', runs: {} };
const fmt = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;
try {
  const tab = await context.newPage();
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  const size = 256 * MiB;

  // Sealing: best of two rounds each, raw first, alternating.
  const raw = [];
  const sdk = [];
  const mem = [];
  for (let round = 0; round < 3; round++) {
    for (const [list, fn] of [[raw, 'rawEncrypt'], [sdk, 'sdkEncrypt'], [mem, 'sdkEncryptInMemory']]) {
      list.push(await tab.evaluate(([f, s]) => window[f](s), [fn, size]));
      await tab.evaluate(() => window.gc && window.gc());
    }
  }
  const best = (list) => Math.min(...list.map((r) => r.ms));
  const mbs = (ms) => size / 1e6 / (ms / 1000);
  results.encrypt = {
    size,
    raw_mb_s: mbs(best(raw)),
    sdk_blob_mb_s: mbs(best(sdk)),
    sdk_in_memory_mb_s: mbs(best(mem)),
    ratio_blob: best(raw) / best(sdk),
    ratio_in_memory: best(raw) / best(mem),
  };
  const e = results.encrypt;
  console.log(`seal 256 MiB (best of 3): raw crypto.subtle per chunk ${e.raw_mb_s.toFixed(0)} MB/s; ` +
    `SDK from a Blob ${e.sdk_blob_mb_s.toFixed(0)} MB/s (ratio ${e.ratio_blob.toFixed(2)}, target >= 0.8); ` +
    `SDK from an ArrayBuffer ${e.sdk_in_memory_mb_s.toFixed(0)} MB/s (ratio ${e.ratio_in_memory.toFixed(2)})`);

  for (const mib of [32, 64, 256]) {
    await tab.evaluate(() => window.gc && window.gc());
    const run = await sampleRssWhile(profileDir, () => tab.evaluate((s) => upload(s), mib * MiB));
    const r = run.value;
    results.runs[`${mib}MiB`] = {
      type: r.type,
      mb_s: (mib * MiB) / 1e6 / (r.ms / 1000),
      js_heap_base: r.baseHeap,
      js_heap_peak: r.peakHeap,
      rss_base: run.base,
      rss_peak: run.peak,
    };
    console.log(`upload ${mib} MiB (${r.type}): ${((mib * MiB) / 1e6 / (r.ms / 1000)).toFixed(1)} MB/s; ` +
      `JS heap ${fmt(r.baseHeap)} -> peak ${fmt(r.peakHeap)}; Chromium RSS peak ${fmt(run.peak.total)} ` +
      `(renderer ${fmt(run.peak.renderer)}), before ${fmt(run.base.total)}`);
  }
} finally {
  await context.close();
  server.close();
  await dev.stop();
  rmSync(profileDir, { recursive: true, force: true });
}
mkdirSync(join(repoRoot, 'bench/out'), { recursive: true });
writeFileSync(join(repoRoot, 'bench/out/browser.json'), JSON.stringify(results, null, 2));
console.log('written bench/out/browser.json');
