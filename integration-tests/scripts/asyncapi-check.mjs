// Parse an AsyncAPI document with the official parser (@asyncapi/parser, from
// $CRM_CONTRACT_TOOLS/node_modules) and print its diagnostics; exit 1 on any error.
//   node asyncapi-check.mjs docs/contract/asyncapi.json
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(`${process.env.CRM_CONTRACT_TOOLS}/node_modules/`);
const { Parser } = require("@asyncapi/parser");
const { document, diagnostics } = await new Parser().parse(readFileSync(process.argv[2], "utf8"));
for (const d of diagnostics) console.log(d.severity, d.code, (d.path ?? []).join("."), d.message);
const errors = diagnostics.filter((d) => d.severity === 0).length;
console.log(`errors ${errors}, document ${document ? "parsed" : "none"}`);
process.exit(errors || !document ? 1 : 0);
