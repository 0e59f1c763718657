import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSchema, printSchemaSdl } from '../src/graphql/schema';

const root = resolve(__dirname, '..');

describe('schema.graphql', () => {
  it('is what the code generates (run `npm run schema` after changing the API)', async () => {
    const generated = printSchemaSdl(await createSchema());
    const committed = readFileSync(resolve(root, 'schema.graphql'), 'utf8');
    expect(committed).toBe(generated);
  });

  it('contains ../shared/api-contract.graphql unchanged (check-contract.mjs)', () => {
    const r = spawnSync(process.execPath, [resolve(root, '../shared/tools/check-contract.mjs'), 'schema.graphql'], { cwd: root, encoding: 'utf8' });
    expect(r.stdout.trim().split('\n').pop()).toBe('contract: schema contains the contract');
    expect(r.status).toBe(0);
  });
});
