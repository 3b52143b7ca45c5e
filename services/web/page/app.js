// The support page: find the customer, see the trail, replay and explain a
// decision. Routes live in the URL hash so back/forward and links work:
//   #/                         start
//   #/search/<text>?kind=K     resolve a search (K: auto, subject, prediction, trace),
//                              then replace itself with one of:
//   #/subject/<id>?model=&from=&to=
//   #/trace/<id>
//   #/prediction/<id>?subject=<id>
// Everything comes from /api/v1/ (api.js); what is shown follows the
// caller's methods from /api/v1/whoami.

import { ApiError, download, getJson, onUnauthenticated, seg, setToken, token } from './api.js';
import {
  el, modelText, outputText, parseTimeInput, positionText, shortDigest, signed, timeMillis,
  timeText, typedValue,
} from './format.js';
import { lineageList, renderLineage } from './lineage.js';

const M = {
  getPrediction: '/predlog.v1.PredictionLog/GetPrediction',
  listPredictions: '/predlog.v1.PredictionLog/ListPredictions',
  rerun: '/predlog.v1.Replay/Rerun',
  entityAt: '/predlog.v1.Replay/GetEntityAt',
  lineage: '/predlog.v1.Replay/GetLineage',
  listModels: '/predlog.v1.Registry/ListModels',
  exportTrail: '/predlog.v1.Audit/ExportTrail',
};
// The credit demo's (and the case file's) entity type for a subject.
const ENTITY_TYPE = 'customer';
const PAGE_SIZE = 50;
const CHANGE_PAGES = 20;  // at most 20 x 200 record changes per trail view

const $ = (id) => document.getElementById(id);
const VIEWS = ['signin-view', 'noread-view', 'home-view', 'notfound-view', 'subject-view', 'prediction-view'];

const state = {
  who: null,            // /api/v1/whoami
  models: null,         // ListModelsResponse.models, once
  prediction: null,     // the PredictionRecord on screen
  predictionCache: new Map(),  // id -> record found by a search, used once
  routeSerial: 0,       // a newer route makes older answers stale
  timeline: null,
};

function can(method) {
  const who = state.who;
  if (!who) return false;
  if (!who.accessControl) return true;
  return (who.methods || []).includes(method);
}

// ------------------------------------------------------------------ views

function showView(id, focus = true) {
  for (const v of VIEWS) $(v).hidden = v !== id;
  hideBanner();
  if (focus) {
    const heading = $(id).querySelector('h1');
    if (heading && document.activeElement !== $('search-input')) heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

function banner(text) {
  $('banner').textContent = text;
  $('banner').hidden = false;
}
function hideBanner() { $('banner').hidden = true; }

let loadingCount = 0;
function busy(on) {
  loadingCount = Math.max(0, loadingCount + (on ? 1 : -1));
  $('loading').hidden = loadingCount === 0;
  document.body.classList.toggle('is-loading', loadingCount > 0);
}

async function withBusy(promise) {
  busy(true);
  try { return await promise; } finally { busy(false); }
}

function errorText(e) {
  if (e instanceof ApiError) return e.status ? `${e.message} (${e.status})` : e.message;
  return e && e.message ? e.message : String(e);
}

function showError(node, e) {
  node.textContent = typeof e === 'string' ? e : errorText(e);
  node.hidden = false;
}

// --------------------------------------------------------------- sign-in

function renderWho() {
  const who = state.who;
  $('who').hidden = !who;
  if (!who) return;
  if (!who.accessControl) {
    $('who-text').textContent = 'No sign-in: this predlogd checks no identities (loopback)';
    $('sign-out').hidden = true;
  } else {
    const roles = (who.roles || []).join(', ') || 'no role';
    $('who-text').textContent = `Signed in as ${who.identity} (${roles})`;
    $('sign-out').hidden = false;
  }
}

function showSignIn(message) {
  state.who = null;
  renderWho();
  $('search-form').hidden = true;
  showView('signin-view', false);
  const error = $('signin-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('token-input').value = '';
  $('token-input').focus();
}

// Asks whoami; true when the caller may go on to the page.
async function loadWho() {
  let who;
  try {
    who = await withBusy(getJson('whoami'));
  } catch (e) {
    if (e instanceof ApiError && e.httpStatus === 401) {
      const had = !!token();
      setToken('');
      showSignIn(had ? `That token was not accepted: ${e.message}` : '');
      return false;
    }
    showView('home-view', false);
    banner(`predlogd could not say who you are: ${errorText(e)}`);
    // A retry without a reload (predlogd restarting, a network blip).
    $('banner').append(' ', el('button', {
      type: 'button', class: 'secondary', 'data-testid': 'retry-whoami',
    }, 'Retry'));
    $('banner').querySelector('[data-testid=retry-whoami]').addEventListener('click', async () => {
      hideBanner();
      if (await loadWho()) route();
    });
    return false;
  }
  if (who.accessControl && !who.authenticated) {
    const had = !!token();
    setToken('');
    showSignIn(had ? 'That token was not accepted: predlogd does not know it.' : '');
    return false;
  }
  state.who = who;
  renderWho();
  if (!can(M.getPrediction)) {
    $('search-form').hidden = true;
    const roles = (who.roles || []).join(', ') || 'none';
    $('noread-text').textContent =
      `${who.identity || 'This identity'} has the role ${roles}, which may not read predictions ` +
      '(reading, replaying and explaining them needs the role support). Ask for a support token to investigate a decision.';
    $('export-only-form').hidden = !can(M.exportTrail);
    showView('noread-view');
    return false;
  }
  $('search-form').hidden = false;
  return true;
}

onUnauthenticated((e) => {
  if (!state.who && !$('signin-view').hidden) return;
  setToken('');
  showSignIn(`Please sign in again: ${e.message}`);
});

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const value = $('token-input').value.trim();
  if (!value) return;
  setToken(value);
  $('signin-error').hidden = true;
  if (await loadWho()) route();
});

$('sign-out').addEventListener('click', () => {
  setToken('');
  state.models = null;
  showSignIn('Signed out.');
});

$('export-only-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const subject = $('export-only-subject').value.trim();
  if (subject) await downloadExport(subject, $('export-only-status'));
});

