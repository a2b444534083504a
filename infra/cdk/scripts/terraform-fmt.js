#!/usr/bin/env node
// `terraform fmt -check -recursive` without a Terraform binary: hclwrite.Format (the formatter
// terraform fmt is built on, compiled to WebAssembly in @cdktf/hcl-tools) over every .tf file
// under the given directories. --write rewrites them instead of failing.
//
//   node infra/cdk/scripts/terraform-fmt.js [--write] DIR...
const fs = require('fs');
const path = require('path');
const { format } = require('@cdktf/hcl-tools');

function tfFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name.startsWith('.') ? [] : tfFiles(p);
    return e.name.endsWith('.tf') ? [p] : [];
  });
}

(async () => {
  const args = process.argv.slice(2);
  const write = args[0] === '--write';
  const dirs = write ? args.slice(1) : args;
  if (dirs.length === 0) {
    console.error('usage: terraform-fmt.js [--write] DIR...');
    process.exit(2);
  }
  const files = dirs.flatMap(tfFiles);
  let unformatted = 0;
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    const formatted = await format(text);
    if (formatted === text) continue;
    unformatted++;
    if (write) fs.writeFileSync(f, formatted);
    else console.error(`${f}: not formatted as terraform fmt would (node ${path.relative(process.cwd(), __filename)} --write ${dirs.join(' ')})`);
  }
  console.log(`terraform fmt: ${files.length} files, ${unformatted} ${write ? 'rewritten' : 'unformatted'}`);
  process.exit(!write && unformatted > 0 ? 1 : 0);
})();
