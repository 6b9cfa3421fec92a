-- The one-node rehearsal of distributing by organization (#28, docs/scaling.md "Beyond one
-- database"): turns the tables that grow with the files into tables hash-partitioned by
-- organization_id, keeping everything else about them — columns, defaults, checks, keys and
-- indexes (same names), foreign keys both ways, policies, triggers, grants, RLS enabled and
-- forced — and moving their rows. Run it as the owner on a migrated database:
--
--   psql "$OWNER_URL" -c 'set rehearsal.partitions = 8' -f sql/rehearsal/partition_by_organization.sql
--
-- (`make test-partitioned` runs the api tests on databases converted by this file.)
-- Each partition has RLS enabled and forced and no grant: it is reached through its
-- parent, whose policies apply.
do $rehearsal$
declare
  partitions constant int := coalesce(nullif(current_setting('rehearsal.partitions', true), '')::int, 8);
  grown constant text[] := array['files', 'audit_log', 'outbox', 'file_name_suffixes', 'share_links', 'events', 'webhook_deliveries'];
  t text;
  rel regclass;
  before bigint;
  after bigint;
  columns text;
  recreate text[];
  dependents text[];  -- what other tables hold that depends on it, dropped before it
  statement text;
begin
  foreach t in array grown loop
    rel := format('app.%I', t)::regclass;
    if (select c.relkind from pg_class c where c.oid = rel) = 'p' then
      continue;  -- already partitioned
    end if;
    recreate := array[]::text[];
    dependents := array[]::text[];

    -- What LIKE does not copy, saved as statements to run on the new table, in this order: keys,
    -- indexes, foreign keys (from it and to it), policies, triggers, grants.
    select recreate || coalesce(array_agg(format('alter table %s add constraint %I %s', rel, con.conname,
                                                 pg_get_constraintdef(con.oid)) order by con.conname), '{}')
      into recreate
      from pg_constraint con
     where con.conrelid = rel and con.contype in ('p', 'u', 'x');
    select recreate || coalesce(array_agg(pg_get_indexdef(i.indexrelid) order by i.indexrelid::regclass::text), '{}')
      into recreate
      from pg_index i
     where i.indrelid = rel
       and not exists (select from pg_constraint con where con.conindid = i.indexrelid and con.conrelid = rel);
    select recreate || coalesce(array_agg(format('alter table %s add constraint %I %s',
                                                 con.conrelid::regclass, con.conname, pg_get_constraintdef(con.oid))
                                          order by con.conname), '{}')
      into recreate
      from pg_constraint con
     where con.contype = 'f' and (con.conrelid = rel or con.confrelid = rel) and con.conparentid = 0;
    select dependents || coalesce(array_agg(format('alter table %s drop constraint %I', con.conrelid::regclass, con.conname)), '{}')
      into dependents
      from pg_constraint con
     where con.contype = 'f' and con.confrelid = rel and con.conrelid <> rel and con.conparentid = 0;
    -- Its policies, and those of other tables that read it (share_links' looks at its file).
    select recreate || coalesce(array_agg(format('create policy %I on %I.%I as %s for %s to %s%s%s', p.policyname,
                                                 p.schemaname, p.tablename, p.permissive, p.cmd,
                                                 array_to_string(p.roles, ', '),
                                                 ' using (' || p.qual || ')', ' with check (' || p.with_check || ')')
                                          order by p.tablename, p.policyname), '{}'),
           dependents || coalesce(array_agg(format('drop policy %I on %I.%I', p.policyname, p.schemaname, p.tablename))
                                    filter (where p.tablename <> t), '{}')
      into recreate, dependents
      from pg_policies p
      join pg_policy pol on pol.polname = p.policyname and pol.polrelid = format('%I.%I', p.schemaname, p.tablename)::regclass
     where pol.polrelid = rel
        or exists (select from pg_depend d
                    where d.classid = 'pg_policy'::regclass and d.objid = pol.oid and d.refobjid = rel);
    select recreate || coalesce(array_agg(pg_get_triggerdef(g.oid) order by g.tgname), '{}')
      into recreate
      from pg_trigger g
     where g.tgrelid = rel and not g.tgisinternal;
    select recreate || coalesce(array_agg(format('grant %s on %s to %I', a.privilege_type, rel, r.rolname)), '{}')
      into recreate
      from pg_class c, aclexplode(c.relacl) a
      join pg_roles r on r.oid = a.grantee
     where c.oid = rel and a.grantee <> c.relowner;
    select recreate || coalesce(array_agg(format('grant %s (%I) on %s to %I', a.privilege_type, att.attname, rel, r.rolname)), '{}')
      into recreate
      from pg_attribute att, aclexplode(att.attacl) a
      join pg_roles r on r.oid = a.grantee
     where att.attrelid = rel and att.attacl is not null;

    -- The new table, its partitions, and the rows (read with the owner's FORCE lifted, so that
    -- every organization's rows are seen: this transaction is the only one that can).
    execute format('create table app.%I (like %s including defaults including generated including identity '
                   'including constraints including storage including comments) partition by hash (organization_id)',
                   t || '_partitioned', rel);
    for part in 0 .. partitions - 1 loop
      execute format('create table app.%I partition of app.%I for values with (modulus %s, remainder %s)',
                     format('%s_p%s', t, part), t || '_partitioned', partitions, part);
      execute format('alter table app.%I enable row level security, force row level security', format('%s_p%s', t, part));
    end loop;
    select string_agg(quote_ident(att.attname), ', ' order by att.attnum) into columns
      from pg_attribute att
     where att.attrelid = rel and att.attnum > 0 and not att.attisdropped and att.attgenerated = '';
    execute format('alter table %s no force row level security', rel);
    execute format('insert into app.%I (%s) select %s from %s', t || '_partitioned', columns, columns, rel);
    execute format('select count(*) from %s', rel) into before;
    execute format('select count(*) from app.%I', t || '_partitioned') into after;
    if before <> after then
      raise exception 'partitioning %: % rows became %', t, before, after;
    end if;

    -- Swap, then give the new table everything the old one had.
    foreach statement in array dependents loop
      execute statement;
    end loop;
    execute format('drop table %s', rel);  -- anything else that depends on it stops the rehearsal
    execute format('alter table app.%I rename to %I', t || '_partitioned', t);
    foreach statement in array recreate loop
      execute statement;
    end loop;
    execute format('alter table app.%I enable row level security, force row level security', t);
    raise notice 'app.% is hash-partitioned by organization_id into % partitions', t, partitions;
  end loop;
end
$rehearsal$;
