// Validates AsyncAPI documents with the AsyncAPI project's own parser
// (@asyncapi/parser: JSON Schema of the spec, then its Spectral ruleset).
// Prints every diagnostic as `file:path severity code message` and exits 1
// when any is an error (or a document does not parse at all), else 0.
//
//   node validate.mjs docs/asyncapi.yaml [more.yaml ...]
import { Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'info', 'hint']; // Spectral's DiagnosticSeverity, 0 = error

async function validate(parser, file) {
  const { document, diagnostics } = await fromFile(parser, file).parse();
  let errors = 0;
  for (const d of diagnostics) {
    if (d.severity === 0) errors += 1;
    const where = (d.path || []).join('.') || '(document)';
    console.log(`${file}:${where} ${SEVERITY[d.severity] ?? d.severity} ${d.code} ${d.message}`);
  }
  if (document === undefined && errors === 0) errors = 1;
  console.log(`${file}: ${errors ? `INVALID (${errors} error${errors > 1 ? 's' : ''})` : 'valid'}`);
  return errors;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE...');
  process.exit(2);
}
const parser = new Parser();
let errors = 0;
for (const file of files) errors += await validate(parser, file);
process.exit(errors ? 1 : 0);
