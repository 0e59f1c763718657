/** `npm run schema`: writes schema.graphql from the code. */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSchema, printSchemaSdl } from './schema';

createSchema()
  .then((schema) => {
    const out = resolve(process.argv[2] ?? 'schema.graphql');
    writeFileSync(out, printSchemaSdl(schema));
    console.log(`wrote ${out}`);
  })
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
