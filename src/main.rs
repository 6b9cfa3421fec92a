//! Entry point: configuration → telemetry → mode → report how it ended. Nothing else.

use std::{process::ExitCode, sync::Arc};

use tenant_files::{
    config::{Config, Mode, OutputFormat},
    db,
    metrics::Metrics,
    rls_audit, rls_explain, shutdown,
    startup::Application,
    telemetry,
    worker::run_worker_until_stopped,
};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tenant-files: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error.cause_chain = ?e, "tenant-files stopped with an error");
            eprintln!("tenant-files: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    match config.mode {
        Mode::Migrate => {
            let applied = db::migrate::run(&config.database.migration_database_url).await?;
            tracing::info!(applied, "migrations are up to date");
            Ok(())
        }
        Mode::Api => {
            let app = Application::build(config, Arc::default()).await?;
            tracing::info!(port = app.port(), "serving the API");
            app.run_until_stopped().await?;
            Ok(())
        }
        Mode::RlsAudit => {
            let target = config.audit.audit_database_url.as_ref().unwrap_or(&config.database.migration_database_url);
            let (app_role, definer_role) = (&config.audit.audit_app_role, &config.audit.audit_definer_role);
            let report = rls_audit::run(target, app_role, definer_role).await?;
            match config.audit.format {
                OutputFormat::Text => print!("{}", report.to_text()),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            if report.passed() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("rls-audit found {} problem(s)", report.findings.len()))
            }
        }
        Mode::RlsExplain => {
            let target = config.audit.audit_database_url.as_ref().unwrap_or(&config.database.migration_database_url);
            let user =
                config.audit.explain_user.ok_or_else(|| anyhow::anyhow!("--mode rls-explain needs --user <id>"))?;
            let explained = rls_explain::run(
                target,
                &config.audit.audit_app_role,
                user,
                &config.audit.explain_table,
                config.audit.explain_row,
            )
            .await?;
            print!("{}", explained.to_text());
            Ok(())
        }
        Mode::Worker => run_worker_until_stopped(config, shutdown::on_signals(), Arc::default()).await,
        Mode::All => {
            // The HTTP server stops itself gracefully on SIGINT/SIGTERM; the worker watches the
            // same signals through the token. Whichever ends first, the other is stopped and
            // drained before the process exits.
            let stop = shutdown::on_signals();
            // One registry: the api's /metrics shows the worker's jobs too.
            let metrics = Arc::new(Metrics::new());
            let app = Application::build(config.clone(), metrics.clone()).await?;
            tracing::info!(port = app.port(), "serving the API and running the worker");
            let server = app.run_until_stopped();
            let worker = run_worker_until_stopped(config, stop.clone(), metrics);
            tokio::pin!(server, worker);
            tokio::select! {
                served = &mut server => {
                    stop.cancel();
                    worker.await?;
                    served?;
                }
                worked = &mut worker => {
                    worked?;
                    server.await?;
                }
            }
            Ok(())
        }
    }
}