// ---------------------------------------------------------------- router

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  return { kind: parts[0] || '', id: parts.slice(1).join('/'), params: new URLSearchParams(query || '') };
}

function hashFor(kind, id, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const qs = q.toString();
  return `#/${kind}/${encodeURIComponent(id)}${qs ? '?' + qs : ''}`;
}

function go(hash, replace) {
  if (location.hash === hash) { route(); return; }
  if (replace) location.replace(hash); else location.hash = hash;
}

async function route() {
  if (!state.who) return;
  const serial = ++state.routeSerial;
  const { kind, id, params } = parseHash();
  try {
    if (kind === 'search' && id) {
      $('search-input').value = id;
      await resolveSearch(id, params.get('kind') || 'auto', serial);
    } else if (kind === 'subject' && id) {
      await showSubject(id, params, serial);
    } else if (kind === 'trace' && id) {
      await showTrace(id, serial);
    } else if (kind === 'prediction' && id) {
      await showPrediction(id, params.get('subject') || '', serial);
    } else {
      showView('home-view');
    }
  } catch (e) {
    if (serial !== state.routeSerial) return;
    if (e instanceof ApiError && e.httpStatus === 401) return;  // the sign-in form is up
    banner(errorText(e));
  }
}

// Only "#/..." is a route; "#main" (the skip link) moves focus, not the view.
window.addEventListener('hashchange', () => {
  if (location.hash === '' || location.hash.startsWith('#/')) route();
});

// ---------------------------------------------------------------- search

$('search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('search-input').value.trim();
  if (!text) { $('search-input').focus(); return; }
  go(hashFor('search', text, { kind: $('search-kind').value }));
});

