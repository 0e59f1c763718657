import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261124000000_init } from './Migration20261124000000_init';
import { Migration20261126000000_tokenscount_state } from './Migration20261126000000_tokenscount_state';
import { Migration20261127000000_memory } from './Migration20261127000000_memory';
import { Migration20261128000000_search } from './Migration20261128000000_search';
import { Migration20261129000000_files } from './Migration20261129000000_files';
import { Migration20261130000000_sign_index } from './Migration20261130000000_sign_index';
import { Migration20261201000000_cost } from './Migration20261201000000_cost';
import { Migration20261203000000_vision_delete } from './Migration20261203000000_vision_delete';

/**
 * Every migration, in order. Listed explicitly so that the compiled server finds them without
 * globbing the file system; `npm run migration:create` writes new files next to this one, which
 * must then be added here.
 */
export const migrationsList: MigrationObject[] = [
  { name: 'Migration20261124000000_init', class: Migration20261124000000_init },
  { name: 'Migration20261126000000_tokenscount_state', class: Migration20261126000000_tokenscount_state },
  { name: 'Migration20261127000000_memory', class: Migration20261127000000_memory },
  { name: 'Migration20261128000000_search', class: Migration20261128000000_search },
  { name: 'Migration20261129000000_files', class: Migration20261129000000_files },
  { name: 'Migration20261130000000_sign_index', class: Migration20261130000000_sign_index },
  { name: 'Migration20261201000000_cost', class: Migration20261201000000_cost },
  { name: 'Migration20261203000000_vision_delete', class: Migration20261203000000_vision_delete },
];
