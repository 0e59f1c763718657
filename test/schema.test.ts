import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
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

describe('test/generated/graphql.ts', () => {
  it('is what `npm run codegen` generates from schema.graphql and test/operations', () => {
    // the same codegen.yml, with its output redirected to a temporary file
    const dir = mkdtempSync(join(tmpdir(), 'vision-path-codegen-'));
    const out = join(dir, 'graphql.ts');
    const config = join(dir, 'codegen.yml');
    const yml = readFileSync(resolve(root, 'codegen.yml'), 'utf8');
    expect(yml).toContain('  test/generated/graphql.ts:');
    writeFileSync(config, yml.replace('  test/generated/graphql.ts:', `  ${JSON.stringify(out)}:`));
    const r = spawnSync(process.execPath, [resolve(root, 'node_modules/@graphql-codegen/cli/cjs/bin.js'), '--config', config, '--silent'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(readFileSync(resolve(root, 'test/generated/graphql.ts'), 'utf8')).toBe(readFileSync(out, 'utf8'));
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);
});