document.addEventListener('keydown', (event) => {
  if (event.key === '/' && !event.ctrlKey && !event.metaKey && !event.altKey &&
      !['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName) && !$('search-form').hidden) {
    event.preventDefault();
    $('search-input').focus();
    $('search-input').select();
  }
});

// Tries the kinds in turn (a prediction id, then a customer with decisions,
// then a trace), or only the one asked for, and replaces the search in the
// history with what it found.
async function resolveSearch(text, kind, serial) {
  const tried = [];
  const stale = () => serial !== state.routeSerial;
  if (kind === 'auto' || kind === 'prediction') {
    try {
      const record = await withBusy(getJson(`predictions/${seg(text)}`));
      if (stale()) return;
      state.predictionCache.set(text, record);
      go(hashFor('prediction', text, {}), true);
      return;
    } catch (e) {
      if (!(e instanceof ApiError) || e.httpStatus !== 404) throw e;
      tried.push(e.message);
    }
  }
  if (kind === 'auto' || kind === 'subject') {
    const page = await withBusy(getJson('predictions', { subject_id: text, page_size: 1 }));
    if (stale()) return;
    if ((page.records || []).length) {
      go(hashFor('subject', text, {}), true);
      return;
    }
    tried.push(`no decisions about a customer "${text}"`);
  }
  if (kind === 'auto' || kind === 'trace') {
    try {
      const page = await withBusy(getJson('predictions', { trace_id: text, page_size: 1 }));
      if (stale()) return;
      if ((page.records || []).length) {
        go(hashFor('trace', text, {}), true);
        return;
      }
      tried.push(`no predictions in a trace "${text}"`);
    } catch (e) {
      // A predlogd without trace lookups says the parameter is unknown.
      if (!(e instanceof ApiError) || (e.httpStatus !== 400 && e.httpStatus !== 404) || kind === 'trace') throw e;
    }
  }
  if (stale()) return;
  $('notfound-text').textContent = `Nothing matches "${text}": ${tried.join('; ')}.`;
  showView('notfound-view');
}

// ------------------------------------------------------- customer / trace

function filtersFromParams(params) {
  // `size` (decisions per page, default 50) is kept in the URL too.
  const size = Math.min(1000, Math.max(1, Number(params.get('size')) || PAGE_SIZE));
  return { model: params.get('model') || '', from: params.get('from') || '', to: params.get('to') || '', size };
}

// Forgets the timeline on screen before another loads: a failed or refused
// load must not leave one customer's rows (and their export button) under
// another's name.
function resetTimeline() {
  state.timeline = null;
  $('timeline-body').replaceChildren();
  $('timeline-summary').textContent = '';
  $('load-more').hidden = true;
}

async function showSubject(subject, params, serial) {
  resetTimeline();
  const filters = filtersFromParams(params);
  $('subject-title').textContent = `Customer ${subject}`;
  $('search-input').value = subject;
  $('export-button').hidden = !can(M.exportTrail);
  $('export-status').textContent = '';
  $('filter-form').hidden = false;
  $('filter-model').value = '';
  $('filter-from').value = filters.from;
  $('filter-to').value = filters.to;
  $('filter-error').hidden = true;
  const from = parseTimeInput(filters.from, false);
  const to = parseTimeInput(filters.to, true);
  if (from.error || to.error) {
    showView('subject-view');
    showError($('filter-error'), from.error || to.error);
    return;
  }
  const query = { subject_id: subject, served_from: from.value, served_to: to.value };
  await loadTimeline({ kind: 'subject', id: subject, query, filters }, serial);
}

async function showTrace(trace, serial) {
  resetTimeline();
  $('subject-title').textContent = `Trace ${trace}`;
  $('search-input').value = trace;
  $('export-button').hidden = true;
  $('export-status').textContent = '';
  $('filter-form').hidden = true;
  await loadTimeline({ kind: 'trace', id: trace, query: { trace_id: trace }, filters: { model: '' } }, serial);
}

async function loadTimeline(spec, serial) {
  const [page, changes] = await withBusy(Promise.all([
    getJson('predictions', { ...spec.query, page_size: spec.filters.size || PAGE_SIZE }),
    spec.kind === 'subject' ? loadChanges(spec) : Promise.resolve({ list: [], note: '' }),
  ]));
  if (serial !== state.routeSerial) return;
  // A model chosen while this loaded is in the URL already (the filter's
  // change handler puts it there): keep it.
  if (spec.kind === 'subject') spec.filters.model = parseHash().params.get('model') || '';
  state.timeline = { ...spec, records: page.records || [], next: page.nextPageToken || '', changes };
  await fillModelFilter(spec.filters.model);
  renderTimeline();
  showView('subject-view');
}

// The customer record's changes (ListEntityChanges), every page up to a bound.
// A predlogd without that call answers 404: the timeline then shows decisions only.
async function loadChanges(spec) {
  // Asked even when whoami does not list the method: a predlogd whose role
  // table predates it lists it for no one. 403 and 404 are said plainly.
  const list = [];
  let pageToken = '';
  try {
    for (let i = 0; i < CHANGE_PAGES; ++i) {
      const page = await getJson(`entities/${seg(ENTITY_TYPE)}/${seg(spec.id)}/changes`, {
        from: spec.query.served_from, to: spec.query.served_to, page_size: 200, page_token: pageToken,
      });
      list.push(...(page.changes || []));
      pageToken = page.nextPageToken || '';
      if (!pageToken) break;
    }
  } catch (e) {
    if (e instanceof ApiError && e.httpStatus === 401) throw e;
    // A predlogd that predates ListEntityChanges has no such route: say so plainly.
    let why = errorText(e);
    if (e instanceof ApiError && e.httpStatus === 404 && /no API route/i.test(e.message)) why = 'this predlogd does not serve them (no ListEntityChanges)';
    if (e instanceof ApiError && e.httpStatus === 403) why = 'your role may not read them';
    return { list, unavailable: !list.length, note: `Customer-record changes are not shown: ${why}.` };
  }
  return { list, note: pageToken ? `Only the first ${list.length} record changes are shown.` : '' };
}

async function fillModelFilter(selected) {
  const select = $('filter-model');
  const seen = new Set();
  for (const r of state.timeline.records) seen.add(modelText(r.event.predictionLogged.model));
  for (const m of await registeredModels()) seen.add(modelText(m.registration.model));
  if (selected) seen.add(selected);
  select.replaceChildren(el('option', { value: '' }, 'every model'));
  for (const m of [...seen].sort()) select.append(el('option', { value: m }, m));
  select.value = selected || '';
}

async function registeredModels() {
  if (state.models) return state.models;
  if (!can(M.listModels)) return [];
  try {
    const response = await getJson('models');
    state.models = response.models || [];
  } catch (e) {
    if (e instanceof ApiError && e.httpStatus === 401) throw e;
    return [];
  }
  return state.models;
}

// Orders a decision and a record change: by log position when both are on
// one shard (the order predlog appended them in), else by time.
function timelineOrder(a, b) {
  if (a.position && b.position && a.position.shard === b.position.shard) {
    return Number(a.position.index) - Number(b.position.index);
  }
  return a.time - b.time;
}

function renderTimeline() {
  const t = state.timeline;
  const modelFilter = t.filters.model;
  const items = [];
  for (const r of t.records) {
    const p = r.event.predictionLogged;
    if (modelFilter && modelText(p.model) !== modelFilter) continue;
    items.push({ kind: 'decision', record: r, position: r.position, time: timeMillis(r.appendedAt || p.servedAt) });
  }
  // While later decisions are still unloaded, changes after the last loaded
  // one wait for them.
  const last = t.records[t.records.length - 1];
  for (const c of t.changes.list) {
    const item = { kind: 'change', change: c, position: c.position, time: timeMillis(c.appendedAt || (c.event && c.event.recordedAt)) };
    if (t.next && last) {
      const lastItem = { position: last.position, time: timeMillis(last.appendedAt || last.event.predictionLogged.servedAt) };
      if (timelineOrder(item, lastItem) > 0) continue;
    }
    items.push(item);
  }
  items.sort(timelineOrder);
  const body = $('timeline-body');
  body.replaceChildren();
  let deny = 0;
  let decisions = 0;
  let changes = 0;
  for (const item of items) {
    if (item.kind === 'decision') {
      ++decisions;
      const r = item.record;
      const p = r.event.predictionLogged;
      if ((p.output && p.output.label) === 'deny') ++deny;
      const label = (p.output && p.output.label) || '';
      const link = hashFor('prediction', p.predictionId, { subject: p.subjectId });
      body.append(el('tr', {
        class: `decision${label ? ' outcome-' + label.replace(/[^a-z0-9_-]/gi, '') : ''}`,
        'data-testid': 'timeline-row', 'data-prediction-id': p.predictionId,
      },
      el('td', { class: 'time' }, timeText(p.servedAt)),
      el('td', {}, el('a', { href: link }, p.predictionId), t.kind === 'trace' && p.subjectId ? ` · ${p.subjectId}` : ''),
      el('td', {}, modelText(p.model)),
      el('td', { class: 'output' }, outputCell(p.output)),
      el('td', {}, (p.context && p.context.arm) || ''),
      el('td', { class: 'mono' }, positionText(r.position))));
    } else {
      ++changes;
      const c = item.change;
      body.append(el('tr', { class: 'change', 'data-testid': 'change-row' },
        el('td', { class: 'time' }, timeText(c.appendedAt || (c.event && c.event.recordedAt))),
        el('td', {}, el('span', { class: 'change-tag' }, 'record changed')),
        el('td', { colspan: 3 }, changeText(c.event && c.event.entityChanged)),
        el('td', { class: 'mono' }, positionText(c.position))));
    }
  }
  if (!items.length) {
    body.append(el('tr', {}, el('td', { colspan: 6, class: 'empty' },
      modelFilter ? `No decision by ${modelFilter} among the ${t.records.length} loaded.` : 'No decisions in this range.')));
  }
  const parts = [`${decisions} decision${decisions === 1 ? '' : 's'}${t.next ? ' loaded' : ''}` +
    (decisions ? ` (${deny} denied)` : '')];
  if (t.kind === 'subject' && !t.changes.unavailable) parts.push(`${changes} record change${changes === 1 ? '' : 's'}`);
  if (modelFilter) parts.push(`by ${modelFilter} only`);
  $('timeline-summary').textContent = parts.join(', ') + '.' + (t.changes.note ? ' ' + t.changes.note : '');
  $('load-more').hidden = !t.next;
  $('paging-status').textContent = t.next ? '' : 'End of the trail.';
}

function outputCell(output) {
  const label = output && output.label;
  const scores = outputText({ ...output, label: '' });
  if (!label) return scores;
  return [scores, ' ', el('span', { class: `label label-${label.replace(/[^a-z0-9_-]/gi, '')}` }, `(${label})`)];
}

function changeText(change) {
  if (!change) return '';
  const parts = [];
  const fields = change.setFields || {};
  for (const name of Object.keys(fields).sort()) parts.push(`${name} = ${typedValue(fields[name]).text}`);
  if ((change.unsetFields || []).length) parts.push(`unset ${change.unsetFields.join(', ')}`);
  if (change.deleted) parts.push('deleted');
  return parts.join(', ') || 'no fields';
}

$('load-more').addEventListener('click', async () => {
  const t = state.timeline;
  if (!t || !t.next) return;
  const serial = state.routeSerial;
  $('load-more').disabled = true;
  try {
    const page = await withBusy(getJson('predictions', { ...t.query, page_size: t.filters.size || PAGE_SIZE, page_token: t.next }));
    if (serial !== state.routeSerial) return;
    t.records.push(...(page.records || []));
    t.next = page.nextPageToken || '';
    await fillModelFilter(t.filters.model);
    renderTimeline();
  } catch (e) {
    showError($('paging-status'), e);
  } finally {
    $('load-more').disabled = false;
  }
});

$('filter-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const t = state.timeline;
  if (!t || t.kind !== 'subject') return;
  const from = $('filter-from').value.trim();
  const to = $('filter-to').value.trim();
  for (const [text, end] of [[from, false], [to, true]]) {
    const parsed = parseTimeInput(text, end);
    if (parsed.error) { showError($('filter-error'), parsed.error); return; }
  }
  $('filter-error').hidden = true;
  go(hashFor('subject', t.id, { model: $('filter-model').value, from, to, size: sizeParam(t) }));
});

