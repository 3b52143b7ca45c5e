// The lineage graph (predlog.v1.Lineage) as an inline SVG laid out by layers,
// top to bottom: the prediction, the model version that made it, the artifact
// it ran (by digest), the data it was trained on, where that came from. The
// pipelines that produced them stand in a column to the right, linked by
// dashed edges from the side (one pipeline usually made the prediction's
// inputs, the training data and the model: drawn in the rows, its edges
// would cut through the whole graph).
//
// Edges point upstream ("from depends on to"), as in the API. A node's layer
// is its longest path from the root over the edges other than PRODUCED_BY
// (the registry refuses lineage cycles, and the walk below is bounded anyway),
// so everything a node was made from sits below it. Within a layer nodes are
// ordered by the mean position of what points at them, which keeps the few
// crossings a 5-15 node graph has readable.

import { el, modelText, shortDigest } from './format.js';

const NODE_H = 46;
const GAP_X = 22;
const GAP_Y = 58;
const MARGIN = 14;
const CHAR_W = 6.9;  // 12px sans-serif, average

const RELATION_TEXT = {
  MADE_BY: 'made by',
  READ: 'read',
  FED_BY: 'fed by',
  TRAINED_ON: 'trained on',
  EVALUATED_ON: 'evaluated on',
  DERIVED_FROM: 'derived from',
  PRODUCED_BY: 'produced by',
  RAN: 'ran artifact',
};

function nodeLabels(node) {
  const kind = node.kind || 'KIND_UNSPECIFIED';
  const name = node.id.replace(/^[a-z]+:/, '');
  const notRegistered = node.registered ? '' : ' · not registered';
  switch (kind) {
    case 'PREDICTION': {
      const p = node.prediction && node.prediction.event && node.prediction.event.predictionLogged;
      const sub = p ? [p.subjectId, p.output && p.output.label].filter(Boolean).join(' · ') : (node.note || 'not in the log');
      return { kind: 'prediction', title: name, sub };
    }
    case 'MODEL': {
      const r = node.model && node.model.registration;
      const commit = r && r.provenance && r.provenance.codeCommit;
      const sub = r ? [r.framework, commit && `commit ${shortDigest(commit, 10)}`].filter(Boolean).join(' · ') : '';
      return { kind: 'model', title: name, sub: sub + notRegistered };
    }
    case 'DATASET': {
      const r = node.dataset && node.dataset.registration;
      const digest = r && r.dataset && r.dataset.digest;
      const rows = r && r.rowCount && r.rowCount !== '0' ? `${r.rowCount} rows` : '';
      const sub = [digest && `sha256:${shortDigest(digest, 10)}`, rows].filter(Boolean).join(' · ');
      return { kind: 'dataset', title: name, sub: sub + notRegistered };
    }
    case 'PIPELINE': {
      const digest = node.pipeline && node.pipeline.codeDigest;
      return { kind: 'pipeline', title: name, sub: digest ? `code ${shortDigest(digest, 10)}` : '' };
    }
    case 'ARTIFACT':
      return { kind: 'artifact', title: `sha256:${shortDigest(node.digest, 16)}`, sub: node.sub || '' };
    default:
      return { kind: 'node', title: node.id, sub: '' };
  }
}

// Adds an artifact node under every model (its registered digest, or the one
// the prediction named): model -ran artifact-> artifact, and the model's
// training and evaluation edges start from the artifact, which is what was
// trained.
function withArtifacts(lineage) {
  const nodes = (lineage.nodes || []).map((n) => ({ ...n }));
  let edges = (lineage.edges || []).map((e) => ({ ...e }));
  const predictionModelDigest = {};
  for (const n of nodes) {
    const p = n.prediction && n.prediction.event && n.prediction.event.predictionLogged;
    if (p && p.model && p.model.artifactSha256) predictionModelDigest[`model:${modelText(p.model)}`] = p.model.artifactSha256;
  }
  for (const n of nodes.slice()) {
    if (n.kind !== 'MODEL') continue;
    const r = n.model && n.model.registration;
    const digest = (r && r.model && r.model.artifactSha256) || predictionModelDigest[n.id];
    if (!digest) continue;
    const id = `artifact:${digest}`;
    if (!nodes.some((m) => m.id === id)) {
      const size = r && r.artifactSizeBytes && r.artifactSizeBytes !== '0' ? `${r.artifactSizeBytes} bytes` : '';
      nodes.push({ kind: 'ARTIFACT', id, digest, registered: true, sub: size });
    }
    edges = edges.map((e) => (e.from === n.id && (e.relation === 'TRAINED_ON' || e.relation === 'EVALUATED_ON'))
      ? { ...e, from: id } : e);
    edges.push({ from: n.id, to: id, relation: 'RAN' });
  }
  return { nodes, edges };
}

