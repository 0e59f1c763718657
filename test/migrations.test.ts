import pino from 'pino';
import { migrationsList } from '../migrations/index';
import { initOrm, migrateDown, migrateUp, type Orm } from '../src/db/orm';
import { createScratchDatabase } from './support/db';

const ALL = migrationsList.map((m) => m.name);

describe('migrations', () => {
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
  let orm: Orm;
  beforeAll(async () => {
    scratch = await createScratchDatabase();
    orm = await initOrm(scratch.url, { poolMax: 2, logger: pino({ level: 'silent' }) });
  });
  afterAll(async () => {
    await orm?.close(true);
    await scratch?.drop();
  });

  const sql = <T = Record<string, unknown>>(q: string, p: unknown[] = []) => orm.em.getConnection().execute<T[]>(q, p);
  const tables = async () =>
    (await sql<{ table_name: string }>(`select table_name from information_schema.tables where table_schema = 'public' and table_name <> 'mikro_orm_migrations' order by 1`)).map(
      (r) => r.table_name,
    );

  it('go up from an empty database to the seed tables with their constraints and indexes', async () => {
    expect(await tables()).toEqual([]);
    expect(await migrateUp(orm)).toEqual(ALL);
    expect(await tables()).toEqual(['file_uploads', 'files', 'tokenscount', 'vision_message_embeddings', 'vision_message_vectors', 'vision_messages', 'vision_summaries', 'visions']);
    const cols = await sql<{ table_name: string; column_name: string; data_type: string; is_nullable: string }>(
      `select table_name, column_name, data_type, is_nullable from information_schema.columns where table_schema = 'public' and table_name in ('visions', 'tokenscount') order by table_name, ordinal_position`,
    );
    expect(cols.filter((c) => c.table_name === 'visions').map((c) => `${c.column_name}:${c.data_type}`)).toEqual([
      'id:uuid',
      'userid:text',
      'title:text',
      'status:text',
      'createdat:timestamp with time zone',
      'updatedat:timestamp with time zone',
      'meta:jsonb',
    ]);
    const tc = cols.filter((c) => c.table_name === 'tokenscount');
    expect(tc.map((c) => c.column_name)).toEqual([
      'id', 'clientid', 'clienttype', 'provider', 'model', 'prompttokens', 'completiontokens', 'totaltokens', 'rawusage', 'meta', 'createdat', 'state', 'costmicrousd',
    ]);
    // the seed's columns stay nullable; `state` and `costmicrousd` (null: no price) are ours
    expect(tc.filter((c) => c.is_nullable === 'NO').map((c) => c.column_name)).toEqual(['id', 'state']);
    const [{ seq }] = await sql<{ seq: string | null }>(`select pg_get_serial_sequence('tokenscount', 'id') as seq`);
    expect(seq).toBe('public.tokenscount_id_seq');

    const indexes = (await sql<{ indexname: string }>(`select indexname from pg_indexes where schemaname = 'public'`)).map((r) => r.indexname);
    expect(indexes).toEqual(
      expect.arrayContaining([
        'vision_messages_visionid_createdat_id_idx',
        'visions_userid_status_updatedat_idx',
        'tokenscount_clientid_createdat_idx',
        'tokenscount_meta_visionid_idx',
        'vision_messages_visionid_clientmessageid_key',
        'vision_messages_one_streaming_key',
      ]),
    );
  });

  it('enforce status, sender, messagetype and state checks and the message → vision foreign key', async () => {
    const [{ id }] = await sql<{ id: string }>(`insert into visions (id, userid, title, status) values (gen_random_uuid(), 'u', 't', 'active') returning id`);
    await expect(sql(`insert into visions (id, userid, title, status) values (gen_random_uuid(), 'u', 't', 'archived')`)).rejects.toThrow(/visions_status_check/);
    await expect(sql(`insert into vision_messages (id, visionid, sender, content) values (gen_random_uuid(), ?, 'bot', 'x')`, [id])).rejects.toThrow(/sender_check/);
    await expect(sql(`insert into vision_messages (id, visionid, sender, messagetype) values (gen_random_uuid(), ?, 'user', 'video')`, [id])).rejects.toThrow(/messagetype_check/);
    await expect(sql(`insert into vision_messages (id, visionid, sender, state) values (gen_random_uuid(), ?, 'user', 'done')`, [id])).rejects.toThrow(/state_check/);
    await expect(sql(`insert into vision_messages (id, visionid, sender) values (gen_random_uuid(), gen_random_uuid(), 'user')`)).rejects.toThrow(/visionid_fkey/);
    await sql(`insert into vision_messages (id, visionid, sender, state) values (gen_random_uuid(), ?, 'assistant', 'streaming')`, [id]);
    await expect(sql(`insert into vision_messages (id, visionid, sender, state) values (gen_random_uuid(), ?, 'assistant', 'streaming')`, [id])).rejects.toThrow(
      /one_streaming_key/,
    );
    await sql(`delete from vision_messages; delete from visions`);
  });

  it('a vision deleted for good takes its messages, summaries and embeddings; its files lose the link (swept later)', async () => {
    const [{ id }] = await sql<{ id: string }>(`insert into visions (id, userid, title) values (gen_random_uuid(), 'u', 't') returning id`);
    const [{ id: other }] = await sql<{ id: string }>(`insert into visions (id, userid, title) values (gen_random_uuid(), 'u', 'kept') returning id`);
    const msgs = await sql<{ id: string; visionid: string }>(
      `insert into vision_messages (id, visionid, sender, content) select gen_random_uuid(), v, 'user', 'x' from unnest(array[?::uuid, ?::uuid, ?::uuid]) v returning id, visionid`,
      [id, id, other],
    );
    for (const m of msgs) {
      await sql(`insert into vision_summaries (id, visionid, content, tokens, coveredmessages, coveredthroughid, coveredthroughat) values (gen_random_uuid(), ?, 's', 1, 1, ?, now())`, [m.visionid, m.id]);
      await sql(`insert into vision_message_embeddings (messageid, visionid, messageat, model, dims, signs) values (?, ?, now(), 'm', 2, B'01')`, [m.id, m.visionid]);
      await sql(`insert into vision_message_vectors (messageid, embedding) values (?, '{0.5,-0.5}')`, [m.id]);
    }
    const [{ id: fileId }] = await sql<{ id: string }>(`insert into files (id, visionid, storagepath, filename, mime) values (gen_random_uuid(), ?, 'files/x', 'x.md', 'text/markdown') returning id`, [id]);
    const count = async (table: string) => (await sql<{ n: number }>(`select count(*)::int as n from ${table}`))[0]!.n;

    // an operator deletes one covered message: the summary that covered through it goes with it
    await sql(`delete from vision_messages where id = ?`, [msgs[0]!.id]);
    expect(await count('vision_summaries')).toBe(2);
    // and the whole vision: one statement, nothing of it left but the file row without its link
    await sql(`delete from visions where id = ?`, [id]);
    for (const t of ['vision_messages', 'vision_summaries', 'vision_message_embeddings', 'vision_message_vectors']) expect([t, await count(t)]).toEqual([t, 1]);
    expect(await sql(`select visionid from files where id = ?`, [fileId])).toEqual([{ visionid: null }]);
    expect(await sql(`select visionid from vision_summaries`)).toEqual([{ visionid: other }]);
    const indexes = (await sql<{ indexname: string }>(`select indexname from pg_indexes where tablename = 'vision_summaries'`)).map((r) => r.indexname);
    expect(indexes).toContain('vision_summaries_coveredthroughid_idx');
    // one foreign key per column: the old ones were replaced, not joined
    const fks = await sql<{ def: string }>(
      `select pg_get_constraintdef(oid) as def from pg_constraint where contype = 'f' and conrelid in ('vision_summaries'::regclass, 'vision_message_embeddings'::regclass) order by 1`,
    );
    expect(fks.map((f) => f.def)).toEqual([
      'FOREIGN KEY (coveredthroughid) REFERENCES vision_messages(id) ON DELETE CASCADE',
      'FOREIGN KEY (messageid) REFERENCES vision_messages(id) ON DELETE CASCADE',
      'FOREIGN KEY (visionid) REFERENCES visions(id) ON DELETE CASCADE',
      'FOREIGN KEY (visionid) REFERENCES visions(id) ON DELETE CASCADE',
    ]);
    await sql(`delete from files; delete from visions`);
  });

  it('tokenscount.state: rows written before it are settled; only pending and settled; a partial index of the pending rows', async () => {
    const name = 'Migration20261126000000_tokenscount_state';
    // `to` is inclusive: this one and any later migration are reverted
    expect(await migrateDown(orm, { to: name })).toEqual(ALL.slice(ALL.indexOf(name)).reverse());
    await sql(`insert into tokenscount (clientid, prompttokens, completiontokens, totaltokens, meta) values ('old', 1, 2, 3, '{"finish":"complete"}')`);
    expect(await migrateUp(orm)).toEqual(ALL.slice(ALL.indexOf(name)));
    expect(await sql(`select clientid, state from tokenscount`)).toEqual([{ clientid: 'old', state: 'settled' }]);
    await expect(sql(`insert into tokenscount (clientid, state) values ('x', 'done')`)).rejects.toThrow(/tokenscount_state_check/);
    await expect(sql(`insert into tokenscount (clientid, state) values ('x', null)`)).rejects.toThrow(/null/);
    const [idx] = await sql<{ indexdef: string }>(`select indexdef from pg_indexes where indexname = 'tokenscount_pending_createdat_idx'`);
    expect(idx!.indexdef).toMatch(/\(createdat\) WHERE \(state = 'pending'::text\)$/);
    await sql(`delete from tokenscount`);
  });

  it('go down to an empty database and up again', async () => {
    expect(await migrateDown(orm, { to: 0 })).toEqual([...ALL].reverse());
    expect(await tables()).toEqual([]);
    expect(await migrateUp(orm)).toEqual(ALL);
    expect(await tables()).toHaveLength(8);
    expect(await migrateUp(orm)).toEqual([]);
  });
});