$('filter-model').addEventListener('change', () => {
  const t = state.timeline;
  if (!t) return;
  // The model filter needs no new request: apply it at once, and keep it in the URL.
  t.filters.model = $('filter-model').value;
  renderTimeline();
  const here = parseHash();
  if (t.kind === 'subject' && here.kind === 'subject' && here.id === t.id) {
    const params = { model: t.filters.model, from: t.filters.from, to: t.filters.to, size: sizeParam(t) };
    history.replaceState(null, '', hashFor('subject', t.id, params));
  }
});

function sizeParam(t) {
  return t.filters.size && t.filters.size !== PAGE_SIZE ? String(t.filters.size) : '';
}

$('filter-clear').addEventListener('click', () => {
  const t = state.timeline;
  if (t && t.kind === 'subject') go(hashFor('subject', t.id, {}));
});

$('export-button').addEventListener('click', () => {
  const t = state.timeline;
  if (t && t.kind === 'subject') downloadExport(t.id, $('export-status'));
});

async function downloadExport(subject, statusNode) {
  statusNode.classList.remove('error');
  statusNode.textContent = `Exporting ${subject}'s trail…`;
  try {
    const file = await withBusy(download('export', { subject_id: subject }, `export-${subject}.tar`));
    statusNode.textContent = `Saved ${file.name} (${file.bytes} bytes): the JSONL trail and its manifest; check it offline with predlog verify.`;
  } catch (e) {
    statusNode.classList.add('error');
    statusNode.textContent = `Export failed: ${errorText(e)}`;
  }
}

