-- Cluster-level bootstrap, run ONCE per cluster by a superuser (scripts/dev-services.sh does it
-- for the dev cluster; a DBA runs it, with passwords added, in production):
--
--   psql -v ON_ERROR_STOP=1 "postgres://postgres@host/postgres" -f sql/bootstrap.sql
--
-- It creates the three roles of docs/rls.md and the database. Everything else (schema, tables,
-- policies, grants) is a refinery migration run by the owner role (`--mode migrate`).
-- Idempotent: running it again changes nothing.

set client_min_messages = warning;

-- Owner: owns the schema and every table, runs the migrations. Never used by the service.
-- CREATEDB only so the test suite can create a fresh database per test.
select 'create role tenant_files_owner login nosuperuser nobypassrls createdb nocreaterole'
where not exists (select from pg_roles where rolname = 'tenant_files_owner')
\gexec

-- App: what the api and worker connect as. Subject to RLS, owns nothing, inherits nothing.
select 'create role tenant_files_app login nosuperuser nobypassrls nocreatedb nocreaterole noinherit'
where not exists (select from pg_roles where rolname = 'tenant_files_app')
\gexec

-- Definer: owns the SECURITY DEFINER functions of the cross-tenant registry and nothing else.
-- NOLOGIN, so nobody can connect as it; BYPASSRLS because those functions must read across
-- tenants before a tenant is known (login by email, session load). The owner is a member only
-- so that migrations can hand function ownership to it.
select 'create role tenant_files_definer nologin nosuperuser bypassrls nocreatedb nocreaterole noinherit'
where not exists (select from pg_roles where rolname = 'tenant_files_definer')
\gexec

grant tenant_files_definer to tenant_files_owner;

select 'create database tenant_files owner tenant_files_owner'
where not exists (select from pg_database where datname = 'tenant_files')
\gexec
