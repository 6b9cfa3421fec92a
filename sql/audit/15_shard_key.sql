-- Shard readiness (#28): could every tenant table be distributed by its organization (Citus's
-- multi-tenant model, or PostgreSQL's own hash partitioning) without changing what it
-- guarantees? The shard key is organization_id, and the organization row's own id. Each row
-- returned is a property the move would break, with what to change:
--   * the shard key is NOT NULL (a row without it belongs to no shard);
--   * every primary key and unique index includes it (a distributed table enforces uniqueness
--     only within a shard: a key unique across organizations needs a directory or a router);
--   * every foreign key between tenant tables carries it on both sides (so both rows are on
--     the same shard, co-located);
--   * a tenant table references no table without it, except the reference tables listed below
--     (replicated to every node), and no table without it references a tenant table;
--   * the directory tables listed below (a name unique across the service → its organization)
--     are keyed by their name and take part in no foreign key.
-- Empty when the schema is ready. docs/scaling.md, "Beyond one database", says what each
-- finding on today's schema would become.
with reference_tables (relid) as (
  -- Tables every node would hold a copy of. None yet.
  select null::oid where false
),
directory_tables (relid) as (
  -- Tables that route a name unique across the service to its organization (V27), distributed
  -- by that name (a co-location group of their own) or kept as reference tables: their key is
  -- the name, and they take part in no foreign key.
  select c.oid from pg_class c
   where c.oid in (to_regclass('app.user_emails'), to_regclass('app.organization_names'))
),
tables as (
  select c.oid as relid, format('table %I.%I', n.nspname, c.relname) as object,
         coalesce(
           (select a.attnum from pg_attribute a
             where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped),
           case when c.oid = 'app.organizations'::regclass
                then (select a.attnum from pg_attribute a where a.attrelid = c.oid and a.attname = 'id') end
         ) as shard_key
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'app' and c.relkind in ('r', 'p')
),
findings (object, reason) as (
  select t.object, 'organization_id may be NULL: such a row belongs to no shard; make it NOT NULL'
    from tables t
    join pg_attribute a on a.attrelid = t.relid and a.attnum = t.shard_key
   where not a.attnotnull
  union all
  select t.object,
         format('%s %I (%s) does not include %s: across shards it can only be unique by a directory or a router, or within the organization by adding the key',
                case when i.indisprimary then 'primary key' else 'unique index' end,
                ic.relname,
                (select string_agg(pg_get_indexdef(i.indexrelid, k, true), ', ' order by k)
                   from generate_series(1, i.indnkeyatts) as k),
                (select attname from pg_attribute where attrelid = t.relid and attnum = t.shard_key))
    from tables t
    join pg_index i on i.indrelid = t.relid and i.indisunique
    join pg_class ic on ic.oid = i.indexrelid
   where t.shard_key is not null
     and not (t.shard_key = any (i.indkey::int2[]))
     and t.relid not in (select relid from directory_tables)
  union all
  select t.object,
         case when r.shard_key is null and t.shard_key is not null
                then format('foreign key %I references %s, which has no organization_id: make that a reference table, or carry the key',
                            con.conname, r.object)
              when t.shard_key is null
                then format('foreign key %I references tenant %s from a table without organization_id: it cannot be co-located; add organization_id and carry it',
                            con.conname, r.object)
              else format('foreign key %I does not carry organization_id on both sides: its rows could be on different shards; reference (organization_id, …)',
                          con.conname)
         end
    from pg_constraint con
    join tables t on t.relid = con.conrelid
    join tables r on r.relid = con.confrelid
   where con.contype = 'f'
     and (t.shard_key is not null or r.shard_key is not null)
     and r.relid not in (select relid from reference_tables)
     and t.relid not in (select relid from directory_tables)
     and r.relid not in (select relid from directory_tables)
     and not exists (
       select from generate_subscripts(con.conkey, 1) as k
        where con.conkey[k] = t.shard_key and con.confkey[k] = r.shard_key)
  union all
  select t.object,
         format('foreign key %I joins directory table %s to %s: a directory is distributed by its own key, so it can reference, or be referenced by, no table distributed by organization',
                con.conname, d.object, case when d.relid = t.relid then r.object else t.object end)
    from pg_constraint con
    join tables t on t.relid = con.conrelid
    join tables r on r.relid = con.confrelid
    join tables d on d.relid in (t.relid, r.relid) and d.relid in (select relid from directory_tables)
   where con.contype = 'f'
)
select 'shard_key' as check_name, object, reason
  from findings
 order by 2, 3;
