-- Operations: the outbox backlog as a number for /metrics (see docs/operations.md).

-- REGISTRY: app.outbox_backlog. How many validation jobs wait to be published, across all
-- tenants. Safe: returns a single count; no ids, names or tenant data.
create function app.outbox_backlog()
returns bigint
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select count(*) from app.outbox
$$;
alter function app.outbox_backlog() owner to tenant_files_definer;
grant execute on function app.outbox_backlog() to tenant_files_app;
