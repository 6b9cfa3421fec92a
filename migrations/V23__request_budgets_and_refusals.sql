-- Request budgets per organization and what each budget refused (#25, docs/scaling.md "Fair
-- share between organizations").
--
-- An organization's plan may give it a request rate of its own (requests per minute, across
-- every api process); NULL keeps the deployment's default (ORG_REQUESTS_PER_MINUTE). A plan
-- figure like storage_quota_mb and max_concurrent_uploads, set by the operator. Nullable with
-- no default: adding it rewrites nothing.
alter table app.organizations
  add column requests_per_minute integer check (requests_per_minute > 0);

-- How many requests each of the process-enforced budgets refused an organization, so that it
-- can see its own (GET /api/org/usage): the request rate, its share of the database
-- connections, its upload slots, and its share of the upload memory (a wait, not a refusal:
-- counted when a body had to wait). Processes count in memory and add their counts here every
-- few seconds (app.budget_refusals_add): one upsert per organization and budget per flush,
-- never one per refused request.
create table app.budget_refusals (
  organization_id uuid not null references app.organizations (id),
  budget          text not null check (budget in ('requests', 'connections', 'upload_slots', 'upload_memory')),
  refused         bigint not null default 0 check (refused >= 0),
  last_refused_at timestamptz not null,
  primary key (organization_id, budget)
);

alter table app.budget_refusals enable row level security;
alter table app.budget_refusals force row level security;
create policy tenant_isolation on app.budget_refusals
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
create policy registry on app.budget_refusals to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');

-- The app role reads its organization's counts; only the registry function below adds to them.
grant select on app.budget_refusals to tenant_files_app;
grant select, insert, update (refused, last_refused_at) on app.budget_refusals to tenant_files_definer;

-- REGISTRY: app.request_budgets. Every api process loads the organizations whose plan sets a
-- request rate (a few rows; refreshed every 30 s), before any request of theirs is known.
-- Safe: returns ids and a number, only for organizations with a plan rate; no names, no data.
create function app.request_budgets()
returns table (organization_id uuid, requests_per_minute integer)
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select o.id, o.requests_per_minute from app.organizations o where o.requests_per_minute is not null
$$;
alter function app.request_budgets() owner to tenant_files_definer;
revoke execute on function app.request_budgets() from public;
grant execute on function app.request_budgets() to tenant_files_app;

-- REGISTRY: app.budget_refusals_add. A process adds what its budgets refused since its last
-- flush, for many organizations in one statement (the refusals happen before, or instead of,
-- any tenant transaction). Safe: only adds non-negative counts to the named organizations'
-- rows (existing organizations only: the foreign key), reads nothing back; an organization can
-- gain refusals it did not earn only from the service process itself.
create function app.budget_refusals_add(p_orgs uuid[], p_budgets text[], p_counts bigint[])
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into app.budget_refusals as r (organization_id, budget, refused, last_refused_at)
  select c.organization_id, c.budget, sum(c.refused), now()
    from unnest(p_orgs, p_budgets, p_counts) as c (organization_id, budget, refused)
   where c.refused > 0
     and exists (select from app.organizations o where o.id = c.organization_id)
   group by c.organization_id, c.budget
   -- Rows in one order in every flush: two processes flushing at once never wait on each
   -- other in a cycle.
   order by c.organization_id, c.budget
      on conflict (organization_id, budget)
      do update set refused = r.refused + excluded.refused, last_refused_at = excluded.last_refused_at
$$;
alter function app.budget_refusals_add(uuid[], text[], bigint[]) owner to tenant_files_definer;
revoke execute on function app.budget_refusals_add(uuid[], text[], bigint[]) from public;
grant execute on function app.budget_refusals_add(uuid[], text[], bigint[]) to tenant_files_app;
