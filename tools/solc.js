// Node half of tools/solc: compile a spooled standard-JSON input with solc-js.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require(path.join(__dirname, "..", "node_modules", "solc"));

const args = process.argv.slice(2);
if (args[0] === "--version") {
  // forge parses the second line, exactly as native solc prints it.
  process.stdout.write(
    "solc, the solidity compiler commandline interface\nVersion: " + solc.version() + "\n"
  );
  process.exit(0);
}
if (args[0] !== "--standard-json" || args.length !== 3) {
  process.stderr.write("usage: solc.js --standard-json IN OUT\n");
  process.exit(2);
}
const input = fs.readFileSync(args[1], "utf8");
const output = solc.compile(input, {
  import: (p) => {
    // forge inlines every source; a miss means a broken remapping.
    return { error: "file not provided by forge: " + p };
  },
});
// solc-js may print diagnostic lines (">>> ...SMT...") before the JSON; keep only the JSON.
const start = output.indexOf("{");
fs.writeFileSync(args[2], start > 0 ? output.slice(start) : output);
