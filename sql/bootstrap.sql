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
-- NOLOGIN, so nobody can connect as it. No BYPASSRLS: its functions read across tenants
-- (login by email, session load, the outbox relay) through a `registry` policy on exactly the
-- tables they use (migrations/V10). Earlier clusters gave it BYPASSRLS; the ALTER takes it
-- away (run `--mode migrate` first, so the registry policies exist by then).
select 'create role tenant_files_definer nologin nosuperuser nobypassrls nocreatedb nocreaterole noinherit'
where not exists (select from pg_roles where rolname = 'tenant_files_definer')
\gexec
alter role tenant_files_definer nobypassrls;

-- The owner is a member of the definer role only so that migrations can hand function
-- ownership to it. Without BYPASSRLS that membership reaches no policy bypass, and the registry
-- policies admit rows only while the definer itself is the current user (inside a registry
-- function), so an owner session does not see across tenants through them either.
grant tenant_files_definer to tenant_files_owner;

select 'create database tenant_files owner tenant_files_owner'
where not exists (select from pg_database where datname = 'tenant_files')
\gexec
