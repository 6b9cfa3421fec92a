//! `--mode rls-explain`: why may (or may not) this user do that to this row? For the app role
//! acting as the user in their organization, each command's privilege, the policies that apply
//! to it and the predicate they make together (permissive ones ORed, restrictive ones ANDed),
//! and, for a row, whether the command is allowed and which policy decides (docs/rls.md,
//! "Explaining access").
//!
//! It reads the user's row and the table's row as they are, so it connects as a role that
//! bypasses RLS (the superuser a DBA uses), in a read-only transaction that is rolled back, and
//! evaluates each policy's expressions on the row with the user's tenant context set, exactly
//! the settings the service's transactions carry.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// A policy that applies to the app role on the table.
#[derive(Debug, Clone)]
struct Policy {
    name: String,
    permissive: bool,
    /// `r`, `a`, `w`, `d` or `*`.
    command: char,
    using: Option<String>,
    with_check: Option<String>,
}

/// One command's answer.
#[derive(Debug)]
pub struct CommandAccess {
    pub command: &'static str,
    /// Whether the app role holds the privilege at all (for UPDATE: on some column).
    pub granted: bool,
    /// The policies that apply to this command, each with its kind and the expression checked.
    pub policies: Vec<String>,
    /// The policies' predicate for this command, as PostgreSQL would combine them.
    pub predicate: String,
    /// For a row: allowed, and the policies that decide it (or why not).
    pub decision: Option<(bool, String)>,
}

#[derive(Debug)]
pub struct Explanation {
    pub user: Uuid,
    pub organization: Uuid,
    pub role: String,
    pub active: bool,
    pub table: String,
    pub row: Option<Uuid>,
    pub commands: Vec<CommandAccess>,
}

const COMMANDS: [(&str, char); 4] = [("SELECT", 'r'), ("INSERT", 'a'), ("UPDATE", 'w'), ("DELETE", 'd')];

