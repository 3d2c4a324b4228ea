"""The live page at `/`: tau, acceptance by draft position, tokens/s and (adaptive block policy) the
steps per chosen block size, polled from /orthrus/stats.

Plain HTML + canvas, no external scripts (the page must work offline). Kept as a Python string
so that it ships inside the package without package-data configuration.
"""

PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Orthrus gateway</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
 h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:16px}
 .kpis{display:flex;gap:16px;margin-bottom:16px}
 .kpi{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:120px}
 .kpi b{display:block;font-size:24px} .kpi span{color:#666}
 .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:16px}
 .card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px}
 .card h2{font-size:14px;margin:0 0 8px} canvas{width:100%;height:220px}
 #status.err{color:#b00}
</style></head>
<body>
<h1>Orthrus gateway</h1>
<div class="sub"><span id="model">&hellip;</span> &middot; backend <span id="backend">&hellip;</span>
 &middot; block size <span id="block">&hellip;</span><span id="policy"></span> &middot;
 <span id="status">connecting</span></div>
<div class="kpis">
 <div class="kpi"><b id="tau">&ndash;</b><span>tau (tokens / step)</span></div>
 <div class="kpi"><b id="tps">&ndash;</b><span>tokens / s (last 5 s)</span></div>
 <div class="kpi"><b id="seqs">&ndash;</b><span>sequences done</span></div>
 <div class="kpi"><b id="load">&ndash;</b><span>running / queued</span></div>
</div>
<div class="grid">
 <div class="card"><h2>tau per second (last 60 s)</h2><canvas id="c_tau" width="720" height="440"></canvas></div>
 <div class="card"><h2>acceptance rate by draft position</h2><canvas id="c_acc" width="720" height="440"></canvas></div>
 <div class="card"><h2>tokens per second (last 60 s)</h2><canvas id="c_tps" width="720" height="440"></canvas></div>
</div>
<script>
const $ = id => document.getElementById(id);
function axes(ctx, w, h, ymax, label) {
  ctx.clearRect(0, 0, w, h); ctx.strokeStyle = '#ccc'; ctx.fillStyle = '#666'; ctx.font = '20px sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = 20 + (h - 60) * i / 4; ctx.beginPath(); ctx.moveTo(60, y); ctx.lineTo(w - 10, y); ctx.stroke();
    ctx.fillText((ymax * (4 - i) / 4).toFixed(ymax < 4 ? 2 : 0), 4, y + 6);
  }
  ctx.fillText(label, 64, h - 12);
}
function line(id, values, color, label) {
  const c = $(id), ctx = c.getContext('2d'), w = c.width, h = c.height;
  const ymax = Math.max(1, ...values.filter(v => v !== null)) * 1.1;
  axes(ctx, w, h, ymax, label);
  ctx.strokeStyle = color; ctx.lineWidth = 3; ctx.beginPath(); let pen = false;
  values.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    const x = 60 + (w - 70) * i / Math.max(1, values.length - 1), y = 20 + (h - 60) * (1 - v / ymax);
    pen ? ctx.lineTo(x, y) : ctx.moveTo(x, y); pen = true;
  });
  ctx.stroke();
  ctx.fillStyle = color;  // dots too: a single sample has no line to draw
  values.forEach((v, i) => {
    if (v === null) return;
    const x = 60 + (w - 70) * i / Math.max(1, values.length - 1), y = 20 + (h - 60) * (1 - v / ymax);
    ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI); ctx.fill();
  });
}
function bars(id, values, color) {
  const c = $(id), ctx = c.getContext('2d'), w = c.width, h = c.height;
  axes(ctx, w, h, 1, 'draft position 1 .. ' + values.length);
  const bw = (w - 70) / Math.max(1, values.length);
  ctx.fillStyle = color;
  values.forEach((v, i) => ctx.fillRect(62 + i * bw, 20 + (h - 60) * (1 - v), Math.max(1, bw - 2), (h - 60) * v));
}
let updates = 0;
async function refresh() {
  try {
    const r = await fetch('orthrus/stats', {cache: 'no-store'});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const s = await r.json();
    $('model').textContent = s.model; $('backend').textContent = s.backend;
    $('block').textContent = s.block_size ?? '?';
    const p = s.block_policy;  // adaptive: request-steps per chosen block size
    $('policy').textContent = p && p.adaptive ? ' (adaptive; steps by B: ' +
      Object.entries(p.steps_by_block_size).map(([b, n]) => b + ': ' + n).join(', ') + ')' : '';
    const recent = s.series.slice(-5).reduce((a, p) => a + p.tokens_per_s, 0) / 5;
    $('tau').textContent = s.steps ? s.tau.toFixed(2) : '–';
    $('tps').textContent = recent.toFixed(1);
    $('seqs').textContent = s.sequences;
    $('load').textContent = s.running + ' / ' + (s.waiting + s.queued_requests);
    line('c_tau', s.series.map(p => p.tau), '#1f77b4', 'seconds');
    bars('c_acc', s.acceptance_rate_per_position, '#2ca02c');
    line('c_tps', s.series.map(p => p.tokens_per_s), '#d62728', 'seconds');
    $('status').textContent = 'live'; $('status').className = '';
    document.body.dataset.updates = ++updates;
  } catch (e) {
    $('status').textContent = 'error: ' + e.message; $('status').className = 'err';
  }
}
refresh(); setInterval(refresh, 1000);
</script>
</body></html>
"""
