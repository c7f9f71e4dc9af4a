// The apus console: a single page over the Swift API of the proxy that
// serves it. It holds no secret of its own: it logs in like any client
// (tempauth's v1.0 or a token), keeps the token in the tab's
// sessionStorage, and every request it makes is an ordinary API request
// that the proxy authorizes with the same tokens and ACLs.
'use strict';

(() => {
  const PAGE_SIZE = 100;
  // Downloads below this are fetched into the page and saved from there;
  // larger ones go through a temporary URL when the account has a key, so
  // the browser streams them to disk.
  const BLOB_DOWNLOAD_LIMIT = 256 * 1024 * 1024;
  const DEFAULT_SEGMENT_MIB = 1024;
  const CLUSTER_REFRESH_MS = 5000;

  const session = {
    token: null,
    storage: null, // path of the account: /v1/AUTH_x
    user: null,
    resellerAdmin: false,
    info: null,
  };
  let clusterTimer = null;
  let lastCluster = null;
  let routeSerial = 0;

  // ---- small helpers -------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);

  // h('tag', {attr: value, onclick: fn}, children...): a DOM element.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      // Through the CSSOM: the page's policy forbids style attributes.
      else if (k === 'style') Object.assign(el.style, v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  let idCounter = 0;
  const uid = (p) => `${p}-${++idCounter}`;

  // A labelled input: returns [wrapper, input].
  function field(labelText, attrs) {
    const id = attrs.id || uid('f');
    const input = h(attrs.tag || 'input', { ...attrs, id, tag: null });
    return [h('div', { class: 'field' }, h('label', { for: id, text: labelText }), input), input];
  }

  function encodePath(name) {
    return name.split('/').map(encodeURIComponent).join('/');
  }

  function count(n, one, many) {
    const v = Number(n) || 0;
    return `${v} ${v === 1 ? one : many}`;
  }

  function humanBytes(n) {
    if (n === null || n === undefined || Number.isNaN(Number(n))) return '–';
    n = Number(n);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
  }

  function humanDate(s) {
    if (!s) return '';
    // Swift's listings give UTC without a zone.
    const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s}Z`);
    return Number.isNaN(d.getTime()) ? s : d.toLocaleString();
  }

  function humanAge(unixSeconds, now) {
    if (unixSeconds === null || unixSeconds === undefined) return 'never';
    const s = Math.max(0, Math.round(now - unixSeconds));
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  function say(message) {
    const status = $('#status');
    status.textContent = message;
  }

  function fail(message) {
    const alert = $('#alert');
    alert.textContent = message;
    alert.hidden = !message;
  }

  // An Error carrying the HTTP status of the response that caused it.
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorFrom(resp, what) {
    let body = '';
    try { body = (await resp.text()).trim(); } catch (_) { /* no body */ }
    body = body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300);
    return new ApiError(resp.status, `${what}: ${resp.status} ${resp.statusText}${body ? ` (${body})` : ''}`);
  }

  // A request to the account's storage URL (path relative to it).
  async function api(method, path, { headers = {}, body, query, allow = [] } = {}) {
    let url = session.storage + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
      const qs = q.toString();
      if (qs) url += `?${qs}`;
    }
    const resp = await fetch(url, {
      method,
      headers: { 'X-Auth-Token': session.token, ...headers },
      body,
      cache: 'no-store',
    });
    if (resp.status === 401) {
      logout('Your session has expired: log in again.');
      throw new ApiError(401, 'not logged in');
    }
    if (!resp.ok && !allow.includes(resp.status)) throw await errorFrom(resp, `${method} ${decodeURIComponent(path) || '/'}`);
    return resp;
  }

  function metaFrom(headers, prefix) {
    const out = [];
    headers.forEach((value, name) => {
      if (name.toLowerCase().startsWith(prefix)) out.push([name.slice(prefix.length), value]);
    });
    out.sort((a, b) => a[0].localeCompare(b[0]));
    return out;
  }

  // ---- session -------------------------------------------------------

  function saveSession() {
    sessionStorage.setItem('apus-console', JSON.stringify({
      token: session.token, storage: session.storage, user: session.user,
    }));
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem('apus-console') || 'null');
      if (s && s.token && s.storage) Object.assign(session, s);
    } catch (_) { /* a damaged entry means logged out */ }
  }

  function logout(message) {
    session.token = null;
    session.storage = null;
    session.user = null;
    session.resellerAdmin = false;
    lastCluster = null;
    sessionStorage.removeItem('apus-console');
    stopCluster();
    fail(message || '');
    if (location.hash !== '#/login') location.hash = '#/login';
    else route();
  }

  // The account path of a storage URL: same origin, so the page's own
  // security policy allows it and no CORS set-up is needed.
  function storagePath(url) {
    const u = new URL(url, location.href);
    return u.pathname.replace(/\/+$/, '');
  }

  async function loginWithKey(user, key) {
    const resp = await fetch('/auth/v1.0', {
      headers: { 'X-Auth-User': user, 'X-Auth-Key': key },
      cache: 'no-store',
    });
    if (resp.status === 401) throw new ApiError(401, 'Wrong user or key.');
    if (!resp.ok) throw await errorFrom(resp, 'Log in');
    const token = resp.headers.get('X-Auth-Token');
    const url = resp.headers.get('X-Storage-Url');
    if (!token || !url) throw new Error('The auth service answered without a token or storage URL.');
    session.token = token;
    session.storage = storagePath(url);
    session.user = user;
  }

  async function afterLogin() {
    saveSession();
    await discover();
  }

  // What the cluster offers (/info) and whether the user may see the
  // cluster page; neither is needed to browse, so failures only hide things.
  async function discover() {
    try {
      const r = await fetch('/info', { cache: 'no-store' });
      session.info = r.ok ? await r.json() : {};
    } catch (_) { session.info = {}; }
    try {
      const r = await fetch('/console/api/cluster', {
        method: 'HEAD', headers: { 'X-Auth-Token': session.token }, cache: 'no-store',
      });
      session.resellerAdmin = r.ok;
    } catch (_) { session.resellerAdmin = false; }
    showChrome();
  }

  function showChrome() {
    const inside = !!session.token;
    $('#nav').hidden = !inside;
    $('#logout').hidden = !inside;
    $('#nav-cluster').hidden = !(inside && session.resellerAdmin);
    $('#who').textContent = inside ? `${session.user || 'token'} · ${decodeURIComponent(session.storage.split('/').pop())}` : '';
  }

  // ---- routing -------------------------------------------------------

  // #/                      containers of the account
  // #/c/<container>?prefix=&marker=   objects
  // #/cluster               cluster page
  // #/login
  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, qs] = raw.split('?');
    const query = new URLSearchParams(qs || '');
    if (path === '/login') return { view: 'login' };
    if (path === '/cluster') return { view: 'cluster' };
    const m = path.match(/^\/c\/(.+)$/);
    if (m) {
      return {
        view: 'container',
        container: decodeURIComponent(m[1]),
        prefix: query.get('prefix') || '',
        marker: query.get('marker') || '',
      };
    }
    return { view: 'account', marker: query.get('marker') || '', prefix: query.get('prefix') || '' };
  }

  function containerHash(container, prefix, marker) {
    const q = new URLSearchParams();
    if (prefix) q.set('prefix', prefix);
    if (marker) q.set('marker', marker);
    const qs = q.toString();
    return `#/c/${encodeURIComponent(container)}${qs ? `?${qs}` : ''}`;
  }

  function setCurrentNav(which) {
    for (const [id, name] of [['#nav-storage', 'storage'], ['#nav-cluster', 'cluster']]) {
      const a = $(id);
      if (which === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  async function route() {
    const serial = ++routeSerial;
    const r = parseHash();
    stopCluster();
    if (!session.token && r.view !== 'login') {
      location.hash = '#/login';
      return;
    }
    if (session.token && r.view === 'login') {
      location.hash = '#/';
      return;
    }
    const main = $('#main');
    try {
      let view;
      if (r.view === 'login') view = loginView();
      else if (r.view === 'cluster') view = await clusterView();
      else if (r.view === 'container') view = await containerView(r);
      else view = await accountView(r);
      if (serial !== routeSerial) return; // a later navigation won
      main.replaceChildren(view);
      setCurrentNav(r.view === 'cluster' ? 'cluster' : 'storage');
      const heading = $('h1', main);
      if (heading) {
        heading.tabIndex = -1;
        heading.focus();
        document.title = `${heading.textContent} · apus console`;
      }
    } catch (e) {
      if (serial !== routeSerial || (e instanceof ApiError && e.status === 401)) return;
      main.replaceChildren(h('h1', { text: 'Something went wrong' }), h('p', { text: e.message }),
        h('p', {}, h('a', { href: '#/', text: 'Back to the containers' })));
    }
  }

  // ---- login ---------------------------------------------------------

  function loginView() {
    const [userField, user] = field('User (account:user)', { id: 'login-user', autocomplete: 'username', required: true, spellcheck: 'false' });
    const [keyField, key] = field('Key', { id: 'login-key', type: 'password', autocomplete: 'current-password', required: true });
    const submit = h('button', { type: 'submit', id: 'login-submit', text: 'Log in' });
    const form = h('form', {
      class: 'stack', id: 'login-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        submit.disabled = true;
        fail('');
        try {
          await loginWithKey(user.value.trim(), key.value);
          await afterLogin();
          location.hash = '#/';
        } catch (e) {
          fail(e.message);
          submit.disabled = false;
          key.focus();
        }
      },
    }, userField, keyField, submit);

    const [tokField, tok] = field('Token', { id: 'token-value', required: true, spellcheck: 'false' });
    const [urlField, url] = field('Storage URL', { id: 'token-url', required: true, placeholder: '/v1/AUTH_account', spellcheck: 'false' });
    const tokenForm = h('form', {
      class: 'stack', id: 'token-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        fail('');
        const token = tok.value.trim();
        const storage = storagePath(url.value.trim());
        try {
          // Checked before it is kept: a refused token is not a session.
          const resp = await fetch(storage, { method: 'HEAD', headers: { 'X-Auth-Token': token }, cache: 'no-store' });
          if (resp.status === 401 || resp.status === 403) {
            fail('That token is not valid for that storage URL.');
            tok.focus();
            return;
          }
          if (!resp.ok) throw await errorFrom(resp, 'Checking the token');
          Object.assign(session, { token, storage, user: null });
          await afterLogin();
          location.hash = '#/';
        } catch (e) { fail(e.message); }
      },
    }, tokField, urlField, h('button', { type: 'submit', text: 'Use the token' }));

    return h('section', { 'aria-labelledby': 'login-title' },
      h('h1', { id: 'login-title', text: 'Log in to apus' }),
      form,
      h('details', { class: 'panel' }, h('summary', { text: 'Log in with a token instead' }), tokenForm));
  }

  // ---- account: containers --------------------------------------------

  function policies() {
    const p = (session.info && session.info.swift && session.info.swift.policies) || [];
    return p.filter((x) => !x.deprecated);
  }

  async function accountView(r) {
    const resp = await api('GET', '', { query: { format: 'json', limit: PAGE_SIZE, marker: r.marker, prefix: r.prefix } });
    const list = await resp.json();
    const hd = resp.headers;
    const account = decodeURIComponent(session.storage.split('/').pop());

    const [nameField, name] = field('New container', { id: 'new-container', required: true, maxlength: '256', spellcheck: 'false' });
    const parts = [nameField];
    let policySelect = null;
    if (policies().length > 1) {
      const [pf, sel] = field('Storage policy', { tag: 'select', id: 'new-container-policy' });
      for (const p of policies()) sel.append(h('option', { value: p.name, text: p.default ? `${p.name} (default)` : p.name, selected: !!p.default }));
      policySelect = sel;
      parts.push(pf);
    }
    const create = h('form', {
      class: 'row', id: 'create-container-form', 'aria-label': 'Create a container',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const n = name.value.trim();
        if (!n || n.includes('/')) { fail('A container name is 1 to 256 characters without "/".'); return; }
        fail('');
        try {
          const headers = policySelect ? { 'X-Storage-Policy': policySelect.value } : {};
          const resp = await api('PUT', `/${encodeURIComponent(n)}`, { headers });
          say(resp.status === 201 ? `Created container ${n}.` : `Container ${n} already exists.`);
          name.value = '';
          await route();
        } catch (e) { fail(e.message); }
      },
    }, ...parts, h('button', { type: 'submit', id: 'create-container', text: 'Create' }));

    const [filterField, filter] = field('Show names starting with', { id: 'container-filter', value: r.prefix, spellcheck: 'false' });
    const filterForm = h('form', {
      class: 'row', role: 'search', 'aria-label': 'Filter containers',
      onsubmit: (ev) => {
        ev.preventDefault();
        location.hash = filter.value ? `#/?prefix=${encodeURIComponent(filter.value)}` : '#/';
      },
    }, filterField, h('button', { type: 'submit', class: 'secondary', text: 'Filter' }));

    const rows = list.map((c) => h('tr', {},
      h('td', { 'data-label': 'Name' }, h('a', { href: containerHash(c.name), text: c.name })),
      h('td', { class: 'num', 'data-label': 'Objects' }, String(c.count)),
      h('td', { class: 'num', 'data-label': 'Size' }, humanBytes(c.bytes)),
      h('td', { 'data-label': 'Last modified' }, humanDate(c.last_modified)),
      h('td', { class: 'actions' },
        h('button', {
          type: 'button', class: 'danger', 'aria-label': `Delete container ${c.name}`, text: 'Delete',
          onclick: () => deleteContainer(c.name),
        }))));

    const table = list.length
      ? h('table', { class: 'cards', id: 'container-list' },
        h('caption', { class: 'muted', text: `Containers${r.prefix ? ` starting with “${r.prefix}”` : ''}` }),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', text: 'Name' }), h('th', { scope: 'col', class: 'num', text: 'Objects' }),
          h('th', { scope: 'col', class: 'num', text: 'Size' }), h('th', { scope: 'col', text: 'Last modified' }),
          h('th', { scope: 'col' }, h('span', { class: 'muted', text: 'Actions' })))),
        h('tbody', {}, rows))
      : h('p', { id: 'container-list-empty', text: r.marker ? 'No more containers.' : 'No containers yet.' });

    return h('section', { 'aria-labelledby': 'account-title' },
      h('h1', { id: 'account-title', text: `Containers of ${account}` }),
      h('p', { class: 'summary', id: 'account-summary' },
        `${count(hd.get('X-Account-Container-Count'), 'container', 'containers')}, ${count(hd.get('X-Account-Object-Count'), 'object', 'objects')}, ${humanBytes(hd.get('X-Account-Bytes-Used') || 0)}`),
      h('div', { class: 'panel' }, create),
      filterForm,
      table,
      pager(list, r.marker, (marker) => {
        const q = new URLSearchParams();
        if (r.prefix) q.set('prefix', r.prefix);
        if (marker) q.set('marker', marker);
        const qs = q.toString();
        return `#/${qs ? `?${qs}` : ''}`;
      }));
  }

  // "First page" and "Next page" links: Swift pages by marker, so going
  // back one page at a time would need the markers of every page seen.
  function pager(list, marker, hashFor) {
    const nav = h('nav', { class: 'pager', 'aria-label': 'Pages' });
    if (marker) nav.append(h('a', { href: hashFor(''), text: 'First page' }));
    if (list.length >= PAGE_SIZE) {
      const last = list[list.length - 1];
      nav.append(h('a', { href: hashFor(last.name || last.subdir), id: 'next-page', text: 'Next page' }));
    }
    return nav;
  }

  async function deleteContainer(name) {
    if (!confirm(`Delete the container “${name}”? It must be empty.`)) return;
    fail('');
    try {
      const resp = await api('DELETE', `/${encodeURIComponent(name)}`, { allow: [409] });
      if (resp.status === 409) {
        fail(`The container “${name}” is not empty: delete its objects first.`);
        return;
      }
      say(`Deleted container ${name}.`);
      await route();
    } catch (e) { fail(e.message); }
  }

  // ---- container: objects ----------------------------------------------

  async function containerView(r) {
    const c = r.container;
    const cpath = `/${encodeURIComponent(c)}`;
    const resp = await api('GET', cpath, {
      query: { format: 'json', limit: PAGE_SIZE, marker: r.marker, prefix: r.prefix, delimiter: '/' },
      allow: [404],
    });
    if (resp.status === 404) {
      return h('section', {}, h('h1', { text: `No container “${c}”` }), h('p', {}, h('a', { href: '#/', text: 'Back to the containers' })));
    }
    const list = await resp.json();
    const hd = resp.headers;

    // Breadcrumbs: Containers / c / a / b /
    const crumbs = h('ol', { class: 'crumbs' }, h('li', {}, h('a', { href: '#/', text: 'Containers' })));
    crumbs.append(h('li', {}, r.prefix ? h('a', { href: containerHash(c), text: c }) : h('span', { 'aria-current': 'page', text: c })));
    let acc = '';
    const segs = r.prefix.split('/').filter((s) => s !== '');
    segs.forEach((s, i) => {
      acc += `${s}/`;
      crumbs.append(h('li', {}, i === segs.length - 1
        ? h('span', { 'aria-current': 'page', text: s })
        : h('a', { href: containerHash(c, acc), text: s })));
    });

    const rows = list.map((o) => {
      if (o.subdir !== undefined) {
        const label = o.subdir.slice(r.prefix.length);
        return h('tr', { class: 'folder' },
          h('td', { 'data-label': 'Name' }, h('a', { href: containerHash(c, o.subdir), text: `${label}` })),
          h('td', { class: 'num', 'data-label': 'Size' }, '–'),
          h('td', { 'data-label': 'Type' }, 'folder'),
          h('td', { 'data-label': 'Last modified' }, ''),
          h('td', { class: 'actions' }));
      }
      const label = o.name.slice(r.prefix.length);
      return h('tr', { 'data-object': o.name },
        h('td', { 'data-label': 'Name' }, h('button', {
          type: 'button', class: 'secondary object-open', text: label,
          'aria-label': `Details of ${label}`,
          onclick: () => objectDialog(c, o.name),
        })),
        h('td', { class: 'num', 'data-label': 'Size' }, humanBytes(o.bytes)),
        h('td', { 'data-label': 'Type' }, o.content_type || ''),
        h('td', { 'data-label': 'Last modified' }, humanDate(o.last_modified)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'secondary object-download', text: 'Download', 'aria-label': `Download ${label}`, onclick: () => download(c, o.name, o.bytes) }),
          h('button', { type: 'button', class: 'danger object-delete', text: 'Delete', 'aria-label': `Delete ${label}`, onclick: () => deleteObject(c, o.name) })));
    });

    const table = list.length
      ? h('table', { class: 'cards', id: 'object-list' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', text: 'Name' }), h('th', { scope: 'col', class: 'num', text: 'Size' }),
          h('th', { scope: 'col', text: 'Type' }), h('th', { scope: 'col', text: 'Last modified' }),
          h('th', { scope: 'col' }, h('span', { class: 'muted', text: 'Actions' })))),
        h('tbody', {}, rows))
      : h('p', { id: 'object-list-empty', text: r.marker ? 'No more objects.' : 'Nothing here yet.' });

    return h('section', { 'aria-labelledby': 'container-title' },
      h('nav', { 'aria-label': 'Breadcrumbs' }, crumbs),
      h('h1', { id: 'container-title', text: r.prefix ? `${c}/${r.prefix}` : c }),
      h('p', { class: 'summary', id: 'container-summary' },
        `${count(hd.get('X-Container-Object-Count'), 'object', 'objects')}, ${humanBytes(hd.get('X-Container-Bytes-Used') || 0)}`,
        hd.get('X-Storage-Policy') ? `, policy ${hd.get('X-Storage-Policy')}` : ''),
      uploadPanel(c, r.prefix),
      containerSettings(c, hd),
      table,
      pager(list, r.marker, (marker) => containerHash(c, r.prefix, marker)));
  }

  // ---- uploads ---------------------------------------------------------

  function uploadPanel(container, prefix) {
    const [sizeField, segInput] = field('Upload files larger than this in segments (MiB)', {
      id: 'segment-size', type: 'number', min: '1', step: '1', value: String(DEFAULT_SEGMENT_MIB),
    });
    const list = h('ul', { class: 'uploads', id: 'uploads', 'aria-label': 'Uploads' });
    const [pickField, picker] = field(`Upload files to ${prefix ? `${container}/${prefix}` : container}`, {
      id: 'upload-file', type: 'file', multiple: true,
    });
    picker.addEventListener('change', async () => {
      const files = Array.from(picker.files || []);
      picker.value = '';
      const segBytes = Math.max(1, Number(segInput.value) || DEFAULT_SEGMENT_MIB) * 1024 * 1024;
      let done = 0;
      for (const f of files) {
        if (await uploadOne(container, prefix + f.name, f, segBytes, list)) done++;
      }
      if (done) {
        say(`Uploaded ${done} file${done === 1 ? '' : 's'}.`);
        await refreshListingKeepingUploads(list);
      }
    });
    return h('div', { class: 'panel' }, pickField, list,
      h('details', { id: 'upload-options' }, h('summary', { text: 'Upload options' }), sizeField));
  }

  // Re-renders the listing while the upload list the user is reading stays.
  async function refreshListingKeepingUploads(list) {
    const items = Array.from(list.children);
    await route();
    const fresh = $('#uploads');
    if (fresh) fresh.append(...items);
  }

  function uploadRow(list, name) {
    const bar = h('progress', { max: '100', value: '0', 'aria-label': `Upload of ${name}` });
    const state = h('span', { class: 'muted', text: 'waiting' });
    const row = h('li', { class: 'upload' }, h('span', { text: name }), bar, state);
    list.append(row);
    return {
      progress(sent, total) {
        bar.value = total ? Math.floor((sent / total) * 100) : 0;
        state.textContent = `${humanBytes(sent)} of ${humanBytes(total)}`;
      },
      finish(ok, text) {
        if (ok) bar.value = 100;
        state.textContent = text;
        state.className = ok ? 'good' : 'bad';
        row.classList.add(ok ? 'done' : 'failed');
      },
    };
  }

  // A PUT of `body` with upload progress (fetch cannot report it).
  function putWithProgress(url, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', url);
      xhr.setRequestHeader('X-Auth-Token', session.token);
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (ev) => onProgress(ev.loaded);
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error('the connection failed'));
      xhr.onabort = () => reject(new Error('aborted'));
      xhr.send(body);
    });
  }

  function contentTypeOf(file) {
    return file.type || 'application/octet-stream';
  }

  async function uploadOne(container, name, file, segBytes, list) {
    const row = uploadRow(list, name);
    const url = `${session.storage}/${encodeURIComponent(container)}/${encodePath(name)}`;
    try {
      if (file.size > segBytes) {
        await uploadSegmented(container, name, file, segBytes, row);
      } else {
        const xhr = await putWithProgress(url, file, { 'Content-Type': contentTypeOf(file) },
          (sent) => row.progress(sent, file.size));
        if (xhr.status === 401) { logout('Your session has expired: log in again.'); return false; }
        if (xhr.status !== 201) throw new Error(`${xhr.status} ${xhr.statusText} ${xhr.responseText.slice(0, 200)}`);
      }
      row.finish(true, `uploaded, ${humanBytes(file.size)}`);
      return true;
    } catch (e) {
      row.finish(false, `failed: ${e.message}`);
      fail(`Upload of ${name} failed: ${e.message}`);
      return false;
    }
  }

  // A static large object: the file's segments in `<container>_segments`,
  // named as the swift client names them, then the manifest.
  async function uploadSegmented(container, name, file, segBytes, row) {
    const slo = (session.info && session.info.slo) || {};
    const maxSegments = slo.max_manifest_segments || 1000;
    const size = Math.max(segBytes, Math.ceil(file.size / maxSegments));
    const segContainer = `${container}_segments`;
    const made = await api('PUT', `/${encodeURIComponent(segContainer)}`);
    if (made.status !== 201 && made.status !== 202) throw new Error(`cannot create ${segContainer}`);
    const stamp = (file.lastModified / 1000).toFixed(6);
    const manifest = [];
    let offset = 0;
    for (let i = 0; offset < file.size; i++) {
      const part = file.slice(offset, Math.min(file.size, offset + size));
      const segName = `${name}/slo/${stamp}/${file.size}/${size}/${String(i).padStart(8, '0')}`;
      const base = offset;
      const xhr = await putWithProgress(`${session.storage}/${encodeURIComponent(segContainer)}/${encodePath(segName)}`,
        part, {}, (sent) => row.progress(base + sent, file.size));
      if (xhr.status !== 201) throw new Error(`segment ${i}: ${xhr.status} ${xhr.statusText}`);
      const etag = (xhr.getResponseHeader('ETag') || '').replace(/"/g, '');
      manifest.push({ path: `/${segContainer}/${segName}`, etag, size_bytes: part.size });
      offset += part.size;
    }
    await api('PUT', `/${encodeURIComponent(container)}/${encodePath(name)}`, {
      query: { 'multipart-manifest': 'put' },
      headers: { 'Content-Type': contentTypeOf(file) },
      body: JSON.stringify(manifest),
    });
  }

  // ---- downloads -------------------------------------------------------

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name.split('/').pop() || 'download' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function download(container, name, bytes) {
    fail('');
    try {
      if (bytes > BLOB_DOWNLOAD_LIMIT) {
        const key = await tempUrlKey();
        if (key) {
          const url = await tempUrl(key, container, name, 3600, true);
          location.assign(url);
          return;
        }
      }
      say(`Downloading ${name}…`);
      const resp = await api('GET', `/${encodeURIComponent(container)}/${encodePath(name)}`);
      saveBlob(await resp.blob(), name);
      say(`Downloaded ${name}.`);
    } catch (e) { fail(e.message); }
  }

  // ---- temporary URLs --------------------------------------------------

  async function tempUrlKey() {
    const resp = await api('HEAD', '');
    return resp.headers.get('X-Account-Meta-Temp-Url-Key');
  }

  function hex(buf) {
    return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // Swift's tempurl signature: HMAC-SHA256 over "GET\n<expires>\n<path>".
  async function tempUrl(key, container, name, seconds, attachment) {
    if (!(window.crypto && crypto.subtle)) throw new Error('Temporary URLs need a secure page (HTTPS or localhost).');
    const expires = Math.floor(Date.now() / 1000) + seconds;
    const path = `${decodeURIComponent(session.storage)}/${container}/${name}`;
    const enc = new TextEncoder();
    const k = await crypto.subtle.importKey('raw', enc.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const sig = hex(await crypto.subtle.sign('HMAC', k, enc.encode(`GET\n${expires}\n${path}`)));
    let url = `${location.origin}${session.storage}/${encodeURIComponent(container)}/${encodePath(name)}?temp_url_sig=${sig}&temp_url_expires=${expires}`;
    if (attachment) url += `&filename=${encodeURIComponent(name.split('/').pop())}`;
    return url;
  }

  function randomKey() {
    const b = new Uint8Array(24);
    crypto.getRandomValues(b);
    return hex(b);
  }

  // ---- delete ----------------------------------------------------------

  async function deleteObject(container, name, afterwards) {
    if (!confirm(`Delete “${name}”?`)) return false;
    fail('');
    try {
      const path = `/${encodeURIComponent(container)}/${encodePath(name)}`;
      const head = await api('HEAD', path, { allow: [404] });
      const isSlo = (head.headers.get('X-Static-Large-Object') || '').toLowerCase() === 'true';
      await api('DELETE', path, { query: isSlo ? { 'multipart-manifest': 'delete' } : {}, allow: [404] });
      say(`Deleted ${name}.`);
      if (afterwards) afterwards();
      await route();
      return true;
    } catch (e) { fail(e.message); return false; }
  }

  // ---- metadata editing ------------------------------------------------

  // Rows of (name, value) inputs; returns the element and a reader.
  function metaEditor(idPrefix, pairs) {
    const rows = h('div', { id: `${idPrefix}-rows` });
    let n = 0;
    const addRow = (k = '', v = '') => {
      const i = ++n;
      const [kf, ki] = field('Name', { id: `${idPrefix}-key-${i}`, value: k, spellcheck: 'false', class: 'meta-key' });
      const [vf, vi] = field('Value', { id: `${idPrefix}-value-${i}`, value: v, class: 'meta-value' });
      const row = h('div', { class: 'meta-row' }, kf, vf,
        h('button', {
          type: 'button', class: 'danger', text: 'Remove', 'aria-label': `Remove metadata ${k || 'row'}`,
          onclick: () => { row.remove(); addButton.focus(); },
        }));
      rows.append(row);
      return ki;
    };
    const addButton = h('button', {
      type: 'button', class: 'secondary', id: `${idPrefix}-add`, text: 'Add metadata',
      onclick: () => addRow().focus(),
    });
    for (const [k, v] of pairs) addRow(k, v);
    const read = () => {
      const out = [];
      for (const row of rows.children) {
        const k = $('.meta-key', row).value.trim();
        const v = $('.meta-value', row).value;
        if (!k && !v) continue;
        if (!/^[A-Za-z0-9_-]+$/.test(k)) throw new Error(`“${k}” is not a valid metadata name (letters, digits, - and _).`);
        out.push([k, v]);
      }
      return out;
    };
    return { element: h('div', {}, rows, addButton), read };
  }

  function containerSettings(container, hd) {
    const read = hd.get('X-Container-Read') || '';
    const write = hd.get('X-Container-Write') || '';
    const isPublic = read.split(',').map((s) => s.trim()).includes('.r:*');
    const [readField, readInput] = field('Read ACL', { id: 'acl-read', value: read, spellcheck: 'false' });
    const [writeField, writeInput] = field('Write ACL', { id: 'acl-write', value: write, spellcheck: 'false' });
    const publicBox = h('input', { type: 'checkbox', id: 'container-public', checked: isPublic });
    publicBox.addEventListener('change', () => {
      const parts = readInput.value.split(',').map((s) => s.trim()).filter((s) => s && s !== '.r:*' && s !== '.rlistings');
      if (publicBox.checked) parts.push('.r:*', '.rlistings');
      readInput.value = parts.join(',');
    });
    const before = metaFrom(hd, 'x-container-meta-');
    const editor = metaEditor('container-meta', before);
    const form = h('form', {
      id: 'container-settings-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        fail('');
        try {
          const pairs = editor.read();
          const headers = {};
          const acl = (name, value) => {
            if (value.trim()) headers[`X-Container-${name}`] = value.trim();
            else headers[`X-Remove-Container-${name}`] = '1';
          };
          acl('Read', readInput.value);
          acl('Write', writeInput.value);
          const kept = new Set(pairs.map(([k]) => k.toLowerCase()));
          for (const [k] of before) if (!kept.has(k.toLowerCase())) headers[`X-Remove-Container-Meta-${k}`] = '1';
          for (const [k, v] of pairs) headers[`X-Container-Meta-${k}`] = v;
          await api('POST', `/${encodeURIComponent(container)}`, { headers });
          say(`Saved the settings of ${container}.`);
          await route();
        } catch (e) { fail(e.message); }
      },
    },
    h('div', { class: 'row' }, publicBox, h('label', { for: 'container-public', text: 'Public: anyone may read and list this container' })),
    h('div', { class: 'row' }, readField, writeField),
    h('h2', { text: 'Container metadata' }),
    editor.element,
    h('div', { class: 'row' }, h('button', { type: 'submit', id: 'container-save', text: 'Save settings' })));
    return h('details', { class: 'panel', id: 'container-settings' },
      h('summary', { text: `Access and metadata${isPublic ? ' (public)' : ''}` }), form);
  }

  // ---- object details ----------------------------------------------------

  async function objectDialog(container, name) {
    fail('');
    const path = `/${encodeURIComponent(container)}/${encodePath(name)}`;
    let head;
    try {
      head = await api('HEAD', path);
    } catch (e) { fail(e.message); return; }
    const hd = head.headers;
    const opener = document.activeElement;
    const before = metaFrom(hd, 'x-object-meta-');
    const editor = metaEditor('object-meta', before);
    const [ctField, ctInput] = field('Content type', { id: 'object-content-type', value: hd.get('Content-Type') || '', spellcheck: 'false' });
    const facts = h('dl', { class: 'facts' });
    const fact = (k, v) => { if (v) facts.append(h('dt', { text: k }), h('dd', { text: v })); };
    fact('Size', humanBytes(hd.get('Content-Length')));
    fact('ETag', (hd.get('ETag') || '').replace(/"/g, ''));
    fact('Last modified', hd.get('Last-Modified'));
    if ((hd.get('X-Static-Large-Object') || '').toLowerCase() === 'true') fact('Large object', 'static (segments)');
    if (hd.get('X-Object-Manifest')) fact('Large object', `dynamic: ${hd.get('X-Object-Manifest')}`);
    if (hd.get('X-Delete-At')) fact('Expires', new Date(Number(hd.get('X-Delete-At')) * 1000).toLocaleString());

    const share = h('div', { id: 'share' });
    const [expField, expSelect] = field('Valid for', { tag: 'select', id: 'share-expiry' });
    for (const [label, s] of [['1 hour', 3600], ['1 day', 86400], ['7 days', 604800]]) expSelect.append(h('option', { value: String(s), text: label }));
    const shareOut = h('output', { class: 'url', id: 'share-url', for: 'share-expiry', hidden: true });
    share.append(h('div', { class: 'row' }, expField, h('button', {
      type: 'button', class: 'secondary', id: 'share-create', text: 'Create a temporary URL',
      onclick: async () => {
        try {
          let key = await tempUrlKey();
          if (!key) {
            if (!confirm('This account has no temporary-URL key yet. Create one now?')) return;
            key = randomKey();
            await api('POST', '', { headers: { 'X-Account-Meta-Temp-Url-Key': key } });
          }
          shareOut.textContent = await tempUrl(key, container, name, Number(expSelect.value), false);
          shareOut.hidden = false;
          say('Temporary URL created: anyone with it can read this object until it expires.');
        } catch (e) { fail(e.message); }
      },
    })), shareOut);

    const dialog = h('dialog', { id: 'object-dialog', 'aria-labelledby': 'object-dialog-title' });
    const close = () => dialog.close();
    const form = h('form', {
      id: 'object-meta-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const pairs = editor.read();
          // An object POST replaces all its metadata: send the whole set.
          const headers = {};
          for (const [k, v] of pairs) headers[`X-Object-Meta-${k}`] = v;
          if (ctInput.value.trim()) headers['Content-Type'] = ctInput.value.trim();
          await api('POST', path, { headers });
          say(`Saved the metadata of ${name}.`);
          close();
          await route();
        } catch (e) { fail(e.message); }
      },
    }, ctField, h('h3', { text: 'Metadata' }), editor.element,
    h('div', { class: 'row' }, h('button', { type: 'submit', id: 'object-meta-save', text: 'Save metadata' })));

    dialog.append(
      h('div', { class: 'dialog-head' },
        h('h2', { id: 'object-dialog-title', text: name }),
        h('button', { type: 'button', class: 'secondary', id: 'object-dialog-close', text: 'Close', onclick: close })),
      facts,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', text: 'Download', onclick: () => download(container, name, Number(hd.get('Content-Length'))) }),
        h('button', { type: 'button', class: 'danger', text: 'Delete', onclick: () => deleteObject(container, name, close) })),
      form,
      h('h3', { text: 'Share' }),
      share);
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
  }

  // ---- cluster -----------------------------------------------------------

  function stopCluster() {
    // clearTimeout and clearInterval share their ids.
    if (clusterTimer) clearInterval(clusterTimer);
    clusterTimer = null;
  }

  async function fetchCluster() {
    const resp = await fetch('/console/api/cluster', { headers: { 'X-Auth-Token': session.token }, cache: 'no-store' });
    if (resp.status === 401) { logout('Your session has expired: log in again.'); throw new ApiError(401, 'not logged in'); }
    if (resp.status === 403) throw new ApiError(403, 'The cluster page is for reseller admins (.reseller_admin).');
    if (!resp.ok) throw await errorFrom(resp, 'Cluster state');
    return resp.json();
  }

  async function clusterView() {
    const data = await fetchCluster();
    const section = h('section', { 'aria-labelledby': 'cluster-title' },
      h('h1', { id: 'cluster-title', text: 'Cluster' }),
      h('div', { id: 'cluster-body' }, renderCluster(data, lastCluster)));
    lastCluster = data;
    const refresh = async () => {
      if (document.hidden) return;
      try {
        const next = await fetchCluster();
        const body = $('#cluster-body');
        if (!body) return;
        body.replaceChildren(renderCluster(next, lastCluster));
        lastCluster = next;
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 401)) fail(e.message);
      }
    };
    // Rates need two samples: the second comes soon, then every interval.
    clusterTimer = setTimeout(() => {
      refresh();
      clusterTimer = setInterval(refresh, CLUSTER_REFRESH_MS);
    }, 1500);
    return section;
  }

  function rate(now, before, pick) {
    if (!before || now.time <= before.time) return null;
    return (pick(now) - pick(before)) / (now.time - before.time);
  }

  function tile(label, value, id) {
    return h('div', { class: 'tile', id }, h('div', { class: 'value', text: value }), h('div', { class: 'label', text: label }));
  }

  function fillBar(used, size, label) {
    const pct = size > 0 ? Math.min(100, (used / size) * 100) : 0;
    const cls = pct >= 95 ? 'full' : pct >= 80 ? 'warn' : '';
    return h('div', { class: 'fill' },
      h('div', {
        class: 'fillbar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100',
        'aria-valuenow': pct.toFixed(0), 'aria-label': `${label} fill`,
      }, h('span', { class: cls, style: { width: `${pct.toFixed(1)}%` } })),
      h('span', { text: `${pct.toFixed(0)} % of ${humanBytes(size)}` }));
  }

  function renderCluster(d, before) {
    const p = d.proxy || {};
    const cls = p.by_class || {};
    const fmtRate = (x) => (x === null ? '…' : `${x.toFixed(1)}/s`);
    const fmtBytesRate = (x) => (x === null ? '…' : `${humanBytes(Math.max(0, x))}/s`);
    const servers = d.servers || [];
    const devices = servers.flatMap((s) => (s.devices || [])
      .slice().sort((a, b) => String(a.device).localeCompare(String(b.device), undefined, { numeric: true }))
      .map((dev) => ({ s, dev })));
    const unreachable = servers.filter((s) => !s.reachable);
    const unmounted = devices.filter(({ dev }) => dev.mounted === false);
    const problems = [
      ...unreachable.map((s) => `${s.type} server ${s.address} does not answer`),
      ...unmounted.map(({ s, dev }) => `${dev.device} on ${s.address} is not mounted`),
      ...(p.error_limited || []).map((n) => `the proxy is error-limiting ${n}`),
    ];
    const out = h('div', {});
    out.append(h('h2', { text: 'Proxy' }),
      h('div', { class: 'tiles' },
        tile('requests per second', fmtRate(rate(d, before, (x) => x.proxy.requests)), 'tile-requests'),
        tile('server errors (5xx) per second', fmtRate(rate(d, before, (x) => (x.proxy.by_class || {})['5xx'] || 0)), 'tile-5xx'),
        tile('received', fmtBytesRate(rate(d, before, (x) => x.proxy.bytes_in)), 'tile-in'),
        tile('sent', fmtBytesRate(rate(d, before, (x) => x.proxy.bytes_out)), 'tile-out'),
        tile('requests since start', String(p.requests || 0), 'tile-total'),
        tile('client errors (4xx) since start', String(cls['4xx'] || 0), 'tile-4xx')));

    out.append(h('h2', { text: 'Problems' }),
      problems.length
        ? h('ul', { id: 'cluster-problems' }, problems.map((t) => h('li', { class: 'bad', text: t })))
        : h('p', { class: 'good', id: 'cluster-problems', text: 'None: every server answers, every device is mounted, no node is error-limited.' }));

    out.append(h('h2', { text: 'Devices' }));
    out.append(h('table', { class: 'cards', id: 'device-list' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Server' }), h('th', { scope: 'col', text: 'Device' }),
        h('th', { scope: 'col', text: 'Fill' }), h('th', { scope: 'col', class: 'num', text: 'Free' }))),
      h('tbody', {}, devices.map(({ s, dev }) => h('tr', {},
        h('td', { 'data-label': 'Server' }, `${s.type} ${s.address}`),
        h('td', { 'data-label': 'Device' }, dev.device, dev.mounted === false ? h('span', { class: 'bad', text: ' (unmounted)' }) : ''),
        h('td', { 'data-label': 'Fill' }, fillBar(dev.used || 0, dev.size || 0, `${dev.device} on ${s.address}`)),
        h('td', { class: 'num', 'data-label': 'Free' }, humanBytes(dev.avail)))))));

    const daemonNames = Array.from(new Set(servers.flatMap((s) => Object.keys(s.daemons || {})))).sort();
    out.append(h('h2', { text: 'Servers and daemons' }));
    out.append(h('table', { class: 'cards', id: 'server-list' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Server' }), h('th', { scope: 'col', text: 'State' }),
        h('th', { scope: 'col', class: 'num', text: 'Async pendings' }),
        daemonNames.map((n) => h('th', { scope: 'col', text: `${n} last pass` })))),
      h('tbody', {}, servers.map((s) => h('tr', {},
        h('td', { 'data-label': 'Server' }, `${s.type} ${s.address}`),
        h('td', { 'data-label': 'State' }, s.reachable ? h('span', { class: 'good', text: 'answers' }) : h('span', { class: 'bad', text: 'unreachable' })),
        h('td', { class: 'num', 'data-label': 'Async pendings' }, s.async_pending === null || s.async_pending === undefined ? '–' : String(s.async_pending)),
        daemonNames.map((n) => {
          const has = s.daemons && Object.prototype.hasOwnProperty.call(s.daemons, n);
          return h('td', { 'data-label': `${n} last pass` }, has ? humanAge(s.daemons[n], d.time) : '–');
        }))))));
    out.append(h('p', { class: 'muted', text: `As of ${new Date(d.time * 1000).toLocaleTimeString()}; refreshed every ${CLUSTER_REFRESH_MS / 1000} s.` }));
    return out;
  }

  // ---- start ---------------------------------------------------------------

  window.addEventListener('hashchange', () => { fail(''); say(''); route(); });
  document.addEventListener('DOMContentLoaded', async () => {
    $('#logout').addEventListener('click', () => logout(''));
    loadSession();
    if (session.token) await discover();
    showChrome();
    await route();
  });
})();
