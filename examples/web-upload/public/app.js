// The browser half of the example: log in, ask our server for a registration, hand the
// file to ZiBStorage.uploadDirect, show progress and the result.
'use strict';

/** Every upload of this page, for people in DevTools (and the browser tests). */
window.zibUploads = [];

const $ = (id) => document.getElementById(id);

async function postJson(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

function showUploader(user) {
  $('who').textContent = user;
  $('login').classList.add('hidden');
  $('uploader').classList.remove('hidden');
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('login-error').textContent = '';
  try {
    const { user } = await postJson('/login', { user: $('user').value.trim() });
    showUploader(user);
  } catch (err) {
    $('login-error').textContent = err.message;
  }
});

fetch('/me').then((r) => (r.ok ? r.json() : null)).then((me) => me && showUploader(me.user));

function uploadRow(name) {
  const row = document.createElement('div');
  row.className = 'upload';
  row.innerHTML = '<div class="name"></div><progress max="100" value="0"></progress><div class="status">waiting</div>';
  row.querySelector('.name').textContent = name;
  $('uploads').prepend(row);
  return row;
}

/** Uploads one File or Blob; resolves {file_id, cdn_url}. */
async function uploadFile(file, name = file.name || 'blob') {
  const row = uploadRow(name);
  const record = { name, events: [], result: null, error: null };
  window.zibUploads.push(record);
  const bar = row.querySelector('progress');
  const status = row.querySelector('.status');
  try {
    const registration = await postJson('/api/upload-initiate', {
      fileName: name,
      fileSize: file.size,
      contentType: file.type || 'application/octet-stream',
    });
    const result = await ZiBStorage.uploadDirect(file, registration, {
      onProgress: ({ stage, progress }) => {
        record.events.push({ stage, progress });
        // One bar across the three stages: encrypting and uploading overlap for large
        // files, so the bar follows uploading once it has started.
        if (stage === 'encrypting' && !record.events.some((ev) => ev.stage !== 'encrypting')) {
          bar.value = progress * 0.1;
        } else if (stage === 'uploading') {
          bar.value = 10 + progress * 0.85;
        } else if (stage === 'completing') {
          bar.value = 95 + progress * 0.05;
        }
        status.textContent = `${stage} ${progress}%`;
      },
    });
    record.result = result;
    bar.value = 100;
    status.textContent = '';
    const link = document.createElement('a');
    link.href = result.cdn_url;
    link.textContent = result.cdn_url;
    link.target = '_blank';
    status.append('Done: ', link);
    if ((file.type || '').startsWith('image/')) {
      const img = document.createElement('img');
      img.alt = name;
      img.src = result.cdn_url;
      row.append(img);
    }
    return result;
  } catch (err) {
    record.error = err.message;
    status.innerHTML = '';
    const span = document.createElement('span');
    span.className = 'error';
    span.textContent = `Failed: ${err.message}`;
    status.append(span);
    throw err;
  } finally {
    record.done = true;
  }
}
window.uploadFile = uploadFile;

$('file').addEventListener('change', async (e) => {
  const files = Array.from(e.target.files);
  e.target.value = '';
  for (const file of files) {
    await uploadFile(file).catch(() => {});
  }
});
