// Drives a page in a running headless Chromium over the DevTools protocol (the `ws` package
// of tests/node_modules): opens URL, fills the form fields given as JSON {"#selector": value},
// clicks the selector given, waits until WAIT (a selector) holds text, and prints JSON
// {"text": the text of RESULT, "html": its innerHTML, "images": <img> elements under it}.
//   node cdp_page.mjs DEBUG_PORT URL FIELDS_JSON CLICK WAIT RESULT
import WebSocket from 'ws';

const [port, url, fieldsJson, click, wait, result] = process.argv.slice(2);
const fields = JSON.parse(fieldsJson);
const deadline = Date.now() + 20000;

async function target() {
  for (;;) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
      const page = list.find((t) => t.type === 'page');
      if (page) return page.webSocketDebuggerUrl;
    } catch (e) { /* not up yet */ }
    if (Date.now() > deadline) throw new Error('no page target');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ws = new WebSocket(await target());
await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
let next = 1;
const waiting = new Map();
const events = [];
ws.on('message', (m) => {
  const msg = JSON.parse(m);
  if (msg.id && waiting.has(msg.id)) { waiting.get(msg.id)(msg); waiting.delete(msg.id); }
  else if (msg.method) events.push(msg.method);
});
function send(method, params = {}) {
  const id = next++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((r) => waiting.set(id, r));
}
async function evaluate(expr) {
  const r = await send('Runtime.evaluate', { expression: expr, returnByValue: true });
  if (r.result.exceptionDetails) throw new Error(JSON.stringify(r.result.exceptionDetails));
  return r.result.result.value;
}

await send('Page.enable');
await send('Runtime.enable');
await send('Page.navigate', { url });
while (!events.includes('Page.loadEventFired')) {
  if (Date.now() > deadline) throw new Error('the page did not load');
  await new Promise((r) => setTimeout(r, 50));
}
for (const [sel, value] of Object.entries(fields)) {
  await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(sel)});
    e.value = ${JSON.stringify(value)}; e.dispatchEvent(new Event('change')); })()`);
}
await evaluate(`document.querySelector(${JSON.stringify(click)}).click()`);
for (;;) {
  const text = await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(wait)});
    return e ? e.textContent : ''; })()`);
  if (text) break;
  if (Date.now() > deadline) throw new Error('nothing appeared in ' + wait);
  await new Promise((r) => setTimeout(r, 50));
}
const out = await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(result)});
  return { text: e.innerText, html: e.innerHTML, images: e.querySelectorAll('img').length }; })()`);
console.log(JSON.stringify(out));
ws.close();
process.exit(0);