// ------------------------------------------------------------ prediction

async function showPrediction(id, subject, serial) {
  let record = state.predictionCache.get(id);
  state.predictionCache.clear();
  if (!record) {
    try {
      record = await withBusy(getJson(`predictions/${seg(id)}`, { subject_id: subject }));
    } catch (e) {
      if (e instanceof ApiError && e.httpStatus === 404) {
        if (serial !== state.routeSerial) return;
        $('notfound-text').textContent = e.message;
        showView('notfound-view');
        return;
      }
      throw e;
    }
  }
  if (serial !== state.routeSerial) return;
  state.prediction = record;
  const p = record.event.predictionLogged;
  $('search-input').value = id;
  $('prediction-title').textContent = `Prediction ${p.predictionId}: ${outputText(p.output)}`;
  renderFacts(record);
  renderInputs(p);
  resetRerun();
  $('download-status').textContent = '';
  $('prediction-export-button').hidden = !can(M.exportTrail);
  $('replay-panel').hidden = !can(M.rerun);
  $('lineage-panel').hidden = !can(M.lineage);
  $('record-panel').hidden = !can(M.entityAt);
  showView('prediction-view');
  // The slower parts fill in as they arrive.
  await Promise.all([
    can(M.rerun) ? fillAgainst() : null,
    can(M.lineage) ? loadLineage(record, serial) : null,
    can(M.entityAt) ? loadRecordCompare(record, serial) : null,
  ]);
}

function fact(dl, term, ...value) {
  dl.append(el('div', {}, el('dt', {}, term), el('dd', {}, ...value)));
}

function renderFacts(record) {
  const p = record.event.predictionLogged;
  const dl = $('prediction-facts');
  dl.replaceChildren();
  fact(dl, 'Customer', el('a', { href: hashFor('subject', p.subjectId, {}) }, p.subjectId));
  fact(dl, 'Served', `${timeText(p.servedAt)}${p.service ? ' by ' + p.service : ''}`);
  fact(dl, 'Model', modelText(p.model), p.model && p.model.artifactSha256
    ? el('span', { class: 'mono dim', title: p.model.artifactSha256 }, ` sha256:${shortDigest(p.model.artifactSha256, 16)}`) : '');
  fact(dl, 'Output', outputCell(p.output), p.output && p.output.scoreKind ? el('span', { class: 'dim' }, ` ${p.output.scoreKind}`) : '');
  if (p.pipeline && (p.pipeline.name || p.pipeline.version)) {
    fact(dl, 'Pipeline', `${p.pipeline.name}@${p.pipeline.version}`, p.pipeline.codeDigest ? el('span', { class: 'mono dim' }, ` ${shortDigest(p.pipeline.codeDigest)}`) : '');
  }
  const context = p.context || {};
  if (context.arm) fact(dl, 'Arm', context.arm + (context.route ? ` on ${context.route}` : ''));
  const others = Object.keys(context).filter((k) => k !== 'arm' && k !== 'route').sort();
  if (others.length) fact(dl, 'Context', others.map((k) => `${k}=${context[k]}`).join(', '));
  if (p.traceId) fact(dl, 'Trace', el('a', { href: hashFor('trace', p.traceId, {}) }, p.traceId));
  if ((p.parentPredictionIds || []).length) {
    fact(dl, 'Fed by', ...p.parentPredictionIds.flatMap((id, i) => [i ? ', ' : '', el('a', { href: hashFor('prediction', id, {}) }, id)]));
  }
  if ((p.dataSources || []).length) fact(dl, 'Read', p.dataSources.map((d) => `${d.name}@${d.version}`).join(', '));
  const actor = record.event.actor || '';
  const claimed = record.event.claimedActor || '';
  const logged = actor ? (claimed && claimed !== actor ? `${actor} (claimed: ${claimed})` : actor)
    : (claimed ? `${claimed} (claimed)` : 'unknown');
  fact(dl, 'Logged by', logged);
  fact(dl, 'Recorded at', el('span', { class: 'mono' }, positionText(record.position)),
    el('span', { class: 'mono dim', title: record.leafSha256 }, ` leaf ${shortDigest(record.leafSha256, 16)}`));
}

