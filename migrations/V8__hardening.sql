-- Hardening found by review (docs/decisions.md): an atomic login throttle, an index for pruning
-- the throttling table (the pruning itself is V9's app.prune_expired), a fate for pending files
-- whose uploader was deactivated, and an outbox whose foreign key does not depend on the order
-- statements arrive in.

------------------------------------------------------------------------------------------------
-- 1. Login throttle: the attempt is counted before the password is checked, atomically.
------------------------------------------------------------------------------------------------
-- Before, login_lookup read the failure count, the service spent ~250 ms on bcrypt, and
-- login_record wrote the count afterwards: 30 parallel wrong guesses all read "0 failures" and
-- were all evaluated. Now every attempt first takes a slot in the window in one upsert (the
-- row lock serializes concurrent attempts for the same email), and only the attempts that got a
-- slot are evaluated. A success gives the slots back (login_finish clears the row).
drop function app.login_lookup(text, bigint);
drop function app.login_record(text, boolean, bigint, text);
-- It now counts attempts, not failures: named for what it holds.
alter table app.login_failures rename to login_attempts;
alter table app.login_attempts rename column failures to attempts;
alter trigger login_failures_updated_at on app.login_attempts rename to login_attempts_updated_at;
alter index app.login_failures_pkey rename to login_attempts_pkey;

-- REGISTRY: app.login_attempt. Login happens before any tenant is known, by email alone. Counts
-- this attempt against the email's window (a new window once the old one expired) and returns
-- exactly one row whether or not the email exists: the user columns (NULL when unknown) and
-- whether the attempt is within p_max_attempts. Safe: touches only the throttling row of the
-- given email; reveals a password hash only to the service, which only compares it; never
-- lists users.
create function app.login_attempt(p_email text, p_window_seconds bigint, p_max_attempts integer)
returns table (user_id uuid, organization_id uuid, password_hash text, role text,
               is_active boolean, allowed boolean)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  attempts integer;
begin
  insert into app.login_attempts as a (email_key, attempts, window_started)
  values (lower(p_email), 1, now())
  on conflict (email_key) do update
     -- Capped one past the limit: a flood keeps the window closed without growing the count.
     set attempts = case when a.window_started > now() - make_interval(secs => p_window_seconds)
                         then least(a.attempts + 1, p_max_attempts + 1) else 1 end,
         window_started = case when a.window_started > now() - make_interval(secs => p_window_seconds)
                               then a.window_started else now() end
  returning a.attempts into attempts;

  return query
  select u.id, u.organization_id, u.password_hash, u.role, u.is_active, attempts <= p_max_attempts
    from (values (1)) as one (x)
    left join app.users u on lower(u.email) = lower(p_email);
end
$$;

-- REGISTRY: app.login_finish. After the password check: a success clears the email's count; either
-- way one login_succeeded / login_failed entry goes to the audit log of the organization the
-- email belongs to (nothing for unknown emails: there is no organization to log into). Safe:
-- touches only that email's throttling row and appends one entry about that email's own user.
create function app.login_finish(p_email text, p_success boolean, p_request_id text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_success then
    delete from app.login_attempts where email_key = lower(p_email);
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, request_id)
  select u.organization_id, case when p_success then u.id end,
         case when p_success then 'login_succeeded' else 'login_failed' end, 'user', u.id, p_request_id
    from app.users u
   where lower(u.email) = lower(p_email);
end
$$;

-- REGISTRY: app.invitation_valid. Registration by invitation asks this before spending bcrypt
-- time on the password, so bad tokens cost the service nothing. Safe: needs the SHA-256 of a
-- 256-bit token; answers only whether that token is usable by that email (invitation_accept
-- checks again, atomically, when it consumes it).
create function app.invitation_valid(p_token_hash bytea, p_email text)
returns boolean
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from app.invitations i
                  where i.token_hash = p_token_hash
                    and i.accepted_at is null
                    and i.expires_at > now()
                    and lower(i.email) = lower(p_email))
$$;

alter function app.invitation_valid(bytea, text) owner to tenant_files_definer;
alter function app.login_attempt(text, bigint, integer) owner to tenant_files_definer;
alter function app.login_finish(text, boolean, text) owner to tenant_files_definer;
grant execute on function
  app.invitation_valid(bytea, text),
  app.login_attempt(text, bigint, integer),
  app.login_finish(text, boolean, text)
to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 2. Tables that only grew: expired sessions, and throttling rows for any email anyone typed.
------------------------------------------------------------------------------------------------
-- Pruned by app.prune_expired (V9), which also frees the quota of abandoned uploads.
create index login_attempts_window_started_idx on app.login_attempts (window_started);

------------------------------------------------------------------------------------------------
-- 3. Pending files of a deactivated uploader: failed, not re-enqueued forever.
------------------------------------------------------------------------------------------------
-- The worker re-authorizes every job as its uploader and refuses it once they are inactive, so
-- the sweep used to re-enqueue such a file every period, forever. Now the sweep settles it:
-- `failed`, with a reason the organization's admins can read. (Re-validating as somebody else
-- would let a job act for a user who never asked for it.)
grant update (status, error_message, processed_at) on app.files to tenant_files_definer;

-- REGISTRY: app.requeue_stale_pending (new body, same contract plus the above). For every live
-- file still pending p_older_than_seconds after its last job: a new outbox job (for the
-- uploader) when the uploader is active, else the file is marked failed. Safe: writes only
-- outbox rows that copy a file's own organization and uploader (re-authorized by the worker as
-- usual), and the status of files that nobody can validate any more.
create or replace function app.requeue_stale_pending(p_older_than_seconds bigint, p_limit integer)
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with stale as (
    select f.id, f.organization_id, f.uploaded_by, u.is_active as uploader_active
      from app.files f
      join app.users u on u.id = f.uploaded_by
     where f.status = 'pending'
       and f.deleted_at is null
       and f.enqueued_at < now() - make_interval(secs => p_older_than_seconds)
       and not exists (select from app.outbox o where o.file_id = f.id)
     order by f.enqueued_at
     limit p_limit
       for update of f skip locked
  ), orphaned as (
    update app.files f
       set status = 'failed',
           error_message = 'the uploader was deactivated before validation finished',
           processed_at = now()
      from stale
     where f.id = stale.id
       and not stale.uploader_active
    returning f.id
  ), restamped as (
    update app.files f
       set enqueued_at = now()
      from stale
     where f.id = stale.id
       and stale.uploader_active
    returning f.id, f.organization_id, f.uploaded_by
  ), queued as (
    insert into app.outbox (id, organization_id, file_id, user_id)
    select gen_random_uuid(), organization_id, id, uploaded_by
      from restamped
    returning 1
  )
  select ((select count(*) from queued) + (select count(*) from orphaned))::integer
$$;

------------------------------------------------------------------------------------------------
-- 4. The outbox's foreign key is checked at commit.
------------------------------------------------------------------------------------------------
-- An upload sends the file row and its job in one round trip. Checked per statement, the job's
-- key would require the file row to arrive first, an order the client only kept by polling its
-- futures in sequence. Checked at commit, the order within the transaction does not matter; a
-- job for a file that never commits still fails (the whole transaction with it).
alter table app.outbox alter constraint outbox_file_fkey deferrable initially deferred;
