-- Watch isolation hold, as the app role, in one transaction that is rolled back at the end
-- (nothing is left behind). Paste into psql, or:
--   psql "postgres://tenant_files_app@127.0.0.1:54329/tenant_files" -f sql/demo_isolation.sql
\set ON_ERROR_STOP 0
\set A '''aaaaaaaa-0000-4000-8000-00000000000a'''
\set B '''bbbbbbbb-0000-4000-8000-00000000000b'''
begin;

\echo '== Two tenants, created the way registration does it: inside their own context'
select set_config('app.org_id', :A, true), set_config('app.user_id', :A, true);
insert into app.organizations (id, name) values (:A, 'Demo A (rolled back)');
insert into app.users (id, organization_id, email, password_hash, role)
values (:A, :A, 'demo-a@example.invalid', 'x', 'owner');
insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
values (gen_random_uuid(), :A, 'a-secret.txt', 1, repeat('a', 64), :A);

select set_config('app.org_id', :B, true), set_config('app.user_id', :B, true);
insert into app.organizations (id, name) values (:B, 'Demo B (rolled back)');
insert into app.users (id, organization_id, email, password_hash, role)
values (:B, :B, 'demo-b@example.invalid', 'x', 'owner');
insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
values (gen_random_uuid(), :B, 'b-secret.txt', 1, repeat('b', 64), :B);

\echo '== No tenant context: nothing is visible (fail closed)'
select set_config('app.org_id', '', true);
select count(*) as visible_files from app.files;

\echo '== As tenant A, with no WHERE clause at all: only A''s rows'
select set_config('app.org_id', :A, true), set_config('app.user_id', :A, true);
select filename from app.files;

\echo '== As A, writing into B: refused by the policy (ERROR expected)'
savepoint attempt;
insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
values (gen_random_uuid(), :B, 'planted.txt', 1, repeat('c', 64), :B);
rollback to savepoint attempt;

\echo '== As A, changing B''s file: it is invisible, so nothing is updated (UPDATE 0)'
update app.files set filename = 'pwned.txt' where organization_id = :B;

\echo '== The app role cannot switch the guard off (ERRORs expected)'
savepoint attempt;
alter table app.files disable row level security;
rollback to savepoint attempt;
set role tenant_files_owner;
rollback to savepoint attempt;
create temp table files (id int);
rollback to savepoint attempt;

rollback;
\echo '== Rolled back: the demo left nothing behind'