/// Explains `user`'s access to `table` (in schema app), and to its row `row` if given.
pub async fn run(
    config: &tokio_postgres::Config,
    app_role: &str,
    user: Uuid,
    table: &str,
    row: Option<Uuid>,
) -> anyhow::Result<Explanation> {
    let (mut client, connection) = config.connect(NoTls).await.context("cannot connect to explain")?;
    let connection = tokio::spawn(connection);
    let tx = client.build_transaction().read_only(true).start().await?;
    let bypasses: bool = tx
        .query_one("select rolsuper or rolbypassrls from pg_roles where rolname = current_user", &[])
        .await?
        .try_get(0)?;
    if !bypasses {
        bail!("rls-explain reads the user's and the row's data as they are: connect as a role that bypasses RLS (AUDIT_DATABASE_URL, e.g. the postgres superuser)");
    }
    let relid: Option<u32> =
        tx.query_one("select to_regclass(format('app.%I', $1::text))::oid", &[&table]).await?.try_get(0)?;
    let Some(relid) = relid else { bail!("no table app.{table}") };
    let found = tx
        .query_opt("select organization_id, role, is_active from app.users where id = $1", &[&user])
        .await?
        .with_context(|| format!("no user {user}"))?;
    let (organization, role, active): (Uuid, String, bool) = (found.try_get(0)?, found.try_get(1)?, found.try_get(2)?);
    tx.execute(
        "select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)",
        &[&organization.to_string(), &user.to_string()],
    )
    .await?;

    let policies = tx
        .query(
            "select p.polname::text, p.polpermissive, p.polcmd::text, pg_get_expr(p.polqual, p.polrelid),
                    pg_get_expr(p.polwithcheck, p.polrelid)
               from pg_policy p
              where p.polrelid = $1
                and (p.polroles = array[0::oid] or (select oid from pg_roles where rolname = $2) = any(p.polroles))
              order by p.polname",
            &[&relid, &app_role],
        )
        .await?
        .iter()
        .map(|r| {
            let command: String = r.try_get(2)?;
            Ok(Policy {
                name: r.try_get(0)?,
                permissive: r.try_get(1)?,
                command: command.chars().next().unwrap_or('*'),
                using: r.try_get(3)?,
                with_check: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;

    if let Some(row) = row {
        let exists = tx.query_opt(&format!("select from app.{table} where id = $1"), &[&row]).await?;
        if exists.is_none() {
            bail!("no row {row} in app.{table}");
        }
    }
    let mut commands = Vec::new();
    for (command, code) in COMMANDS {
        let privilege = if code == 'w' {
            "select has_any_column_privilege($1, $2::oid, 'UPDATE')"
        } else {
            "select has_table_privilege($1, $2::oid, $3)"
        };
        let granted: bool = if code == 'w' {
            tx.query_one(privilege, &[&app_role, &relid]).await?.try_get(0)?
        } else {
            tx.query_one(privilege, &[&app_role, &relid, &command]).await?.try_get(0)?
        };
        let checks = checks_for(&policies, code);
        let predicate = predicate(&checks);
        let kind = |c: &Check| if c.permissive { "permissive" } else { "restrictive" };
        let policies = checks.iter().map(|c| format!("{} {}", kind(c), c.name)).collect();
        let decision = match row {
            Some(row) => Some(decide(&tx, table, row, granted, command, &checks).await?),
            None => None,
        };
        commands.push(CommandAccess { command, granted, policies, predicate, decision });
    }
    tx.rollback().await?;
    drop(client);
    let _ = connection.await;
    Ok(Explanation { user, organization, role, active, table: table.to_owned(), row, commands })
}

/// One expression a command checks on a row.
struct Check {
    name: String,
    permissive: bool,
    expr: String,
    /// Checked because the command reads the row (UPDATE, DELETE: the SELECT policies'
    /// USING), a group of its own: one of its permissive checks must hold as well.
    as_select: bool,
}

/// What a command checks, in PostgreSQL's terms. SELECT and DELETE check USING; INSERT checks
/// WITH CHECK; UPDATE checks USING on the old row and WITH CHECK (or, without one, USING) on the
/// new one; UPDATE and DELETE also read the row, so the SELECT policies' USING apply to them too.
fn checks_for(policies: &[Policy], code: char) -> Vec<Check> {
    let applies = |p: &Policy, to: char| p.command == to || p.command == '*';
    let mut checks = Vec::new();
    for p in policies {
        let mut add = |label: &str, expr: &Option<String>, as_select: bool| {
            if let Some(expr) = expr {
                let name = format!("{} ({label})", p.name);
                checks.push(Check { name, permissive: p.permissive, expr: expr.clone(), as_select });
            }
        };
        match code {
            'r' | 'd' if applies(p, code) => add("USING", &p.using, false),
            'a' if applies(p, 'a') => add("WITH CHECK", &p.with_check, false),
            'w' if applies(p, 'w') => {
                add("USING", &p.using, false);
                add("WITH CHECK", if p.with_check.is_some() { &p.with_check } else { &p.using }, false);
            }
            _ => {}
        }
        if matches!(code, 'w' | 'd') && applies(p, 'r') {
            add("USING, as the SELECT the command makes", &p.using, true);
        }
    }
    checks
}

/// Each group's permissive checks ORed, every restrictive one ANDed with them.
fn predicate(checks: &[Check]) -> String {
    let mut parts = Vec::new();
    for as_select in [false, true] {
        let group: Vec<&Check> = checks.iter().filter(|c| c.as_select == as_select).collect();
        if as_select && group.is_empty() {
            continue;
        }
        // An expression checked twice (USING and WITH CHECK alike) is written once.
        let distinct = |permissive: bool| {
            let mut exprs: Vec<&str> = Vec::new();
            for c in group.iter().filter(|c| c.permissive == permissive) {
                if !exprs.contains(&c.expr.as_str()) {
                    exprs.push(&c.expr);
                }
            }
            exprs
        };
        let permissive = distinct(true);
        parts.push(if permissive.is_empty() {
            "false (no permissive policy)".to_owned()
        } else {
            format!("({})", permissive.join(" OR "))
        });
        parts.extend(distinct(false).into_iter().map(|expr| format!("({expr})")));
    }
    parts.join("\n    AND ")
}

/// Each check evaluated on the row (its current values, also standing for the new row of an
/// UPDATE that changes nothing and for an INSERT of the same values).
async fn decide(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    row: Uuid,
    granted: bool,
    command: &str,
    checks: &[Check],
) -> anyhow::Result<(bool, String)> {
    if !granted {
        return Ok((false, format!("the app role holds no {command} privilege on app.{table}")));
    }
    let mut held = Vec::new();
    for check in checks {
        let sql = format!("select coalesce(({}), false) from app.{table} {table} where {table}.id = $1", check.expr);
        let holds: bool = tx.query_one(&sql, &[&row]).await?.try_get(0)?;
        held.push((check, holds));
    }
    for as_select in [false, true] {
        let group: Vec<&(&Check, bool)> = held.iter().filter(|(c, _)| c.as_select == as_select).collect();
        if group.is_empty() || group.iter().any(|(c, holds)| c.permissive && *holds) {
            continue;
        }
        let permissive: Vec<&str> = group.iter().filter(|(c, _)| c.permissive).map(|(c, _)| c.name.as_str()).collect();
        return Ok((false, format!("no permissive policy admits the row (false: {})", list(&permissive))));
    }
    let refusing: Vec<&str> =
        held.iter().filter(|(c, holds)| !c.permissive && !holds).map(|(c, _)| c.name.as_str()).collect();
    if !refusing.is_empty() {
        return Ok((false, format!("refused by restrictive {}", list(&refusing))));
    }
    let admitted: Vec<&str> =
        held.iter().filter(|(c, holds)| c.permissive && *holds).map(|(c, _)| c.name.as_str()).collect();
    Ok((true, format!("admitted by {}", list(&admitted))))
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

impl Explanation {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "user {} ({}{}) in organization {}, as the app role, on app.{}{}",
            self.user,
            self.role,
            if self.active { "" } else { ", deactivated: every credential of theirs is refused before any policy" },
            self.organization,
            self.table,
            self.row.map(|row| format!(", row {row}")).unwrap_or_default(),
        );
        for c in &self.commands {
            let _ = writeln!(out, "\n{}{}", c.command, if c.granted { "" } else { "  (not granted to the app role)" });
            let _ = writeln!(out, "  policies: {}", list(&c.policies.iter().map(String::as_str).collect::<Vec<_>>()));
            let _ = writeln!(out, "  predicate: {}", c.predicate);
            if let Some((allowed, why)) = &c.decision {
                let _ = writeln!(out, "  this row: {}: {why}", if *allowed { "ALLOWED" } else { "REFUSED" });
            }
        }
        out
    }
}