function renderInputs(p) {
  const body = $('inputs-table').tBodies[0];
  body.replaceChildren();
  for (const f of p.inputs || []) {
    const v = typedValue(f);
    body.append(el('tr', { 'data-testid': 'input-row' },
      el('td', {}, f.name), el('td', { class: 'num' }, v.text), el('td', { class: 'dim' }, v.type)));
  }
  if (!(p.inputs || []).length) body.append(el('tr', {}, el('td', { colspan: 3, class: 'empty' }, 'No inputs recorded.')));
}

// ------------------------------------------------------------ re-run

function resetRerun() {
  $('rerun-error').hidden = true;
  $('rerun-report').hidden = true;
  $('rerun-busy').textContent = '';
  $('counterfactual-result').hidden = true;
  $('contributions').replaceChildren();
}

async function fillAgainst() {
  const select = $('against-select');
  const keep = select.value;
  // Asked again per prediction: a version registered since is offered too.
  state.models = null;
  const models = await registeredModels();
  select.replaceChildren(el('option', { value: '' }, 'no counterfactual'));
  for (const m of models) {
    const ref = m.registration.model;
    const traffic = (m.deployments || []).map((d) => `${Math.round(d.trafficFraction * 100)}% of ${d.route}`).join(', ');
    select.append(el('option', { value: modelText(ref) }, modelText(ref) + (traffic ? ` (serving ${traffic})` : '')));
  }
  select.value = [...select.options].some((o) => o.value === keep) ? keep : '';
  select.disabled = models.length === 0;
  $('counterfactual-button').disabled = !select.value;
}

$('against-select').addEventListener('change', () => {
  $('counterfactual-button').disabled = !$('against-select').value;
});

$('replay-button').addEventListener('click', () => rerun(false));
$('counterfactual-button').addEventListener('click', () => rerun(true));

async function rerun(withAgainst) {
  const record = state.prediction;
  if (!record) return;
  const p = record.event.predictionLogged;
  const against = withAgainst ? $('against-select').value : '';
  const params = { subject_id: p.subjectId, explain: 'true' };
  if (against) {
    const at = against.lastIndexOf('@');
    params['against.name'] = against.slice(0, at);
    params['against.version'] = against.slice(at + 1);
  }
  const buttons = [$('replay-button'), $('counterfactual-button')];
  for (const b of buttons) b.disabled = true;
  $('rerun-error').hidden = true;
  $('rerun-busy').textContent = against ? `Re-running against ${against}…` : 'Re-running…';
  try {
    const report = await withBusy(getJson(`predictions/${seg(p.predictionId)}/rerun`, params));
    if (state.prediction !== record) return;
    renderReport(report, against);
    $('rerun-busy').textContent = '';
  } catch (e) {
    if (state.prediction !== record) return;
    $('rerun-busy').textContent = '';
    $('rerun-report').hidden = true;
    showError($('rerun-error'), `Re-run failed: ${errorText(e)}`);
  } finally {
    $('replay-button').disabled = false;
    $('counterfactual-button').disabled = !$('against-select').value;
  }
}

function renderReport(report, against) {
  const verdict = $('rerun-verdict');
  if (report.exactMatch) {
    verdict.className = 'verdict ok';
    verdict.textContent = '✔ Reproduced exactly: the recorded artifact gives the recorded output, bit for bit.';
  } else {
    verdict.className = 'verdict bad';
    verdict.textContent = `✘ Does not match: the re-run differs from the record by up to ${report.maxAbsDiff} (max abs diff).`;
  }
  const dl = $('rerun-facts');
  dl.replaceChildren();
  fact(dl, 'Recorded', outputText(report.recordedOutput));
  fact(dl, 'Reproduced', outputText(report.reproducedOutput));
  const hashed = timeText(report.artifactHashedAt);
  fact(dl, 'Artifact', el('span', { class: 'mono', title: report.artifactSha256 }, `sha256:${shortDigest(report.artifactSha256, 16)} `),
    report.artifactVerified
      ? el('span', { class: 'badge ok', 'data-testid': 'artifact-verified' }, 'verified')
      : el('span', { class: 'badge bad', 'data-testid': 'artifact-verified' }, 'NOT verified'),
    hashed ? el('span', { class: 'dim' }, ` (bytes hashed ${hashed})`) : '');
  fact(dl, 'Model', `${modelText(report.model)} · ${report.framework} ${report.runtimeVersion}`,
    report.runtimeVersionSkew
      ? el('span', { class: 'badge bad' }, ` trained with ${report.trainingRuntimeVersion}`)
      : '');
  const pp = report.predictionPipeline || {};
  const tp = report.trainingPipeline || {};
  let skew;
  if (report.predictionPipelineUnrecorded) skew = el('span', { class: 'badge warn' }, 'unknown: the prediction recorded no pipeline');
  else if (!tp.name && !tp.version) skew = el('span', { class: 'badge warn' }, 'unknown: training pipeline not recorded');
  else if (report.pipelineSkew) skew = el('span', { class: 'badge bad' }, `skew: trained with ${tp.name}@${tp.version}`);
  else skew = el('span', { class: 'badge ok' }, 'no skew');
  fact(dl, 'Pipeline', pp.name ? `${pp.name}@${pp.version} ` : '', skew);
  if (report.inputNamesMismatch) fact(dl, 'Inputs', el('span', { class: 'badge bad' }, `names differ: ${report.inputMismatch}`));
  const findings = $('rerun-findings');
  findings.replaceChildren(...(report.findings || []).map((f) => el('li', {}, f)));

  const cf = $('counterfactual-result');
  const c = report.counterfactual;
  if (against && c && c.model && c.model.name) {
    const deltas = (c.scoreDeltas || []).map((d) => signed(d, 6)).join(', ');
    cf.replaceChildren(
      el('strong', {}, `${modelText(c.model)} would have said `),
      el('span', { 'data-testid': 'counterfactual-output', class: 'cf-output' }, outputText(c.output)),
      deltas ? ` (${deltas} against the recorded score)` : '',
      el('span', { class: 'mono dim', title: c.model.artifactSha256 }, ` · artifact sha256:${shortDigest(c.model.artifactSha256, 12)}`));
    cf.hidden = false;
  } else {
    cf.hidden = true;
  }
  renderContributions(report.explanation);
  $('rerun-report').hidden = false;
}

