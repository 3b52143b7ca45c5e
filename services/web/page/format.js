// Values as people read them, the same way the predlog CLI prints them
// (services/cli/cli_format.cc): shortest round-trip floats, "0.5123108 (deny)",
// "credit@v1", "predlog.events-3#255". Inputs are protobuf JSON: int64 as
// strings, NaN/Infinity as strings, bytes as base64.

// A float32 in the fewest digits that read back as the same float.
export function shortestFloat(value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return String(value);
  const f = Math.fround(v);
  for (let precision = 6; precision <= 9; ++precision) {
    const text = Number(f.toPrecision(precision));
    if (Math.fround(text) === f) return String(text);
  }
  return String(f);
}

// A double in the fewest digits that read back as the same double.
export function shortestDouble(value) {
  const v = Number(value);
  return Number.isFinite(v) ? String(v) : String(value);
}

export function outputText(output) {
  if (!output) return '-';
  const scores = [];
  for (const s of output.floatScores || []) scores.push(shortestFloat(s));
  for (const s of output.doubleScores || []) scores.push(shortestDouble(s));
  let text = scores.length ? scores.join(', ') : '-';
  if (output.label) text += ` (${output.label})`;
  return text;
}

function bytesText(base64) {
  try {
    const raw = atob(base64);
    let hex = '0x';
    for (let i = 0; i < raw.length; ++i) hex += raw.charCodeAt(i).toString(16).padStart(2, '0');
    return hex;
  } catch {
    return base64;
  }
}

// A Feature or a Value: {text, type}. An unset oneof is "missing".
export function typedValue(v) {
  if (!v) return { text: 'missing', type: 'missing' };
  if ('doubleValue' in v) return { text: shortestDouble(v.doubleValue), type: 'double' };
  if ('floatValue' in v) return { text: shortestFloat(v.floatValue), type: 'float' };
  if ('int64Value' in v) return { text: String(v.int64Value), type: 'int64' };
  if ('boolValue' in v) return { text: v.boolValue ? 'true' : 'false', type: 'bool' };
  if ('stringValue' in v) return { text: v.stringValue, type: 'string' };
  if ('bytesValue' in v) return { text: bytesText(v.bytesValue), type: 'bytes' };
  return { text: 'missing', type: 'missing' };
}

export function modelText(ref) {
  if (!ref || (!ref.name && !ref.version)) return '-';
  return `${ref.name}@${ref.version}`;
}

export function positionText(position) {
  if (!position || !position.shard) return '-';
  return `${position.shard}#${position.index}`;
}

export function shortDigest(hex, length = 12) {
  if (!hex) return '';
  return hex.length > length ? hex.slice(0, length) + '…' : hex;
}

// RFC 3339 to the millisecond, as the CLI prints times ("2026-11-27T05:54:27.576Z");
// '' for an unset timestamp.
export function timeText(ts) {
  if (!ts || ts.startsWith('1970-01-01T00:00:00')) return '';
  const m = /^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(ts);
  if (!m) return ts;
  const fraction = ((m[2] || '.').slice(1) + '000').slice(0, 3);
  return `${m[1]}.${fraction}${m[3]}`;
}

export function timeMillis(ts) {
  const ms = Date.parse(ts || '');
  return Number.isNaN(ms) ? 0 : ms;
}

export function signed(value, digits = 4) {
  const v = Number(value);
  const text = Math.abs(v).toFixed(digits);
  return (v < 0 ? '−' : '+') + text;
}

// A filter box's text as RFC 3339: "2026-11-27" is that day's start (or, for
// an inclusive "to", the next day's); a full time is taken as written.
// Returns {value} or {error}.
export function parseTimeInput(text, endOfDay) {
  const t = (text || '').trim();
  if (!t) return { value: '' };
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(t);
  if (day) {
    const ms = Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]));
    // Date.UTC rolls 2026-02-30 over into March: a day that reads back
    // differently does not exist.
    if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== t) {
      return { error: `"${t}" is not a date` };
    }
    return { value: new Date(ms + (endOfDay ? 86400000 : 0)).toISOString() };
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(t) || Number.isNaN(Date.parse(t))) {
    return { error: `"${t}" is not a date (2026-11-27) or an RFC 3339 time (2026-11-27T05:54:27Z)` };
  }
  return { value: t };
}

// Builds an element: el('td', {class: 'x', dataset: {testid: 'y'}}, 'text', child...).
export function el(tag, attributes, ...children) {
  const node = tag === 'svg' || SVG_TAGS.has(tag)
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = v;
    } else if (key === 'text') {
      node.textContent = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const SVG_TAGS = new Set(['g', 'rect', 'text', 'tspan', 'path', 'line', 'marker', 'defs', 'title', 'circle']);
