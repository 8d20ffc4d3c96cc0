// The auditors' page: filterd's own REST API, read with the read token when
// one is configured. Every value from the API reaches the page as text
// (textContent, attributes), never as markup.
'use strict';

(function () {
  const TOKEN_KEY = 'ledgerfence.readToken';
  const API = '../v1/';
  const REASONS = ['country_not_allowed', 'organization_not_allowed', 'host_unregistered',
    'ledger_unavailable', 'vm_unregulated', 'host_unattested'];
  const UNDECIDED = ['fail_closed', 'request_invalid', 'overloaded', 'unauthorized'];
  const $ = (id) => document.getElementById(id);
  // The SVG namespace, taken from an element the HTML parser made.
  const SVGNS = $('timeline-svg').namespaceURI;

  // el makes an element; strings and numbers among children become text.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
  }
  function append(e, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function status(id, text, kind) {
    const e = $(id);
    e.textContent = text;
    e.className = 'status' + (kind ? ' ' + kind : '');
  }
  // setState says where a view is (loading, ready, empty, error); a view's
  // first answer is marked in the page's performance timeline.
  function setState(id, state) {
    $(id).dataset.state = state;
    if (state !== 'loading' && state !== 'idle' && performance.mark) performance.mark(id + ':' + state);
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d)) return String(s);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, '');
  }

  // ---- the API and the read token ----

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  let askedForToken = false;
  const retries = [];
  function needToken(refused) {
    const p = $('token-prompt');
    $('token-reason').textContent = refused
      ? 'filterd refused the read token this tab holds (401). Enter the read token (or the admin token, or a writer token) again.'
      : 'This filterd answers reads only with its read token (or the admin token, or a writer token). Enter it once: this tab keeps it in its session storage until it closes.';
    p.hidden = false;
    if (!askedForToken) {
      askedForToken = true;
      $('token-input').focus();
    }
  }

  // api GETs path under /v1/ and returns its JSON; a 503 with Retry-After
  // (filterd's bound on heavy reads) is tried again a few times.
  async function api(path) {
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: 'application/json' };
      const tok = token();
      if (tok) headers.Authorization = 'Bearer ' + tok;
      let resp;
      try {
        resp = await fetch(API + path, { headers, cache: 'no-store', credentials: 'omit' });
      } catch (e) {
        throw new APIError(0, 'filterd could not be reached: ' + e.message);
      }
      if (resp.status === 503 && resp.headers.get('Retry-After') && attempt < 6) {
        await resp.text();
        await sleep(250 * (attempt + 1));
        continue;
      }
      let body = null;
      try { body = await resp.json(); } catch (_) { body = null; }
      if (resp.status === 401) {
        needToken(tok !== '');
        throw new APIError(401, 'filterd needs the read token: enter it above.');
      }
      if (!resp.ok) {
        const msg = body && typeof body.error === 'string' ? body.error : resp.status + ' ' + resp.statusText;
        throw new APIError(resp.status, msg);
      }
      return body;
    }
  }

  // guarded runs a view's loader, which the token form runs again.
  function guarded(fn) {
    retries.push(fn);
    return fn();
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token-input').value.trim();
    if (!v) return;
    try { sessionStorage.setItem(TOKEN_KEY, v); } catch (_) { /* private mode: kept for this page only */ }
    $('token-input').value = '';
    $('token-prompt').hidden = true;
    $('forget-token').hidden = false;
    for (const fn of retries) fn();
  });
  $('forget-token').addEventListener('click', () => {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* nothing kept */ }
    $('forget-token').hidden = true;
  });
  if (token()) $('forget-token').hidden = false;

  // ---- the ledger's line in the header ----

  async function loadInfo() {
    try {
      const info = await api('ledger');
      const parts = ['ledger: ' + (info.backend || 'unknown')];
      if (typeof info.height === 'number') parts.push('height ' + info.height);
      if (info.cache_ready === false) parts.push('cache not filled yet');
      $('ledger-info').textContent = parts.join(' · ');
    } catch (e) {
      $('ledger-info').textContent = 'ledger: ' + e.message;
    }
  }

  // ---- hosts by country ----

  let mapReady = null; // a promise of the map's <svg>
  function loadMap() {
    if (!mapReady) {
      const box = $('map');
      mapReady = fetch(box.dataset.src).then((r) => {
        if (!r.ok) throw new Error('the world map could not be loaded: ' + r.status);
        return r.text();
      }).then((text) => {
        const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
        const root = doc.documentElement;
        if (root.nodeName !== 'svg' || doc.getElementsByTagName('parsererror').length) {
          throw new Error('the world map is not a valid SVG');
        }
        const map = document.importNode(root, true);
        map.setAttribute('aria-hidden', 'true');
        box.appendChild(map);
        return map;
      });
    }
    return mapReady;
  }

  function attested(h) {
    const a = h.attestation;
    if (!a || a.country !== h.country) return false;
    const x = a.organizations || [], y = h.organizations || [];
    return x.length === y.length && x.every((o, i) => o === y[i]);
  }

  async function loadHosts() {
    setState('hosts', 'loading');
    status('hosts-summary', 'Loading the hosts…');
    // The map needs no token: it loads while the hosts are read.
    const mapP = loadMap().catch((e) => {
      status('hosts-summary', e.message, 'error');
      return null;
    });
    try {
      const hosts = [];
      let after = '';
      for (let page = 0; page < 200; page++) {
        const q = new URLSearchParams({ limit: '1000' });
        if (after) q.set('after', after);
        const p = await api('hosts?' + q.toString());
        hosts.push(...(p.hosts || []));
        if (!p.next) break;
        after = p.next;
      }
      renderHosts(hosts, await mapP);
      setState('hosts', 'ready');
    } catch (e) {
      status('hosts-summary', 'The hosts could not be read: ' + e.message, 'error');
      setState('hosts', 'error');
    }
  }

  function renderHosts(hosts, map) {
    const byCountry = new Map();
    for (const h of hosts) {
      const c = String(h.country || '').toUpperCase();
      if (!byCountry.has(c)) byCountry.set(c, []);
      byCountry.get(c).push(h);
    }
    const codes = [...byCountry.keys()].sort();
    const list = $('countries');
    clear(list);
    if (map) {
      for (const p of map.querySelectorAll('path.hosted')) {
        p.classList.remove('hosted', 'claimed', 'selected');
        for (const t of p.querySelectorAll('title')) t.remove();
      }
    }
    let nAttested = 0;
    const offMap = [];
    for (const code of codes) {
      const hs = byCountry.get(code);
      const claimed = hs.filter((h) => !attested(h)).length;
      nAttested += hs.length - claimed;
      const path = map && /^[A-Z]{2}$/.test(code) ? map.querySelector('path[id="' + code.toLowerCase() + '"]') : null;
      const name = path ? path.getAttribute('aria-label') : '';
      if (path) {
        path.classList.add('hosted');
        if (claimed) path.classList.add('claimed');
        path.dataset.country = code;
        path.appendChild(svg('title', { text: code + (name ? ' · ' + name : '') + ': ' + hs.length + ' host' + (hs.length === 1 ? '' : 's') }));
      } else {
        offMap.push(code);
      }
      const rows = hs.map((h) => {
        const a = attested(h);
        return el('tr', { 'data-host': h.host },
          el('td', { class: 'mono', text: h.host }),
          el('td', { text: (h.organizations || []).join(', ') }),
          el('td', {}, el('span', { class: 'badge ' + (a ? 'attested' : 'claimed'), text: a ? 'attested' : 'claimed' })),
          el('td', { class: 'muted', text: h.region || '' }));
      });
      list.appendChild(el('div', { class: 'country', id: 'country-' + code, 'data-country': code },
        el('h3', { text: code + (name ? ' · ' + name : '') + ' — ' + hs.length + ' host' + (hs.length === 1 ? '' : 's') + (path ? '' : ' (not on the map)') }),
        el('table', {},
          el('thead', {}, el('tr', {}, el('th', { text: 'host' }), el('th', { text: 'organisations' }), el('th', { text: 'facts' }), el('th', { text: 'region' }))),
          el('tbody', {}, rows))));
    }
    let text = hosts.length === 0
      ? 'No host is registered on the ledger.'
      : hosts.length + ' host' + (hosts.length === 1 ? '' : 's') + ' in ' + codes.length + ' countr' + (codes.length === 1 ? 'y' : 'ies') +
        ': ' + nAttested + ' attested, ' + (hosts.length - nAttested) + ' only claimed.';
    if (!map) text += ' The world map could not be loaded.';
    else if (offMap.length) text += ' Not on the map: ' + offMap.join(', ') + '.';
    status('hosts-summary', text, hosts.length === 0 ? 'empty' : '');
  }

  $('map').addEventListener('click', (ev) => {
    const p = ev.target.closest && ev.target.closest('path.hosted');
    if (!p) return;
    for (const s of document.querySelectorAll('.selected')) s.classList.remove('selected');
    p.classList.add('selected');
    const card = $('country-' + p.dataset.country);
    if (card) {
      card.classList.add('selected');
      card.scrollIntoView({ block: 'nearest' });
    }
  });

  // ---- a VM's residency timeline ----

  // utc reads a datetime-local value as UTC, in RFC 3339.
  function utc(v) {
    if (!v) return '';
    return (v.length === 16 ? v + ':00' : v) + 'Z';
  }

  function intervalState(iv) {
    if (iv.violation) return 'violation';
    if (iv.discrepancy) return 'discrepancy';
    if (iv.verdict && iv.verdict.allowed) return 'allowed';
    return 'unknown';
  }

  async function loadResidency(vm, from, to) {
    setState('residency', 'loading');
    status('residency-status', 'Reading the residency of ' + vm + '…');
    $('timeline').hidden = true;
    clear($('intervals'));
    const q = new URLSearchParams({ format: 'json' });
    if (from) q.set('from', from);
    if (to) q.set('to', to);
    try {
      const rep = await api('residency/vm/' + encodeURIComponent(vm) + '?' + q.toString());
      renderResidency(rep);
      setState('residency', (rep.intervals || []).length ? 'ready' : 'empty');
    } catch (e) {
      if (e.status === 501) {
        status('residency-status', 'No timeline: ' + e.message + '.', 'error');
      } else {
        status('residency-status', 'The residency of ' + vm + ' could not be read: ' + e.message, 'error');
      }
      setState('residency', 'error');
    }
  }

  function renderResidency(rep) {
    const ivs = rep.intervals || [];
    const span = fmtTime(rep.from) + ' to ' + fmtTime(rep.to) + ' UTC';
    if (ivs.length === 0) {
      status('residency-status', 'No placement is recorded for ' + rep.subject + ' from ' + span +
        ': the ledger holds no residency evidence of this VM in that period.', 'empty');
      return;
    }
    status('residency-status', rep.subject + ', ' + span + ' (as of ' + fmtTime(rep.as_of) + '): ' +
      ivs.length + ' interval' + (ivs.length === 1 ? '' : 's') + ', ' + rep.violations + ' violation' + (rep.violations === 1 ? '' : 's') +
      ', ' + rep.discrepancies + ' discrepanc' + (rep.discrepancies === 1 ? 'y' : 'ies') + ', from ' + rep.placements + ' placement' + (rep.placements === 1 ? '' : 's') + '.',
      rep.violations ? 'error' : '');
    drawTimeline(rep, ivs);
    const rows = ivs.map((iv, i) => {
      const st = intervalState(iv);
      const v = iv.verdict;
      const verdict = !v ? 'no verdict' : v.allowed ? 'allowed' : 'denied: ' + (v.reason || '') + (v.regulation ? ' by ' + v.regulation : '') + (v.detail ? ' (' + v.detail + ')' : '');
      const regs = v && v.regulations ? v.regulations.map((r) => r.subject + ' v' + r.version).join(', ') : '';
      const ev = (iv.evidence || []).map((e) => el('li', {},
        e.witness + ' · ' + e.op + ' at ' + fmtTime(e.at) + ' · tx ', el('code', { text: e.tx_id }),
        ' · ref ', el('code', { text: e.ref }), ' · recorded ' + fmtTime(e.recorded_at) + (e.writer ? ' by ' + e.writer : '')));
      return el('tr', { class: st, 'data-state': st, 'data-host': iv.host },
        el('td', { class: 'num', text: i + 1 }),
        el('td', { class: 'mono', text: iv.host || '(none)' }),
        el('td', { text: v ? (v.country || '') : '' }),
        el('td', { text: v ? (v.organizations || []).join(', ') + (v.attested ? ' (attested)' : '') : '' }),
        el('td', { text: fmtTime(iv.from) }),
        el('td', { text: iv.open ? 'open (' + fmtTime(iv.to) + ')' : fmtTime(iv.to) }),
        el('td', { text: iv.op }),
        el('td', {}, el('span', { class: 'badge ' + st, text: st }), ' ', verdict, regs ? el('div', { class: 'muted', text: 'regulations: ' + regs }) : null),
        el('td', { text: (iv.witnesses || []).join(', ') + (iv.discrepancy ? ' — ' + iv.discrepancy : '') }),
        el('td', {}, el('ul', { class: 'evidence' }, ev),
          iv.decision_id ? el('div', { class: 'muted' }, 'decision ', el('code', { text: iv.decision_id })) : null,
          iv.request_id ? el('div', { class: 'muted' }, 'request ', el('code', { text: iv.request_id })) : null));
    });
    $('intervals').appendChild(el('table', { id: 'intervals-table' },
      el('thead', {}, el('tr', {}, ['#', 'host', 'country', 'organisations', 'from', 'to', 'placed by', 'verdict', 'witnesses', 'evidence'].map((t) => el('th', { text: t })))),
      el('tbody', {}, rows)));
  }

  function drawTimeline(rep, ivs) {
    const t = $('timeline-svg');
    clear(t);
    const hosts = [];
    for (const iv of ivs) if (!hosts.includes(iv.host)) hosts.push(iv.host);
    const W = 1000, left = 170, right = 20, top = 10, lane = 26, axis = 34;
    const H = top + hosts.length * lane + axis;
    t.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    const t0 = Date.parse(rep.from), t1 = Date.parse(rep.to);
    const x = (s) => left + (W - left - right) * Math.min(1, Math.max(0, (Date.parse(s) - t0) / Math.max(1, t1 - t0)));
    hosts.forEach((h, i) => {
      const y = top + i * lane;
      const iv = ivs.find((v) => v.host === h);
      const c = iv && iv.verdict && iv.verdict.country ? ' (' + iv.verdict.country + ')' : '';
      t.appendChild(svg('text', { x: left - 8, y: y + lane / 2 + 4, 'text-anchor': 'end', text: (h || '(none)') + c }));
      t.appendChild(svg('line', { class: 'grid', x1: left, x2: W - right, y1: y + lane, y2: y + lane }));
    });
    const yAxis = top + hosts.length * lane + 4;
    t.appendChild(svg('line', { class: 'axis', x1: left, x2: W - right, y1: yAxis, y2: yAxis }));
    for (let k = 0; k <= 4; k++) {
      const ms = t0 + (t1 - t0) * k / 4;
      const xx = left + (W - left - right) * k / 4;
      t.appendChild(svg('line', { class: 'axis', x1: xx, x2: xx, y1: yAxis, y2: yAxis + 5 }));
      t.appendChild(svg('text', { x: xx, y: yAxis + 18, 'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle', text: fmtTime(new Date(ms).toISOString()) }));
    }
    for (const iv of ivs) {
      const st = intervalState(iv);
      const i = hosts.indexOf(iv.host);
      const x0 = x(iv.from), x1 = x(iv.to);
      const cls = 'bar ' + st + (iv.discrepancy && st !== 'discrepancy' ? ' flagged' : '');
      const bar = svg('rect', { class: cls, 'data-state': st, 'data-host': iv.host, x: x0, y: top + i * lane + 4, width: Math.max(2, x1 - x0), height: lane - 8, rx: 2 });
      const v = iv.verdict;
      bar.appendChild(svg('title', {
        text: iv.host + ': ' + fmtTime(iv.from) + ' to ' + (iv.open ? 'now' : fmtTime(iv.to)) + ', ' + iv.op + ', ' + st +
          (v && !v.allowed && v.reason ? ' (' + v.reason + ')' : '') + (iv.discrepancy ? '; ' + iv.discrepancy : ''),
      }));
      t.appendChild(bar);
    }
    $('timeline').hidden = false;
  }

  $('residency-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const vm = $('vm-uuid').value.trim();
    if (!vm) return;
    const from = utc($('vm-from').value), to = utc($('vm-to').value);
    const h = new URLSearchParams({ vm });
    if (from) h.set('from', from);
    if (to) h.set('to', to);
    history.replaceState(null, '', '#' + h.toString());
    loadResidency(vm, from, to);
  });

  // #vm=UUID[&from=T&to=T] opens a VM's timeline (a link an auditor can keep).
  function fromHash() {
    const h = new URLSearchParams(location.hash.replace(/^#/, ''));
    const vm = h.get('vm');
    if (!vm) return;
    $('vm-uuid').value = vm;
    const local = (s) => (s ? s.replace(/Z$/, '').slice(0, 19) : '');
    $('vm-from').value = local(h.get('from'));
    $('vm-to').value = local(h.get('to'));
    guarded(() => loadResidency(vm, h.get('from') || '', h.get('to') || ''));
  }

  // ---- recent denials by reason ----

  // reasonsOf reads the denied hosts per reason from a decision's summary
  // ("2/5 hosts eligible: 1 country_not_allowed, 2 host_unattested").
  function reasonsOf(summary) {
    const out = {};
    const i = String(summary || '').indexOf(': ');
    if (i < 0) return out;
    for (const part of summary.slice(i + 2).split(', ')) {
      const m = /^(\d+) ([a-z_]+)$/.exec(part.trim());
      if (m && REASONS.includes(m[2])) out[m[2]] = (out[m[2]] || 0) + Number(m[1]);
    }
    return out;
  }

  function barRow(label, cells, value, max) {
    const fill = el('div', { class: 'barfill' });
    fill.style.width = (max ? Math.round(100 * value / max) : 0) + '%';
    return el('tr', { 'data-key': label }, el('td', { class: 'mono', text: label }), cells.map((c) => el('td', { class: 'num', text: c })), el('td', { class: 'bar' }, fill));
  }

  async function loadDenials() {
    setState('denials', 'loading');
    try {
      const list = await api('decisions?limit=1000');
      renderDenials(list.decisions || []);
      setState('denials', 'ready');
    } catch (e) {
      status('denials-summary', 'The recent decisions could not be read: ' + e.message, 'error');
      setState('denials', 'error');
    }
  }

  function renderDenials(ds) {
    const byReason = {}, decisionsByReason = {}, byOutcome = {};
    const denied = [];
    for (const d of ds) {
      if (UNDECIDED.includes(d.outcome)) {
        byOutcome[d.outcome] = (byOutcome[d.outcome] || 0) + 1;
        denied.push(d);
        continue;
      }
      const rs = reasonsOf(d.summary);
      const keys = Object.keys(rs);
      if (keys.length === 0 && !(d.candidates > d.allowed)) continue;
      denied.push(d);
      for (const k of keys) {
        byReason[k] = (byReason[k] || 0) + rs[k];
        decisionsByReason[k] = (decisionsByReason[k] || 0) + 1;
      }
    }
    const rb = $('reasons').tBodies[0], ob = $('outcomes').tBodies[0], db = $('denied-decisions').tBodies[0];
    clear(rb); clear(ob); clear(db); clear($('decision-detail'));
    const reasons = Object.keys(byReason).sort((a, b) => byReason[b] - byReason[a] || a.localeCompare(b));
    const maxR = Math.max(0, ...reasons.map((r) => byReason[r]));
    for (const r of reasons) rb.appendChild(barRow(r, [byReason[r], decisionsByReason[r]], byReason[r], maxR));
    if (!reasons.length) rb.appendChild(el('tr', {}, el('td', { colspan: 4, class: 'muted', text: 'No host was denied.' })));
    const outcomes = Object.keys(byOutcome).sort((a, b) => byOutcome[b] - byOutcome[a] || a.localeCompare(b));
    const maxO = Math.max(0, ...outcomes.map((o) => byOutcome[o]));
    for (const o of outcomes) ob.appendChild(barRow(o, [byOutcome[o]], byOutcome[o], maxO));
    if (!outcomes.length) ob.appendChild(el('tr', {}, el('td', { colspan: 3, class: 'muted', text: 'None.' })));
    for (const d of denied.slice(0, 50)) {
      const b = el('button', { type: 'button', class: 'mono', text: d.id });
      b.addEventListener('click', () => showDecision(d.id));
      db.appendChild(el('tr', { 'data-outcome': d.outcome },
        el('td', { text: fmtTime(d.time) }),
        el('td', { class: 'mono', text: d.instance_uuid || '' }),
        el('td', { text: d.operation || '' }),
        el('td', { text: d.outcome }),
        el('td', { text: d.summary + (d.error ? ' — ' + d.error : '') }),
        el('td', {}, b)));
    }
    status('denials-summary', ds.length === 0
      ? 'filterd has kept no decision yet.'
      : 'Of the ' + ds.length + ' most recent decisions filterd keeps, ' + denied.length + ' denied at least one host or answered no host.');
  }

  async function showDecision(id) {
    const box = $('decision-detail');
    clear(box);
    box.appendChild(el('p', { class: 'status', text: 'Reading decision ' + id + '…' }));
    try {
      const d = await api('decisions/' + encodeURIComponent(id));
      clear(box);
      box.appendChild(el('h3', { text: 'Decision ' + d.id + ': ' + d.summary }));
      box.appendChild(el('table', {},
        el('thead', {}, el('tr', {}, ['host', 'verdict', 'regulation', 'country', 'organisations', 'facts'].map((t) => el('th', { text: t })))),
        el('tbody', {}, (d.verdicts || []).map((v) => el('tr', {},
          el('td', { class: 'mono', text: v.host }),
          el('td', { text: v.allowed ? 'allowed' : v.reason + (v.detail ? ' (' + v.detail + ')' : '') }),
          el('td', { text: v.regulation || '' }),
          el('td', { text: v.country || '' }),
          el('td', { text: (v.organizations || []).join(', ') }),
          el('td', { text: v.facts || '' }))))));
    } catch (e) {
      clear(box);
      box.appendChild(el('p', { class: 'status error', text: 'Decision ' + id + ' could not be read: ' + e.message }));
    }
  }

  $('denials-refresh').addEventListener('click', () => loadDenials());

  guarded(loadInfo);
  guarded(loadHosts);
  guarded(loadDenials);
  fromHash();
})();
