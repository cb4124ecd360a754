// The reference ERP settings screen (contract §12). It calls only ca-connector's API, with the JWT
// kept in sessionStorage; it never puts the token in a URL it requests.
'use strict';

const $ = (id) => document.getElementById(id);
const STATES = {
  not_configured: 'Not set up', incomplete: 'Incomplete: values are missing', untested: 'Not tested yet',
  connected: 'Connected', failed: 'Failed',
};
const NAMES = {
  application_id: 'Application ID', shared_secret: 'Shared Secret', refresh_token: 'Refresh Token',
  profile_id: 'Profile ID', developer_key: 'Developer Key', password: 'SOAP Password',
  account_id: 'Account GUID', auth_method: 'Sign-in method',
};
const SECRETS = ['shared_secret', 'refresh_token', 'developer_key', 'password'];
const PLAIN = ['application_id', 'account_id', 'profile_id'];

// The codes a Connect outcome may carry (§4's taxonomy and invalid_state). The notice shows only
// these: the address is anyone's to write, so its text must not become the screen's words.
const CONNECT_CODES = ['incomplete_credentials', 'invalid_client', 'invalid_refresh_token',
  'invalid_soap_credentials', 'credentials_rejected', 'profile_not_authorized', 'access_denied',
  'rate_limited', 'upstream_unavailable', 'upstream_timeout', 'upstream_protocol_error', 'invalid_state'];

let token = null;
let company = null;
let etag = null;
let stream = null;
// The values as loaded, to tell what the form changes and has not saved.
let loaded = null;

// A `#token=` link signs in. One that would replace a signed-in session of another subject asks
// first (a link from someone else must not quietly swap whose session this is).
function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  const stored = sessionStorage.getItem('ca-token');
  if (!match) return Promise.resolve(stored);
  // The token leaves the address bar (and the history) at once.
  history.replaceState(null, '', location.pathname + location.search);
  const offered = decodeURIComponent(match[1]);
  const [was, now] = [claims(stored || '').sub, claims(offered).sub];
  if (!stored || stored === offered || was === now) {
    sessionStorage.setItem('ca-token', offered);
    return Promise.resolve(offered);
  }
  $('switch-text').textContent = `This link signs in as ${now || 'someone unnamed'}; you are signed in as ${was || 'someone unnamed'}.`;
  $('switch-account').hidden = false;
  return new Promise((resolve) => {
    const choose = (take) => {
      $('switch-account').hidden = true;
      if (take) sessionStorage.setItem('ca-token', offered);
      resolve(take ? offered : stored);
    };
    $('switch-take').onclick = () => choose(true);
    $('switch-keep').onclick = () => choose(false);
  });
}

