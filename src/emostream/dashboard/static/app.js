// emostream dashboard: one EventSource, a model updated per message, a DOM updated at most
// every MIN_RENDER_MS for what changed. Every text from an event goes in through textContent
// or setAttribute, never as HTML.
"use strict";

(() => {
  const MIN_RENDER_MS = 200;
  const FEED_ROWS = 30;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 200, H = 40;

  let classes = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"];
  let historyS = 600, bucketS = 5, startedAt = Date.now() / 1000;
  const devices = new Map();  // id -> {view, points: [{t, scores}], el, dirty}
  let feed = [];
  let summary = null;
  let dirtyFeed = false, dirtySummary = false;
  let scheduled = false, lastRender = 0;
  let source = null, reconnectTimer = null;

  // Exposed for tests and curious people: how often and how long the page renders.
  const stats = { snapshots: 0, deltas: 0, renders: 0, lastRenderMs: 0, maxRenderMs: 0, state: "connecting" };
  window.emostreamDashboard = { stats, devices };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls) => { const e = document.createElement(tag); if (cls) e.className = cls; return e; };
  const known = (label) => (classes.includes(label) ? label : "neutral");

  function setConn(state, text) {
    stats.state = state;
    const c = $("conn");
    c.className = "conn " + state;
    c.textContent = text;
  }

  function connect() {
    if (source) source.close();
    setConn("connecting", "connecting…");
    source = new EventSource("/api/stream");
    source.onopen = () => setConn("live", "live");
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an error response): retry ourselves.
        setConn("disconnected", "disconnected — retrying");
        clearTimeout(reconnectTimer);
        reconnectTimer = setTimeout(connect, 3000);
      } else {
        setConn("reconnecting", "connection lost — reconnecting…");
      }
    };
    source.addEventListener("snapshot", (ev) => onSnapshot(JSON.parse(ev.data)));
    source.addEventListener("delta", (ev) => onDelta(JSON.parse(ev.data)));
  }

  function onSnapshot(snap) {
    stats.snapshots++;
    classes = snap.classes;
    historyS = snap.history_s;
    bucketS = snap.bucket_s;
    startedAt = snap.summary.started_at;
    for (const d of devices.values()) d.el.remove();
    devices.clear();
    for (const v of snap.devices) upsertDevice(v, v.timeline || []);
    feed = snap.feed.slice(-FEED_ROWS);
    summary = snap.summary;
    dirtyFeed = dirtySummary = true;
    buildStatic();
    schedule();
  }

  function onDelta(delta) {
    stats.deltas++;
    for (const v of delta.devices) upsertDevice(v, v.points || []);
    if (delta.feed.length) {
      feed = feed.concat(delta.feed).slice(-FEED_ROWS);
      dirtyFeed = true;
    }
    summary = delta.summary;
    dirtySummary = true;
    schedule();
  }

  function upsertDevice(view, points) {
    let d = devices.get(view.device_id);
    if (!d) {
      d = { view, points: [], el: makeCard(view.device_id), dirty: true };
      devices.set(view.device_id, d);
      insertCard(d);
    }
    d.view = view;
    for (const p of points) mergePoint(d.points, p);
    d.dirty = true;
  }

  function mergePoint(arr, p) {
    const last = arr[arr.length - 1];
    if (!last || p.t > last.t) { arr.push(p); return; }
    for (let i = arr.length - 1; i >= 0; i--) {
      if (arr[i].t === p.t) { arr[i] = p; return; }
      if (arr[i].t < p.t) { arr.splice(i + 1, 0, p); return; }
    }
    arr.unshift(p);
  }

  function makeCard(id) {
    const card = el("article", "card");
    card.dataset.device = id;
    const head = el("header");
    const dev = el("span", "dev"); dev.textContent = id; dev.title = id;
    const label = el("span", "label");
    const count = el("span", "count-n");
    head.append(dev, label, count);
    const utt = el("p", "utterance");
    const bars = el("div", "bars");
    for (const c of classes) { const s = el("span"); s.dataset.label = c; s.title = c; bars.append(s); }
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    for (const c of classes) {
      const line = document.createElementNS(SVG_NS, "polyline");
      line.dataset.label = c;
      svg.append(line);
    }
    card.append(head, utt, bars, svg);
    card._parts = { label, count, utt, bars, lines: Array.from(svg.children) };
    return card;
  }

  function insertCard(d) {
    // Keep cards in device-id order so they do not jump around as events arrive.
    const box = $("devices");
    $("empty").hidden = true;
    const id = d.view.device_id;
    let before = null;
    for (const other of box.children) {
      if (other.dataset.device !== undefined && other.dataset.device > id) { before = other; break; }
    }
    box.insertBefore(d.el, before);
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    const wait = Math.max(0, MIN_RENDER_MS - (performance.now() - lastRender));
    setTimeout(() => requestAnimationFrame(render), wait);
  }

  function render() {
    const t0 = performance.now();
    scheduled = false;
    lastRender = t0;
    const now = Date.now() / 1000;
    for (const d of devices.values()) {
      if (d.dirty) { renderCard(d, now); d.dirty = false; }
    }
    if (dirtyFeed) { renderFeed(); dirtyFeed = false; }
    if (dirtySummary && summary) { renderSummary(); dirtySummary = false; }
    const ms = performance.now() - t0;
    stats.renders++;
    stats.lastRenderMs = ms;
    stats.maxRenderMs = Math.max(stats.maxRenderMs, ms);
  }

  function renderCard(d, now) {
    const latest = d.view.latest;
    const label = known(latest.label);
    const p = d.el._parts;
    d.el.dataset.label = label;
    p.label.dataset.label = label;
    p.label.textContent = label;
    p.count.textContent = `${d.view.count}`;
    p.utt.textContent = latest.text;
    p.utt.title = latest.text;
    latest.scores.forEach((s, i) => { p.bars.children[i].style.width = `${(s * 100).toFixed(1)}%`; });
    while (d.points.length && d.points[0].t + bucketS < now - historyS) d.points.shift();
    // The x axis grows with the dashboard's age up to the history window, so a young dashboard
    // does not squeeze its few points into the right edge.
    const span = Math.min(historyS, Math.max(60, now - startedAt));
    const start = now - span;
    const x = (t) => Math.max(0, ((t - start) / span) * W).toFixed(1);
    // One bucket is drawn as a flat segment across its width, more as a line through their middles.
    const pts = d.points.length === 1
      ? [[d.points[0].t, d.points[0]], [d.points[0].t + bucketS, d.points[0]]]
      : d.points.map((pt) => [pt.t + bucketS / 2, pt]);
    const xs = pts.map(([t]) => x(t));
    p.lines.forEach((line, i) => {
      line.setAttribute("points", pts.map(([, pt], j) => `${xs[j]},${(H - pt.scores[i] * (H - 2) - 1).toFixed(1)}`).join(" "));
    });
  }

  function renderFeed() {
    const list = $("feed");
    const rows = [];
    for (let i = feed.length - 1; i >= 0; i--) {
      const e = feed[i];
      const li = el("li");
      const who = el("span", "who"); who.textContent = e.device_id;
      const when = el("time", "when"); when.textContent = new Date(e.received_at * 1000).toLocaleTimeString();
      const label = el("span", "label"); label.dataset.label = known(e.label); label.textContent = known(e.label);
      const text = el("span", "text"); text.textContent = e.text;
      li.append(who, when, label, text);
      rows.push(li);
    }
    list.replaceChildren(...rows);
  }

  function renderSummary() {
    $("total").textContent = summary.events;
    $("ndevices").textContent = summary.devices;
    $("dlq").textContent = summary.dead_letters;
    $("dlq-box").classList.toggle("has", summary.dead_letters > 0);
    $("dlq-box").title = Object.entries(summary.dead_letter_types).map(([k, v]) => `${k}: ${v}`).join("\n");
    $("invalid").textContent = summary.invalid;
    for (const c of classes) {
      const n = document.querySelector(`#counts .count[data-label="${c}"] .n`);
      if (n) n.textContent = summary.counts[c] || 0;
    }
  }

  function buildStatic() {
    const counts = $("counts");
    if (counts.children.length) return;
    for (const c of classes) {
      const chip = el("span", "count"); chip.dataset.label = c;
      const sw = el("span", "swatch"); sw.dataset.label = c;
      const name = el("span"); name.textContent = c;
      const n = el("span", "n"); n.textContent = "0";
      chip.append(sw, name, n);
      counts.append(chip);
    }
    $("legend").textContent = `Timeline: mean score per ${Math.round(bucketS)} s, up to the last ${Math.round(historyS / 60)} min, one line per emotion; the bar shows the latest scores.`;
  }

  connect();
})();