function renderContributions(explanation) {
  const box = $('contributions');
  box.replaceChildren();
  const list = (explanation && explanation.contributions) || [];
  if (!list.length) {
    box.append(el('p', { class: 'hint' }, 'No explanation (the runtime gave no contributions).'));
    return;
  }
  const scale = Math.max(...list.map((c) => Math.abs(Number(c.contribution)))) || 1;
  for (const c of list) {
    const v = Number(c.contribution);
    const pct = Math.abs(v) / scale * 100;
    const value = typedValue(c.feature).text;
    const sign = v >= 0 ? 'pos' : 'neg';
    const bar = el('span', { class: `bar ${sign}`, style: `width:${pct.toFixed(1)}%` });
    box.append(el('div', {
      class: `bar-row ${sign}`, role: 'listitem', 'data-testid': 'contribution-bar', 'data-feature': c.feature.name,
      'aria-label': `${c.feature.name} = ${value}: ${v >= 0 ? 'raised' : 'lowered'} the margin by ${Math.abs(v).toFixed(4)}`,
    },
    el('span', { class: 'bar-name' }, c.feature.name, el('span', { class: 'dim' }, ` = ${value}`)),
    el('span', { class: 'bar-track', 'aria-hidden': 'true' },
      el('span', { class: 'half neg-half' }, v < 0 ? bar : ''),
      el('span', { class: 'half pos-half' }, v >= 0 ? bar : '')),
    el('span', { class: 'bar-value' }, signed(v))));
  }
  box.append(el('p', { class: 'hint margin-line' },
    `Base value ${Number(explanation.bias).toPrecision(6)} + contributions = margin ${Number(explanation.margin).toPrecision(6)}.`));
}

// ------------------------------------------------------------ lineage

async function loadLineage(record, serial) {
  const p = record.event.predictionLogged;
  $('lineage-error').hidden = true;
  $('lineage-graph').replaceChildren(el('p', { class: 'hint' }, 'Loading the lineage…'));
  $('lineage-provenance').hidden = true;
  let lineage;
  try {
    // The registry as it stood when the decision was logged.
    lineage = await withBusy(getJson(`predictions/${seg(p.predictionId)}/lineage`, {
      subject_id: p.subjectId,
      'as_of.after.shard': record.position && record.position.shard,
      'as_of.after.index': record.position && record.position.index,
    }));
  } catch (e) {
    if (serial !== state.routeSerial) return;
    $('lineage-graph').replaceChildren();
    showError($('lineage-error'), `Lineage could not be read: ${errorText(e)}`);
    return;
  }
  if (serial !== state.routeSerial) return;
  const model = renderLineage($('lineage-graph'), lineage);
  lineageList($('lineage-list'), lineage);
  renderProvenance(model);
}

