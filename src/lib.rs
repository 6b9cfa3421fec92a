//! tenant-files: a multi-tenant file API where PostgreSQL row-level security enforces tenant
//! isolation. The binary (`main.rs`) only parses configuration and picks a mode; everything
//! lives here so integration tests link against the same code.
#![forbid(unsafe_code)]
#![deny(clippy::self_named_module_files)]

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod queue;
pub mod resources;
pub mod rls_audit;
pub mod rls_explain;
pub mod shutdown;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod uploads;
pub mod webhooks;
pub mod worker;
