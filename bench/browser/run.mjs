// Browser bench of zib-sdk.js in headless Chromium against a real `zib dev`:
// - SDK sealing throughput of a 256 MiB Blob vs raw crypto.subtle.encrypt per chunk;
// - end-to-end upload MB/s;
// - the page's peak JS heap (performance.memory, precise) and Chromium's RSS while
//   uploading 64 MiB and 256 MiB: flat, not proportional to size.
// Prints a table and writes bench/out/browser.json.
//
// ZIB_BENCH_SEAL_ONLY=1 measures sealing alone: no `zib dev`, no uploads, and the SDK comes
// from the working tree (the server embeds the SDK at build time), or from ZIB_BENCH_SDK (a
// path: compare with an older SDK, e.g. `git show HEAD~1:sdk/js/zib-sdk.js`). ZIB_BENCH_ROUNDS sets the
// rounds of sealing (best of them counts, the median is shown too; default 10).
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot, startZibDev } from '../../sdk/js/test/helpers.mjs';

const require = createRequire(join(repoRoot, 'sdk/js/package.json'));
const { chromium } = require('playwright-core');
const MiB = 1024 * 1024;
const here = fileURLToPath(new URL('.', import.meta.url));

/**
 * Calls `read(pid, cmdline)` for every process of our Chromium (found by its profile
 * directory), skipping any that ends meanwhile.
 */
function eachChromiumProcess(profileDir, read) {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(profileDir)) read(pid, cmd);
    } catch {
      /* the process ended */
    }
  }
}

/** Resident memory of our Chromium, and of its renderers. */
function chromiumRss(profileDir) {
  let total = 0;
  let renderer = 0;
  eachChromiumProcess(profileDir, (pid, cmd) => {
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    total += rss;
    if (cmd.includes('--type=renderer')) renderer += rss;
  });
  return { total, renderer };
}

/** CPU seconds (user, kernel) and minor page faults of our Chromium so far. Sealing on
 * two cores is CPU-bound: the CPU a method costs says what it can reach. */
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function chromiumCpu(profileDir) {
  const total = { user: 0, kernel: 0, faults: 0 };
  eachChromiumProcess(profileDir, (pid) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total.faults += Number(f[7]);
    total.user += Number(f[11]) / clockTicks;
    total.kernel += Number(f[12]) / clockTicks;
  });
  return total;
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

/** A file of `size` random bytes on disk: what a user picks is disk-backed, not in memory. */
function randomFile(dir, size) {
  const path = join(dir, `random-${size}.bin`);
  const fd = openSync(path, 'w');
  const piece = Buffer.alloc(MiB);
  for (let at = 0; at < size; at += piece.length) writeSync(fd, randomFillSync(piece), 0, Math.min(piece.length, size - at));
  closeSync(fd);
  return path;
}

