// Serves the demo page (www/) on http://127.0.0.1:PORT (default 8080).
//   ./build.sh && node serve.mjs [PORT]
import { serve } from "./tests/server.mjs";

const port = Number(process.argv[2] ?? 8080);
const server = await serve(new URL("./www/", import.meta.url).pathname, {}, port);
console.log(`libserl demo: http://127.0.0.1:${server.address().port}/  (Ctrl-C to stop)`);
