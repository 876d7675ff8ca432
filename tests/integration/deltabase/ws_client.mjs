// A DeltaBase WebSocket client built on the npm `ws` package (a real client, not the test's
// own framing): connects to URL, sends each message given after it (JSON), prints every
// message received as one JSON line, and exits after COUNT messages or TIMEOUT ms.
//   node ws_client.mjs URL COUNT TIMEOUT_MS [HEADER_JSON] [MSG_JSON...]
import WebSocket from "ws";

const [url, count, timeout, headers, ...msgs] = process.argv.slice(2);
const ws = new WebSocket(url, { headers: headers ? JSON.parse(headers) : {} });
let got = 0;
const stop = (code) => { ws.terminate(); process.exit(code); };
setTimeout(() => stop(3), Number(timeout));
ws.on("unexpected-response", (req, res) => {
  console.log(JSON.stringify({ upgradeRefused: res.statusCode }));
  stop(2);
});
ws.on("open", () => { for (const m of msgs) ws.send(m); });
ws.on("message", (data) => {
  console.log(data.toString());
  if (++got >= Number(count)) stop(0);
});
ws.on("close", (code) => { console.log(JSON.stringify({ closed: code })); stop(got ? 0 : 1); });
ws.on("error", (e) => { console.log(JSON.stringify({ error: String(e) })); });
