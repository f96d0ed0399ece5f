// A minimal tenant app for ZiB: the tenant credentials stay here, the browser only ever
// sees one-time upload registrations. No framework, no dependencies: `node server.mjs`.
//
// Configuration (environment):
//   ZIB_CREDENTIALS  path to a credentials.json as `zib dev` writes it, or
//   ZIB_API_URL, ZIB_ACCESS_KEY, ZIB_SECRET_KEY
//   ZIB_BUCKET       bucket the uploads go to (default "web-uploads")
//   PORT, HOST       where this app listens (default 127.0.0.1:3000; PORT=0 picks one)
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

const config = loadConfig();
const publicDir = fileURLToPath(new URL('./public/', import.meta.url));
/** Demo sessions: token -> user. A real app has real users and a real session store. */
const sessions = new Map();
/** Plenty for JSON bodies of this app; anything bigger is not ours. */
const MAX_BODY = 64 * 1024;

function loadConfig() {
  let api = process.env.ZIB_API_URL;
  let access = process.env.ZIB_ACCESS_KEY;
  let secret = process.env.ZIB_SECRET_KEY;
  if (process.env.ZIB_CREDENTIALS) {
    const c = JSON.parse(readFileSync(process.env.ZIB_CREDENTIALS, 'utf8'));
    api = api || c.api_url;
    access = access || c.access_key;
    secret = secret || c.secret_key;
  }
  if (!api || !access || !secret) {
    console.error('set ZIB_CREDENTIALS=path/to/credentials.json, or ZIB_API_URL, ZIB_ACCESS_KEY and ZIB_SECRET_KEY');
    process.exit(2);
  }
  return {
    apiUrl: api.replace(/\/+$/, ''),
    authorization: `Bearer ${access}:${secret}`,
    bucket: process.env.ZIB_BUCKET || 'web-uploads',
    host: process.env.HOST || '127.0.0.1',
    port: Number(process.env.PORT ?? 3000),
  };
}

function send(res, status, body, headers = {}) {
  const isJson = typeof body !== 'string' && !Buffer.isBuffer(body);
  res.writeHead(status, {
    'content-type': isJson ? 'application/json' : 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(isJson ? JSON.stringify(body) : body);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const parts = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
      } else {
        parts.push(chunk);
      }
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(parts).toString('utf8') || '{}'));
      } catch {
        reject(Object.assign(new Error('body is not JSON'), { status: 400 }));
      }
    });
    req.on('error', reject);
  });
}

function sessionUser(req) {
  const cookie = req.headers.cookie || '';
  const match = /(?:^|;\s*)session=([A-Za-z0-9_-]+)/.exec(cookie);
  return match ? sessions.get(match[1]) : undefined;
}

/** Object keys keep their readable name, minus anything that would act as a path. */
function safeName(name) {
  const base = String(name || 'file').split(/[\\/]/).pop();
  return base.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100) || 'file';
}

async function login(req, res) {
  const { user } = await readJson(req);
  if (typeof user !== 'string' || !/^[a-z0-9_-]{1,32}$/.test(user)) {
    return send(res, 400, { error: 'user: 1-32 characters of a-z, 0-9, _ and -' });
  }
  const token = randomBytes(24).toString('base64url');
  sessions.set(token, user);
  send(res, 200, { user }, { 'set-cookie': `session=${token}; HttpOnly; SameSite=Strict; Path=/` });
}

async function uploadInitiate(req, res) {
  // 1. Authenticate with our own system first.
  const user = sessionUser(req);
  if (!user) return send(res, 401, { error: 'log in first' });
  const { fileName, fileSize, contentType } = await readJson(req);
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) return send(res, 400, { error: 'fileSize must be a byte count' });
  // 2. A key scoped to the user.
  const key = `${user}/${Date.now()}-${safeName(fileName)}`;
  // 3. Ask ZiB for a registration; the credentials never leave this process.
  let zib;
  try {
    zib = await fetch(`${config.apiUrl}/v1/api/upload/initiate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: config.authorization },
      body: JSON.stringify({
        bucket: config.bucket,
        key,
        file_size: fileSize,
        content_type: contentType || 'application/octet-stream',
      }),
    });
  } catch (e) {
    return send(res, 502, { error: `ZiB API unreachable: ${e.cause?.message || e.message}` });
  }
  const text = await zib.text();
  if (!zib.ok) {
    let reason = text;
    try {
      reason = JSON.parse(text).error || text;
    } catch {
      /* keep the text */
    }
    return send(res, 502, { error: `ZiB refused the upload (HTTP ${zib.status}): ${reason}` });
  }
  // 4. The registration holds no credential: safe to hand to the browser.
  send(res, 200, text ? JSON.parse(text) : {});
}

function page(res) {
  const html = readFileSync(`${publicDir}index.html`, 'utf8').replaceAll('{{ZIB_API_URL}}', config.apiUrl);
  send(res, 200, html, { 'content-type': 'text/html; charset=utf-8' });
}

function staticFile(res, name, type) {
  send(res, 200, readFileSync(`${publicDir}${name}`), { 'content-type': type });
}

const server = http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url, 'http://app');
  try {
    if (req.method === 'GET' && pathname === '/') return page(res);
    if (req.method === 'GET' && pathname === '/app.js') return staticFile(res, 'app.js', 'text/javascript; charset=utf-8');
    if (req.method === 'GET' && pathname === '/me') {
      const user = sessionUser(req);
      return user ? send(res, 200, { user }) : send(res, 401, { error: 'not logged in' });
    }
    if (req.method === 'POST' && pathname === '/login') return await login(req, res);
    if (req.method === 'POST' && pathname === '/api/upload-initiate') return await uploadInitiate(req, res);
    send(res, 404, { error: 'not found' });
  } catch (e) {
    send(res, e.status || 500, { error: e.message });
  }
});

server.listen(config.port, config.host, () => {
  const { port } = server.address();
  console.log(`web-upload example at http://${config.host}:${port}/ (ZiB at ${config.apiUrl}, bucket ${config.bucket})`);
});
