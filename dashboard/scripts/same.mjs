// node scripts/same.mjs COMMITTED FRESH: fails when the committed generated file differs from a
// fresh generation (then run `npm run gen:api` and commit src/api-types.ts). Removes FRESH.
import { readFileSync, rmSync } from 'node:fs';
const [committed, fresh] = process.argv.slice(2);
const same = readFileSync(committed, 'utf8') === readFileSync(fresh, 'utf8');
rmSync(fresh);
if (!same) {
  console.error(`${committed} is not what docs/openapi.yaml generates: run \`npm run gen:api\` and commit it`);
  process.exit(1);
}
console.log(`${committed} matches docs/openapi.yaml`);
