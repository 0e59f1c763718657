import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createSchema, printSchemaSdl } from '../src/graphql/schema';

const root = resolve(__dirname, '..');

/**
 * The repository's copies of the contract and its checker, so that a clone on its own passes.
 * The originals live in `../shared` (next to the repository on the team's machines).
 */
const contractDir = resolve(root, 'test/contract');
const shared = resolve(root, '../shared');

/**
 * v2 contract files (`../shared/contract-v2/<name>`) whose features exist. In the commit that
 * implements a feature, copy its file to test/contract/ and add its name here.
 */
const V2_CONTRACTS: string[] = ['memory.graphql', 'search.graphql', 'files.graphql', 'usage.graphql'];

const copies = [
  { copy: 'api-contract.graphql', original: 'api-contract.graphql' },
  { copy: 'check-contract.mjs', original: 'tools/check-contract.mjs' },
  ...V2_CONTRACTS.map((name) => ({ copy: name, original: `contract-v2/${name}` })),
];

describe('schema.graphql', () => {
  it('is what the code generates (run `npm run schema` after changing the API)', async () => {
    const generated = printSchemaSdl(await createSchema());
    const committed = readFileSync(resolve(root, 'schema.graphql'), 'utf8');
    expect(committed).toBe(generated);
  });

  it(`contains the contract unchanged (test/contract/: ${['api-contract.graphql', ...V2_CONTRACTS].join(' + ')}, check-contract.mjs)`, () => {
    const contracts = ['api-contract.graphql', ...V2_CONTRACTS].map((name) => resolve(contractDir, name));
    const r = spawnSync(process.execPath, [resolve(contractDir, 'check-contract.mjs'), 'schema.graphql', ...contracts], { cwd: root, encoding: 'utf8' });
    // every difference is one line of the output
    expect({ status: r.status, output: `${r.stdout}${r.stderr}`.trim() }).toEqual({ status: 0, output: 'contract: schema contains the contract' });
  });
});

describe('test/contract/', () => {
  it('holds exactly the listed copies (a v2 file counts once its name is in V2_CONTRACTS)', () => {
    expect(readdirSync(contractDir).sort()).toEqual(copies.map((c) => c.copy).sort());
  });

  // A clone on its own has no ../shared: then there is nothing to compare with, which is no defect.
  const sharedPresent = existsSync(resolve(shared, 'api-contract.graphql'));
  it(
    sharedPresent
      ? 'each copy is byte-identical to its original in ../shared'
      : 'no ../shared next to the repository (a clone on its own): the copies are not compared with originals',
    () => {
      if (!sharedPresent) return;
      const problems = copies.flatMap(({ copy, original }) => {
        if (!existsSync(resolve(shared, original))) return [`../shared/${original} is missing`];
        const same = readFileSync(resolve(contractDir, copy)).equals(readFileSync(resolve(shared, original)));
        return same ? [] : [`test/contract/${copy} differs: cp ../shared/${original} test/contract/${copy}`];
      });
      expect(problems).toEqual([]);
    },
  );
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
