#!/usr/bin/env node
// The support page end to end, in a real headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core; no browser is ever
// downloaded), against a predlogd child on loopback filled by
// `predlog demo credit`:
//   1. search the demo's denied customer ("/" and Enter): the timeline
//      shows the denial and the record's changes between the decisions;
//      paging, the model filter and the time range; a search that matches
//      nothing says so;
//   2. open the denied prediction: inputs table and lineage graph;
//   3. Replay: "reproduced exactly", one contribution bar per input;
//   4. against credit@v2: the counterfactual's output, as the API gives it;
//   5. the record at decision time beside now, differences marked;
//   6. downloads: the customer's export (a tar whose JSONL and manifest pass
//      `predlog verify`) and the case file (summary.md, event, rerun,
//      lineage, the record at decision time, the export);
//   7. the API's error paths over plain HTTP: 404 naming the id, 400 naming
//      the parameter;
//   8. a tampered artifact: Replay shows the digest error (then the bytes
//      are put back and Replay reproduces again);
//   9. predlogd restarted on the same data with --identities: 401 and 403 on
//      the API, a bad token refused on the sign-in form, support sees no
//      export button, an auditor is told it may not read predictions and
//      may still download an export.
// Screenshots of each step: --artifacts DIR (build/test-artifacts/web/).
// Waits are for elements and conditions, never for fixed times; predlogd is
// killed on every exit path.
//
// Usage: node page_test.mjs --predlogd PATH --predlog PATH --artifacts DIR

import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

// ------------------------------------------------------------ arguments

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; ++i) {
    const m = /^--([a-z_]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    args[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  for (const need of ['predlogd', 'predlog', 'artifacts']) {
    if (!args[need]) throw new Error(`--${need} is required (usage: page_test.mjs --predlogd PATH --predlog PATH --artifacts DIR)`);
  }
  return args;
}
const args = parseArgs(process.argv.slice(2));
const CHROMIUM = process.env.PREDLOG_TEST_CHROMIUM || '/usr/bin/chromium';
const UI_TIMEOUT = 30000;      // one page condition
const REPLAY_TIMEOUT = 60000;  // a re-run loads an XGBoost model

// ------------------------------------------------------------ children

const children = new Set();
function killAll() {
  for (const child of children) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  children.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => { console.error(`web page test: ${signal}, stopping predlogd`); killAll(); process.exit(1); });
}

// Starts predlogd; resolves once it printed its "predlogd listening:" line.
function startPredlogd(dataDir, extra = []) {
  const argv = [`--data_dir=${dataDir}`, '--grpc_listen=127.0.0.1:0', '--http_listen=127.0.0.1:0', ...extra];
  const child = spawn(args.predlogd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-8000); });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      reject(new Error(`predlogd printed no listening line within 60 s; stderr:\n${stderr}`));
    }, 60000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      reject(new Error(`predlogd exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
    });
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('predlogd listening:'));
      if (!line) return;
      const grpc = /grpc=(\S+)/.exec(line);
      const http = /http=(\S+)/.exec(line);
      if (!grpc || !http) { reject(new Error(`no grpc= or http= in: ${line}`)); return; }
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.stdout.removeAllListeners('data');
      child.stdout.resume();
      child.on('exit', () => children.delete(child));
      resolve({ child, grpc: grpc[1], http: http[1], base: `http://${http[1]}`, stderr: () => stderr });
    });
  });
}

// SIGTERM, then the exit; SIGKILL when it has not exited after 30 s.
function stopPredlogd(server) {
  const child = server.child;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.once('exit', () => { clearTimeout(timer); children.delete(child); resolve(); });
    child.kill('SIGTERM');
  });
}