function renderProvenance(modelNode) {
  const aside = $('lineage-provenance');
  aside.replaceChildren();
  const r = modelNode && modelNode.model && modelNode.model.registration;
  if (!r) { aside.hidden = true; return; }
  const pr = r.provenance || {};
  aside.append(el('h3', {}, `${modelText(r.model)}: how it was made`));
  const dl = el('dl', { class: 'facts compact' });
  fact(dl, 'Framework', r.framework || '-');
  fact(dl, 'Artifact', el('span', { class: 'mono', title: r.model.artifactSha256 }, `sha256:${shortDigest(r.model.artifactSha256, 16)}`),
    r.artifactSizeBytes && r.artifactSizeBytes !== '0' ? ` (${r.artifactSizeBytes} bytes)` : '');
  fact(dl, 'Code commit', el('span', { class: 'mono', 'data-testid': 'code-commit' }, pr.codeCommit || 'not recorded'));
  if (pr.pipeline && pr.pipeline.name) fact(dl, 'Trained via', `${pr.pipeline.name}@${pr.pipeline.version}`);
  if ((pr.datasets || []).length) fact(dl, 'Trained on', pr.datasets.map((d) => `${d.name}@${d.version}`).join(', '));
  const libs = Object.entries(pr.libraryVersions || {}).sort();
  if (libs.length) fact(dl, 'Libraries', libs.map(([k, v]) => `${k} ${v}`).join(', '));
  if (r.externalRunId) fact(dl, 'Run id', r.externalRunId);
  for (const m of r.metrics || []) fact(dl, m.name, `${m.value}${m.dataset && m.dataset.name ? ` on ${m.dataset.name}@${m.dataset.version}` : ''}`);
  aside.append(dl);
  const hp = Object.entries(pr.hyperparameters || {}).sort();
  if (hp.length) {
    aside.append(el('h4', {}, 'Hyperparameters'));
    aside.append(el('table', { class: 'data compact', 'data-testid': 'hyperparameters' },
      el('tbody', {}, hp.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', { class: 'mono' }, v))))));
  }
  const deploys = modelNode.model.deployments || [];
  if (deploys.length) {
    aside.append(el('p', { class: 'hint' }, 'Serving then: ' +
      deploys.map((d) => `${Math.round(d.trafficFraction * 100)}% of ${d.route}`).join(', ')));
  }
  aside.hidden = false;
}

// --------------------------------------------------- record then and now

async function loadRecordCompare(record, serial) {
  const p = record.event.predictionLogged;
  const path = `entities/${seg(ENTITY_TYPE)}/${seg(p.subjectId)}`;
  $('record-error').hidden = true;
  $('record-compare').hidden = true;
  $('record-note').textContent = 'Loading the record…';
  let then;
  let now;
  try {
    // Right after the prediction's own record: what predlog held for the
    // customer when the decision was logged (as `predlog case` does).
    [then, now] = await withBusy(Promise.all([
      getJson(path, { 'as_of.after.shard': record.position.shard, 'as_of.after.index': record.position.index }),
      getJson(path),
    ]));
  } catch (e) {
    if (serial !== state.routeSerial) return;
    $('record-note').textContent = '';
    showError($('record-error'), `The ${ENTITY_TYPE} record could not be read: ${errorText(e)}`);
    return;
  }
  if (serial !== state.routeSerial) return;
  const thenFields = (then.exists && then.state && then.state.fields) || {};
  const nowFields = (now.exists && now.state && now.state.fields) || {};
  const names = [...new Set([...Object.keys(thenFields), ...Object.keys(nowFields)])].sort();
  const body = $('record-compare').tBodies[0];
  body.replaceChildren();
  let differences = 0;
  for (const name of names) {
    const has = (fields) => Object.prototype.hasOwnProperty.call(fields, name);
    const a = has(thenFields) ? typedValue(thenFields[name]).text : '—';
    const b = has(nowFields) ? typedValue(nowFields[name]).text : '—';
    // The value's type counts too: int64 5 and string "5" differ.
    const changed = a !== b || (has(thenFields) && has(nowFields) &&
        JSON.stringify(thenFields[name]) !== JSON.stringify(nowFields[name]));
    if (changed) ++differences;
    body.append(el('tr', { class: changed ? 'changed' : '', 'data-testid': 'record-row', 'data-field': name },
      el('td', {}, name), el('td', { class: 'num' }, a), el('td', { class: 'num' }, b),
      el('td', {}, changed ? el('span', { class: 'marker', 'data-testid': 'changed-marker' }, '● changed') : '')));
  }
  const cut = (r) => (r.cut ? `${r.cut.shard} after ${r.cut.index} records` : '');
  let note;
  if (!then.exists && !now.exists) note = `No ${ENTITY_TYPE}/${p.subjectId} record, then or now.`;
  else if (!then.exists) note = `No ${ENTITY_TYPE}/${p.subjectId} record existed when the decision was logged; it exists now.`;
  else if (!now.exists) note = `The ${ENTITY_TYPE}/${p.subjectId} record has been deleted since.`;
  else note = differences
    ? `${differences} field${differences === 1 ? '' : 's'} changed since the decision (then: ${cut(then)}; now: ${cut(now)}).`
    : `Unchanged since the decision (then: ${cut(then)}; now: ${cut(now)}).`;
  $('record-note').textContent = note;
  $('record-compare').hidden = names.length === 0;
}

// ------------------------------------------------------------ downloads

$('case-button').addEventListener('click', async () => {
  const record = state.prediction;
  if (!record) return;
  const p = record.event.predictionLogged;
  const status = $('download-status');
  const against = $('against-select').value;
  const params = {};
  if (against) {
    const at = against.lastIndexOf('@');
    params['against.name'] = against.slice(0, at);
    params['against.version'] = against.slice(at + 1);
  }
  status.classList.remove('error');
  status.textContent = `Building the case file for ${p.predictionId}…`;
  try {
    const file = await withBusy(download(`predictions/${seg(p.predictionId)}/case`, params, `case-${p.predictionId}.tar`));
    status.textContent = `Saved ${file.name} (${file.bytes} bytes): summary.md first.`;
  } catch (e) {
    status.classList.add('error');
    status.textContent = `Case file failed: ${errorText(e)}`;
  }
});

$('prediction-export-button').addEventListener('click', () => {
  const record = state.prediction;
  if (record) downloadExport(record.event.predictionLogged.subjectId, $('download-status'));
});

// ------------------------------------------------------------ start

(async () => {
  if (await loadWho()) route();
})();
