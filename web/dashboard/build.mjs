// Bundle the dashboard (uPlot included) into stream_app/worker/static/: the worker serves
// these files; nothing is fetched from elsewhere at run time. `npm ci && npm run build`.
import { copyFileSync, mkdirSync } from "node:fs";
import { build } from "esbuild";

const out = new URL("../../stream_app/worker/static/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const common = { bundle: true, minify: true, legalComments: "none", logLevel: "warning" };
await build({ ...common, entryPoints: ["src/app.js"], outfile: `${out}app.js`, format: "iife",
  target: "es2020" });
await build({ ...common, entryPoints: ["src/app.css"], outfile: `${out}app.css` });
copyFileSync("src/index.html", `${out}index.html`);
