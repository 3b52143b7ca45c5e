// The page's only way to predlogd: GET /api/v1/... in the protobuf JSON mapping
// (services/web/README.md lists the routes). The bearer token lives in this
// tab's sessionStorage and goes with every request; a 401 anywhere hands
// control to the sign-in form through onUnauthenticated.

const TOKEN_KEY = 'predlog.token';
const API = '/api/v1/';

// An error answer: HTTP status, the gRPC status name and the server's message
// ({"code": 5, "status": "NOT_FOUND", "message": "..."}).
export class ApiError extends Error {
  constructor(httpStatus, body, url) {
    const message = (body && typeof body.message === 'string' && body.message) ||
      (httpStatus ? `HTTP ${httpStatus}` : 'no answer');
    super(message);
    this.name = 'ApiError';
    this.httpStatus = httpStatus;
    this.status = (body && body.status) || '';
    this.code = body && typeof body.code === 'number' ? body.code : null;
    this.url = url;
  }
  get notFound() { return this.httpStatus === 404; }
}

let unauthenticatedHandler = null;
// Called (once per failing request) with the ApiError of a 401.
export function onUnauthenticated(handler) { unauthenticatedHandler = handler; }

// sessionStorage when the browser allows it, else this page's memory.
let memoryToken = '';
export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return memoryToken; }
}
export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { memoryToken = value || ''; }
}

// path: segments already joined by the caller with seg(); params: an object whose
// empty ('' / null / undefined) values are left out.
export function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === '' || value === null || value === undefined) continue;
    query.append(key, String(value));
  }
  const q = query.toString();
  return API + path + (q ? '?' + q : '');
}

// One path segment, escaped.
export function seg(text) { return encodeURIComponent(text); }

function headers(accept) {
  const h = { Accept: accept };
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function request(path, params, accept) {
  const target = url(path, params);
  let response;
  try {
    response = await fetch(target, { headers: headers(accept), cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(0, { message: `predlogd did not answer (${e.message})` }, target);
  }
  if (!response.ok) {
    const text = await response.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = { message: text.trim() || response.statusText }; }
    const error = new ApiError(response.status, body, target);
    if (response.status === 401 && unauthenticatedHandler) unauthenticatedHandler(error);
    throw error;
  }
  return response;
}

export async function getJson(path, params) {
  const response = await request(path, params, 'application/json');
  return response.json();
}

// Fetches a download (it needs the Authorization header, so a plain link cannot
// do it) and saves it through a temporary <a download>. Resolves to
// {name, bytes} once the browser has been handed the file.
export async function download(path, params, fallbackName) {
  const response = await request(path, params, 'application/x-tar, application/octet-stream, */*');
  const blob = await response.blob();
  const name = fileName(response.headers.get('Content-Disposition')) || fallbackName;
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  // The browser has started the download by now; the object URL may go later.
  setTimeout(() => URL.revokeObjectURL(href), 60000);
  return { name, bytes: blob.size };
}

function fileName(disposition) {
  if (!disposition) return '';
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) { try { return decodeURIComponent(star[1]); } catch { /* fall through */ } }
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1] : '';
}
