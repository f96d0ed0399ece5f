/*! zib-sdk.js — ZiB storage SDK. One file, no dependencies, no build step.
 *
 * Browser: <script src="https://YOUR-ZIB-SERVER/sdk/zib-sdk.js"></script> gives the global
 * `ZiBStorage`. Node 20: `require('./zib-sdk.js')` or `import ZiBStorage from './zib-sdk.js'`.
 *
 * `ZiBStorage.uploadDirect(file, registration, options)` encrypts the file with envelope v1
 * (docs/envelope.md; byte-identical to the Rust `zib_crypto::envelope`) using WebCrypto
 * AES-256-GCM and uploads it to the node the registration names. It needs no credential.
 *
 * `new ZiBStorage({ accessKey, secretKey, apiUrl })` is for the tenant's server only: it
 * carries the tenant secret.
 */
(function (root, factory) {
  'use strict';
  var ZiBStorage = factory();
  if (typeof module === 'object' && module && module.exports) {
    module.exports = ZiBStorage;
    module.exports.ZiBStorage = ZiBStorage;
    module.exports.ZiBError = ZiBStorage.ZiBError;
    module.exports.default = ZiBStorage;
  } else if (root) {
    root.ZiBStorage = ZiBStorage;
  }
})(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var SDK_VERSION = '0.1.0';

  // --- envelope v1 constants (docs/envelope.md) ---
  var MAGIC = [0x5a, 0x45, 0x4e, 0x56]; // "ZENV"
  var ENVELOPE_VERSION = 1;
  var HEADER_LEN = 16;
  var TAG_LEN = 16;
  var NONCE_PREFIX_LEN = 7;
  var MAX_CHUNK_SIZE = 16 * 1024 * 1024;
  var MAX_CHUNKS = 4294967296; // the chunk index is a u32: past it a nonce would repeat

  /** Plaintext being read and sealed at once per part: enough to keep WebCrypto and the
   * file reads busy together, small enough that memory stays flat whatever the file size. */
  var SEAL_WINDOW_BYTES = 4 * 1024 * 1024;
  /** Bounds the promises in flight when chunks are tiny. */
  var MAX_CHUNKS_IN_FLIGHT = 64;
  /** Plaintext read at once, a run of whole chunks: fewer, larger reads and worker messages. */
  var READ_RUN_BYTES = 1024 * 1024;
  /** Sealed bytes gathered into one Blob before it joins the request body: the renderer
   * hands Blob data to the browser's blob store, so the JS heap holds one slab at a time. */
  var BLOB_BATCH_BYTES = 8 * 1024 * 1024;
  /** Same schedule as the Rust client: a node restarting takes seconds, and a longer wait
   * only holds the whole upload back. */
  var RETRY_BASE_DELAY_MS = 500;
  var RETRY_MAX_DELAY_MS = 8000;
  var DEFAULT_RETRIES = 3;
  /** After a network loss in the middle of an upload (the node had answered before), how
   * long uploadDirect keeps asking the node what it holds and resuming before it gives up. */
  var DEFAULT_RESUME_WITHIN_MS = 60000;
  /** Between two resume attempts while the network is gone. */
  var RESUME_POLL_MS = 1000;
  var DEFAULT_CONCURRENCY = 4;
  /** What `zib dev` listens on (the Rust client's default too). */
  var DEFAULT_API_URL = 'http://127.0.0.1:7070';
  /** The node's answer when a retried part had in fact been stored the first time. */
  var PART_ALREADY_UPLOADED = 'part_already_uploaded';

  // --- errors ---

  /**
   * Every rejection of the SDK. `kind` says what failed, for code that branches on it:
   * registration | expired | already_used | http | unreachable | aborted | config |
   * outcome_unknown. An `outcome_unknown` error (also `outcomeUnknown: true`) carries
   * `fileId` and `cdnUrl`: the bytes reached the node but the end was not seen (the answer
   * was lost, the server was down); the file may well complete, so never report it as
   * failed: check `zib pipeline <fileId>` or GET /v1/api/pipeline/{fileId}.
   */
  class ZiBError extends Error {
    constructor(message, details) {
      super(message);
      this.name = details && details.kind === 'aborted' ? 'AbortError' : 'ZiBError';
      var d = details || {};
      this.kind = d.kind || 'http';
      if (d.status !== undefined) this.status = d.status;
      if (d.code !== undefined) this.code = d.code;
      if (d.origin !== undefined) this.origin = d.origin;
      if (d.cause !== undefined) this.cause = d.cause;
      if (this.kind === 'outcome_unknown') {
        this.outcomeUnknown = true;
        this.fileId = d.fileId;
        this.cdnUrl = d.cdnUrl;
      }
    }
  }

  function outcomeUnknown(reg, cause) {
    return new ZiBError('file ' + reg.file_id + ': outcome unknown — check `zib pipeline ' + reg.file_id +
      '` (the bytes reached the node, then: ' + ((cause && cause.message) || String(cause)) + ')', {
      kind: 'outcome_unknown', fileId: reg.file_id, cdnUrl: reg.cdn_url, cause: cause,
      status: cause && cause.status, code: cause && cause.code,
    });
  }

  function invalidRegistration(msg) {
    return new ZiBError('invalid registration: ' + msg, { kind: 'registration' });
  }

  function aborted(signal) {
    var reason = signal && signal.reason;
    var why = reason && reason.message ? ': ' + reason.message : '';
    return new ZiBError('upload aborted' + why, { kind: 'aborted', cause: reason });
  }

  /** A URL without its query: upload URLs carry their capability token there. */
  function redact(url) {
    var q = String(url).indexOf('?');
    return q < 0 ? String(url) : String(url).slice(0, q);
  }

  /** The innermost cause of a fetch failure, e.g. "connect ECONNREFUSED 127.0.0.1:9". */
  function rootCause(err) {
    var e = err;
    var seen = 0;
    while (e && e.cause && seen < 8) {
      e = e.cause;
      seen++;
    }
    if (e && e.code && e.message && e.message.indexOf(e.code) < 0) return e.code + ' ' + e.message;
    return (e && e.message) || String(e);
  }

  function unreachable(origin, url, reason, cause) {
    return new ZiBError(origin + ' unreachable at ' + redact(url) + ': ' + reason, {
      kind: 'unreachable',
      origin: origin,
      cause: cause,
    });
  }

  /**
   * Turns a non-success answer into an error that names the party, the status and what it
   * said; expired and spent registrations are named as such first.
   */
  function errorFromAnswer(origin, status, text, about) {
    var code = 'unknown';
    var message;
    try {
      var body = JSON.parse(text);
      if (body && typeof body.error === 'string') {
        message = body.error;
        if (typeof body.code === 'string') code = body.code;
      }
    } catch (_) {
      /* not a JSON error: keep the raw text */
    }
    if (message === undefined) {
      var raw = String(text || '').trim();
      if (raw.length > 300) raw = raw.slice(0, 300) + '…';
      message = raw || statusText(status);
    }
    var base = 'HTTP ' + status + ' from ' + origin + ': ' + message + (about ? ' (' + about + ')' : '');
    var kind = 'http';
    var lowered = (code + ' ' + message).toLowerCase();
    if ((status === 401 || status === 403) && lowered.indexOf('expired') >= 0) {
      kind = 'expired';
      base = 'upload registration expired (initiate a new upload): ' + base;
    } else if (status === 409 && (code === 'token_used' || code === 'upload_already_completed')) {
      kind = 'already_used';
      base = 'upload registration already used (each registration uploads once; initiate a new upload): ' + base;
    }
    return new ZiBError(base, { kind: kind, status: status, code: code, origin: origin });
  }

  function statusText(status) {
    var names = {
      400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
      408: 'Request Timeout', 409: 'Conflict', 413: 'Payload Too Large', 429: 'Too Many Requests',
      500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
    };
    return names[status] || 'no body';
  }

  function isTransientStatus(status) {
    return status >= 500 || status === 408 || status === 429;
  }

  // --- small helpers ---

  function subtle() {
    var c = typeof globalThis !== 'undefined' ? globalThis.crypto : undefined;
    if (!c || !c.subtle) {
      throw new ZiBError(
        'WebCrypto (crypto.subtle) is not available: browsers only offer it on https:// pages and localhost',
        { kind: 'config' }
      );
    }
    return c.subtle;
  }

  function hexToBytes(hex) {
    if (typeof hex !== 'string' || hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) return null;
    var out = new Uint8Array(hex.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function base64ToBytes(b64) {
    if (typeof b64 !== 'string') return null;
    try {
      var bin = atob(b64);
      var out = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    } catch (_) {
      return null;
    }
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve, reject) {
      if (signal && signal.aborted) return reject(aborted(signal));
      var onAbort = function () {
        clearTimeout(timer);
        reject(aborted(signal));
      };
      var timer = setTimeout(function () {
        if (signal) signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  function retryDelay(attempt) {
    return Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * Math.pow(2, attempt));
  }

  function isNode() {
    return typeof process !== 'undefined' && !!(process.versions && process.versions.node);
  }

  // --- file sources: File | Blob | ArrayBuffer | typed array (Node Buffer) ---

  /**
   * Something with a size that reads plaintext ranges in order: `open(start, end)` gives a
   * reader whose `read(n)` resolves the next n bytes (fewer only at the end).
   */
  function toSource(file) {
    if (file && typeof file === 'object' && typeof file.slice === 'function' &&
        typeof file.size === 'number' && typeof file.arrayBuffer === 'function') {
      return {
        size: file.size,
        open: function (start, end, readSize) {
          if (typeof file.stream !== 'function') return blobSliceReader(file, start, end);
          var slice = file.slice(start, end);
          return useByob(readSize) ? blobByobReader(slice) : blobStreamReader(slice);
        },
      };
    }
    var bytes = null;
    if (file instanceof ArrayBuffer) bytes = new Uint8Array(file);
    else if (ArrayBuffer.isView(file)) bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
    if (!bytes) {
      throw new ZiBError('uploadDirect needs a File, Blob, ArrayBuffer or Uint8Array', { kind: 'config' });
    }
    return {
      size: bytes.byteLength,
      open: function (start, end) {
        var at = start;
        return {
          read: function (n) {
            var view = bytes.subarray(at, Math.min(end, at + n));
            at += view.length;
            return Promise.resolve(view);
          },
          cancel: function () {},
        };
      },
    };
  }

  /**
   * Reads a Blob through one stream per part: one Blob.slice per part, then the browser's
   * own read-ahead. Several times faster than a slice().arrayBuffer() per slab, whose every
   * call sets up a new read of the blob.
   */
  function blobStreamReader(blob) {
    var reader = blob.stream().getReader();
    var leftover = null;
    var tail = Promise.resolve();
    return {
      /** Calls may overlap: each read starts when the previous one has its bytes. */
      read: function (n) {
        var result = tail.then(function () {
          return readNow(n);
        });
        tail = result.then(null, function () {});
        return result;
      },
      cancel: function () {
        reader.cancel().catch(function () {});
      },
    };

    function readNow(n) {
      if (n === 0) return Promise.resolve(new Uint8Array(0));
      var out = null;
      var filled = 0;
      function step() {
        if (leftover) {
          if (!out && leftover.length >= n) {
            var whole = leftover.subarray(0, n);
            leftover = leftover.length > n ? leftover.subarray(n) : null;
            return Promise.resolve(whole);
          }
          out = out || new Uint8Array(n);
          var take = Math.min(leftover.length, n - filled);
          out.set(leftover.subarray(0, take), filled);
          filled += take;
          leftover = take < leftover.length ? leftover.subarray(take) : null;
        }
        if (out && filled === n) return Promise.resolve(out);
        return reader.read().then(function (r) {
          if (r.done) return out ? out.subarray(0, filled) : new Uint8Array(0);
          leftover = r.value;
          return step();
        });
      }
      return step();
    }
  }

  // --- BYOB reads of Blobs (browsers) ---
  //
  // A default reader hands every piece of a Blob's stream over in a freshly allocated
  // ArrayBuffer (up to 2 MiB in Chromium): allocating and page-faulting that memory cost more
  // than the AES-GCM itself. A BYOB reader fills buffers we hand back, so the memory is
  // reused and reading a Blob costs a fraction of sealing it (docs/sdk.md, "Reading and
  // sealing in browsers").
  //
  // Chromium 156 has a BYOB bug: a read can stay pending forever (never resolve, never
  // fail). It showed (a) when several BYOB streams over one Blob were read at once, and
  // (b) on the first read of a just-built Blob. Hence: one BYOB stream at a time in a page
  // (the others wait their turn: sealing is CPU-bound, so parts lose nothing by taking
  // turns), a one-byte read first that returns once the Blob is fully built, and a
  // watchdog: a read that makes no progress for byobState.stallMs is abandoned, and the rest
  // of the Blob is read with a default reader, as is every Blob after it in this page.

  /** Reads smaller than this (runs of tiny chunks, at most 64 a run) use a default reader. */
  var BYOB_MIN_READ = 64 * 1024;
  var byobState = {
    /** A BYOB read that makes no progress for this long is abandoned. */
    stallMs: 3000,
    /** Resolves when the BYOB stream reading now has ended: the next one's turn. */
    lane: Promise.resolve(),
    /** Set once a BYOB read stalled in this page: default readers from then on. */
    stalled: false,
    /** BYOB reads abandoned by the watchdog (the bench and tests read it). */
    stalls: 0,
  };

  function useByob(readSize) {
    return !isNode() && !byobState.stalled && readSize >= BYOB_MIN_READ &&
      typeof ReadableStreamBYOBReader === 'function';
  }

  /** Waits for the BYOB lane; resolves to the function that hands it on (idempotent). */
  function takeByobLane() {
    var handOn;
    var mine = new Promise(function (resolve) {
      handOn = resolve;
    });
    var turn = byobState.lane;
    byobState.lane = turn.then(function () {
      return mine;
    });
    return turn.then(function () {
      return function () {
        handOn();
      };
    });
  }

  /**
   * Reads `blob` in order with a BYOB reader: `read(n)` resolves the next n bytes (fewer
   * only at the end) in a buffer that is read into again once the caller has called
   * `release` on it. Falls back to blobStreamReader if the stream is not a byte stream or a
   * read stalls.
   */
  function blobByobReader(blob) {
    var reader = null; // the BYOB reader, once the lane is ours
    var fallback = null; // the default reader taking over, if any
    var handOnLane = null;
    var delivered = 0; // bytes handed out by read()
    var ended = false;
    var free = []; // released ArrayBuffers, read into again
    var own = new WeakSet(); // buffers read() handed out whole
    var tail = takeByobLane().then(function (handOn) {
      handOnLane = handOn;
      if (ended) return finish();
      // Returns once the Blob is fully built: see (b) above.
      return blob.size === 0 ? null : blob.slice(blob.size - 1).arrayBuffer().then(function () {
        try {
          reader = blob.stream().getReader({ mode: 'byob' });
        } catch (_) {
          fallback = blobStreamReader(blob);
          finish();
        }
      }, function (err) {
        finish();
        throw err;
      });
    });

    /** Gives up the lane and this reader's buffers: the stream is done or abandoned. */
    function finish() {
      free = [];
      if (handOnLane) handOnLane();
    }

    function takeBuffer(n) {
      while (free.length) {
        var buf = free.pop();
        if (buf.byteLength >= n) return buf;
      }
      return new ArrayBuffer(n);
    }

    /** reader.read(view), or {stalled: true} if it makes no progress in byobState.stallMs. */
    function readOrStall(view) {
      var timer;
      var stall = new Promise(function (resolve) {
        timer = setTimeout(function () {
          resolve({ stalled: true });
        }, byobState.stallMs);
      });
      return Promise.race([reader.read(view), stall]).then(function (r) {
        clearTimeout(timer);
        return r;
      }, function (err) {
        clearTimeout(timer);
        throw err;
      });
    }

    function handOut(buffer, len) {
      own.add(buffer);
      return new Uint8Array(buffer, 0, len);
    }

    /** The next n bytes from the BYOB reader, or from the fallback after a stall. */
    function readNow(n) {
      if (fallback) return fallback.read(n);
      if (n === 0 || ended) return Promise.resolve(new Uint8Array(0));
      var buf = takeBuffer(n);
      var filled = 0;
      function step() {
        // The read transfers `buf`: what comes back is the same memory in a new ArrayBuffer.
        return readOrStall(new Uint8Array(buf, filled, n - filled)).then(function (r) {
          if (r.stalled) {
            byobState.stalled = true;
            byobState.stalls++;
            reader.cancel().catch(function () {});
            // Whatever the stalled read filled is lost with its buffer: read from `delivered`.
            fallback = blobStreamReader(blob.slice(delivered));
            finish();
            return fallback.read(n);
          }
          if (r.done) {
            ended = true;
            finish();
            return r.value ? handOut(r.value.buffer, filled) : new Uint8Array(0);
          }
          buf = r.value.buffer;
          filled += r.value.byteLength;
          return filled === n ? handOut(buf, n) : step();
        });
      }
      return step();
    }

    return {
      /** Calls may overlap: each read starts when the previous one has its bytes. */
      read: function (n) {
        var result = tail.then(function () {
          return readNow(n);
        });
        tail = result.then(function (bytes) {
          delivered += bytes.byteLength;
          if (!fallback && delivered >= blob.size && !ended) {
            ended = true;
            reader.cancel().catch(function () {});
            finish();
          }
        }, function () {
          ended = true;
          if (reader) reader.cancel().catch(function () {});
          finish();
        });
        return result;
      },
      /** Whether `bytes` (from read) has a buffer of its own, which may be transferred. */
      lends: function (bytes) {
        return own.has(bytes.buffer) && bytes.byteOffset === 0;
      },
      /** The caller no longer needs `bytes` (WebCrypto copies its input when called). */
      release: function (bytes) {
        if (!fallback && !ended && bytes.byteOffset === 0 && free.length < 8) free.push(bytes.buffer);
      },
      cancel: function () {
        ended = true;
        if (fallback) fallback.cancel();
        if (reader) reader.cancel().catch(function () {});
        finish();
      },
    };
  }

  /** For Blob-likes without stream(): one slice per read. */
  function blobSliceReader(blob, start, end) {
    var at = start;
    return {
      read: function (n) {
        var a = at;
        var b = Math.min(end, at + n);
        at = b;
        return blob.slice(a, b).arrayBuffer().then(function (buf) {
          return new Uint8Array(buf);
        });
      },
      cancel: function () {},
    };
  }

  // --- envelope plan (mirrors crates/zib-client/src/plan.rs) ---

  function chunkCount(fileSize, chunkSize) {
    return fileSize === 0 ? 1 : Math.ceil(fileSize / chunkSize);
  }

  function ciphertextLen(fileSize, chunkSize) {
    return HEADER_LEN + fileSize + TAG_LEN * chunkCount(fileSize, chunkSize);
  }

  function buildHeader(noncePrefix, chunkSize) {
    var header = new Uint8Array(HEADER_LEN);
    header.set(MAGIC, 0);
    header[4] = ENVELOPE_VERSION;
    header.set(noncePrefix, 5);
    new DataView(header.buffer).setUint32(12, chunkSize, false);
    return header;
  }

  function newPlan(keyBytes, noncePrefix, chunkSize, fileSize) {
    if (!(chunkSize >= 1 && chunkSize <= MAX_CHUNK_SIZE) || Math.floor(chunkSize) !== chunkSize) {
      throw invalidRegistration('envelope chunk_size ' + chunkSize + ' is outside 1..=' + MAX_CHUNK_SIZE);
    }
    if (chunkCount(fileSize, chunkSize) > MAX_CHUNKS) {
      throw new ZiBError('file too large for one envelope at this chunk size', { kind: 'config' });
    }
    return {
      keyBytes: keyBytes,
      noncePrefix: noncePrefix,
      chunkSize: chunkSize,
      fileSize: fileSize,
      header: buildHeader(noncePrefix, chunkSize),
      totalChunks: chunkCount(fileSize, chunkSize),
      ciphertextSize: ciphertextLen(fileSize, chunkSize),
    };
  }

  function planFromRegistration(reg) {
    if (!reg || typeof reg !== 'object') throw invalidRegistration('not an object');
    var env = reg.envelope || {};
    if (env.version !== ENVELOPE_VERSION) {
      throw invalidRegistration('envelope version ' + env.version +
        ' is not supported (this SDK speaks version ' + ENVELOPE_VERSION + ')');
    }
    var prefix = hexToBytes(env.nonce_prefix);
    if (!prefix || prefix.length !== NONCE_PREFIX_LEN) {
      throw invalidRegistration('envelope nonce_prefix must be ' + NONCE_PREFIX_LEN +
        ' bytes of hex, got ' + JSON.stringify(env.nonce_prefix));
    }
    var key = base64ToBytes(reg.encryption_key);
    if (!key || key.length !== 32) throw invalidRegistration('encryption_key is not a 32-byte base64 key');
    if (typeof reg.file_size !== 'number' || reg.file_size < 0 || Math.floor(reg.file_size) !== reg.file_size) {
      throw invalidRegistration('file_size ' + JSON.stringify(reg.file_size) + ' is not a byte count');
    }
    var plan = newPlan(key, prefix, env.chunk_size, reg.file_size);
    if (plan.ciphertextSize !== reg.ciphertext_size) {
      throw invalidRegistration('ciphertext_size ' + reg.ciphertext_size + ' does not match the envelope of a ' +
        reg.file_size + '-byte file (' + plan.ciphertextSize + ' bytes)');
    }
    return plan;
  }

  function wholePart(plan) {
    return {
      firstChunk: 0,
      chunkCount: plan.totalChunks,
      plaintextOffset: 0,
      plaintextLen: plan.fileSize,
      ciphertextLen: plan.ciphertextSize,
      withHeader: true,
    };
  }

  /** The part covering `len` plaintext bytes from `offset`, on chunk boundaries. */
  function planPart(plan, offset, len) {
    var S = plan.chunkSize;
    var end = offset + len;
    if (!(end <= plan.fileSize)) return 'reaches past the end of the ' + plan.fileSize + '-byte file';
    if (offset % S !== 0) return 'starts at plaintext byte ' + offset + ', not on a ' + S + '-byte chunk boundary';
    if (end !== plan.fileSize && end % S !== 0) {
      return 'ends at plaintext byte ' + end + ', neither a chunk boundary nor the end of the file';
    }
    var first = offset / S;
    var count;
    if (plan.fileSize === 0) {
      count = 1; // the empty file is one empty (final) chunk
    } else {
      if (len === 0) return 'is empty';
      count = Math.ceil(end / S) - first;
    }
    var withHeader = offset === 0;
    return {
      firstChunk: first,
      chunkCount: count,
      plaintextOffset: offset,
      plaintextLen: len,
      ciphertextLen: (withHeader ? HEADER_LEN : 0) + len + count * TAG_LEN,
      withHeader: withHeader,
    };
  }

  /** Checks the multipart targets tile the envelope exactly, in order, and plans each. */
  function planParts(plan, reg) {
    var targets = Array.isArray(reg.parts) ? reg.parts.slice() : [];
    if (targets.length === 0) throw invalidRegistration('multipart registration lists no parts');
    var plainSum = 0;
    var cipherSum = 0;
    targets.forEach(function (t) {
      plainSum += t.plaintext_size;
      cipherSum += t.ciphertext_size;
    });
    if (cipherSum !== reg.ciphertext_size) {
      throw invalidRegistration('part ciphertext sizes add up to ' + cipherSum + ', not ciphertext_size ' + reg.ciphertext_size);
    }
    if (plainSum !== reg.file_size) {
      throw invalidRegistration('part plaintext sizes add up to ' + plainSum + ', not file_size ' + reg.file_size);
    }
    targets.sort(function (a, b) {
      return a.part_number - b.part_number;
    });
    var nextPlain = 0;
    var nextCipher = 0;
    return targets.map(function (t, i) {
      var n = t.part_number;
      if (n !== i + 1) throw invalidRegistration('part numbers are not 1..=' + targets.length);
      if (typeof t.upload_url !== 'string') throw invalidRegistration('part ' + n + ' has no upload_url');
      if (t.plaintext_offset !== nextPlain || t.ciphertext_offset !== nextCipher) {
        throw invalidRegistration('part ' + n + ' starts at plaintext ' + t.plaintext_offset + ' / ciphertext ' +
          t.ciphertext_offset + ', expected ' + nextPlain + ' / ' + nextCipher);
      }
      var part = planPart(plan, t.plaintext_offset, t.plaintext_size);
      if (typeof part === 'string') throw invalidRegistration('part ' + n + ' ' + part);
      if (part.ciphertextLen !== t.ciphertext_size) {
        throw invalidRegistration('part ' + n + ' declares ' + t.ciphertext_size + ' ciphertext bytes, its chunks seal to ' +
          part.ciphertextLen);
      }
      nextPlain += t.plaintext_size;
      nextCipher += t.ciphertext_size;
      return { number: n, url: t.upload_url, part: part };
    });
  }

  // --- sealing ---

  function importKey(keyBytes) {
    return subtle().importKey('raw', keyBytes, { name: 'AES-GCM' }, false, ['encrypt']);
  }

  /**
   * Seals runs of chunks of the plan: `seal(first, count, plaintext, lender)` resolves to
   * the sealed chunks `first..first+count` (ciphertext followed by the 16-byte tag, one
   * ArrayBuffer each) of `plaintext`, their bytes back to back. When `lender` is given,
   * plaintext's buffer is the lender's own: it may be transferred to a sealing worker and
   * goes back through `lender.release` once WebCrypto has copied it.
   */
  function makeSealer(cryptoKey, plan) {
    var s = subtle();
    var job = {
      key: cryptoKey,
      noncePrefix: plan.noncePrefix,
      aad: plan.header,
      last: plan.totalChunks - 1,
      chunkSize: plan.chunkSize,
    };
    return function seal(first, count, plaintext, lender) {
      var worker = lender ? idleSealingWorker() : null;
      if (worker) {
        try {
          return worker.seal(job, first, count, plaintext, lender);
        } catch (_) {
          // Could not be posted (nothing was transferred): seal here, and from now on.
          workers.failed = true;
        }
      }
      var sealing = sealRun(s, job, first, count, plaintext);
      // WebCrypto copied the plaintext when called: its buffer can be read into again.
      if (lender) lender.release(plaintext);
      return sealing;
    };
  }

  // --- sealing workers (browsers) ---
  //
  // Chromium runs crypto.subtle.encrypt on the calling thread: in a page, AES-GCM and the
  // file reads took turns on one core. Sealing workers use the others: runs of chunks whose
  // buffer the SDK owns (BYOB reads of a Blob) are transferred to them, not copied, and the
  // page only reads. Until a worker has answered, and for good if none can start (a
  // Content-Security-Policy without blob: in worker-src, say), the page seals, as before.

  /**
   * Seals chunks `first..first+count` laid back to back in `plaintext`: one encrypt call
   * per chunk, each with its own nonce. The page and the workers both run it (the workers
   * get its source text), so it uses nothing from outside.
   */
  function sealRun(subtle, job, first, count, plaintext) {
    var sealed = [];
    for (var j = 0; j < count; j++) {
      var index = first + j;
      var nonce = new Uint8Array(12);
      nonce.set(job.noncePrefix, 0);
      new DataView(nonce.buffer).setUint32(job.noncePrefix.length, index, false);
      nonce[11] = index === job.last ? 1 : 0;
      var at = j * job.chunkSize;
      sealed.push(subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: job.aad, tagLength: 128 }, job.key,
        plaintext.subarray(at, Math.min(plaintext.byteLength, at + job.chunkSize))));
    }
    return Promise.all(sealed);
  }

  /**
   * What a sealing worker runs. It is sent as source text and called with sealRun's
   * source as its argument, so it keeps working if a bundler renames either function.
   */
  function sealingWorkerMain(sealRun) {
    self.onmessage = function (e) {
      var m = e.data;
      if (m.ping) return self.postMessage({ ready: true });
      sealRun(crypto.subtle, m.job, m.first, m.count, new Uint8Array(m.buf, 0, m.len)).then(function (out) {
        self.postMessage({ id: m.id, sealed: out, buf: m.buf }, out.concat([m.buf]));
      }, function (err) {
        self.postMessage({ id: m.id, error: (err && err.name) + ': ' + (err && err.message), buf: m.buf }, [m.buf]);
      });
    };
  }

  /** Sealing workers started per page: the page reads, they seal. */
  var SEALING_WORKERS = 2;
  /** Runs queued at one worker: enough to keep it busy while its answers travel back. */
  var WORKER_QUEUE = 3;
  var workers = {
    list: null,
    failed: isNode() || typeof Worker !== 'function' || typeof URL === 'undefined',
    /** Runs of chunks the workers sealed (the bench and tests read it). */
    runs: 0,
  };

  /** The answered worker with the fewest runs queued, if it has room; starts them first. */
  function idleSealingWorker() {
    if (!workers.failed && !workers.list) startSealingWorkers();
    if (workers.failed) return null;
    var best = null;
    for (var k = 0; k < workers.list.length; k++) {
      var w = workers.list[k];
      if (w.ready && w.pending.size < WORKER_QUEUE && (!best || w.pending.size < best.pending.size)) best = w;
    }
    return best;
  }

  function startSealingWorkers() {
    var url;
    workers.list = [];
    try {
      url = URL.createObjectURL(new Blob(['(' + sealingWorkerMain.toString() + ')(' + sealRun.toString() + ')'], {
        type: 'text/javascript',
      }));
      for (var k = 0; k < SEALING_WORKERS; k++) workers.list.push(sealingWorker(new Worker(url)));
    } catch (_) {
      workers.failed = true;
      workers.list.forEach(function (w) {
        w.fail('could not start');
      });
      workers.list = null;
    }
  }

  /** One worker's handle. Nothing goes to it before it answers: a worker that never loads would swallow the plaintext. */
  function sealingWorker(w) {
    var nextId = 0;
    var handle = {
      ready: false,
      pending: new Map(),
      /** Throws, having transferred nothing, if the run cannot be posted. */
      seal: function (job, first, count, plaintext, lender) {
        var id = nextId++;
        var len = plaintext.byteLength;
        w.postMessage({ id: id, job: job, first: first, count: count, buf: plaintext.buffer, len: len }, [plaintext.buffer]);
        workers.runs++;
        return new Promise(function (resolve, reject) {
          handle.pending.set(id, { resolve: resolve, reject: reject, lender: lender, len: len });
        });
      },
      fail: function (why) {
        // Never loaded (CSP) or broke: the page seals from now on; what it held fails.
        workers.failed = true;
        handle.ready = false;
        handle.pending.forEach(function (p) {
          p.reject(new ZiBError('a sealing worker failed: ' + why, { kind: 'config' }));
        });
        handle.pending.clear();
        w.terminate();
      },
    };
    w.onmessage = function (e) {
      var m = e.data;
      if (m.ready) {
        handle.ready = true;
        return;
      }
      var p = handle.pending.get(m.id);
      if (!p) return;
      handle.pending.delete(m.id);
      p.lender.release(new Uint8Array(m.buf, 0, p.len));
      if (m.error) p.reject(new ZiBError('encryption failed: ' + m.error, { kind: 'config' }));
      else p.resolve(m.sealed);
    };
    w.onerror = function (e) {
      if (e && e.preventDefault) e.preventDefault();
      handle.fail((e && e.message) || 'unknown error');
    };
    w.postMessage({ ping: true });
    return handle;
  }

  /**
   * The body of one part as a sequence of byte arrays: the header (first part only), then
   * every sealed chunk in order. Reads runs of chunks (up to READ_RUN_BYTES at once) and
   * keeps a window of them being read and sealed, so file reads and WebCrypto overlap.
   * `onSealed(plaintextBytes)` follows sealing.
   */
  function sealedPieces(source, plan, part, seal, onSealed) {
    var S = plan.chunkSize;
    var runChunks = Math.max(1, Math.min(MAX_CHUNKS_IN_FLIGHT, Math.floor(READ_RUN_BYTES / S)));
    var windowRuns = Math.max(2, Math.ceil(Math.min(MAX_CHUNKS_IN_FLIGHT, Math.floor(SEAL_WINDOW_BYTES / S)) / runChunks));
    var end = part.firstChunk + part.chunkCount;
    var nextChunk = part.firstChunk;
    var header = part.withHeader ? plan.header : null;
    var inflight = []; // promises of runs of sealed chunks, in order
    var ready = []; // sealed chunks of the run being handed out
    var reader = null;
    var cancelled = false;

    function startRun(first, count) {
      var want = Math.min(plan.fileSize, (first + count) * S) - first * S;
      var p = reader.read(want).then(function (bytes) {
        if (bytes.length !== want) {
          throw new ZiBError('the file ended ' + (want - bytes.length) + ' bytes early while it was read (changed on disk?)', {
            kind: 'config',
          });
        }
        return seal(first, count, bytes, reader.lends && reader.lends(bytes) ? reader : null);
      }).then(function (sealed) {
        if (onSealed) onSealed(want);
        return sealed;
      });
      p.catch(function () {}); // started ahead: a failure surfaces when it is awaited
      return p;
    }

    function fill() {
      if (cancelled) return;
      if (!reader && nextChunk < end) reader = source.open(nextChunk * S, Math.min(plan.fileSize, end * S), runChunks * S);
      while (inflight.length < windowRuns && nextChunk < end) {
        var count = Math.min(runChunks, end - nextChunk);
        inflight.push(startRun(nextChunk, count));
        nextChunk += count;
      }
    }

    return {
      /** Stops reading the file (after a failure or an abort). */
      cancel: function () {
        cancelled = true;
        if (reader) reader.cancel();
        inflight = [];
        ready = [];
      },
      /** Resolves to the next piece, or null once the part is complete. */
      next: function () {
        if (header) {
          var h = header;
          header = null;
          return Promise.resolve(h);
        }
        if (ready.length) return Promise.resolve(new Uint8Array(ready.shift()));
        fill();
        if (inflight.length === 0) return Promise.resolve(null);
        return inflight.shift().then(function (run) {
          fill();
          ready = run.slice(1);
          return new Uint8Array(run[0]);
        });
      },
    };
  }

  /** Seals a part into a Blob, batching pieces so no more than a batch sits in JS memory. */
  function sealToBlob(source, plan, part, seal, onSealed, signal) {
    var pieces = sealedPieces(source, plan, part, seal, onSealed);
    var batches = [];
    var batch = [];
    var batchBytes = 0;
    function step() {
      if (signal && signal.aborted) {
        pieces.cancel();
        return Promise.reject(aborted(signal));
      }
      return pieces.next().then(function (piece) {
        if (piece === null) {
          if (batch.length) batches.push(new Blob(batch));
          return new Blob(batches, { type: 'application/octet-stream' });
        }
        batch.push(piece);
        batchBytes += piece.byteLength;
        if (batchBytes >= BLOB_BATCH_BYTES) {
          batches.push(new Blob(batch));
          batch = [];
          batchBytes = 0;
        }
        return step();
      });
    }
    return step().catch(function (err) {
      pieces.cancel();
      throw err;
    });
  }

  /** A ReadableStream of the sealed part, for fetch with `duplex: 'half'` (Node). */
  function sealToStream(source, plan, part, seal, onSealed, onPulled) {
    var pieces = sealedPieces(source, plan, part, seal, onSealed);
    return new ReadableStream({
      pull: function (controller) {
        return pieces.next().then(function (piece) {
          if (piece === null) {
            controller.close();
          } else {
            controller.enqueue(piece);
            if (onPulled) onPulled(piece.byteLength);
          }
        });
      },
      cancel: function () {
        pieces.cancel();
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Seals `data` into a whole envelope, with no upload: what the shared test vectors check.
   * params: key and noncePrefix (hex strings or Uint8Arrays), chunkSize (default 256 KiB),
   * onPiece (optional): receives the envelope piece by piece instead of one Uint8Array, so
   * memory stays flat; the promise then resolves to the envelope length.
   */
  function sealEnvelope(data, params) {
    var key = params.key instanceof Uint8Array ? params.key : hexToBytes(params.key);
    var prefix = params.noncePrefix instanceof Uint8Array ? params.noncePrefix : hexToBytes(params.noncePrefix);
    if (!key || key.length !== 32) return Promise.reject(new ZiBError('key must be 32 bytes', { kind: 'config' }));
    if (!prefix || prefix.length !== NONCE_PREFIX_LEN) {
      return Promise.reject(new ZiBError('noncePrefix must be 7 bytes', { kind: 'config' }));
    }
    var source;
    try {
      source = toSource(data);
    } catch (e) {
      return Promise.reject(e);
    }
    var plan = newPlan(key, prefix, params.chunkSize || 262144, source.size);
    return importKey(key).then(function (cryptoKey) {
      var pieces = sealedPieces(source, plan, wholePart(plan), makeSealer(cryptoKey, plan));
      var onPiece = typeof params.onPiece === 'function' ? params.onPiece : null;
      var out = onPiece ? null : new Uint8Array(plan.ciphertextSize);
      var at = 0;
      function step() {
        return pieces.next().then(function (piece) {
          if (piece === null) return onPiece ? at : out;
          if (onPiece) onPiece(piece);
          else out.set(piece, at);
          at += piece.byteLength;
          return step();
        });
      }
      return step().catch(function (err) {
        pieces.cancel();
        throw err;
      });
    });
  }

  // --- progress ---

  /** Turns byte counts from every part in flight into 0-100 integers, monotonic per stage. */
  function Tracker(onProgress, fileSize, ciphertextSize) {
    var last = { encrypting: -1, uploading: -1, completing: -1 };
    var encrypted = 0;
    var uploadedByPart = new Map();
    function emit(stage, done, total) {
      if (typeof onProgress !== 'function') return;
      var pct = total <= 0 ? 100 : Math.floor((Math.min(done, total) * 100) / total);
      if (pct <= last[stage]) return;
      last[stage] = pct;
      try {
        onProgress({ stage: stage, progress: pct });
      } catch (e) {
        if (typeof console !== 'undefined') console.error('zib-sdk: onProgress threw', e);
      }
    }
    this.sealed = function (plainBytes) {
      encrypted += plainBytes;
      emit('encrypting', encrypted, fileSize);
    };
    this.encryptingDone = function () {
      emit('encrypting', fileSize, fileSize);
    };
    /** `sent` is the attempt's running total for the part; a retry starts it over. */
    this.uploaded = function (partKey, sent) {
      uploadedByPart.set(partKey, sent);
      var sum = 0;
      uploadedByPart.forEach(function (v) {
        sum += v;
      });
      emit('uploading', sum, ciphertextSize);
      if (sum >= ciphertextSize) emit('completing', 0, 1);
    };
    this.start = function (stage) {
      emit(stage, 0, 1);
    };
    this.completing = function () {
      emit('uploading', 1, 1);
      emit('completing', 0, 1);
    };
    this.done = function () {
      emit('encrypting', 1, 1);
      emit('uploading', 1, 1);
      emit('completing', 1, 1);
    };
  }

  // --- transports ---

  /**
   * One browser request through XMLHttpRequest: the only browser API that reports upload
   * progress. Resolves {status, text, sent}; rejects only for network failures and aborts.
   */
  function xhrRequest(method, url, body, onSent, signal) {
    return new Promise(function (resolve, reject) {
      if (signal && signal.aborted) return reject(aborted(signal));
      var xhr = new XMLHttpRequest();
      var sent = 0;
      var onAbort = function () {
        xhr.abort();
      };
      var cleanup = function () {
        if (signal) signal.removeEventListener('abort', onAbort);
      };
      xhr.open(method, url, true);
      if (body) xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.upload.onprogress = function (e) {
        sent = e.loaded;
        if (onSent) onSent(e.loaded);
      };
      xhr.onload = function () {
        cleanup();
        resolve({ status: xhr.status, text: xhr.responseText, sent: sent });
      };
      xhr.onerror = function () {
        cleanup();
        var err = new Error('network error (connection refused, reset, or blocked by CORS)');
        err.sent = sent;
        reject(err);
      };
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = function () {
        cleanup();
        reject(aborted(signal));
      };
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
      xhr.send(body || null);
    });
  }

  /** One request through fetch (Node, or a browser without XHR); same contract as xhrRequest. */
  function fetchRequest(method, url, body, length, signal, counter) {
    if (signal && signal.aborted) return Promise.reject(aborted(signal));
    var init = { method: method, signal: signal, headers: {} };
    if (body) {
      init.body = body;
      init.headers['content-type'] = 'application/octet-stream';
      init.headers['content-length'] = String(length);
      if (typeof body.getReader === 'function') init.duplex = 'half';
    } else if (method === 'POST') {
      init.headers['content-length'] = '0';
    }
    return fetch(url, init).then(
      function (resp) {
        return resp.text().then(function (text) {
          return { status: resp.status, text: text, sent: counter ? counter.sent : 0 };
        });
      },
      function (e) {
        if (signal && signal.aborted) throw aborted(signal);
        var err = new Error(rootCause(e));
        err.sent = counter ? counter.sent : 0;
        throw err;
      }
    );
  }

  // --- uploadDirect ---

  function checkNotExpired(reg) {
    var at = Date.parse(reg.expires_at);
    if (typeof reg.expires_at !== 'string' || isNaN(at)) {
      throw invalidRegistration('expires_at ' + JSON.stringify(reg.expires_at) + ' is not an RFC 3339 time');
    }
    if (Date.now() >= at) {
      throw new ZiBError('upload registration expired at ' + reg.expires_at + ' (initiate a new upload)', {
        kind: 'expired',
      });
    }
  }

  /**
   * Encrypts `file` with envelope v1 and uploads it as `registration` says.
   * options: onProgress({stage, progress}), signal (AbortSignal), concurrency (parts in
   * flight, default 4), retries (extra attempts per part, default 3), resume (ask the node
   * which parts it already holds and send only the others: for a registration used
   * before, e.g. by a page that was reloaded), resumeWithinMs (after a network loss in
   * the middle of the upload, keep resuming for this long; default 60000, 0 disables).
   * Resolves {file_id, cdn_url}. Rejects with a ZiBError; `kind: 'outcome_unknown'` when
   * the bytes were committed but the end was not seen.
   */
  function uploadDirect(file, registration, options) {
    return Promise.resolve().then(function () {
      return uploadDirectInner(file, registration, options || {});
    });
  }

  /** The URL listing what a node holds of an upload: beside the complete (or single
   * upload) URL, with the same token. */
  function partsUrl(reg) {
    var target = reg.type === 'multipart' ? reg.complete_url : reg.upload_url;
    if (typeof target !== 'string') throw invalidRegistration('no upload URL');
    var q = target.indexOf('?');
    var base = q < 0 ? target : target.slice(0, q);
    var query = q < 0 ? '' : target.slice(q + 1);
    base = base.replace(/\/complete$/, '');
    return base + '/parts?' + query;
  }

  /**
   * GET {node}/v1/upload/{blob}/parts: what the node already holds of this registration's
   * upload, as {upload_id, state: receiving|stored|distributed, parts: [{part_number, size}]}.
   * Needs only the registration; spends nothing.
   */
  function uploadedParts(registration, options) {
    var signal = options && options.signal;
    return Promise.resolve().then(function () {
      var url = partsUrl(registration);
      return fetch(url, { signal: signal }).then(function (resp) {
        return resp.text().then(function (text) {
          if (!resp.ok) throw errorFromAnswer('node', resp.status, text, 'listing held parts');
          return JSON.parse(text);
        });
      }, function (e) {
        if (signal && signal.aborted) throw aborted(signal);
        throw unreachable('node', url, rootCause(e) + ' (listing held parts)', e);
      });
    });
  }

  function uploadDirectInner(file, reg, opts) {
    var signal = opts.signal;
    if (signal && signal.aborted) throw aborted(signal);
    if (!reg || typeof reg !== 'object') throw invalidRegistration('not an object (pass what /v1/api/upload/initiate returned)');
    checkNotExpired(reg);
    var plan = planFromRegistration(reg);
    var source = toSource(file);
    if (source.size !== reg.file_size) {
      throw new ZiBError('the file is ' + source.size + ' bytes but the registration is for ' + reg.file_size + ' bytes', {
        kind: 'registration',
      });
    }
    if (reg.type !== 'single' && reg.type !== 'multipart') {
      throw invalidRegistration('type ' + JSON.stringify(reg.type) + ' is neither single nor multipart');
    }
    if (reg.type === 'single' && typeof reg.upload_url !== 'string') throw invalidRegistration('single upload without upload_url');
    if (reg.type === 'multipart' && typeof reg.complete_url !== 'string') {
      throw invalidRegistration('multipart upload without complete_url');
    }
    var parts = reg.type === 'multipart' ? planParts(plan, reg) : null;
    var retries = opts.retries === undefined ? DEFAULT_RETRIES : Math.max(0, opts.retries | 0);
    var concurrency = Math.max(1, (opts.concurrency | 0) || DEFAULT_CONCURRENCY);
    var resumeWithin = opts.resumeWithinMs === undefined ? DEFAULT_RESUME_WITHIN_MS : Math.max(0, opts.resumeWithinMs | 0);
    var useXhr = opts.transport ? opts.transport === 'xhr' : typeof XMLHttpRequest === 'function';
    var tracker = new Tracker(opts.onProgress, plan.fileSize, plan.ciphertextSize);
    var result = { file_id: reg.file_id, cdn_url: reg.cdn_url };
    // Facts gathered across rounds: whether the node was ever reached (a network loss,
    // not a wrong URL), and whether it may have committed the bytes.
    var seen = { reached: false, committed: false };

    return importKey(plan.keyBytes).then(function (cryptoKey) {
      var seal = makeSealer(cryptoKey, plan);
      tracker.start('encrypting');
      var onSealed = function (n) {
        tracker.sealed(n);
      };

      /** One pass: (when resuming) ask what the node holds, send the rest, complete. */
      function round(resume) {
        // One signal for every request of this round: the caller's abort, or a part that
        // failed for good, stops the parts still in flight.
        var stop = new AbortController();
        if (signal) {
          if (signal.aborted) return Promise.reject(aborted(signal));
          signal.addEventListener('abort', function () {
            stop.abort(signal.reason);
          }, { once: true });
        }
        var ctx = {
          source: source, plan: plan, seal: seal, tracker: tracker, signal: stop.signal,
          useXhr: useXhr, onSealed: onSealed, retries: retries, seen: seen, resumed: resume,
        };
        var held = resume ? uploadedParts(reg, { signal: signal }).then(function (h) {
          seen.reached = true;
          return h;
        }, function (err) {
          // Spent with nothing left to list: completed before (the node may have dropped
          // its full copy since), or completed and deleted.
          if (err.status === 409 && err.code === 'token_used') throw outcomeUnknown(reg, err);
          throw err;
        }) : Promise.resolve(null);
        return held.then(function (h) {
          if (h && h.state === 'distributed') return;
          if (reg.type === 'single') {
            if (h && h.state === 'stored') {
              seen.committed = true;
              throw new ZiBError('the node holds the whole upload and is still distributing it', { kind: 'http', status: 503 });
            }
            return putPart(ctx, reg.upload_url, wholePart(plan), 'single', null, false);
          }
          var todo = parts;
          if (h) {
            todo = parts.filter(function (p) {
              var have = h.state === 'stored' || (h.parts || []).some(function (x) {
                return x.part_number === p.number;
              });
              if (have) ctx.tracker.uploaded(p.number, p.part.ciphertextLen);
              return !have;
            });
          }
          return runPool(todo, concurrency, stop.signal, function (p) {
            return putPart(ctx, p.url, p.part, p.number, 'part ' + p.number, true).then(function () {
              seen.reached = true;
            });
          }).then(null, function (err) {
            stop.abort(err);
            throw err;
          }).then(function () {
            tracker.encryptingDone();
            tracker.completing();
            return completeUpload(ctx, reg.complete_url);
          });
        });
      }

      var deadline = null;
      function go(resume) {
        return round(resume).then(function () {
          tracker.done();
          return result;
        }, function (err) {
          if (err instanceof ZiBError && (err.kind === 'aborted' || err.kind === 'outcome_unknown')) throw err;
          // In progress: the node is still draining an attempt whose connection was lost.
          var networkLoss = err.kind === 'unreachable' ||
            (err.kind === 'http' && (isTransientStatus(err.status) || err.code === 'in_progress'));
          if (networkLoss && seen.reached && resumeWithin > 0) {
            if (deadline === null) deadline = Date.now() + resumeWithin;
            if (Date.now() < deadline) {
              return sleep(RESUME_POLL_MS, signal).then(function () {
                return go(true);
              });
            }
          }
          if (seen.committed && (networkLoss || err.kind === 'already_used')) throw outcomeUnknown(reg, err);
          throw err;
        });
      }
      return go(!!opts.resume);
    });
  }

  /** Runs `work` over `items`, at most `limit` at once; the first failure stops the rest. */
  function runPool(items, limit, signal, work) {
    return new Promise(function (resolve, reject) {
      var next = 0;
      var running = 0;
      var failed = false;
      function launch() {
        if (failed) return;
        if (next >= items.length && running === 0) return resolve();
        while (running < limit && next < items.length) {
          var item = items[next++];
          running++;
          work(item).then(
            function () {
              running--;
              launch();
            },
            function (err) {
              if (!failed) {
                failed = true;
                reject(err);
              }
            }
          );
        }
      }
      if (signal) {
        signal.addEventListener('abort', function () {
          if (!failed) {
            failed = true;
            reject(aborted(signal));
          }
        }, { once: true });
      }
      launch();
    });
  }

  /**
   * PUTs one part (or the whole envelope) with retries. Parts retry network failures and
   * 5xx/408/429 (a stored part answers 409 part_already_uploaded: that is success). A
   * single upload retries only when nothing reached the node: its token is single-use.
   */
  function putPart(ctx, url, part, partKey, label, isPart) {
    var sealedBlob = null; // browsers keep the sealed part for retries: no re-encryption
    var sealedThisAttempt = 0;
    var sealedCounted = 0;
    var attempt = 0;

    function countSealed(n) {
      // Node re-seals on retry: count every plaintext byte once.
      sealedThisAttempt += n;
      if (sealedThisAttempt > sealedCounted) {
        ctx.onSealed(sealedThisAttempt - sealedCounted);
        sealedCounted = sealedThisAttempt;
      }
    }

    function once() {
      if (ctx.signal && ctx.signal.aborted) return Promise.reject(aborted(ctx.signal));
      var request;
      if (ctx.useXhr) {
        var body = sealedBlob
          ? Promise.resolve(sealedBlob)
          : sealToBlob(ctx.source, ctx.plan, part, ctx.seal, countSealed, ctx.signal).then(function (blob) {
            sealedBlob = blob;
            return blob;
          });
        request = body.then(function (blob) {
          ctx.tracker.uploaded(partKey, 0);
          return xhrRequest('PUT', url, blob, function (sent) {
            ctx.tracker.uploaded(partKey, Math.min(sent, part.ciphertextLen));
          }, ctx.signal);
        });
      } else {
        var counter = { sent: 0 };
        sealedThisAttempt = 0;
        var stream = sealToStream(ctx.source, ctx.plan, part, ctx.seal, countSealed, function (n) {
          counter.sent += n;
          ctx.tracker.uploaded(partKey, counter.sent);
        });
        ctx.tracker.uploaded(partKey, 0);
        request = fetchRequest('PUT', url, stream, part.ciphertextLen, ctx.signal, counter);
      }
      return request.then(classify, function (e) {
        if (e instanceof ZiBError) throw e; // aborted, or a local sealing failure
        if (e && e.name === 'OperationError') {
          throw new ZiBError('encryption failed: ' + e.message, { kind: 'config', cause: e });
        }
        var err = unreachable('node', url, e.message + (label ? ' (' + label + ')' : ''), e);
        if (!e.sent) return { ok: false, err: err, retry: true };
        // The connection broke mid-body. A node refusing an upload answers before reading
        // it and closes, which fetch and XHR may report as a mere write error: ask again
        // with an empty body (which changes nothing on the node) to learn why.
        return probe(url, ctx).then(
          function (answer) {
            var why = errorFromAnswer('node', answer.status, answer.text, label);
            if (answer.status === 400 && why.code === 'size_mismatch') {
              // The token is still unspent: the failure was the connection's, retry.
              return { ok: false, err: err, retry: true };
            }
            return classify(answer);
          },
          function (e2) {
            if (e2 instanceof ZiBError) throw e2;
            return { ok: false, err: err, retry: isPart };
          }
        );
      });
    }

    /** A node answer as {ok} or {ok: false, err, retry}. */
    function classify(answer) {
      if (ctx.seen) ctx.seen.reached = true;
      if (answer.status >= 200 && answer.status < 300) return { ok: true };
      var err = errorFromAnswer('node', answer.status, answer.text, label);
      // A single upload erasure-coded as it arrived, whose shards could not be placed:
      // nothing was kept and the token is unspent, so the same PUT may go again.
      if (!isPart && answer.status === 503 && err.code === 'distribution_failed') {
        return { ok: false, err: err, retry: true };
      }
      // A single upload answered 5xx after its body: stored, distribution failed.
      if (!isPart && answer.status >= 500 && ctx.seen) ctx.seen.committed = true;
      if (isPart && answer.status === 409 && err.code === PART_ALREADY_UPLOADED) return { ok: true };
      var transient = isTransientStatus(answer.status) || (answer.status === 409 && err.code === 'in_progress');
      // A single upload's token is spent once the node has the body: only parts retry 5xx.
      return { ok: false, err: err, retry: isPart && transient };
    }

    function loop() {
      return once().then(function (r) {
        if (r.ok) {
          ctx.tracker.uploaded(partKey, part.ciphertextLen);
          return;
        }
        if (!r.retry || attempt >= ctx.retries) throw r.err;
        var delay = retryDelay(attempt);
        attempt++;
        ctx.tracker.uploaded(partKey, 0);
        return sleep(delay, ctx.signal).then(loop);
      });
    }
    return loop();
  }

  /** An empty PUT to an upload URL: the node checks the token and answers before it
   * would need any byte, so the answer says whether the token is expired, spent, or fine. */
  function probe(url, ctx) {
    return ctx.useXhr
      ? xhrRequest('PUT', url, new Blob([]), null, ctx.signal)
      : fetchRequest('PUT', url, new Uint8Array(0), 0, ctx.signal, null);
  }

  /** POST complete_url; a network failure is retried (a completion that did happen
   * answers upload_already_completed, which is success). Any attempt that may have reached
   * the node marks the bytes as possibly committed. */
  function completeUpload(ctx, url) {
    var attempt = 0;
    function loop() {
      var req = ctx.useXhr
        ? xhrRequest('POST', url, null, null, ctx.signal)
        : fetchRequest('POST', url, null, 0, ctx.signal, null);
      return req.then(
        function (answer) {
          if (answer.status >= 200 && answer.status < 300) return;
          var err = errorFromAnswer('node', answer.status, answer.text, 'complete');
          // Resuming (or retrying a completion whose answer was lost): done before. A plain
          // replay of a used registration stays a refusal.
          if (answer.status === 409 && err.code === 'upload_already_completed' && (ctx.resumed || attempt > 0)) return;
          if (isTransientStatus(answer.status) || (answer.status === 409 && err.code === 'token_used')) {
            ctx.seen.committed = true;
          }
          throw err;
        },
        function (e) {
          if (e instanceof ZiBError) throw e;
          // A refused connection never reached the node; anything else may have.
          if (!/ECONNREFUSED/.test(e.message)) ctx.seen.committed = true;
          var err = unreachable('node', url, e.message + ' (complete)', e);
          if (attempt >= ctx.retries) throw err;
          var delay = retryDelay(attempt);
          attempt++;
          return sleep(delay, ctx.signal).then(loop);
        }
      );
    }
    return loop();
  }

  // --- account-level operations (server side: they carry the tenant secret) ---

  function envApiUrl() {
    if (isNode() && process.env && process.env.ZIB_API_URL) return process.env.ZIB_API_URL;
    return null;
  }

  function trimSlash(url) {
    return String(url).replace(/\/+$/, '');
  }

  function encodePath(segments) {
    return segments.map(function (s) {
      return encodeURIComponent(String(s));
    }).join('/');
  }

  class ZiBStorage {
    /**
     * options: accessKey, secretKey (required), apiUrl (default ZIB_API_URL in Node, else
     * http://127.0.0.1:7070), cdnBase (default apiUrl: the server also serves the CDN).
     */
    constructor(options) {
      var o = options || {};
      if (!o.accessKey || !o.secretKey) {
        throw new ZiBError('new ZiBStorage needs { accessKey, secretKey } (tenant credentials: server side only)', {
          kind: 'config',
        });
      }
      this.apiUrl = trimSlash(o.apiUrl || envApiUrl() || DEFAULT_API_URL);
      this.cdnBase = trimSlash(o.cdnBase || this.apiUrl);
      // Kept off enumerable properties so logging the instance does not print the secret.
      Object.defineProperty(this, '_authorization', {
        value: 'Bearer ' + o.accessKey + ':' + o.secretKey,
        enumerable: false,
      });
    }

    /** One authenticated API call; JSON answers are parsed, others returned as text. */
    _call(method, path, body, expect) {
      var url = this.apiUrl + path;
      var init = { method: method, headers: { Authorization: this._authorization } };
      if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      return fetch(url, init).then(
        function (resp) {
          return resp.text().then(function (text) {
            if (!resp.ok) throw errorFromAnswer('ZiB API', resp.status, text, null);
            if (expect === 'text') return text;
            if (expect === 'void') return undefined;
            if (text.trim() === '') return null;
            try {
              return JSON.parse(text);
            } catch (_) {
              throw new ZiBError('ZiB API answered ' + method + ' ' + path + ' with a body that is not JSON', {
                kind: 'http', status: resp.status, origin: 'ZiB API',
              });
            }
          });
        },
        function (e) {
          throw unreachable('ZiB API', url, rootCause(e), e);
        }
      );
    }

    /** POST /v1/api/upload/initiate: the registration to hand to uploadDirect. */
    initiateUpload(params) {
      var p = params || {};
      var body = { bucket: p.bucket, key: p.key, file_size: p.fileSize, content_type: p.contentType };
      if (p.pipeline !== undefined) body.pipeline = p.pipeline;
      return this._call('POST', '/v1/api/upload/initiate', body, 'json');
    }

    /** GET /s3/ — S3 ListAllMyBuckets XML. */
    listBuckets() {
      return this._call('GET', '/s3/', undefined, 'text');
    }

    /** GET /s3/{bucket} — S3 ListObjects XML. */
    listObjects(bucket) {
      return this._call('GET', '/s3/' + encodeURIComponent(bucket), undefined, 'text');
    }

    /** DELETE /v1/api/storage/{bucket}/{key} — the object and all of its fragments. */
    deleteObject(bucket, key) {
      var path = '/v1/api/storage/' + encodeURIComponent(bucket) + '/' + encodePath(String(key).split('/'));
      return this._call('DELETE', path, undefined, 'void');
    }

    /**
     * POST /v1/api/encoding/request {object_key: fileId, ...opts} — HLS encoding. `opts`
     * go into the body as they are: `force`, `webhook_url` / `webhook_secret`,
     * `transcription`, `vision`, `thumbnails` (`false`, or `{poster: {at: '5s'|'10%'},
     * sprite: {interval, width}}`), `aspect_variants: ['9:16']`, and the backfill
     * `aspect_variants_only: ['9:16']` (answers `{status: 'queued', mode:
     * 'aspect_variants_only', parent_encoding_job_id, child_encoding_job_ids}`).
     */
    startEncoding(fileId, opts) {
      var body = Object.assign({}, opts || {}, { object_key: fileId });
      return this._call('POST', '/v1/api/encoding/request', body, 'json');
    }

    /** GET /v1/api/encoding/jobs/{jobId}. */
    getEncodingStatus(jobId) {
      return this._call('GET', '/v1/api/encoding/jobs/' + encodeURIComponent(jobId), undefined, 'json');
    }

    /** `${cdnBase}/objects/${fileId}`: public, no credential. */
    getCdnUrl(fileId) {
      return this.cdnBase + '/objects/' + encodeURIComponent(fileId);
    }

    /**
     * POST /v1/api/compute/transcription {file_id, tier} — a standalone transcription
     * of a stored video into SRT and WebVTT (the WebVTT becomes the HLS subtitle track).
     * `tier`: `'fastest'` | `'recommended'` (the server's default when omitted) |
     * `'accurate'`. Resolves to `{job_id, kind, tier, file_id, status, message}`
     * (`message: 'already_queued'` when a run of the same file and tier is in flight).
     * Rejects with a ZiBError whose `status` is 400 (unknown tier, naming the field),
     * 404 (no such file of yours) or 503 (no online node runs that tier).
     */
    submitTranscription(fileId, tier) {
      var body = { file_id: fileId };
      if (tier !== undefined && tier !== null) body.tier = tier;
      return this._call('POST', '/v1/api/compute/transcription', body, 'json');
    }

    /**
     * POST /v1/api/compute/vision {file_id, tier} — a standalone vision analysis of a
     * stored video into a ZibSidecar JSON (docs/sidecar.md). `tier`: `'standard'` (the
     * default when omitted) | `'hq'`. Resolves and rejects as submitTranscription.
     */
    submitVisionAI(fileId, tier) {
      var body = { file_id: fileId };
      if (tier !== undefined && tier !== null) body.tier = tier;
      return this._call('POST', '/v1/api/compute/vision', body, 'json');
    }

    /**
     * GET /v1/api/compute/jobs/{jobId} — `{job_id, kind, tier, file_id, status:
     * 'queued'|'processing'|'complete'|'failed', progress (0–100), detail,
     * encoding_job_id, srt_file_id, vtt_file_id, sidecar_file_id, srt_url, vtt_url,
     * sidecar_url, language, error_message, retry_count, created_at, started_at,
     * completed_at}`. Another tenant's job rejects with 404, like a missing one.
     */
    getComputeStatus(jobId) {
      return this._call('GET', '/v1/api/compute/jobs/' + encodeURIComponent(jobId), undefined, 'json');
    }

    /** The same as the static method, for callers holding an instance. */
    uploadDirect(file, registration, options) {
      return uploadDirect(file, registration, options);
    }

    /** DELETE /v1/api/file/{fileId}: a file, or an upload still pending (abandoned:
     * the node's bytes are freed at once). */
    deleteFile(fileId) {
      return this._call('DELETE', '/v1/api/file/' + encodeURIComponent(fileId), undefined, 'json');
    }
  }

  ZiBStorage.uploadDirect = uploadDirect;
  ZiBStorage.uploadedParts = uploadedParts;
  ZiBStorage.sealEnvelope = sealEnvelope;
  ZiBStorage.ciphertextLength = ciphertextLen;
  ZiBStorage.ZiBError = ZiBError;
  ZiBStorage.version = SDK_VERSION;
  /** Not API: how BYOB reads and sealing workers fared in this page (for the SDK's tests and bench). */
  ZiBStorage._internals = { byob: byobState, workers: workers };
  return ZiBStorage;
});