function run(file, argv, options = {}) {
  return new Promise((resolve) => {
    execFile(file, argv, { maxBuffer: 64 << 20, timeout: 300000, ...options }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------ checks

class TestFailure extends Error {}
function check(condition, message) {
  if (!condition) throw new TestFailure(message);
}

async function api(server, route, tokenValue) {
  const headers = { Accept: 'application/json' };
  if (tokenValue) headers.Authorization = `Bearer ${tokenValue}`;
  const response = await fetch(server.base + route, { headers });
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, body, text, headers: response.headers };
}

async function apiJson(server, route, tokenValue) {
  const r = await api(server, route, tokenValue);
  check(r.status === 200 && r.body, `GET ${route}: expected 200 with JSON, got ${r.status}: ${r.text.slice(0, 300)}`);
  return r.body;
}

// The names of the files in a tar (ustar: 512-byte headers, name + prefix).
function tarNames(buffer) {
  const names = [];
  for (let offset = 0; offset + 512 <= buffer.length;) {
    const header = buffer.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start, length) => header.subarray(start, start + length).toString('latin1').replace(/\0.*$/s, '');
    const name = field(0, 100);
    const prefix = header.subarray(257, 263).toString('latin1').startsWith('ustar') ? field(345, 155) : '';
    const size = parseInt(field(124, 12).trim() || '0', 8);
    names.push({ name: prefix ? `${prefix}/${name}` : name, offset: offset + 512, size });
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

// The float32 in the fewest digits that read back as itself (as the CLI and the page print it).
function shortestFloat(value) {
  const f = Math.fround(Number(value));
  for (let p = 6; p <= 9; ++p) {
    const text = Number(f.toPrecision(p));
    if (Math.fround(text) === f) return String(text);
  }
  return String(f);
}

// Clicks `button` and resolves to the download it starts; fails with the
// page's own message when the page reports the download failed instead.
async function downloadFrom(button, statusSelector) {
  const failed = page.locator(statusSelector).filter({ hasText: 'failed' });
  // Both waits settle to a value (the loser's timeout or close included), so neither is left unhandled.
  const download = page.waitForEvent('download').then((d) => ({ d }), (error) => ({ error }));
  const failure = failed.waitFor().then(async () => ({ message: await failed.innerText() }), (error) => ({ error }));
  await page.locator(button).click();
  const outcome = await Promise.race([download, failure]);
  if (outcome.error) throw outcome.error;
  check(outcome.d, `${button}: the page says ${outcome.message}`);
  return outcome.d;
}

// ------------------------------------------------------------ the run

const steps = [];
let page = null;
let shotCount = 0;

async function screenshot(name) {
  if (!page) return '';
  const file = path.join(args.artifacts, `${String(++shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function step(name, fn) {
  const started = Date.now();
  process.stdout.write(`[ RUN  ] ${name}\n`);
  await fn();
  const file = await screenshot(name.replace(/^\d+\s+/, '').replace(/[^a-z0-9]+/gi, '-').toLowerCase().replace(/^-|-$/g, ''));
  steps.push(name);
  process.stdout.write(`[  OK  ] ${name} (${Date.now() - started} ms)${file ? ` screenshot ${file}` : ''}\n`);
}

// Console errors the page must not produce. The browser itself logs every
// 4xx answer as "Failed to load resource" (the search tries a prediction id
// before a customer, sign-in with a bad token is a 401): those are answers
// the page handles and shows, not errors of the page.
const consoleErrors = [];
function watchConsole(p, label) {
  p.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) return;
    consoleErrors.push(`${label}: console.error: ${m.text()}`);
  });
  p.on('pageerror', (e) => consoleErrors.push(`${label}: uncaught: ${e.message}`));
}

async function main() {
  fs.mkdirSync(args.artifacts, { recursive: true });
  for (const f of fs.readdirSync(args.artifacts)) {
    if (f.endsWith('.png')) fs.rmSync(path.join(args.artifacts, f));
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'predlog-web-test-'));
  // Removed however the test ends (a failed start or demo too).
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const dataDir = path.join(tmp, 'data');
  console.log(`web page test: data in ${tmp}, screenshots in ${args.artifacts}`);

  // The predlogd running now (step 9 restarts it with --identities).
  const live = { server: await startPredlogd(dataDir) };
  const server = live.server;
  console.log(`predlogd: grpc ${server.grpc}, http ${server.http}`);

  // The demo names the customer it denied and the prediction.
  const demo = await run(args.predlog, [`--server=${server.grpc}`, 'demo', 'credit']);
  check(demo.code === 0, `predlog demo credit failed (${demo.code}):\n${demo.stdout}\n${demo.stderr}`);
  const denied = /Customer (\S+) was denied at (\S+) \(prediction ([^,]+),/.exec(demo.stdout);
  check(denied, `the demo's output names no denied customer:\n${demo.stdout}`);
  const [, subject, , predictionId] = denied;
  console.log(`demo: customer ${subject} denied by prediction ${predictionId}`);

  const record = await apiJson(server, `/api/v1/predictions/${predictionId}`);
  const logged = record.event.predictionLogged;
  const inputNames = logged.inputs.map((f) => f.name);
  const artifactDigest = logged.model.artifactSha256;

  const userData = fs.mkdtempSync(path.join(tmp, 'chromium-'));
  const context = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 768 },
    acceptDownloads: true,
  });
  try {
    page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    watchConsole(page, 'page');
    await runSteps({ server, live, subject, predictionId, record, logged, inputNames, artifactDigest, dataDir, tmp, context });
  } catch (e) {
    const shot = await screenshot('failure').catch(() => '');
    if (shot) console.error(`screenshot of the failure: ${shot}`);
    throw e;
  } finally {
    await context.close().catch(() => {});
    await stopPredlogd(live.server);
    // The data dir, the browser profile and the downloads, also on failure.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  check(consoleErrors.length === 0, `the page logged errors:\n  ${consoleErrors.join('\n  ')}`);
}

async function runSteps(t) {
  const { server, subject, predictionId, logged, inputNames } = t;
  const rowOf = (id) => page.locator(`[data-testid=timeline-row][data-prediction-id="${id}"]`);

  await step('1 search the customer: the timeline shows the denial', async () => {
    await page.goto(`${server.base}/`);
    await page.locator('#search-input').waitFor();
    // Keyboard: "/" jumps to the search box, Enter searches. A search that
    // matches nothing says so.
    await page.locator('#home-view').waitFor();
    await page.keyboard.press('/');
    check(await page.evaluate(() => document.activeElement.id) === 'search-input', '"/" should focus the search box');
    await page.keyboard.type('nobody-at-all-42');
    await page.keyboard.press('Enter');
    await page.locator('#notfound-view').waitFor();
    const nothing = await page.locator('[data-testid=notfound-text]').innerText();
    check(nothing.includes('nobody-at-all-42'), `"nothing matches" should name the search, got: ${nothing}`);

    await page.fill('#search-input', subject);
    await page.press('#search-input', 'Enter');
    await rowOf(predictionId).waitFor();
    check(page.url().endsWith(`#/subject/${subject}`), `the URL should be #/subject/${subject}, is ${page.url()}`);
    const row = await rowOf(predictionId).innerText();
    check(/\(deny\)/.test(row) && row.includes(`${logged.model.name}@${logged.model.version}`),
      `the denied prediction's row should show its model and "(deny)": ${row}`);
    check(row.includes(logged.context.arm), `the row should show the arm "${logged.context.arm}": ${row}`);
    const rows = await page.locator('[data-testid=timeline-row]').count();
    const trail = await apiJson(server, `/api/v1/predictions?subject_id=${subject}&page_size=1000`);
    check(rows === trail.records.length, `the timeline shows ${rows} decisions, the trail has ${trail.records.length}`);
    // The record's changes, interleaved (ListEntityChanges).
    const changes = await apiJson(server, `/api/v1/entities/customer/${subject}/changes`);
    const shown = await page.locator('[data-testid=change-row]').count();
    check(shown === changes.changes.length && shown > 0,
      `the timeline shows ${shown} record changes, ListEntityChanges has ${changes.changes.length}`);
    // In log order: every row of one shard after the one above it.
    const positions = await page.locator('#timeline-body tr td:last-child').allInnerTexts();
    const sorted = positions.every((p, i) => {
      if (i === 0) return true;
      const [s1, i1] = positions[i - 1].split('#');
      const [s2, i2] = p.split('#');
      return s1 !== s2 || Number(i1) < Number(i2);
    });
    check(sorted, `decisions and changes should be in log order: ${positions.join(' ')}`);
    console.log(`         ${shown} record changes interleaved in log order`);
    // Paging: two decisions a page, then "load later decisions".
    if (rows > 2) {
      await page.goto(`${server.base}/#/subject/${subject}?size=2`);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=timeline-row]').length === 2);
      await page.locator('#load-more').click();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=timeline-row]').length === 4);
    }
    // The model filter: credit@v2 only (this customer was decided by v1).
    // (The page is still showing the paged view: wait for the whole trail.)
    await page.goto(`${server.base}/#/subject/${subject}`);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=timeline-row]').length === n, rows);
    const other = `${logged.model.name}@${logged.model.version === 'v1' ? 'v2' : 'v1'}`;
    const byOther = trail.records.filter((r) => `${r.event.predictionLogged.model.name}@${r.event.predictionLogged.model.version}` === other).length;
    await page.selectOption('#filter-model', other);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=timeline-row]').length === n, byOther);
    check(page.url().includes(`model=${encodeURIComponent(other)}`), `the model filter should be in the URL: ${page.url()}`);
    // And the model that did decide: every decision (a filter hiding all
    // rows would pass the check above alone).
    const mine = `${logged.model.name}@${logged.model.version}`;
    const byMine = trail.records.filter((r) => `${r.event.predictionLogged.model.name}@${r.event.predictionLogged.model.version}` === mine).length;
    check(byMine > 0, `the trail should hold decisions by ${mine}`);
    await page.selectOption('#filter-model', mine);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=timeline-row]').length === n, byMine);
    await page.selectOption('#filter-model', '');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=timeline-row]').length === n, rows);
    // The time range: from the third decision's served time on (served_from is inclusive).
    if (rows > 2) {
      const from = trail.records[2].event.predictionLogged.servedAt;
      await page.fill('#filter-from', from);
      await page.press('#filter-from', 'Enter');
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid=timeline-row]').length === n, rows - 2);
      check(new URL(page.url()).hash.includes('from='), `the time range should be in the URL: ${page.url()}`);
      await page.locator('#filter-clear').click();
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid=timeline-row]').length === n, rows);
    }
  });

  await step('2 open the denied prediction: inputs and lineage', async () => {
    await rowOf(predictionId).locator('a').click();
    await page.locator('#prediction-view').waitFor();
    check(page.url().includes(`#/prediction/${predictionId}`), `the URL should name the prediction: ${page.url()}`);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=input-row]').length === n, inputNames.length);
    const names = await page.locator('[data-testid=input-row] td:first-child').allInnerTexts();
    check(JSON.stringify(names) === JSON.stringify(inputNames), `inputs table ${names} != recorded ${inputNames}`);
    const types = await page.locator('[data-testid=input-row] td:nth-child(3)').allInnerTexts();
    check(types.every((ty) => ty === 'float'), `the demo's inputs are floats: ${types}`);
    const model = `model:${logged.model.name}@${logged.model.version}`;
    await page.locator(`[data-testid=lineage-node][data-node-id="prediction:${predictionId}"]`).waitFor();
    await page.locator(`[data-testid=lineage-node][data-node-id="${model}"]`).waitFor();
    await page.locator(`[data-testid=lineage-node][data-node-id="artifact:${t.artifactDigest}"]`).waitFor();
    await page.locator('[data-testid=lineage-node][data-node-id="dataset:applications@2026-10"]').waitFor();
    const lineage = await apiJson(server, `/api/v1/predictions/${predictionId}/lineage`);
    const drawn = await page.locator('[data-testid=lineage-node]').count();
    const models = lineage.nodes.filter((n) => n.kind === 'MODEL' && n.model && n.model.registration).length;
    check(drawn === lineage.nodes.length + models, `the graph draws ${drawn} nodes; the lineage has ${lineage.nodes.length} and ${models} artifacts`);
    const commit = lineage.nodes.find((n) => n.id === model).model.registration.provenance.codeCommit;
    const shownCommit = await page.locator('[data-testid=code-commit]').innerText();
    check(commit && shownCommit === commit, `the model's code commit ${commit} should be beside the graph, shows ${shownCommit}`);
    await page.locator('[data-testid=hyperparameters]').waitFor();
  });

  await step('3 replay: reproduced exactly, one bar per input', async () => {
    // From the keyboard: the button takes focus and Enter presses it.
    await page.locator('#replay-button').focus();
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=rerun-verdict]').waitFor({ timeout: REPLAY_TIMEOUT });
    const verdict = await page.locator('[data-testid=rerun-verdict]').innerText();
    check(/reproduced exactly/i.test(verdict), `the verdict should say "reproduced exactly": ${verdict}`);
    check((await page.locator('[data-testid=artifact-verified]').innerText()) === 'verified', 'the artifact should be "verified"');
    const bars = page.locator('[data-testid=contribution-bar]');
    await bars.first().waitFor();
    const features = await bars.evaluateAll((nodes) => nodes.map((n) => n.dataset.feature));
    check(features.length === inputNames.length && [...features].sort().join() === [...inputNames].sort().join(),
      `one bar per input expected; bars ${features}, inputs ${inputNames}`);
    const signs = await page.locator('[data-testid=contribution-bar] .bar-value').allInnerTexts();
    check(signs.every((s) => /^[+−]\d/.test(s)), `every bar carries its sign: ${signs}`);
  });

  await step('4 counterfactual against credit@v2', async () => {
    const against = `${logged.model.name}@v2`;
    await page.selectOption('#against-select', against);
    await page.locator('#counterfactual-button').click();
    await page.locator('[data-testid=counterfactual-output]').waitFor({ timeout: REPLAY_TIMEOUT });
    const report = await apiJson(server,
      `/api/v1/predictions/${predictionId}/rerun?subject_id=${subject}&against.name=${logged.model.name}&against.version=v2`);
    const expected = shortestFloat(report.counterfactual.output.floatScores[0]);
    const shown = await page.locator('[data-testid=counterfactual-result]').innerText();
    check(shown.includes(`${against} would have said`) && shown.includes(expected),
      `the counterfactual should say ${against} would have said ${expected}: ${shown}`);
  });

  await step('5 the record at decision time beside now', async () => {
    await page.locator('[data-testid=record-compare]').waitFor();
    const at = t.record.position;
    const then = await apiJson(server, `/api/v1/entities/customer/${subject}?as_of.after.shard=${at.shard}&as_of.after.index=${at.index}`);
    const now = await apiJson(server, `/api/v1/entities/customer/${subject}`);
    const a = then.state.fields;
    const b = now.state.fields;
    const differing = [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
    const marked = await page.locator('[data-testid=record-row].changed').evaluateAll((rows) => rows.map((r) => r.dataset.field).sort());
    check(JSON.stringify(marked) === JSON.stringify(differing), `rows marked changed ${marked}, fields that differ ${differing}`);
    const markers = await page.locator('[data-testid=record-row].changed [data-testid=changed-marker]').count();
    check(markers === differing.length, `each changed row shows a "changed" marker (${markers} of ${differing.length})`);
    console.log(`         fields changed since the decision: ${differing.join(', ') || 'none'}`);
    await page.locator('#record-panel').scrollIntoViewIfNeeded();
  });

  await step('6 downloads: the verifiable export and the case file', async () => {
    // Back to the customer (the browser's back button), then the export.
    await page.goBack();
    await rowOf(predictionId).waitFor();
    const exported = await downloadFrom('#export-button', '[data-testid=export-status]');
    check(exported.suggestedFilename() === `export-${subject}.tar`, `export file name: ${exported.suggestedFilename()}`);
    const tar = fs.readFileSync(await exported.path());
    const names = tarNames(tar);
    const jsonl = `export-${subject}.jsonl`;
    const base = names.map((n) => path.basename(n.name));
    check(base.includes(jsonl) && base.includes(`${jsonl}.manifest.json`),
      `the export tar should hold ${jsonl} and its manifest: ${names.map((n) => n.name)}`);
    const dir = fs.mkdtempSync(path.join(t.tmp, 'export-'));
    for (const n of names) {
      if (n.size > 0) fs.writeFileSync(path.join(dir, path.basename(n.name)), tar.subarray(n.offset, n.offset + n.size));
    }
    const verified = await run(args.predlog, ['verify', path.join(dir, jsonl), path.join(dir, `${jsonl}.manifest.json`)]);
    check(verified.code === 0 && /^OK:/m.test(verified.stdout), `predlog verify should pass the export:\n${verified.stdout}${verified.stderr}`);
    await page.locator('[data-testid=export-status]').filter({ hasText: 'Saved' }).waitFor();

    // The case file, from the prediction view.
    await page.goForward();
    await page.locator('#prediction-view').waitFor();
    const kase = await downloadFrom('#case-button', '[data-testid=download-status]');
    check(kase.suggestedFilename() === `case-${predictionId}.tar`, `case file name: ${kase.suggestedFilename()}`);
    const files = tarNames(fs.readFileSync(await kase.path())).map((n) => path.basename(n.name));
    for (const need of ['summary.md', 'event.json', 'rerun.json', 'lineage.json', 'record_at_decision.json', 'export.jsonl']) {
      check(files.includes(need), `the case file should hold ${need}: ${files}`);
    }
    console.log(`         case file: ${files.join(', ')}`);
  });

  await step('7 API errors: 404 naming the id, 400 naming the parameter', async () => {
    const missing = await api(server, '/api/v1/predictions/p-no-such-prediction');
    check(missing.status === 404 && missing.body && missing.body.status === 'NOT_FOUND' && missing.body.code === 5 &&
      missing.body.message.includes('p-no-such-prediction'), `unknown id: ${missing.status} ${missing.text}`);
    for (const [query, parameter] of [
      [`subject_id=${subject}&page_size=abc`, 'page_size'],
      [`subject_id=${subject}&served_from=yesterday`, 'served_from'],
      [`subject_id=${subject}&colour=blue`, 'colour'],
    ]) {
      const bad = await api(server, `/api/v1/predictions?${query}`);
      check(bad.status === 400 && bad.body && bad.body.status === 'INVALID_ARGUMENT' && bad.body.message.includes(parameter),
        `?${query}: expected 400 naming ${parameter}, got ${bad.status} ${bad.text}`);
    }
    const rerunMissing = await api(server, '/api/v1/predictions/p-no-such-prediction/rerun');
    check(rerunMissing.status === 404 && rerunMissing.body.message.includes('p-no-such-prediction'),
      `rerun of an unknown id: ${rerunMissing.status} ${rerunMissing.text}`);
  });

  await step('8 a tampered artifact: Replay shows the digest error', async () => {
    const file = path.join(t.dataDir, 'artifacts', 'sha256', t.artifactDigest.slice(0, 2), t.artifactDigest);
    check(fs.existsSync(file), `the model's artifact should be at ${file}`);
    const original = fs.readFileSync(file);
    const tampered = Buffer.from(original);
    for (let i = 0; i < 8; ++i) tampered[Math.floor(tampered.length / 2) + i] ^= 0x5a;
    fs.chmodSync(file, 0o644);
    fs.writeFileSync(file, tampered);
    try {
      await page.locator('#replay-button').click();
      const error = page.locator('[data-testid=rerun-error]');
      await error.filter({ hasText: 'corrupt' }).waitFor({ timeout: REPLAY_TIMEOUT });
      const text = await error.innerText();
      check(text.includes(`sha256:${t.artifactDigest}`), `the error should name the digest sha256:${t.artifactDigest}: ${text}`);
      check(await page.locator('[data-testid=rerun-report]').isHidden(), 'no report is shown beside the error');
      await screenshot('tampered-artifact-error');
    } finally {
      // The original bytes back: the next steps read this data dir again.
      fs.writeFileSync(file, original);
      fs.chmodSync(file, 0o444);
    }
    await page.locator('#replay-button').click();
    await page.locator('[data-testid=rerun-verdict]').filter({ hasText: /reproduced exactly/i }).waitFor({ timeout: REPLAY_TIMEOUT });
  });

  await step('9 identities: bad token, support without export, auditor without reads', async () => {
    const token = async (name, roles) => {
      const made = await run(args.predlog, ['auth', 'new-token', name, `--roles=${roles}`]);
      check(made.code === 0, `predlog auth new-token failed: ${made.stdout}${made.stderr}`);
      const lines = made.stdout.split('\n');
      const value = lines.find((l) => /^plt_/.test(l.trim()));
      const line = lines.find((l) => l.includes('token-sha256:'));
      check(value && line, `predlog auth new-token printed no token and identities line:\n${made.stdout}`);
      return { value: value.trim(), line: line.trim() };
    };
    const support = await token('sam-support', 'support');
    const auditor = await token('ada-auditor', 'auditor');
    const identities = path.join(t.tmp, 'identities');
    fs.writeFileSync(identities, `# made by the web page test\n${support.line}\n${auditor.line}\n`);
    await stopPredlogd(server);
    const secured = await startPredlogd(t.dataDir, [`--identities=${identities}`]);
    t.live.server = secured;

    // API: no token 401, the auditor 403 naming the role it lacks.
    const anonymous = await api(secured, `/api/v1/predictions/${predictionId}`);
    check(anonymous.status === 401 && anonymous.body && anonymous.body.status === 'UNAUTHENTICATED',
      `no token: expected 401, got ${anonymous.status} ${anonymous.text}`);
    const forbidden = await api(secured, `/api/v1/predictions/${predictionId}`, auditor.value);
    check(forbidden.status === 403 && forbidden.body && forbidden.body.message.includes('support'),
      `auditor reading a prediction: expected 403 naming support, got ${forbidden.status} ${forbidden.text}`);

    // A fresh tab: nothing in its sessionStorage.
    const old = page;
    page = await t.context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    watchConsole(page, 'signed-in page');
    await old.close();
    await page.goto(`${secured.base}/`);
    await page.locator('#signin-view').waitFor();
    const bad = `plt_${crypto.randomBytes(32).toString('base64url')}`;
    await page.fill('#token-input', bad);
    await page.press('#token-input', 'Enter');
    await page.locator('[data-testid=signin-error]').filter({ hasText: 'not accepted' }).waitFor();
    await screenshot('bad-token');

    await page.fill('#token-input', support.value);
    await page.locator('#signin-button').click();
    await page.locator('[data-testid=who]').filter({ hasText: 'sam-support' }).waitFor();
    await page.fill('#search-input', subject);
    await page.press('#search-input', 'Enter');
    await rowOf(predictionId).waitFor();
    check(await page.locator('#export-button').isHidden(), 'support may not export: no export button');
    await screenshot('support-customer');
    await rowOf(predictionId).locator('a').click();
    await page.locator('#replay-button').waitFor();
    check(await page.locator('#prediction-export-button').isHidden(), 'support may not export: no export button on the prediction');
    // The token survives a reload (sessionStorage).
    await page.reload();
    await page.locator('#prediction-view').waitFor();
    await page.locator('[data-testid=who]').filter({ hasText: 'sam-support' }).waitFor();
    await screenshot('support-prediction');

    await page.locator('#sign-out').click();
    await page.locator('#signin-view').waitFor();
    await page.fill('#token-input', auditor.value);
    await page.press('#token-input', 'Enter');
    await page.locator('[data-testid=noread-text]').filter({ hasText: 'may not read predictions' }).waitFor();
    check(await page.locator('#search-form').isHidden(), 'an auditor gets no search box');
    // What an auditor may do: export a customer's trail.
    await page.fill('#export-only-subject', subject);
    const exported = await downloadFrom('#export-only-button', '#export-only-status');
    check(exported.suggestedFilename() === `export-${subject}.tar`, `auditor export: ${exported.suggestedFilename()}`);
  });
}

main().then(() => {
  console.log(`web page test: ${steps.length} passed, 0 failed; screenshots in ${args.artifacts}`);
  process.exit(0);
}, (e) => {
  console.error(`\nweb page test FAILED: ${e instanceof TestFailure ? e.message : (e && e.stack) || e}`);
  console.error(`screenshots so far in ${args.artifacts}`);
  killAll();
  process.exit(1);
});