function layerOf(nodes, edges, root) {
  const layer = new Map(nodes.map((n) => [n.id, -1]));
  layer.set(root, 0);
  const structural = edges.filter((e) => e.relation !== 'PRODUCED_BY');
  // Longest path by relaxation; at most |nodes| rounds (a cycle cannot grow it further).
  for (let round = 0; round < nodes.length; ++round) {
    let changed = false;
    for (const e of structural) {
      const from = layer.get(e.from);
      if (from === undefined || from < 0 || !layer.has(e.to)) continue;
      if (layer.get(e.to) < from + 1 && from + 1 <= nodes.length) {
        layer.set(e.to, from + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  // Pipelines go to a column of their own (see renderLineage); anything not
  // reached from the root goes to a last row.
  let deepest = 0;
  for (const l of layer.values()) deepest = Math.max(deepest, l);
  for (const n of nodes) {
    if (n.kind === 'PIPELINE') layer.set(n.id, -2);
    else if (layer.get(n.id) < 0) layer.set(n.id, deepest + 1);
  }
  return layer;
}

// Renders into `container` (emptied). Returns the model node the prediction
// was made by (for the provenance beside the graph), or null.
export function renderLineage(container, lineage) {
  container.replaceChildren();
  const { nodes, edges } = withArtifacts(lineage);
  if (!nodes.length) {
    container.append(el('p', { class: 'hint' }, 'No lineage recorded.'));
    return null;
  }
  const root = lineage.root || nodes[0].id;
  const layers = layerOf(nodes, edges, root);
  const rows = [];
  const side = [];
  for (const n of nodes) {
    const l = layers.get(n.id);
    if (l < 0) side.push(n); else (rows[l] = rows[l] || []).push(n);
  }
  const box = new Map();
  const labels = new Map(nodes.map((n) => [n.id, nodeLabels(n)]));
  for (const n of nodes) {
    const lb = labels.get(n.id);
    const chars = Math.max(lb.title.length + lb.kind.length + 1, lb.sub.length);
    box.set(n.id, { w: Math.min(300, Math.max(120, Math.round(chars * CHAR_W + 22))), h: NODE_H });
  }
  // Order each row by where its parents are.
  const order = new Map();
  const compact = rows.filter(Boolean);
  compact.forEach((row, r) => {
    if (r > 0) {
      const mean = (n) => {
        const xs = edges.filter((e) => e.to === n.id && order.has(e.from)).map((e) => order.get(e.from));
        return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Infinity;
      };
      const keyed = row.map((n, i) => ({ n, k: mean(n), i }));
      keyed.sort((a, b) => (a.k - b.k) || (a.i - b.i));
      row.splice(0, row.length, ...keyed.map((x) => x.n));
    }
    row.forEach((n, i) => order.set(n.id, i - (row.length - 1) / 2));
  });
  const rowWidth = (row) => row.reduce((s, n) => s + box.get(n.id).w, 0) + GAP_X * (row.length - 1);
  const mainWidth = Math.max(...compact.map(rowWidth));
  compact.forEach((row, r) => {
    let x = MARGIN + (mainWidth - rowWidth(row)) / 2;
    const y = MARGIN + r * (NODE_H + GAP_Y);
    for (const n of row) {
      const b = box.get(n.id);
      b.x = x;
      b.y = y;
      x += b.w + GAP_X;
    }
  });
  // The side column: each pipeline level with the middle of what it produced,
  // pushed down past the one above it.
  const sideX = MARGIN + mainWidth + 70;
  let sideWidth = 0;
  let nextFree = MARGIN;
  const sideY = (n) => {
    const ys = edges.filter((e) => e.to === n.id && box.get(e.from) && box.get(e.from).y !== undefined)
      .map((e) => box.get(e.from).y);
    return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : MARGIN;
  };
  for (const n of side.map((m) => ({ m, y: sideY(m) })).sort((a, b) => a.y - b.y).map((x) => x.m)) {
    const b = box.get(n.id);
    b.x = sideX;
    b.y = Math.max(nextFree, sideY(n));
    nextFree = b.y + NODE_H + 16;
    sideWidth = Math.max(sideWidth, b.w);
  }
  const width = MARGIN + mainWidth + (side.length ? 70 + sideWidth : 0) + MARGIN;
  const height = Math.max(MARGIN + compact.length * NODE_H + (compact.length - 1) * GAP_Y, nextFree - 16) + MARGIN;

  const svg = el('svg', {
    class: 'lineage', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Lineage of ${root}: ${nodes.length} nodes, ${edges.length} edges (listed below the graph)`,
    'data-testid': 'lineage-svg',
  });
  svg.append(el('defs', {},
    el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' }))));
  const sideXOf = () => (side.length ? sideX : Infinity);
  const edgeLayer = el('g', { class: 'edges' });
  const labelLayer = el('g', { class: 'edge-labels' });
  for (const e of edges) {
    const a = box.get(e.from);
    const b = box.get(e.to);
    if (!a || !b) continue;
    let d;
    let x1;
    let y1;
    let x2;
    let y2;
    if (b.x >= sideXOf(a)) {
      // Into the side column: from the node's right edge to the pipeline's left.
      x1 = a.x + a.w;
      y1 = a.y + a.h / 2;
      x2 = b.x;
      y2 = b.y + b.h / 2;
      const bend = Math.max(30, (x2 - x1) / 2);
      d = `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
    } else {
      x1 = a.x + a.w / 2;
      y1 = a.y + a.h;
      x2 = b.x + b.w / 2;
      y2 = b.y;
      const down = y2 > y1;
      const bend = down ? Math.max(24, (y2 - y1) / 2) : 60;
      d = down
        ? `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`
        : `M${x1},${y1} C${x1 + 80},${y1 + bend} ${x2 + 80},${y2 - bend} ${x2},${y2}`;
    }
    const cls = `edge rel-${(e.relation || '').toLowerCase()}`;
    edgeLayer.append(el('path', { d, class: cls, 'marker-end': 'url(#arrow)' },
      el('title', {}, `${e.from} ${RELATION_TEXT[e.relation] || e.relation} ${e.to}`)));
    if (e.relation !== 'PRODUCED_BY') {
      labelLayer.append(el('text', { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 + 4, class: 'edge-label' },
        RELATION_TEXT[e.relation] || e.relation));
    }
  }
  svg.append(edgeLayer);
  const nodeLayer = el('g', { class: 'nodes' });
  for (const n of nodes) {
    const b = box.get(n.id);
    const lb = labels.get(n.id);
    const g = el('g', {
      class: `node kind-${lb.kind}${n.registered === false ? ' unregistered' : ''}${n.id === root ? ' root' : ''}`,
      transform: `translate(${b.x},${b.y})`, 'data-testid': 'lineage-node', 'data-node-id': n.id,
    });
    g.append(el('title', {}, [n.id, n.kind === 'ARTIFACT' ? `sha256:${n.digest}` : '', n.note || ''].filter(Boolean).join('\n')));
    g.append(el('rect', { width: b.w, height: b.h, rx: 6, ry: 6 }));
    g.append(el('text', { x: 10, y: 18, class: 'node-title' },
      el('tspan', { class: 'node-kind' }, lb.kind + ' '), lb.title));
    if (lb.sub) g.append(el('text', { x: 10, y: 35, class: 'node-sub' }, lb.sub));
    nodeLayer.append(g);
  }
  svg.append(nodeLayer, labelLayer);
  container.append(svg);

  const rootModelEdge = edges.find((e) => e.from === root && e.relation === 'MADE_BY');
  return rootModelEdge ? nodes.find((n) => n.id === rootModelEdge.to) || null : null;
}

// The same graph as text: one line per edge, for screen readers and copying.
export function lineageList(list, lineage) {
  list.replaceChildren();
  const { edges } = withArtifacts(lineage);
  for (const e of edges) {
    list.append(el('li', {}, el('code', {}, e.from), ` ${RELATION_TEXT[e.relation] || e.relation} `, el('code', {}, e.to)));
  }
  if (lineage.truncated) list.append(el('li', {}, 'The walk stopped at its bound: some predictions were not walked.'));
}