const sealOnly = process.env.ZIB_BENCH_SEAL_ONLY === '1';
const rounds = Number(process.env.ZIB_BENCH_ROUNDS || 10);
const dev = sealOnly ? null : await startZibDev();
const { api_url, access_key, secret_key } = dev ? dev.credentials : {};
let n = 0;
const server = http.createServer(async (req, res) => {
  if (sealOnly && req.url === '/sdk/zib-sdk.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(readFileSync(process.env.ZIB_BENCH_SDK || join(repoRoot, 'sdk/js/zib-sdk.js')));
  }
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
const origin = `http://127.0.0.1:${server.address().port}`;
const page = readFileSync(join(here, 'bench.html'), 'utf8').replaceAll('{{ZIB_API_URL}}', sealOnly ? origin : api_url);

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
const fileDir = mkdtempSync(join(tmpdir(), 'zib-bench-file-'));
const fmt = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;
try {
  const tab = await context.newPage();
  await tab.goto(`${origin}/`);
  const size = 256 * MiB;
  await tab.setInputFiles('#file', randomFile(fileDir, size));

  // Sealing: best of the rounds each, raw first, alternating. Fresh Blobs come last, once
  // the held Blob is gone: with both, Chromium failed reads of the fresh one
  // (NotReadableError), whichever reader the SDK used.
  const kinds = {
    raw: 'rawEncrypt',
    blob: 'sdkEncrypt',
    file: 'sdkEncryptFile',
    mem: 'sdkEncryptInMemory',
  };
  const times = Object.fromEntries([...Object.keys(kinds), 'fresh'].map((k) => [k, []]));
  const cpu = Object.fromEntries(Object.keys(times).map((k) => [k, []]));
  const time = async (kind, fn) => {
    if (process.env.ZIB_BENCH_VERBOSE) console.error('sealing:', kind);
    const before = chromiumCpu(profileDir);
    times[kind].push((await tab.evaluate(([f, s]) => window[f](s), [fn, size])).ms);
    const after = chromiumCpu(profileDir);
    cpu[kind].push({ user: after.user - before.user, kernel: after.kernel - before.kernel, faults: after.faults - before.faults });
    await tab.evaluate(() => window.gc && window.gc());
  };
  for (let round = 0; round < rounds; round++) {
    for (const [kind, fn] of Object.entries(kinds)) await time(kind, fn);
  }
  await tab.evaluate(() => {
    held = null;
    if (window.gc) window.gc();
  });
  for (let round = 0; round < rounds; round++) await time('fresh', 'sdkEncryptFreshBlob');
  const internals = await tab.evaluate(() => sdkInternals());
  const best = (kind) => Math.min(...times[kind]);
  const mbs = (kind) => size / 1e6 / (best(kind) / 1000);
  const ratio = (kind) => best('raw') / best(kind);
  const median = (kind) => [...times[kind]].sort((a, b) => a - b)[Math.floor(times[kind].length / 2)];
  const medianRatio = (kind) => median('raw') / median(kind);
  const medianOf = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
  const cpuOf = (kind) => ({
    user_s: medianOf(cpu[kind].map((c) => c.user)),
    kernel_s: medianOf(cpu[kind].map((c) => c.kernel)),
    page_faults: medianOf(cpu[kind].map((c) => c.faults)),
  });
  results.encrypt = {
    size,
    rounds,
    raw_mb_s: mbs('raw'),
    sdk_blob_mb_s: mbs('blob'),
    sdk_file_mb_s: mbs('file'),
    sdk_fresh_blob_mb_s: mbs('fresh'),
    sdk_in_memory_mb_s: mbs('mem'),
    ratio_blob: ratio('blob'),
    ratio_file: ratio('file'),
    ratio_fresh_blob: ratio('fresh'),
    ratio_in_memory: ratio('mem'),
    median_ratio_blob: medianRatio('blob'),
    median_ratio_file: medianRatio('file'),
    cpu_median: Object.fromEntries(Object.keys(cpu).map((k) => [k, cpuOf(k)])),
    byob_stalls: internals.byobStalls,
    worker_runs: internals.workerRuns,
    all_mb_s: Object.fromEntries(Object.entries(times).map(([k, l]) => [k, l.map((ms) => Math.round(size / 1e6 / (ms / 1000)))])),
  };
  const e = results.encrypt;
  const line = (label, kind) => `  ${label.padEnd(44)} ${mbs(kind).toFixed(0).padStart(5)} MB/s` +
    (kind === 'raw' ? '' : `  ratio ${ratio(kind).toFixed(2)} (of medians ${medianRatio(kind).toFixed(2)})`);
  console.log(`seal 256 MiB, best of ${rounds} (target: SDK from a Blob >= 0.8 x raw)`);
  console.log(line('raw crypto.subtle, call per chunk, in memory', 'raw'));
  console.log(line('SDK, in-memory Blob the browser holds', 'blob'));
  console.log(line('SDK, disk-backed File (file input)', 'file'));
  console.log(line('SDK, Blob timed from new Blob(pieces)', 'fresh'));
  console.log(line('SDK, ArrayBuffer', 'mem'));
  console.log(`  every round (MB/s): ${JSON.stringify(e.all_mb_s)}`);
  const cores = availableParallelism();
  const cpuLine = (label, kind) => {
    const c = cpuOf(kind);
    return `  ${label.padEnd(44)} ${(c.user_s + c.kernel_s).toFixed(2)} s (kernel ${c.kernel_s.toFixed(2)} s, ` +
      `${Math.round(c.page_faults / 1000)}k page faults)`;
  };
  console.log(`Chromium CPU per 256 MiB, all its processes, median:`);
  console.log(cpuLine('raw crypto.subtle', 'raw'));
  console.log(cpuLine('SDK, in-memory Blob the browser holds', 'blob'));
  console.log(cpuLine('SDK, disk-backed File', 'file'));
  const raw = cpuOf('raw');
  const blob = cpuOf('blob');
  console.log(`  so on ${cores} cores the SDK from a Blob can reach at most ` +
    `${((cores * (raw.user_s + raw.kernel_s)) / (blob.user_s + blob.kernel_s)).toFixed(2)} x raw (raw runs on one core)`);
  console.log(`  BYOB reads the SDK's watchdog abandoned: ${internals.byobStalls}; ` +
    `runs of chunks sealed by workers: ${internals.workerRuns}${internals.workersFailed ? ' (workers failed)' : ''}`);

  for (const mib of sealOnly ? [] : [32, 64, 256]) {
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
  await dev?.stop();
  rmSync(profileDir, { recursive: true, force: true });
  rmSync(fileDir, { recursive: true, force: true });
}
mkdirSync(join(repoRoot, 'bench/out'), { recursive: true });
const outFile = sealOnly ? 'browser-seal.json' : 'browser.json';
writeFileSync(join(repoRoot, 'bench/out', outFile), JSON.stringify(results, null, 2));
console.log(`written bench/out/${outFile}`);
