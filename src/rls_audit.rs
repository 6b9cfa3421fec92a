//! `--mode rls-audit`: proves from the database catalog alone that isolation holds.
//!
//! The checks are the plain-SQL files in `sql/audit/` (compiled in, never duplicated here), so
//! a DBA running them with `psql -f` and CI running this mode see exactly the same verdict.
//! Each file returns the offending objects as `(check_name, object, reason)`; empty means pass.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use tokio_postgres::NoTls;

/// One audit file: its check name (as the file reports it), file name and text.
pub struct Check {
    pub name: &'static str,
    pub file: &'static str,
    pub sql: &'static str,
}

macro_rules! check {
    ($name:literal, $file:literal) => {
        Check { name: $name, file: $file, sql: include_str!(concat!("../sql/audit/", $file)) }
    };
}

/// Every check, in order.
pub const CHECKS: &[Check] = &[
    check!("rls_enabled_and_forced", "01_rls_enabled_and_forced.sql"),
    check!("policy_coverage", "02_policy_coverage.sql"),
    check!("policy_subselect", "03_policy_subselect.sql"),
    check!("organization_index", "04_organization_index.sql"),
    check!("unlisted_table", "05_unlisted_tables.sql"),
    check!("app_role", "06_app_role.sql"),
    check!("public_grants", "07_public_grants.sql"),
    check!("definer_functions", "08_definer_functions.sql"),
    check!("views_security_invoker", "09_views.sql"),
    check!("function_search_path", "10_function_search_path.sql"),
    check!("reachable_tables", "11_reachable_tables.sql"),
    check!("bypassrls_roles", "12_bypassrls_roles.sql"),
    check!("permissive_per_role", "13_permissive_per_role.sql"),
    check!("setting_in_own_subselect", "14_setting_in_own_subselect.sql"),
    // What distributing the tenant tables by organization would break (#28, docs/scaling.md
    // "Beyond one database").
    check!("shard_key", "15_shard_key.sql"),
];

/// The objects every report lists, found or not, so a clean object visibly PASSes.
const AUDITED_OBJECTS: &str = r#"
select format('table %I.%I', n.nspname, c.relname)
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'app' and c.relkind in ('r', 'p', 'v', 'm')
union all
select format('function %s', p.oid::regprocedure)
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
 where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')
union all
select format('role %I', $1::text)
union all
select format('database %I', current_database())
"#;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: String,
    pub object: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub checks: Vec<&'static str>,
    pub objects: Vec<String>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// One line per object: PASS, or FAIL with every reason.
    pub fn to_text(&self) -> String {
        let mut by_object: BTreeMap<&str, Vec<&Finding>> = self.objects.iter().map(|o| (o.as_str(), vec![])).collect();
        for finding in &self.findings {
            by_object.entry(finding.object.as_str()).or_default().push(finding);
        }
        let width = by_object.keys().map(|o| o.len()).max().unwrap_or(6).max(6);
        let mut out = format!("{:<width$}  RESULT  CHECK / REASON\n", "OBJECT");
        for (object, findings) in &by_object {
            if findings.is_empty() {
                out += &format!("{object:<width$}  PASS\n");
            }
            for f in findings {
                out += &format!("{object:<width$}  FAIL    {}: {}\n", f.check, f.reason);
            }
        }
        out += &format!(
            "\n{} checks, {} objects, {} findings: {}\n",
            self.checks.len(),
            by_object.len(),
            self.findings.len(),
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out
    }
}

/// Makes a psql file runnable here: psql meta-commands (the role defaults) are dropped and the
/// psql variables become bound parameters.
fn as_statement(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.trim_start().starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(":'app_role'", "$1")
        .replace(":'definer_role'", "$2")
        .trim_end()
        .trim_end_matches(';')
        .to_owned()
}

/// Runs every check ([`CHECKS`]) against the database `config` points at.
pub async fn run(config: &tokio_postgres::Config, app_role: &str, definer_role: &str) -> anyhow::Result<Report> {
    let (client, connection) = config.connect(NoTls).await.context("cannot connect to the audited database")?;
    let connection = tokio::spawn(connection);
    // Read-only on purpose: the audit must never change what it inspects.
    client.batch_execute("set default_transaction_read_only = on").await?;

    let mut findings = Vec::new();
    let roles: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&app_role, &definer_role];
    for check in CHECKS {
        let failed = || format!("audit check {} ({}) failed to run", check.name, check.file);
        // A check that names no role takes no parameter.
        let statement = client.prepare(&as_statement(check.sql)).await.with_context(failed)?;
        let rows = client.query(&statement, &roles[..statement.params().len()]).await.with_context(failed)?;
        for row in rows {
            findings.push(Finding { check: row.try_get(0)?, object: row.try_get(1)?, reason: row.try_get(2)? });
        }
    }
    let objects = client
        .query(AUDITED_OBJECTS, &[&app_role])
        .await?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<_, _>>()?;
    drop(client);
    let _ = connection.await;
    Ok(Report { checks: CHECKS.iter().map(|check| check.name).collect(), objects, findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_files_become_parameterized_statements() {
        let sql =
            "-- comment\n\\if :{?app_role} \\else \\set app_role x \\endif\nselect :'app_role', :'definer_role';\n";
        assert_eq!(as_statement(sql), "-- comment\nselect $1, $2");
    }

    #[test]
    fn every_audit_file_is_run() {
        let files = |dir: &str| {
            std::fs::read_dir(format!("{}/sql/{dir}", env!("CARGO_MANIFEST_DIR")))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
                .count()
        };
        assert_eq!(files("audit"), CHECKS.len());
    }
}
