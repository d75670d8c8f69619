// The live status page at GET /: plain HTML and a small inline script that asks
// /status every second and redraws. No build step, no dependency, no external
// resource (the pod may have no way out): what it shows is StatusSnapshot.

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Weir status</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #fafbfc; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
  h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
  .sub { color: #5a6375; }
  .cards { display: flex; flex-wrap: wrap; gap: .7rem; margin-top: .8rem; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .5rem .8rem; min-width: 9rem; }
  .card b { display: block; font-size: 1.15rem; }
  table { border-collapse: collapse; background: #fff; border: 1px solid #dde1e8; }
  th, td { text-align: left; padding: .3rem .7rem; border-bottom: 1px solid #eceef2; vertical-align: top; }
  th { background: #f1f3f6; font-weight: 600; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .idle { color: #8a5a00; font-weight: 600; }
  .hold { color: #a3262a; font-weight: 600; }
  .why { max-width: 52rem; }
  .state-waiting { color: #a3262a; font-weight: 600; }
  #error { color: #a3262a; }
</style>
</head>
<body>
<h1>Weir</h1>
<div class="sub" id="source">connecting…</div>
<div id="error"></div>
<div class="cards">
  <div class="card">watermark (W)<b id="w">–</b></div>
  <div class="card">events/s<b id="eps">–</b></div>
  <div class="card">results/s<b id="rps">–</b></div>
  <div class="card">events<b id="records">–</b></div>
  <div class="card">results<b id="results">–</b></div>
  <div class="card">dead letters<b id="dead">–</b></div>
</div>
<h2>Partitions</h2>
<table id="partitions"><thead><tr><th>partition</th><th>watermark</th><th>max event time</th><th>idle</th><th>consumer lag</th><th>offset</th></tr></thead><tbody></tbody></table>
<h2>Aggregations</h2>
<table id="aggregations"><thead><tr><th>aggregation</th><th>window</th><th>open windows</th><th>next to fire</th><th>waiting for</th></tr></thead><tbody></tbody></table>
<h2>Checkpoints</h2>
<div id="checkpoints">–</div>
<h2>Dead letters (last minute)</h2>
<table id="deadletters"><thead><tr><th>reason</th><th>aggregation</th><th>count</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let now = Date.now();
function at(ms) {
  if (ms === null || ms === undefined) return "–";
  const iso = new Date(ms).toISOString();
  const time = iso.slice(11, iso.endsWith(".000Z") ? 19 : 23);
  return iso.slice(0, 10) === new Date(now).toISOString().slice(0, 10) ? time : iso.slice(0, 10) + " " + time;
}
function ago(ms) {
  const s = Math.round(ms / 1000);
  return s < 60 ? s + " s ago" : Math.floor(s / 60) + " min " + (s % 60) + " s ago";
}
const num = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US", { maximumFractionDigits: 1 }));
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function rows(table, items, build) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...items.map((x) => { const tr = document.createElement("tr"); tr.append(...build(x)); return tr; }));
}
function render(s) {
  now = s.nowMs;
  const src = s.source;
  $("source").textContent = src.type + (src.topic ? " topic " + src.topic : "") + " · " + src.state +
    " · out-of-orderness " + s.maxOutOfOrdernessMs / 1000 + " s · allowed lateness " + s.allowedLatenessMs / 1000 + " s" +
    (s.idleTimeoutMs === null ? "" : " · idle after " + s.idleTimeoutMs / 1000 + " s" + (s.idleAdvance ? ", then W follows the clock" : ""));
  $("source").className = "sub" + (src.state === "waiting for partitions" ? " state-waiting" : "");
  $("w").textContent = s.endedInput ? "end of input" : at(s.watermarkMs);
  $("eps").textContent = num(s.rates.eventsPerSecond);
  $("rps").textContent = num(s.rates.resultsPerSecond);
  $("records").textContent = num(s.totals.records);
  $("results").textContent = num(s.totals.results);
  $("dead").textContent = num(s.deadLetters.total);
  rows("partitions", s.partitions, (p) => [
    cell(String(p.partition)),
    cell(at(p.watermarkMs) + (p.holdsBack ? " (holds W back)" : ""), p.holdsBack ? "hold" : ""),
    cell(at(p.maxEventTimeMs)),
    cell(p.idle ? "idle since " + at(p.idleSinceMs) : "no", p.idle ? "idle" : ""),
    cell(num(p.lag), "n"),
    cell(p.offset === null ? "–" : p.offset, "n"),
  ]);
  if (s.partitions.length === 0) rows("partitions", [0], () => [cell(src.state === "waiting for partitions" ? "waiting for partitions" : "none yet")]);
  rows("aggregations", s.aggregations, (a) => [
    cell(a.name),
    cell(a.window),
    cell(num(a.openWindows), "n"),
    cell(a.nextWindow === null ? "–" : (a.nextWindow.startMs === null ? "… " : "[" + at(a.nextWindow.startMs) + ", ") + at(a.nextWindow.endMs) + ")"),
    cell(a.waitingFor, "why"),
  ]);
  const c = s.checkpoints;
  $("checkpoints").textContent = c.last === null ? "none yet" :
    c.completed + " completed; last: #" + c.last.id + ", " + ago(c.last.ageMs) + ", took " + num(c.last.durationMs) + " ms, " + num(c.last.bytes) + " bytes";
  const recent = s.deadLetters.recent;
  rows("deadletters", recent.length ? recent : [null], (d) => d === null ? [cell("none"), cell(""), cell("")] :
    [cell(d.reason), cell(d.aggregation === null ? "–" : d.aggregation), cell(num(d.count), "n")]);
}
async function poll() {
  try {
    const r = await fetch("status", { cache: "no-store" });
    render(await r.json());
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = "cannot reach the processor: " + e;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
