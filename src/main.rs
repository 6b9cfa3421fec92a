//! Entry point: configuration → telemetry → mode → report how it ended. Nothing else.

use std::process::ExitCode;

use tenant_files::{
    config::{Config, Mode},
    db,
    startup::Application,
    telemetry,
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
            let applied = db::migrate::run(&config.migration_database_url).await?;
            tracing::info!(applied, "migrations are up to date");
            Ok(())
        }
        Mode::Api => {
            let bind = config.bind;
            let app = Application::build(config).await?;
            tracing::info!(%bind, port = app.port(), "serving the API");
            app.run_until_stopped().await?;
            Ok(())
        }
    }
}