function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch (e) {
    return {};
  }
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token}`, ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401) signOut(`Sign in again: ${(data && data.detail) || 'your sign-in has expired or is not valid.'}`);
  return { status: res.status, data, etag: res.headers.get('ETag') };
}

function notice(text, ok = false) {
  const el = $('notice');
  el.textContent = text;
  el.classList.toggle('ok', ok);
  el.hidden = !text;
}

function showState(state) {
  const el = $('state');
  el.textContent = `Connection: ${STATES[state] || state}`;
  el.className = `badge ${state}`;
}

function signOut(message) {
  sessionStorage.removeItem('ca-token');
  token = null;
  if (stream) stream.abort();
  $('settings').hidden = true;
  $('sign-in').hidden = false;
  $('signed-in').hidden = true;
  // Said on the sign-in box itself: the settings (and their notice) are hidden now.
  $('sign-in-reason').textContent = message || '';
  $('sign-in-reason').hidden = !message;
}

function clearFaults() {
  for (const name of Object.keys(NAMES)) {
    const input = $(name);
    if (!input) continue;
    input.removeAttribute('aria-invalid');
    const set = $(`${name}-set`);
    input.setAttribute('aria-describedby', set ? set.id : '');
  }
}

function markFaults(fields) {
  clearFaults();
  for (const name of fields || []) {
    const input = $(name);
    if (!input) continue;
    input.setAttribute('aria-invalid', 'true');
    // The message that explains the fault is read with the field.
    input.setAttribute('aria-describedby', `result-message ${input.getAttribute('aria-describedby') || ''}`.trim());
  }
}

function showMethod() {
  const method = $('auth-method').value;
  for (const row of document.querySelectorAll('[data-method]')) row.hidden = row.dataset.method !== method;
}

function fill(view) {
  loaded = view;
  $('auth-method').value = view ? view.auth_method : 'refresh_token';
  for (const name of PLAIN) $(name).value = view && view[name] != null ? view[name] : '';
  for (const name of SECRETS) {
    $(name).value = '';
    const s = view && view[name];
    $(`${name}-set`).textContent = s && s.set
      ? (s.last4 ? `set, ends in ${s.last4}; type a new value to replace it` : 'set; type a new value to replace it')
      : 'not set';
  }
  showMethod();
}

async function loadCredentials() {
  const res = await api('GET', `/api/v1/companies/${encodeURIComponent(company)}/credentials`);
  if (res.status === 200) { etag = res.etag; fill(res.data); }
  else if (res.status === 404) { etag = null; fill(null); }
  else notice(problemText(res.data));
}

async function loadStatus() {
  const res = await api('GET', `/api/v1/companies/${encodeURIComponent(company)}/connection`);
  if (res.status === 200) showState(res.data.state);
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : ''; }

function rows(table, items) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...items.map((cells) => {
    const tr = document.createElement('tr');
    for (const text of cells) { const td = document.createElement('td'); td.textContent = text; tr.append(td); }
    return tr;
  }));
}

async function loadLists() {
  const id = encodeURIComponent(company);
  const [history, audit] = await Promise.all([
    api('GET', `/api/v1/companies/${id}/connection/history?limit=10`),
    api('GET', `/api/v1/companies/${id}/audit?limit=10`),
  ]);
  if (history.status === 200) {
    rows('history', history.data.tests.map((t) => [when(t.started_at), t.triggered_by,
      t.outcome === 'connected' ? 'Connected' : `Failed: ${t.error ? t.error.message : ''}`]));
  }
  if (audit.status === 200) {
    rows('audit', audit.data.entries.map((e) => [when(e.at), e.actor,
      `${e.action.replace(/_/g, ' ')}${e.fields.length ? ': ' + e.fields.map((f) => NAMES[f] || f).join(', ') : ''}`]));
  }
}

function problemText(problem) {
  if (!problem) return 'The service did not answer. Try again in a moment.';
  if (problem.code === 'validation_failed' && problem.errors) {
    return problem.errors.map((e) => `${NAMES[e.field] || e.field}: ${e.message}`).join('. ');
  }
  return problem.detail || problem.title || 'Something went wrong.';
}

async function openCompany(id) {
  company = id;
  notice('');
  $('result').hidden = true;
  clearFaults();
  await Promise.all([loadCredentials(), loadStatus(), loadLists()]);
  follow();
}

async function save(event) {
  event.preventDefault();
  const patch = { auth_method: $('auth-method').value };
  for (const name of PLAIN) patch[name] = $(name).value.trim() || null;
  for (const name of SECRETS) if ($(name).value) patch[name] = $(name).value;
  const headers = etag ? { 'If-Match': etag } : {};
  // An earlier "Saved." must not stand for this save while it is under way.
  notice('Saving…', true);
  const res = await api('PATCH', `/api/v1/companies/${encodeURIComponent(company)}/credentials`, patch, headers);
  if (res.status === 200 || res.status === 201) {
    etag = res.etag;
    fill(res.data);
    notice(res.data.complete ? 'Saved.' : `Saved. Still needed: ${res.data.missing.map((f) => NAMES[f] || f).join(', ')}.`, true);
    $('reload').hidden = true;
    await Promise.all([loadStatus(), loadLists()]);
  } else if (res.status === 412) {
    notice('Someone else saved these settings after you opened them. Reload to see their values, then make your change again.');
    $('reload').hidden = false;
    $('reload').focus();
  } else {
    if (res.data && res.data.errors) markFaults(res.data.errors.map((e) => e.field));
    notice(problemText(res.data));
  }
}

// What the form holds that differs from the values as loaded; null when nothing does.
function unsavedValues() {
  const changes = {};
  const method = $('auth-method').value;
  if (method !== ((loaded && loaded.auth_method) || 'refresh_token')) changes.auth_method = method;
  for (const name of PLAIN) {
    const typed = $(name).value.trim();
    const was = loaded && loaded[name] != null ? String(loaded[name]) : '';
    if (typed !== was) changes[name] = typed === '' ? null : (name === 'profile_id' && /^\d+$/.test(typed) ? Number(typed) : typed);
  }
  for (const name of SECRETS) if ($(name).value) changes[name] = $(name).value;
  return Object.keys(changes).length ? changes : null;
}

async function test() {
  const button = $('test');
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = 'Testing…';
  try {
    // Values typed and not saved are what the admin means to test: they go as candidate values
    // (tested, not stored), and the result says so.
    const unsaved = unsavedValues();
    const res = await api('POST', `/api/v1/companies/${encodeURIComponent(company)}/connection/test`, unsaved || undefined);
    if (res.status !== 200) { notice(problemText(res.data)); return; }
    const r = res.data;
    $('result').hidden = false;
    $('result-message').textContent = (unsaved ? 'Tested the values on the form, which are not saved yet: ' : '') + (r.outcome === 'connected'
      ? `Connected. ChannelAdvisor accepted the credentials${r.profiles.length ? ` (profiles: ${r.profiles.map((p) => p.id).join(', ')})` : ''}.`
      : r.error.message);
    $('result-hint').textContent = r.error ? r.error.hint : '';
    $('result-checks').replaceChildren(...r.checks.map((c) => {
      const li = document.createElement('li');
      li.textContent = `${c.name.replace(/_/g, ' ')}: ${c.status}`;
      return li;
    }));
    markFaults(r.error ? r.error.fields : []);
    await Promise.all([loadStatus(), loadLists()]);
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = 'Test Connection';
  }
}

async function connect() {
  const back = `${location.origin}${location.pathname}?company=${encodeURIComponent(company)}`;
  const res = await api('POST', `/api/v1/companies/${encodeURIComponent(company)}/connect`, { return_to: back });
  if (res.status === 201) location.assign(res.data.authorize_url);
  else notice(problemText(res.data));
}

function connectOutcome() {
  const q = new URLSearchParams(location.search);
  const outcome = q.get('ca_connect');
  if (!outcome) return null;
  history.replaceState(null, '', location.pathname);
  const text = {
    connected: 'Connected to ChannelAdvisor: access was granted and Test Connection passed.',
    failed: `Connect to ChannelAdvisor did not finish${CONNECT_CODES.includes(q.get('code')) ? ` (${q.get('code')})` : ''}. Nothing was changed unless the test shows otherwise; try again.`,
    denied: 'Access was not granted on ChannelAdvisor\'s page. Nothing was changed.',
  }[outcome];
  return { company: q.get('company') || q.getAll('company')[0], text, ok: outcome === 'connected' };
}

// Live state: the events stream, read with fetch so the token travels in a header, not a URL.
async function follow() {
  if (stream) stream.abort();
  const controller = new AbortController();
  stream = controller;
  let last = null;
  while (!controller.signal.aborted && token) {
    try {
      const headers = { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' };
      if (last) headers['Last-Event-ID'] = last;
      const res = await fetch(`/api/v1/events?companies=${encodeURIComponent(company)}`, { headers, signal: controller.signal });
      if (!res.ok) return;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const field = (n) => (block.split('\n').find((l) => l.startsWith(`${n}: `)) || '').slice(n.length + 2);
          const type = field('event');
          if (!type) continue;
          if (field('id')) last = field('id');
          onEvent(type, field('data') ? JSON.parse(field('data')) : {});
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onEvent(type, event) {
  const data = event.data || {};
  if (type === 'reset') { openCompany(company); return; }
  if (data.company !== company) return;
  if (type === 'connection.status_changed') showState(data.state);
  if (type === 'credentials.updated' || type === 'credentials.deleted' || type === 'connection.tested') loadLists();
}

// The company chooser reads the list a page at a time (contract §3): a fleet of thousands of
// companies never loads whole. `q` and `state` narrow it; "More companies" reads the next page.
const PAGE = 50;
const chooser = { q: '', state: '', next: null, seq: 0 };

async function loadCompanies(append) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (chooser.q) params.set('q', chooser.q);
  if (chooser.state) params.set('state', chooser.state);
  if (append && chooser.next) params.set('after', chooser.next);
  const seq = ++chooser.seq;
  const res = await api('GET', `/api/v1/companies?${params}`);
  // A slower answer to an older search must not replace a newer one.
  if (seq !== chooser.seq || res.status !== 200 || !res.data) return null;
  const entries = res.data.companies || [];
  chooser.next = res.data.next;
  $('more-companies').hidden = !chooser.next;
  const select = $('company');
  const options = entries.map((e) => new Option(`${e.company} (${STATES[e.state] || e.state})`, e.company));
  if (append) select.append(...options); else select.replaceChildren(...options);
  // The open company stays chosen even when the search does not list it.
  if (company && ![...select.options].some((o) => o.value === company)) {
    select.prepend(new Option(company, company));
  }
  if (company) select.value = company;
  const counts = res.data.counts || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  $('only-failed-label').textContent = `Only failed connections (${counts.failed || 0})`;
  $('company-counts').textContent = `${total} ${chooser.q ? 'matching' : 'in all'}: ${counts.connected || 0} connected, ${counts.failed || 0} failed, ${counts.untested || 0} untested, ${(counts.incomplete || 0) + (counts.not_configured || 0)} not set up`;
  return entries;
}

let searching = null;
function onSearch() {
  clearTimeout(searching);
  searching = setTimeout(() => {
    const q = $('company-search').value.trim();
    if (q === chooser.q) return;
    chooser.q = q;
    loadCompanies(false);
  }, 250);
}

async function start() {
  token = await readToken();
  const outcome = connectOutcome();
  if (!token) { signOut(); return; }
  const c = claims(token);
  const named = (c.companies || []).filter((x) => x !== '*').sort();
  // The company to show first is known from the token: its values load while the list does.
  const first = outcome && named.includes(outcome.company) ? outcome.company : named[0];
  if (first) company = first;
  const early = first ? openCompany(first) : null;
  const entries = await loadCompanies(false);
  if (!token) return;
  $('sign-in').hidden = true;
  $('settings').hidden = false;
  $('signed-in').hidden = false;
  $('signed-in').textContent = `Signed in as ${c.sub || 'unknown'}`;
  if (!entries || !entries.length) { notice('This access token covers no company.'); return; }
  const every = (c.companies || []).includes('*');
  const covered = outcome && (every || named.includes(outcome.company));
  const wanted = covered ? outcome.company : (first || entries[0].company);
  $('company').value = wanted;
  await (wanted === first ? early : openCompany(wanted));
  // "Usable": the form holds the company's values (read by benches/settings_page.rs).
  performance.mark('ca-usable');
  if (outcome) notice(outcome.text, outcome.ok);
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem('ca-token', $('token-input').value.trim());
    $('token-input').value = '';
    $('sign-in-reason').hidden = true;
    notice('');
    start();
  });
  $('company').addEventListener('change', (e) => openCompany(e.target.value));
  for (const type of ['input', 'search', 'change']) $('company-search').addEventListener(type, onSearch);
  $('only-failed').addEventListener('change', (e) => { chooser.state = e.target.checked ? 'failed' : ''; loadCompanies(false); });
  $('more-companies').addEventListener('click', () => loadCompanies(true));
  $('auth-method').addEventListener('change', showMethod);
  $('credentials-form').addEventListener('submit', save);
  $('test').addEventListener('click', test);
  $('connect').addEventListener('click', connect);
  $('reload').addEventListener('click', async () => { $('reload').hidden = true; notice(''); await openCompany(company); });
  // A sign-in link opened in a tab already showing the page changes only the fragment: no reload.
  window.addEventListener('hashchange', () => { if (/token=/.test(location.hash)) start(); });
  start();
});
